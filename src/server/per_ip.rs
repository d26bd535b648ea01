//! A cap on open connections per client address, so one address cannot take every slot of a
//! door's global cap.
//!
//! Every TCP door gets one through its [`Acceptor`](super::accept::Acceptor); the HTTP/3 door
//! holds one for its QUIC connections. The map holds only addresses with at least one open
//! connection, so its size is bounded by the door's global connection cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

pub struct PerIpLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of `ip`; dropping it frees the place.
pub struct IpSlot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl PerIpLimit {
    /// At most `max` (at least 1) connections per address.
    pub fn new(max: usize) -> Arc<PerIpLimit> {
        Arc::new(PerIpLimit {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `ip`, or `None` when it already has `max` open connections. IPv4-mapped IPv6
    /// addresses count as their IPv4 address.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limit: Arc::clone(self),
            ip,
        })
    }

    /// Open connections of `ip` (for tests and status).
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .limit
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_frees_on_drop() {
        let limit = PerIpLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.try_acquire(a).expect("first");
        let _second = limit.try_acquire(a).expect("second");
        assert!(limit.try_acquire(a).is_none());
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert!(limit
            .try_acquire("::ffff:10.0.0.1".parse().unwrap())
            .is_none());
        assert!(limit.try_acquire(b).is_some());
        drop(first);
        assert_eq!(limit.open(a), 1);
        assert!(limit.try_acquire(a).is_some());
        assert_eq!(limit.open(b), 0, "dropped slots leave no entry behind");
    }
}
