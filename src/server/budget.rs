//! The in-flight byte budget: how many blob response bytes all front doors together may hold
//! for clients at once (`limits.max_inflight_bytes`), and how much of it one address may hold
//! (`limits.max_inflight_bytes_per_ip`).
//!
//! Without it, a client that asks for blobs and never reads pins one blob per request for as
//! long as the connection lives; thousands of such connections took gigabytes. With it, a blob
//! request first takes a [`Reservation`] of one maximum-size blob, *before* the store is asked
//! (so requests waiting for room hold no bytes); at the budget it waits (at most
//! `limits.inflight_wait`) for room and is otherwise refused. Once the blob is in hand the
//! reservation becomes a [`Charge`] for its actual buffer, dropped when the door no longer holds
//! the bytes (HTTP and the peer protocol: written to the kernel; HTTP/3 `/get/`: acknowledged
//! by the client, since QUIC holds views of the buffer until then; or the response dropped).
//! HTTP/3 playback chunks are copied into QUIC, so their charge ends at hand-off; what QUIC
//! then holds is bounded by the connection's send window.
//!
//! **What counts.** A charge is per *buffer*, not per response: every response is the store's
//! own `Bytes`, and clones of one `Bytes` share one allocation, so N responses of one hot
//! memory-tier blob cost its size once (and once per address for the per-address share). A
//! buffer made per response (a disk read, an origin fetch) is its own allocation and counts in
//! full. Memory-mapped disk reads count too: they are page cache rather than heap, but a mapping
//! pins the file's pages and, after the disk tier evicts the file, its disk space, until the
//! last response drops it; telling the kinds apart would need store internals for no gain in
//! safety. A blob held by the memory tier *and* by responses is counted by both bounds: at
//! worst, memory tier size + budget, never more.
//!
//! A buffer is identified by its address and length while a charge holds a clone of it (so the
//! allocation cannot be freed and reused under the same key).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::Notify;

use crate::blob::MAX_BLOB_SIZE;
use crate::config::LimitsConfig;

/// A buffer's identity: its address and length.
type BufferKey = (usize, usize);

pub struct InflightBudget {
    /// The limits in force; a reload swaps them ([`InflightBudget::reconfigure`]).
    limits: ArcSwap<Limits>,
    state: Mutex<State>,
    /// Woken whenever bytes are released.
    freed: Notify,
    gauge: IntGauge,
}

struct Limits {
    max: u64,
    max_per_ip: u64,
    wait: Duration,
    write_stall_timeout: Duration,
}

impl Limits {
    fn of(config: &LimitsConfig) -> Limits {
        Limits {
            max: config.max_inflight_bytes.0.max(1),
            max_per_ip: config.max_inflight_bytes_per_ip.0.max(1),
            wait: config.inflight_wait,
            write_stall_timeout: config.write_stall_timeout,
        }
    }
}

#[derive(Default)]
struct State {
    total: u64,
    per_ip: HashMap<IpAddr, u64>,
    /// Charges holding each buffer.
    buffers: HashMap<BufferKey, usize>,
    /// Charges of each address holding each buffer.
    ip_buffers: HashMap<(IpAddr, BufferKey), usize>,
}

/// Room for one blob, taken before it is fetched; dropping it unused gives it back.
pub struct Reservation {
    budget: Arc<InflightBudget>,
    ip: IpAddr,
    /// Zero once turned into a [`Charge`].
    bytes: u64,
}

/// Bytes one response holds; dropping it gives them back.
pub struct Charge {
    budget: Arc<InflightBudget>,
    ip: IpAddr,
    key: BufferKey,
    /// Keeps the buffer alive (and its key unique) for as long as it is counted.
    _data: Bytes,
}

impl InflightBudget {
    pub fn new(limits: &LimitsConfig, gauge: IntGauge) -> Arc<InflightBudget> {
        Arc::new(InflightBudget {
            limits: ArcSwap::from_pointee(Limits::of(limits)),
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            gauge,
        })
    }

    /// Applies new `limits:` (a reload). Bytes already charged stay charged: a lowered budget
    /// takes effect as those responses finish (new ones wait or are refused meanwhile); a
    /// raised one wakes the requests waiting for room. The stall timeout applies to responses
    /// started from now on.
    pub fn reconfigure(&self, limits: &LimitsConfig) {
        self.limits.store(Arc::new(Limits::of(limits)));
        self.freed.notify_waiters();
    }

