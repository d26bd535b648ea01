//! Passive health of one pool endpoint: an explicit state machine fed by real requests.
//!
//! ```text
//!            K consecutive failures                 cool-down over:
//!  Healthy ------------------------> Ejected{until} ----------------> Probing
//!     ^  any answer (from any state)      ^     one request is let through  |
//!     |                                   |   probe failed: cool-down x2    |
//!     +-----------------------------------+---------------------------------+
//!                         probe answered
//! ```
//!
//! - **Healthy**: every request may use the endpoint; failures are counted, an answer resets
//!   the count.
//! - **Ejected**: skipped at once until `until`, so an endpoint that is down costs requests
//!   nothing (no connect attempt, no timeout). The cool-down doubles with each ejection in a
//!   row, capped at `max_cooldown`.
//! - **Probing**: the cool-down is over and exactly one real request is trying the endpoint;
//!   everyone else still skips it. If that request is dropped before it learns anything (its
//!   client went away), the endpoint goes back to Ejected with its cool-down already over, so
//!   the next request probes: a probe can never be stuck.
//!
//! A pool of one endpoint does not eject (there is nothing to fail over to, and refusing
//! requests fast would only turn a slow recovery into a late one): its health is
//! [`Policy::never_eject`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use crate::config::PoolHealthConfig;

/// An endpoint's state (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy {
        /// Consecutive failures so far.
        failures: u32,
    },
    Ejected {
        until: Instant,
        /// Ejections in a row before this one (the cool-down is `cooldown * 2^level`).
        level: u32,
    },
    Probing {
        level: u32,
    },
}

impl State {
    /// The value of `prism_upstream_endpoint_state`.
    pub fn gauge_value(&self) -> i64 {
        match self {
            State::Healthy { .. } => 0,
            State::Ejected { .. } => 1,
            State::Probing { .. } => 2,
        }
    }
}

/// When to eject and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `None`: never eject.
    failures: Option<u32>,
    cooldown: Duration,
    max_cooldown: Duration,
}

impl Policy {
    pub fn from_config(c: &PoolHealthConfig) -> Policy {
        Policy {
            failures: Some(c.failures.max(1)),
            cooldown: c.cooldown,
            max_cooldown: c.max_cooldown.max(c.cooldown),
        }
    }

    pub fn never_eject() -> Policy {
        Policy {
            failures: None,
            cooldown: Duration::ZERO,
            max_cooldown: Duration::ZERO,
        }
    }

    /// The cool-down of the `level`th ejection in a row: `cooldown * 2^level`, capped.
    pub fn cooldown(&self, level: u32) -> Duration {
        self.cooldown
            .saturating_mul(1 << level.min(30))
            .min(self.max_cooldown)
    }
}

/// How a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Regular,
    Probe,
}

/// What a finished request changed, for the caller to count and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Taken out of rotation for `cooldown`.
    Ejected {
        cooldown: Duration,
    },
    /// Back in rotation.
    Recovered,
}

/// One endpoint's health, shared by every request of the pool.
pub struct EndpointHealth {
    policy: Policy,
    state: Mutex<State>,
    gauge: IntGauge,
}

impl EndpointHealth {
    /// Starts healthy; `gauge` mirrors the state (see [`State::gauge_value`]).
    pub fn new(policy: Policy, gauge: IntGauge) -> EndpointHealth {
        gauge.set(0);
        EndpointHealth {
            policy,
            state: Mutex::new(State::Healthy { failures: 0 }),
            gauge,
        }
    }

    pub fn state(&self) -> State {
        *self.lock()
    }

    /// Whether a request may use the endpoint now; `None` = skip it. The ticket must be
    /// [`finish`](Ticket::finish)ed with the outcome (dropping it unfinished is "no answer").
    pub fn admit(&self, now: Instant) -> Option<Ticket<'_>> {
        let mut state = self.lock();
        let admission = match *state {
            State::Healthy { .. } => Admission::Regular,
            State::Ejected { until, level } if now >= until => {
                self.set(&mut state, State::Probing { level });
                Admission::Probe
            }
            State::Ejected { .. } | State::Probing { .. } => return None,
        };
        Some(Ticket {
            health: self,
            admission,
            finished: false,
        })
    }

    /// When an ejected endpoint may next be probed (`None` if it is not ejected).
    pub fn ejected_until(&self) -> Option<Instant> {
        match *self.lock() {
            State::Ejected { until, .. } => Some(until),
            _ => None,
        }
    }

    fn finish(&self, admission: Admission, answered: bool, now: Instant) -> Change {
        let Some(max_failures) = self.policy.failures else {
            return Change::None;
        };
        let mut state = self.lock();
        let current = *state;
        if answered {
            self.set(&mut state, State::Healthy { failures: 0 });
            return if matches!(current, State::Healthy { .. }) {
                Change::None
            } else {
                Change::Recovered
            };
        }
        let level = match (current, admission) {
            (State::Healthy { failures }, _) if failures + 1 < max_failures => {
                self.set(
                    &mut state,
                    State::Healthy {
                        failures: failures + 1,
                    },
                );
                return Change::None;
            }
            (State::Healthy { .. }, _) => 0,
            (State::Probing { level }, Admission::Probe) => level.saturating_add(1),
            // A request admitted before the ejection failed too: already out, nothing new.
            (State::Ejected { .. } | State::Probing { .. }, _) => return Change::None,
        };
        let cooldown = self.policy.cooldown(level);
        self.set(
            &mut state,
            State::Ejected {
                until: now + cooldown,
                level,
            },
        );
        Change::Ejected { cooldown }
    }

    /// A probe ended without an answer either way: let the next request probe.
    fn abandon(&self, now: Instant) {
        let mut state = self.lock();
        if let State::Probing { level } = *state {
            self.set(&mut state, State::Ejected { until: now, level });
        }
    }

    fn set(&self, state: &mut State, next: State) {
        *state = next;
        self.gauge.set(next.gauge_value());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Permission to use an endpoint for one request; see [`EndpointHealth::admit`].
pub struct Ticket<'a> {
    health: &'a EndpointHealth,
    admission: Admission,
    finished: bool,
}

