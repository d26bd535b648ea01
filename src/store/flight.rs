//! Single-flight: concurrent requests for one hash share one piece of work.
//!
//! The first caller for a key becomes the [`Leader`]; callers arriving while it runs become
//! followers and wait on the same [`watch`] channel. The leader's work is expected to run in a
//! detached task (so a client that disconnects does not cancel it for everyone else) and to
//! [`Leader::publish`] its result as soon as it has one; followers wake at that moment, even if
//! the leader still has follow-up work (e.g. writing the cache) before it ends the flight.
//!
//! The states are explicit, after pingora-cache's cache lock (`LockStatus`): a key is either
//! absent (no flight), or has a flight whose channel holds a [`State`]: `Waiting` (the leader
//! is working), `Done` (answered), or `Abandoned` (the leader was dropped without answering:
//! panic, abort). A waiter's own view adds one more ending, [`Outcome::TimedOut`]: every waiter
//! has a deadline (the table's `wait_limit`), so a stuck leader costs a follower at most that
//! long, never forever. The map entry is removed when the leader is dropped, whatever the path,
//! so a key can never be stuck either.
//!
//! **Choosing `wait_limit`.** A follower waits for the leader's origin fetch, which the origin
//! stores bound with their own `timeout`s. The stores that own a table ([`caching`],
//! [`singleflight`]) use [`wait_limit_for`] of the subtree the leader fetches from: that
//! subtree's worst case ([`worst_case_get`]) plus [`WAIT_GRACE`] (as long as the default origin
//! `timeout`, 30 s) for local work (disk reads, hashing) on a busy machine. So a follower only
//! times out when the leader is stuck beyond anything its origins allow.
//!
//! [`caching`]: super::caching
//! [`singleflight`]: super::singleflight

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::watch;

use crate::config::StoreConfig;
use crate::metrics::GaugeGuard;
use crate::store::{StoreError, StoreResult};

/// How many times a caller re-joins a flight whose leader vanished without answering.
const MAX_ATTEMPTS: usize = 3;

/// Slack on top of a subtree's worst case for work no `timeout` bounds (see the module docs).
pub const WAIT_GRACE: Duration = Duration::from_secs(30);

/// A flight's state, as its channel carries it.
#[derive(Debug, Clone)]
pub enum State<T> {
    /// The leader is working.
    Waiting,
    /// The leader published its answer (it may still be finishing follow-up work).
    Done(T),
    /// The leader was dropped without publishing: waiters should try again.
    Abandoned,
}

/// The in-flight table. Cheap to share: wrap in `Arc`.
pub struct Flights<K, T> {
    running: Mutex<HashMap<K, watch::Receiver<State<T>>>>,
    /// How long one wait may take (see the module docs).
    wait_limit: Duration,
}

/// What a caller gets from [`Flights::join`].
pub enum Role<K: Eq + Hash + Clone, T: Clone> {
    /// Nobody was working on this key: you do it, then publish.
    Leader(Leader<K, T>),
    /// Somebody is already working on it: wait.
    Follower(Waiter<T>),
}

/// How one wait ended.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The leader went away without an answer; try again.
    Abandoned,
    /// No answer within the table's `wait_limit` (`after`); the leader may still be working.
    TimedOut {
        after: Duration,
    },
}

impl<T> Outcome<StoreResult<T>> {
    /// The answer, or the error store `store` gives when its flight of `what` (e.g. "get")
    /// ended without one: unavailable when abandoned, a timeout after the table's wait limit.
    pub fn into_result(self, store: &Arc<str>, what: &str) -> StoreResult<T> {
        match self {
            Outcome::Done(answer) => answer,
            Outcome::Abandoned => Err(StoreError::unavailable(
                store,
                format!("{what} was abandoned repeatedly"),
            )),
            Outcome::TimedOut { after } => Err(StoreError::Timeout {
                store: Arc::clone(store),
                after,
            }),
        }
    }
}