    /// Room for one blob for `ip`, taken *before* the blob is fetched (a request waiting here
    /// holds no bytes yet), waiting at most `limits.inflight_wait`; `None` when there is none.
    /// [`Reservation::charge`] then turns it into the charge for the actual buffer.
    pub async fn reserve(self: &Arc<Self>, ip: IpAddr) -> Option<Reservation> {
        let deadline = tokio::time::Instant::now() + self.limits.load().wait;
        loop {
            // Registered before the check, so a release between the check and the wait is seen.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(reservation) = self.try_reserve(ip) {
                return Some(reservation);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// [`reserve`](Self::reserve) without waiting. An address that holds nothing (or a budget
    /// that holds nothing) always gets one, so a budget smaller than a blob still serves one at
    /// a time.
    pub fn try_reserve(self: &Arc<Self>, ip: IpAddr) -> Option<Reservation> {
        let ip = ip.to_canonical();
        let bytes = MAX_BLOB_SIZE as u64;
        let limits = self.limits.load();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ip_held = state.per_ip.get(&ip).copied().unwrap_or(0);
        if ip_held > 0 && ip_held + bytes > limits.max_per_ip {
            return None;
        }
        if state.total > 0 && state.total + bytes > limits.max {
            return None;
        }
        *state.per_ip.entry(ip).or_insert(0) += bytes;
        state.total += bytes;
        self.show(&state);
        Some(Reservation {
            budget: Arc::clone(self),
            ip,
            bytes,
        })
    }

    /// How long a response may make no write progress before it is dropped
    /// (`limits.write_stall_timeout`; every door applies it).
    pub fn write_stall_timeout(&self) -> Duration {
        self.limits.load().write_stall_timeout
    }

    /// Bytes counted right now (for tests and status).
    pub fn held(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    fn show(&self, state: &State) {
        self.gauge
            .set(i64::try_from(state.total).unwrap_or(i64::MAX));
    }

    /// Gives back `bytes` counted for `ip` outside any buffer (a reservation).
    fn unreserve(state: &mut State, ip: IpAddr, bytes: u64) {
        Self::unreserve_ip(state, ip, bytes);
        state.total = state.total.saturating_sub(bytes);
    }

    /// Gives back `bytes` of `ip`'s share only (the total is the buffers' business).
    fn unreserve_ip(state: &mut State, ip: IpAddr, bytes: u64) {
        if let Some(held) = state.per_ip.get_mut(&ip) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                state.per_ip.remove(&ip);
            }
        }
    }

    fn release(&self, ip: IpAddr, key: BufferKey) {
        let len = key.1 as u64;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if decrement(&mut state.ip_buffers, (ip, key)) {
            Self::unreserve_ip(&mut state, ip, len);
        }
        if decrement(&mut state.buffers, key) {
            state.total = state.total.saturating_sub(len);
        }
        self.show(&state);
        drop(state);
        self.freed.notify_waiters();
    }
}

impl Reservation {
    /// The charge for `data`, the blob fetched under this reservation: a buffer already held
    /// by a response costs nothing more (for the budget, or for an address that holds it), a
    /// new one costs its length (at most the reservation, so this never goes over the budget).
    pub fn charge(mut self, data: &Bytes) -> Charge {
        let budget = Arc::clone(&self.budget);
        let ip = self.ip;
        let key = (data.as_ptr() as usize, data.len());
        let len = data.len() as u64;
        let mut state = budget.state.lock().unwrap_or_else(PoisonError::into_inner);
        InflightBudget::unreserve(&mut state, ip, std::mem::take(&mut self.bytes));
        let for_ip = state.ip_buffers.entry((ip, key)).or_insert(0);
        *for_ip += 1;
        if *for_ip == 1 {
            *state.per_ip.entry(ip).or_insert(0) += len;
        }
        let holders = state.buffers.entry(key).or_insert(0);
        *holders += 1;
        if *holders == 1 {
            state.total += len;
        }
        budget.show(&state);
        drop(state);
        budget.freed.notify_waiters();
        Charge {
            budget: Arc::clone(&budget),
            ip,
            key,
            _data: data.clone(),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return; // turned into a charge
        }
        let mut state = self
            .budget
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        InflightBudget::unreserve(&mut state, self.ip, self.bytes);
        self.budget.show(&state);
        drop(state);
        self.budget.freed.notify_waiters();
    }
}

/// Counts one holder less under `key`; true when that was the last one.
fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) -> bool {
    match map.get_mut(&key) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        Some(_) => {
            map.remove(&key);
            true
        }
        None => false,
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.ip, self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    const MIB: u64 = 1 << 20;

    fn budget(max: u64, per_ip: u64, wait: Duration) -> Arc<InflightBudget> {
        let limits = LimitsConfig {
            max_inflight_bytes: ByteSize(max),
            max_inflight_bytes_per_ip: ByteSize(per_ip),
            inflight_wait: wait,
            ..LimitsConfig::default()
        };
        InflightBudget::new(&limits, IntGauge::new("t", "t").unwrap())
    }

    fn charge(b: &Arc<InflightBudget>, ip: IpAddr, data: &Bytes) -> Option<Charge> {
        b.try_reserve(ip).map(|r| r.charge(data))
    }

    #[tokio::test]
    async fn shared_buffers_count_once_copies_count_each() {
        let b = budget(7 * MIB, 7 * MIB, Duration::from_millis(20));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let shared = Bytes::from(vec![1u8; MIB as usize]);
        let c1 = charge(&b, a, &shared).unwrap();
        let c2 = charge(&b, a, &shared.clone()).unwrap();
        assert_eq!(b.held(), MIB, "clones of one buffer count once");
        let copy = Bytes::from(vec![1u8; MIB as usize]);
        let c3 = charge(&b, a, &copy).unwrap();
        assert_eq!(b.held(), 2 * MIB);
        let reserved = b.try_reserve(a).unwrap();
        assert_eq!(
            b.held(),
            2 * MIB + MAX_BLOB_SIZE as u64,
            "a reservation is one blob"
        );
        let _more = b.try_reserve(a).unwrap();
        assert!(b.reserve(a).await.is_none(), "7 MiB is full");
        drop(reserved);
        drop((c1, c3));
        assert_eq!(b.held(), MIB + MAX_BLOB_SIZE as u64);
        drop(c2);
        assert_eq!(b.held(), MAX_BLOB_SIZE as u64);
    }

    #[tokio::test]
    async fn one_address_gets_only_its_share_and_a_wait_sees_releases() {
        let b = budget(16 * MIB, 5 * MIB, Duration::from_secs(30));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let first = b.try_reserve(a).unwrap();
        let second = b.try_reserve(a).unwrap();
        assert!(b.try_reserve(a).is_none(), "a's share is 5 MiB");
        let _theirs = b.try_reserve(other).unwrap();
        let waiting = {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.reserve(a).await.is_some() })
        };
        // Let the waiter start waiting (current-thread runtime), then make room.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let _charge = first.charge(&Bytes::from_static(b"small"));
        assert!(waiting.await.unwrap(), "a release wakes the waiter");
        drop(second);
        // An address holding nothing always gets one blob, even past its share.
        let b = budget(MIB, MIB, Duration::from_millis(20));
        assert!(b.try_reserve(a).is_some());
    }

    #[tokio::test]
    async fn a_reload_changes_the_limits_and_wakes_waiters() {
        let b = budget(5 * MIB, 5 * MIB, Duration::from_secs(30));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _first = b.try_reserve(a).unwrap();
        let _second = b.try_reserve(a).unwrap();
        assert!(b.try_reserve(a).is_none(), "5 MiB holds two blobs");
        let waiting = {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.reserve(a).await.is_some() })
        };
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let raised = LimitsConfig {
            max_inflight_bytes: ByteSize(16 * MIB),
            max_inflight_bytes_per_ip: ByteSize(16 * MIB),
            write_stall_timeout: Duration::from_secs(7),
            ..LimitsConfig::default()
        };
        b.reconfigure(&raised);
        assert!(waiting.await.unwrap(), "a raised budget admits the waiter");
        assert_eq!(b.write_stall_timeout(), Duration::from_secs(7));
        // Lowered below what is held: nothing is taken back, nothing new fits.
        b.reconfigure(&LimitsConfig {
            max_inflight_bytes: ByteSize(MIB),
            inflight_wait: Duration::from_millis(10),
            ..LimitsConfig::default()
        });
        assert_eq!(b.held(), 2 * MAX_BLOB_SIZE as u64);
        assert!(b.reserve(a).await.is_none());
    }
}
