//! What other nodes announced to us: blob hash -> peers serving it, with expiry and bounds,
//! plus the store-token scheme that keeps strangers from announcing on someone else's behalf.
//!
//! Tokens follow the SDK: `SHA-384(secret + compact IPv4 of the requester)`. The secret rotates
//! (every 5 minutes in the SDK) and both the current and the previous secret are accepted, so a
//! token handed out by `findValue` stays usable for one to two rotation periods.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha384};

use super::wire::{CompactPeer, NodeId};

/// Announcements kept per blob hash; the oldest goes when a new one arrives.
pub const MAX_PEERS_PER_KEY: usize = 64;
/// Announcements one IP address may hold per blob hash (a few nodes behind one NAT). Beyond
/// it, a new one replaces that address's oldest, so one address announcing from many ports
/// cannot push everyone else out of a hash's list.
pub const MAX_PEERS_PER_KEY_PER_IP: usize = 4;
/// The share of the whole store one IP address may hold (1/16), so one address cannot fill it
/// and lock out honest announcers until its entries expire.
pub const STORE_SHARE_PER_IP: usize = 16;

/// Rotating token secrets.
pub struct Tokens {
    current: [u8; 32],
    previous: [u8; 32],
    rotated: Instant,
    every: Duration,
}

impl Tokens {
    pub fn new(every: Duration) -> Tokens {
        Tokens {
            current: super::random::random_bytes(),
            previous: super::random::random_bytes(),
            rotated: Instant::now(),
            every,
        }
    }

    fn rotate_if_due(&mut self, now: Instant) {
        if now.duration_since(self.rotated) >= self.every {
            self.previous = self.current;
            self.current = super::random::random_bytes();
            self.rotated = now;
        }
    }

    fn digest(secret: &[u8], ip: Ipv4Addr) -> Vec<u8> {
        let mut h = Sha384::new();
        h.update(secret);
        h.update(ip.octets());
        h.finalize().to_vec()
    }

    pub fn make(&mut self, ip: Ipv4Addr, now: Instant) -> Vec<u8> {
        self.rotate_if_due(now);
        Self::digest(&self.current, ip)
    }

    pub fn verify(&mut self, token: &[u8], ip: Ipv4Addr, now: Instant) -> bool {
        self.rotate_if_due(now);
        token == Self::digest(&self.current, ip).as_slice()
            || token == Self::digest(&self.previous, ip).as_slice()
    }
}

/// Announcements held for others, bounded by total count, per key, and per announcing address.
pub struct PeerStore {
    by_key: HashMap<NodeId, Vec<(CompactPeer, Instant)>>,
    /// Entries held per announcing IP address.
    per_ip: HashMap<Ipv4Addr, usize>,
    total: usize,
    max_total: usize,
    ttl: Duration,
}

/// Why an announcement was not kept.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreRefusal {
    /// The store holds `max_stored_announcements`.
    Full,
    /// The announcing address holds its share of the store.
    AddressFull,
}

impl PeerStore {
    pub fn new(max_total: usize, ttl: Duration) -> PeerStore {
        PeerStore {
            by_key: HashMap::new(),
            per_ip: HashMap::new(),
            total: 0,
            max_total,
            ttl,
        }
    }

