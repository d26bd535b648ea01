//! The in-flight byte budget: how many blob response bytes all front doors together may hold
//! for clients at once (`limits.max_inflight_bytes`), and how much of it one address may hold
//! (`limits.max_inflight_bytes_per_ip`).
//!
//! Without it, a client that asks for blobs and never reads pins one blob per request for as
//! long as the connection lives; thousands of such connections took gigabytes. With it, a blob
//! response first takes a [`Charge`] for its bytes; at the budget it waits (at most
//! `limits.inflight_wait`) for room and is otherwise refused. The charge is dropped when the
//! door no longer holds the bytes (written to the kernel, or the response dropped).
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

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::Notify;

use crate::config::LimitsConfig;

/// A buffer's identity: its address and length.
type BufferKey = (usize, usize);

pub struct InflightBudget {
    max: u64,
    max_per_ip: u64,
    wait: Duration,
    write_stall_timeout: Duration,
    state: Mutex<State>,
    /// Woken whenever bytes are released.
    freed: Notify,
    gauge: IntGauge,
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
            max: limits.max_inflight_bytes.0.max(1),
            max_per_ip: limits.max_inflight_bytes_per_ip.0.max(1),
            wait: limits.inflight_wait,
            write_stall_timeout: limits.write_stall_timeout,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            gauge,
        })
    }

    /// A charge for `data` held for `ip`, waiting at most `limits.inflight_wait` for room;
    /// `None` when there is none.
    pub async fn acquire(self: &Arc<Self>, ip: IpAddr, data: &Bytes) -> Option<Charge> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            // Registered before the check, so a release between the check and the wait is seen.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(charge) = self.try_acquire(ip, data) {
                return Some(charge);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// A charge for `data` if there is room right now. An address that holds nothing (or a
    /// budget that holds nothing) always gets one, so a budget smaller than one blob still
    /// serves one at a time.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, data: &Bytes) -> Option<Charge> {
        let ip = ip.to_canonical();
        let key = (data.as_ptr() as usize, data.len());
        let len = data.len() as u64;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let new_for_ip = !state.ip_buffers.contains_key(&(ip, key));
        let new_buffer = !state.buffers.contains_key(&key);
        let ip_held = state.per_ip.get(&ip).copied().unwrap_or(0);
        if new_for_ip && ip_held > 0 && ip_held + len > self.max_per_ip {
            return None;
        }
        if new_buffer && state.total > 0 && state.total + len > self.max {
            return None;
        }
        if new_for_ip {
            *state.per_ip.entry(ip).or_insert(0) += len;
        }
        if new_buffer {
            state.total += len;
        }
        *state.ip_buffers.entry((ip, key)).or_insert(0) += 1;
        *state.buffers.entry(key).or_insert(0) += 1;
        self.gauge
            .set(i64::try_from(state.total).unwrap_or(i64::MAX));
        Some(Charge {
            budget: Arc::clone(self),
            ip,
            key,
            _data: data.clone(),
        })
    }

    /// How long a response may make no write progress before it is dropped
    /// (`limits.write_stall_timeout`; every door applies it).
    pub fn write_stall_timeout(&self) -> Duration {
        self.write_stall_timeout
    }

    /// Bytes counted right now (for tests and status).
    pub fn held(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    fn release(&self, ip: IpAddr, key: BufferKey) {
        let len = key.1 as u64;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if decrement(&mut state.ip_buffers, (ip, key)) {
            if let Some(held) = state.per_ip.get_mut(&ip) {
                *held = held.saturating_sub(len);
                if *held == 0 {
                    state.per_ip.remove(&ip);
                }
            }
        }
        if decrement(&mut state.buffers, key) {
            state.total = state.total.saturating_sub(len);
        }
        self.gauge
            .set(i64::try_from(state.total).unwrap_or(i64::MAX));
        drop(state);
        self.freed.notify_waiters();
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

    fn budget(max: u64, per_ip: u64, wait: Duration) -> Arc<InflightBudget> {
        let limits = LimitsConfig {
            max_inflight_bytes: ByteSize(max),
            max_inflight_bytes_per_ip: ByteSize(per_ip),
            inflight_wait: wait,
            ..LimitsConfig::default()
        };
        InflightBudget::new(&limits, IntGauge::new("t", "t").unwrap())
    }

    #[tokio::test]
    async fn shared_buffers_count_once_copies_count_each() {
        let b = budget(100, 100, Duration::from_millis(20));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let shared = Bytes::from(vec![1u8; 40]);
        let c1 = b.try_acquire(a, &shared).unwrap();
        let c2 = b.try_acquire(a, &shared.clone()).unwrap();
        assert_eq!(b.held(), 40, "clones of one buffer count once");
        let copy = Bytes::from(vec![1u8; 40]);
        let c3 = b.try_acquire(a, &copy).unwrap();
        assert_eq!(b.held(), 80);
        assert!(b.acquire(a, &Bytes::from(vec![2u8; 40])).await.is_none());
        drop((c1, c3));
        assert_eq!(b.held(), 40);
        drop(c2);
        assert_eq!(b.held(), 0);
    }

    #[tokio::test]
    async fn one_address_gets_only_its_share_and_a_wait_sees_releases() {
        let b = budget(100, 50, Duration::from_secs(30));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let first = b.try_acquire(a, &Bytes::from(vec![0u8; 40])).unwrap();
        assert!(b.try_acquire(a, &Bytes::from(vec![0u8; 40])).is_none());
        let _theirs = b.try_acquire(other, &Bytes::from(vec![0u8; 40])).unwrap();
        let waiting = {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.acquire(a, &Bytes::from(vec![0u8; 40])).await.is_some() })
        };
        // Let the waiter start waiting (current-thread runtime), then make room.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert!(waiting.await.unwrap(), "a release wakes the waiter");
        // An address holding nothing always gets one blob, even one larger than its share.
        let b = budget(10, 10, Duration::from_millis(20));
        assert!(b.try_acquire(a, &Bytes::from(vec![0u8; 40])).is_some());
    }
}
