//! Single-flight: concurrent requests for one hash share one piece of work.
//!
//! The first caller for a key becomes the [`Leader`]; callers arriving while it runs become
//! followers and wait on the same [`watch`] channel. The leader's work is expected to run in a
//! detached task (so a client that disconnects does not cancel it for everyone else) and to
//! [`Leader::publish`] its result as soon as it has one; followers wake at that moment, even if
//! the leader still has follow-up work (e.g. writing the cache) before it ends the flight.
//!
//! States, explicitly (after pingora-cache's lock): a key is either absent (no flight), or has a
//! flight whose channel holds `None` (running) or `Some(result)` (answered). A leader dropped
//! without publishing (panic, abort) closes the channel: followers see [`Outcome::Abandoned`]
//! and retry instead of hanging. The map entry is removed when the leader is dropped, whatever
//! the path, so a key can never be stuck.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use prometheus::IntGauge;
use tokio::sync::watch;

/// How many times a caller re-joins a flight whose leader vanished without answering.
const MAX_ATTEMPTS: usize = 3;

/// The in-flight table. Cheap to share: wrap in `Arc`.
pub struct Flights<K, T> {
    running: Mutex<HashMap<K, watch::Receiver<Option<T>>>>,
}

/// What a caller gets from [`Flights::join`].
pub enum Role<K: Eq + Hash + Clone, T: Clone> {
    /// Nobody was working on this key: you do it, then publish.
    Leader(Leader<K, T>),
    /// Somebody is already working on it: wait.
    Follower(Waiter<T>),
}

/// The result of waiting.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The leader went away without an answer; try again.
    Abandoned,
}

/// The caller that does the work. Ends the flight when dropped.
pub struct Leader<K: Eq + Hash + Clone, T: Clone> {
    key: K,
    sender: watch::Sender<Option<T>>,
    flights: Arc<Flights<K, T>>,
}

/// A handle to wait for a flight's answer.
pub struct Waiter<T: Clone> {
    receiver: watch::Receiver<Option<T>>,
}

impl<K: Eq + Hash + Clone, T: Clone> Flights<K, T> {
    pub fn new() -> Arc<Flights<K, T>> {
        Arc::new(Flights {
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Joins the flight for `key`, or starts one.
    pub fn join(self: &Arc<Self>, key: &K) -> Role<K, T> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(receiver) = running.get(key) {
            return Role::Follower(Waiter {
                receiver: receiver.clone(),
            });
        }
        let (sender, receiver) = watch::channel(None);
        running.insert(key.clone(), receiver);
        Role::Leader(Leader {
            key: key.clone(),
            sender,
            flights: Arc::clone(self),
        })
    }

    /// Runs the single-flight protocol for `key`: when this caller leads, `lead` is called with
    /// the [`Leader`] and must start the work (normally in a detached task that publishes);
    /// either way this waits for the answer. A vanished leader is retried a few times; `None`
    /// means every attempt was abandoned. `waiting` counts callers parked on someone else's
    /// flight (decremented even if this future is dropped).
    pub async fn run(
        self: &Arc<Self>,
        key: &K,
        waiting: &IntGauge,
        mut lead: impl FnMut(Leader<K, T>),
    ) -> Option<T> {
        for _ in 0..MAX_ATTEMPTS {
            let outcome = match self.join(key) {
                Role::Leader(leader) => {
                    let waiter = leader.waiter();
                    lead(leader);
                    waiter.wait().await
                }
                Role::Follower(waiter) => {
                    let _parked = GaugeGuard::new(waiting);
                    waiter.wait().await
                }
            };
            if let Outcome::Done(value) = outcome {
                return Some(value);
            }
        }
        None
    }

    /// Waits until the flight for `key`, if one is running, has ended: its leader finished all
    /// of its work (for `caching`, the cache write), not merely published the answer.
    pub async fn ended(&self, key: &K) {
        let receiver = self
            .running
            .lock()
            .ok()
            .and_then(|running| running.get(key).cloned());
        if let Some(mut receiver) = receiver {
            // `changed` fails once the leader (the only sender) is dropped.
            while receiver.changed().await.is_ok() {}
        }
    }

    /// How many keys have a flight right now.
    pub fn len(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Leader<K, T> {
    /// A waiter for the leader's own caller (it waits like everyone else, so the work itself
    /// can run detached).
    pub fn waiter(&self) -> Waiter<T> {
        Waiter {
            receiver: self.sender.subscribe(),
        }
    }

    /// Answers every waiter now. The flight stays open (new callers get this answer at once)
    /// until the leader is dropped.
    pub fn publish(&self, result: T) {
        self.sender.send_replace(Some(result));
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Drop for Leader<K, T> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.flights.running.lock() {
            running.remove(&self.key);
        }
    }
}

impl<T: Clone> Waiter<T> {
    /// Waits for the answer, or for the leader to go away without one.
    pub async fn wait(mut self) -> Outcome<T> {
        let answered = self
            .receiver
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        match answered {
            Some(value) => Outcome::Done(value),
            // The sender is gone; it may still have published just before dropping.
            None => match self.receiver.borrow().clone() {
                Some(value) => Outcome::Done(value),
                None => Outcome::Abandoned,
            },
        }
    }
}

/// Increments a gauge for as long as it lives (so cancelled futures do not leak counts).
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(gauge: &IntGauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_many_followers_all_answered() {
        let flights: Arc<Flights<u32, u64>> = Flights::new();
        let Role::Leader(leader) = flights.join(&7) else {
            panic!("first caller must lead")
        };
        let mut waiters = vec![leader.waiter()];
        for _ in 0..10 {
            match flights.join(&7) {
                Role::Follower(w) => waiters.push(w),
                Role::Leader(_) => panic!("second caller must follow"),
            }
        }
        // A different key is independent.
        assert!(matches!(flights.join(&8), Role::Leader(_)));
        leader.publish(42);
        for w in waiters {
            assert!(matches!(w.wait().await, Outcome::Done(42)));
        }
        // Still open until the leader ends the flight: latecomers get the answer too.
        let Role::Follower(late) = flights.join(&7) else {
            panic!("flight should still be open")
        };
        drop(leader);
        assert!(matches!(late.wait().await, Outcome::Done(42)));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn dropped_leader_releases_waiters() {
        let flights: Arc<Flights<u32, u64>> = Flights::new();
        let Role::Leader(leader) = flights.join(&1) else {
            panic!()
        };
        let Role::Follower(w) = flights.join(&1) else {
            panic!()
        };
        let task = tokio::spawn(w.wait());
        drop(leader);
        assert!(matches!(task.await.unwrap(), Outcome::Abandoned));
        assert!(matches!(flights.join(&1), Role::Leader(_)));
    }
}