    /// Adds or refreshes `peer` for `key`.
    pub fn add(
        &mut self,
        key: NodeId,
        peer: CompactPeer,
        now: Instant,
    ) -> Result<(), StoreRefusal> {
        let ip = *peer.addr.ip();
        let max_per_ip = (self.max_total / STORE_SHARE_PER_IP).max(1);
        if let Some(list) = self.by_key.get_mut(&key) {
            let from_ip = list.iter().filter(|(p, _)| *p.addr.ip() == ip).count();
            let known = list
                .iter()
                .position(|(p, _)| p.addr == peer.addr)
                .or_else(|| list.iter().position(|(p, _)| p.id == peer.id));
            if let Some(i) = known {
                let moved_from = *list[i].0.addr.ip();
                if moved_from == ip {
                    list[i] = (peer, now);
                    return Ok(());
                }
                // A node id seen before at another address. Ids are not authenticated, so the
                // move (its entry now counts for the new address) is taken only where that
                // address has room under both bounds; otherwise this is an announcement from
                // the new address like any other and cannot push out someone else's entry.
                let held_here = self.per_ip.get(&ip).copied().unwrap_or(0);
                if from_ip < MAX_PEERS_PER_KEY_PER_IP && held_here < max_per_ip {
                    list[i] = (peer, now);
                    release(&mut self.per_ip, moved_from);
                    *self.per_ip.entry(ip).or_insert(0) += 1;
                    return Ok(());
                }
            }
            // The address's own oldest entry for this key makes room (list order is age).
            if from_ip >= MAX_PEERS_PER_KEY_PER_IP {
                if let Some(oldest) = list.iter().position(|(p, _)| *p.addr.ip() == ip) {
                    list.remove(oldest);
                    list.push((peer, now));
                }
                return Ok(());
            }
        }
        let held = |s: &Self| s.per_ip.get(&ip).copied().unwrap_or(0);
        if self.total >= self.max_total || held(self) >= max_per_ip {
            self.expire(now);
            if self.total >= self.max_total {
                return Err(StoreRefusal::Full);
            }
            if held(self) >= max_per_ip {
                return Err(StoreRefusal::AddressFull);
            }
        }
        let list = self.by_key.entry(key).or_default();
        if list.len() >= MAX_PEERS_PER_KEY {
            let (gone, _) = list.remove(0);
            self.total -= 1;
            release(&mut self.per_ip, *gone.addr.ip());
        }
        list.push((peer, now));
        self.total += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    /// Live announcers of `key`, oldest announcement first.
    pub fn peers(&self, key: &NodeId, now: Instant) -> Vec<CompactPeer> {
        self.by_key
            .get(key)
            .map(|list| {
                list.iter()
                    .filter(|(_, at)| now.duration_since(*at) < self.ttl)
                    .map(|(p, _)| *p)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops expired announcements.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        let per_ip = &mut self.per_ip;
        let mut total = 0;
        self.by_key.retain(|_, list| {
            list.retain(|(peer, at)| {
                let live = now.duration_since(*at) < ttl;
                if !live {
                    release(per_ip, *peer.addr.ip());
                }
                live
            });
            total += list.len();
            !list.is_empty()
        });
        self.total = total;
    }

    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Counts one entry of `ip` less.
fn release(per_ip: &mut HashMap<Ipv4Addr, usize>, ip: Ipv4Addr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_to_the_ip_and_survive_one_rotation() {
        let mut t = Tokens::new(Duration::from_secs(300));
        let now = Instant::now();
        let ip = Ipv4Addr::new(1, 2, 3, 4);
        let token = t.make(ip, now);
        assert!(t.verify(&token, ip, now));
        assert!(!t.verify(&token, Ipv4Addr::new(1, 2, 3, 5), now));
        assert!(!t.verify(&[0u8; 48], ip, now));
        let later = now + Duration::from_secs(301);
        assert!(t.verify(&token, ip, later));
        let much_later = later + Duration::from_secs(301);
        assert!(!t.verify(&token, ip, much_later));
    }

    #[test]
    fn bounded_and_expiring() {
        let now = Instant::now();
        let mut s = PeerStore::new(3, Duration::from_secs(10));
        let key = NodeId([1; 48]);
        let peer = |n: u8| CompactPeer {
            id: NodeId([n; 48]),
            addr: std::net::SocketAddrV4::new([10, 0, 0, n].into(), 3333),
        };
        for n in 1..=3 {
            s.add(key, peer(n), now).unwrap();
        }
        s.add(key, peer(1), now).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.add(NodeId([2; 48]), peer(4), now),
            Err(StoreRefusal::Full)
        );
        let later = now + Duration::from_secs(11);
        assert!(s.peers(&key, later).is_empty());
        s.add(NodeId([2; 48]), peer(4), later).unwrap();
        assert_eq!(s.len(), 1);
    }

    fn from(ip: [u8; 4], port: u16, id: u8) -> CompactPeer {
        CompactPeer {
            id: NodeId([id; 48]),
            addr: std::net::SocketAddrV4::new(ip.into(), port),
        }
    }

    /// A 160-entry store whose key `[9; 48]` holds one peer (10.0.0.1:3333, node 1).
    fn store_with_one_peer(now: Instant) -> (PeerStore, NodeId) {
        let mut s = PeerStore::new(160, Duration::from_secs(3600));
        let key = NodeId([9; 48]);
        s.add(key, from([10, 0, 0, 1], 3333, 1), now).unwrap();
        (s, key)
    }

    #[test]
    fn one_address_cannot_crowd_out_a_key_or_fill_the_store() {
        let now = Instant::now();
        let (mut s, key) = store_with_one_peer(now);
        // One address announcing from 100 ports and node ids keeps 4 entries for the key...
        for port in 0..100u16 {
            s.add(
                key,
                from([10, 0, 0, 66], 4000 + port, (port % 200) as u8 + 2),
                now,
            )
            .unwrap();
        }
        let peers = s.peers(&key, now);
        assert_eq!(peers.len(), 1 + MAX_PEERS_PER_KEY_PER_IP);
        assert!(peers
            .iter()
            .any(|p| p.addr.ip() == &Ipv4Addr::new(10, 0, 0, 1)));
        assert!(
            peers.iter().any(|p| p.addr.port() == 4099),
            "the newest replace the oldest"
        );
        // ...and at most 1/16 of the store over all keys.
        let mut refused = 0;
        for k in 0..100u8 {
            if s.add(NodeId([k; 48]), from([10, 0, 0, 66], 5000, 250), now)
                == Err(StoreRefusal::AddressFull)
            {
                refused += 1;
            }
        }
        assert_eq!(
            s.per_ip[&Ipv4Addr::new(10, 0, 0, 66)],
            160 / STORE_SHARE_PER_IP
        );
        assert!(refused > 0);
        // Another address still gets in, and expiry gives the share back.
        s.add(NodeId([200; 48]), from([10, 0, 0, 2], 3333, 7), now)
            .unwrap();
        let later = now + Duration::from_secs(3601);
        s.add(NodeId([201; 48]), from([10, 0, 0, 66], 5000, 250), later)
            .unwrap();
        assert_eq!(s.per_ip[&Ipv4Addr::new(10, 0, 0, 66)], 1);
    }

    #[test]
    fn claimed_node_ids_cannot_push_out_other_announcers() {
        let now = Instant::now();
        let mut s = PeerStore::new(160, Duration::from_secs(3600));
        let key = NodeId([9; 48]);
        for i in 1..=10u8 {
            s.add(key, from([10, 0, 1, i], 3333, i), now).unwrap();
        }
        // One address re-announces under each of the ten node ids it has seen.
        for i in 1..=10u8 {
            s.add(key, from([10, 0, 0, 66], 4000 + u16::from(i), i), now)
                .unwrap();
        }
        let peers = s.peers(&key, now);
        let theirs = peers
            .iter()
            .filter(|p| p.addr.ip() == &Ipv4Addr::new(10, 0, 0, 66))
            .count();
        assert_eq!(theirs, MAX_PEERS_PER_KEY_PER_IP);
        assert_eq!(
            peers.len(),
            10,
            "only as many moved as the address may hold"
        );
        assert_eq!(
            s.per_ip[&Ipv4Addr::new(10, 0, 0, 66)],
            MAX_PEERS_PER_KEY_PER_IP
        );
        assert_eq!(s.len(), 10);
    }

    #[test]
    fn a_node_that_moves_address_is_counted_for_the_new_one() {
        let now = Instant::now();
        let (mut s, key) = store_with_one_peer(now);
        s.add(key, from([10, 0, 0, 2], 3333, 1), now).unwrap();
        assert_eq!(s.len(), 1);
        assert!(!s.per_ip.contains_key(&Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(s.per_ip[&Ipv4Addr::new(10, 0, 0, 2)], 1);
        s.expire(now + Duration::from_secs(3601));
        assert!(s.per_ip.is_empty());
    }
}