impl Ticket<'_> {
    /// Whether this request is the endpoint's probe.
    pub fn is_probe(&self) -> bool {
        self.admission == Admission::Probe
    }

    /// Records the outcome: `answered` = the endpoint answered (a blob, or an authoritative
    /// "not found"); otherwise it failed (connection, timeout, 5xx, bad bytes).
    pub fn finish(mut self, answered: bool, now: Instant) -> Change {
        self.finished = true;
        self.health.finish(self.admission, answered, now)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.finished && self.admission == Admission::Probe {
            self.health.abandon(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn health(failures: u32) -> EndpointHealth {
        let policy = Policy::from_config(&PoolHealthConfig {
            failures,
            cooldown: SEC,
            max_cooldown: 4 * SEC,
        });
        EndpointHealth::new(policy, IntGauge::new("g", "g").unwrap())
    }

    fn fail(h: &EndpointHealth, now: Instant) -> Change {
        h.admit(now).expect("admitted").finish(false, now)
    }

    #[test]
    fn k_consecutive_failures_eject_and_an_answer_resets_the_count() {
        let h = health(3);
        let t = Instant::now();
        assert_eq!(fail(&h, t), Change::None);
        assert_eq!(fail(&h, t), Change::None);
        assert_eq!(h.admit(t).unwrap().finish(true, t), Change::None);
        assert_eq!(h.state(), State::Healthy { failures: 0 });
        assert_eq!(fail(&h, t), Change::None);
        assert_eq!(fail(&h, t), Change::None);
        assert_eq!(fail(&h, t), Change::Ejected { cooldown: SEC });
        assert_eq!(h.gauge.get(), 1);
        assert!(h.admit(t).is_none(), "ejected: skipped at once");
        assert!(h.admit(t + SEC / 2).is_none());
    }

    #[test]
    fn one_probe_at_a_time_and_cooldown_doubles_to_the_cap() {
        let h = health(1);
        let mut t = Instant::now();
        assert_eq!(fail(&h, t), Change::Ejected { cooldown: SEC });
        for expected in [2 * SEC, 4 * SEC, 4 * SEC] {
            let cooldown = match h.state() {
                State::Ejected { until, .. } => until - t,
                s => panic!("{s:?}"),
            };
            t += cooldown;
            let probe = h.admit(t).expect("cool-down over: probe");
            assert!(probe.is_probe());
            assert_eq!(h.gauge.get(), 2);
            assert!(h.admit(t).is_none(), "only one probe at a time");
            assert_eq!(
                probe.finish(false, t),
                Change::Ejected { cooldown: expected }
            );
        }
        t += 4 * SEC;
        let probe = h.admit(t).unwrap();
        assert_eq!(probe.finish(true, t), Change::Recovered);
        assert_eq!(h.gauge.get(), 0);
        // Back to the first cool-down after a recovery.
        assert_eq!(fail(&h, t), Change::Ejected { cooldown: SEC });
    }

    #[test]
    fn a_dropped_probe_lets_the_next_request_probe() {
        let h = health(1);
        let t = Instant::now();
        fail(&h, t);
        let probe = h.admit(t + SEC).unwrap();
        drop(probe);
        assert!(matches!(h.state(), State::Ejected { level: 0, .. }));
        assert!(h.admit(Instant::now()).unwrap().is_probe());
    }

    #[test]
    fn late_answers_and_failures_of_requests_admitted_before_the_ejection() {
        let h = health(1);
        let t = Instant::now();
        let early = h.admit(t).unwrap();
        let late = h.admit(t).unwrap();
        assert_eq!(fail(&h, t), Change::Ejected { cooldown: SEC });
        assert_eq!(early.finish(false, t), Change::None, "already out");
        assert_eq!(
            late.finish(true, t),
            Change::Recovered,
            "it answered: it is up"
        );
    }

    #[test]
    fn never_eject_always_admits() {
        let h = EndpointHealth::new(Policy::never_eject(), IntGauge::new("g", "g").unwrap());
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(fail(&h, t), Change::None);
        }
        assert!(!h.admit(t).unwrap().is_probe());
        assert_eq!(h.gauge.get(), 0);
    }
}