/// The caller that does the work. Ends the flight when dropped.
pub struct Leader<K: Eq + Hash + Clone, T: Clone> {
    key: K,
    sender: watch::Sender<State<T>>,
    flights: Arc<Flights<K, T>>,
}

/// A handle to wait for a flight's answer, at most `limit`.
pub struct Waiter<T: Clone> {
    receiver: watch::Receiver<State<T>>,
    limit: Duration,
}

impl<K: Eq + Hash + Clone, T: Clone> Flights<K, T> {
    /// A table whose waiters wait at most `wait_limit` (see [`wait_limit_for`]).
    pub fn new(wait_limit: Duration) -> Arc<Flights<K, T>> {
        Arc::new(Flights {
            running: Mutex::new(HashMap::new()),
            wait_limit,
        })
    }

    /// Joins the flight for `key`, or starts one.
    pub fn join(self: &Arc<Self>, key: &K) -> Role<K, T> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(receiver) = running.get(key) {
            return Role::Follower(Waiter {
                receiver: receiver.clone(),
                limit: self.wait_limit,
            });
        }
        let (sender, receiver) = watch::channel(State::Waiting);
        running.insert(key.clone(), receiver);
        Role::Leader(Leader {
            key: key.clone(),
            sender,
            flights: Arc::clone(self),
        })
    }

    /// Runs the single-flight protocol for `key`: when this caller leads, `lead` is called with
    /// the [`Leader`] and must start the work (normally in a detached task that publishes);
    /// either way this waits for the answer. A vanished leader is retried a few times (then the
    /// answer is [`Outcome::Abandoned`]); a wait that runs out of `wait_limit` is not retried
    /// (the flight is still running). `waiting` counts callers parked on someone else's flight
    /// (decremented even if this future is dropped).
    pub async fn run(
        self: &Arc<Self>,
        key: &K,
        waiting: &IntGauge,
        mut lead: impl FnMut(Leader<K, T>),
    ) -> Outcome<T> {
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
            match outcome {
                Outcome::Abandoned => continue,
                done_or_timed_out => return done_or_timed_out,
            }
        }
        Outcome::Abandoned
    }

    /// Waits until the flight for `key`, if one is running, has ended: its leader finished all
    /// of its work (for `caching`, the cache write), not merely published the answer. Bounded
    /// by `wait_limit` like any wait; returns whether the flight ended (or none was running).
    pub async fn ended(&self, key: &K) -> bool {
        let receiver = self
            .running
            .lock()
            .ok()
            .and_then(|running| running.get(key).cloned());
        let Some(mut receiver) = receiver else {
            return true;
        };
        // `changed` fails once the leader (the only sender) is dropped.
        let closed = async { while receiver.changed().await.is_ok() {} };
        tokio::time::timeout(self.wait_limit, closed).await.is_ok()
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
            limit: self.flights.wait_limit,
        }
    }

    /// Answers every waiter now. The flight stays open (new callers get this answer at once)
    /// until the leader is dropped.
    pub fn publish(&self, result: T) {
        self.sender.send_replace(State::Done(result));
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Drop for Leader<K, T> {
    fn drop(&mut self) {
        // Waiting -> Abandoned, so waiters learn it from the state, not from a closed channel.
        self.sender.send_if_modified(|state| match state {
            State::Waiting => {
                *state = State::Abandoned;
                true
            }
            State::Done(_) | State::Abandoned => false,
        });
        if let Ok(mut running) = self.flights.running.lock() {
            running.remove(&self.key);
        }
    }
}

impl<T: Clone> Waiter<T> {
    /// Waits for the answer, for the leader to go away without one, or for the deadline.
    pub async fn wait(mut self) -> Outcome<T> {
        let settled = self
            .receiver
            .wait_for(|state| !matches!(state, State::Waiting));
        match tokio::time::timeout(self.limit, settled).await {
            Err(_) => return Outcome::TimedOut { after: self.limit },
            Ok(Ok(state)) => {
                if let State::Done(value) = &*state {
                    return Outcome::Done(value.clone());
                }
            }
            // The sender is gone (it set the final state just before dropping).
            Ok(Err(_)) => {}
        }
        match &*self.receiver.borrow() {
            State::Done(value) => Outcome::Done(value.clone()),
            State::Waiting | State::Abandoned => Outcome::Abandoned,
        }
    }
}

/// The longest a `get` on the tree `config` describes can take when every remote in it runs
/// into its own `timeout`: stores asked one after another (a caching miss: cache then origin;
/// `ittt`: `this` then `that`) add up, wrappers pass their child's through, local stores count
/// as zero.
pub fn worst_case_get(config: &StoreConfig) -> Duration {
    use StoreConfig as S;
    match config {
        S::Disk(_) | S::Mem(_) | S::Noop(_) => Duration::ZERO,
        S::Http(c) => c.timeout,
        // A pool may try every endpoint in turn (see `store::pool`), each under its own timeout.
        S::Upstream(c) => c.timeout * pool_size(c.endpoints.len()),
        S::S3(c) => c.timeout,
        S::Peer(c) => c.timeout * pool_size(c.addresses.len()),
        S::Http3(c) => c.timeout * pool_size(c.addresses.len()),
        S::Caching(c) => worst_case_get(&c.cache) + worst_case_get(&c.origin),
        S::Ittt(c) => worst_case_get(&c.this) + worst_case_get(&c.that),
        S::Singleflight(c) => worst_case_get(&c.store),
        S::Gcache(c) => worst_case_get(&c.store),
        S::DbBacked(c) => worst_case_get(&c.store),
        S::Multiwriter(c) => c
            .stores
            .first()
            .map_or(Duration::ZERO, |(_, s)| worst_case_get(s)),
        S::ProxiedS3(c) => worst_case_get(c.reader.as_ref().unwrap_or(&c.writer)),
    }
}

fn pool_size(endpoints: usize) -> u32 {
    u32::try_from(endpoints).unwrap_or(u32::MAX)
}

/// The `wait_limit` for a table whose leaders fetch from the tree `config` (see the module docs).
pub fn wait_limit_for(config: &StoreConfig) -> Duration {
    worst_case_get(config) + WAIT_GRACE
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn one_leader_many_followers_all_answered() {
        let flights: Arc<Flights<u32, u64>> = Flights::new(LONG);
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
        let flights: Arc<Flights<u32, u64>> = Flights::new(LONG);
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

    /// A leader that never answers costs a follower `wait_limit`, not forever; the flight itself
    /// stays (the leader may still finish), so later callers follow it rather than fetch again.
    #[tokio::test]
    async fn follower_of_a_stuck_leader_times_out() {
        let flights: Arc<Flights<u32, u64>> = Flights::new(Duration::from_millis(50));
        let Role::Leader(leader) = flights.join(&3) else {
            panic!()
        };
        let gauge = IntGauge::new("waiting", "waiting").unwrap();
        let outcome = flights.run(&3, &gauge, |_| panic!("must follow")).await;
        assert!(matches!(outcome, Outcome::TimedOut { .. }), "{outcome:?}");
        assert_eq!(gauge.get(), 0);
        assert!(!flights.ended(&3).await, "the stuck flight has not ended");
        leader.publish(9);
        drop(leader);
        assert!(flights.ended(&3).await);
    }

    #[test]
    fn worst_case_adds_sequential_remotes() {
        let config: crate::config::BlobcacheConfig = crate::config::parse(
            "store: {caching: {cache: {mem: {}}, origin: {ittt: {\
               this: {upstream: {upstream: \"http://a:5569\", timeout: 5s}}, \
               that: {http: {endpoint: \"http://b/\", timeout: 7s}}}}}}",
            "t.yaml",
        )
        .unwrap();
        let StoreConfig::Caching(c) = &config.store else {
            panic!()
        };
        assert_eq!(worst_case_get(&c.origin), Duration::from_secs(12));
        assert_eq!(
            wait_limit_for(&config.store),
            Duration::from_secs(12) + WAIT_GRACE
        );
    }
}
