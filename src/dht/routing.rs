//! The Kademlia routing table: k-buckets over the 384-bit XOR distance from our node id.
//!
//! Bucket `i` (for every bucket but the last) holds contacts whose id shares exactly `i`
//! leading bits with ours; the last bucket holds everything closer. Only the last bucket (the
//! one whose range contains our own id) ever splits, which is the classic tree-splitting rule
//! the SDK's `TreeRoutingTable` follows, without the tree.
//!
//! A full bucket does not simply drop a newcomer: the newcomer waits in the bucket's small
//! replacement cache and the caller is told which stale contact to ping; if that ping fails the
//! stale contact goes and the best replacement takes its place ([`RoutingTable::evict`]).

use std::time::{Duration, Instant};

use super::wire::{Contact, NodeId, ID_LEN};

/// Kademlia's bucket size and replication factor.
pub const K: usize = 8;
/// Most bits two distinct ids can share.
const ID_BITS: usize = ID_LEN * 8;
/// Contacts kept per bucket as replacements for stale ones.
const REPLACEMENTS: usize = 8;
/// A contact that answered within this long is not worth pinging before replacement.
const FRESH: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
struct Entry {
    contact: Contact,
    last_seen: Instant,
    failures: u32,
}

#[derive(Clone, Debug)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    replacements: Vec<Contact>,
    /// Last time a lookup touched this bucket's range (for refresh).
    touched: Instant,
}

impl Bucket {
    fn new(touched: Instant) -> Bucket {
        Bucket {
            entries: Vec::with_capacity(K),
            replacements: Vec::new(),
            touched,
        }
    }
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    Added,
    Updated,
    /// The bucket is full: ping this (least recently seen, not fresh) contact; if it does not
    /// answer, call [`RoutingTable::evict`].
    PingFirst(Contact),
    /// The bucket is full of fresh contacts; the newcomer waits as a replacement.
    Full,
    /// Our own id.
    Rejected,
}

/// A bucket's summary for `/dht/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BucketInfo {
    pub index: usize,
    pub contacts: usize,
    pub replacements: usize,
    pub idle_secs: u64,
}

pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
}

/// Leading bits `a` and `b` share.
pub fn common_prefix(a: &NodeId, b: &NodeId) -> usize {
    let d = a.distance(b);
    for (i, byte) in d.iter().enumerate() {
        if *byte != 0 {
            return i * 8 + byte.leading_zeros() as usize;
        }
    }
    ID_BITS
}

impl RoutingTable {
    pub fn new(own: NodeId) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(Instant::now())],
        }
    }

    fn bucket_index(&self, id: &NodeId) -> usize {
        common_prefix(&self.own, id).min(self.buckets.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that `contact` is alive (it answered us).
    pub fn insert(&mut self, contact: Contact, now: Instant) -> Insert {
        if contact.id == self.own {
            return Insert::Rejected;
        }
        // One address, one id: a node that restarted with a new id replaces its old entry.
        for bucket in &mut self.buckets {
            bucket
                .entries
                .retain(|e| e.contact.addr != contact.addr || e.contact.id == contact.id);
        }
        loop {
            let index = self.bucket_index(&contact.id);
            let splittable = index == self.buckets.len() - 1 && self.buckets.len() < ID_BITS;
            let bucket = &mut self.buckets[index];
            if let Some(pos) = bucket
                .entries
                .iter()
                .position(|e| e.contact.id == contact.id)
            {
                let mut entry = bucket.entries.remove(pos);
                entry.contact = contact;
                entry.last_seen = now;
                entry.failures = 0;
                bucket.entries.push(entry);
                return Insert::Updated;
            }
            if bucket.entries.len() < K {
                bucket.entries.push(Entry {
                    contact,
                    last_seen: now,
                    failures: 0,
                });
                bucket.replacements.retain(|r| r.id != contact.id);
                return Insert::Added;
            }
            if splittable {
                self.split_last(now);
                continue;
            }
            bucket.replacements.retain(|r| r.id != contact.id);
            if bucket.replacements.len() >= REPLACEMENTS {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(contact);
            // Prefer a contact that has failed before; else the least recently seen one.
            let stale = bucket
                .entries
                .iter()
                .filter(|e| now.duration_since(e.last_seen) > FRESH)
                .max_by_key(|e| (e.failures, std::cmp::Reverse(e.last_seen)));
            return match stale {
                Some(e) => Insert::PingFirst(e.contact),
                None => Insert::Full,
            };
        }
    }

    /// Splits the last bucket: contacts sharing more than its depth move to a new last bucket.
    fn split_last(&mut self, now: Instant) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let last = &mut self.buckets[depth];
        let mut next = Bucket::new(last.touched.max(now - Duration::from_secs(1)));
        let entries = std::mem::take(&mut last.entries);
        let (deeper, stay): (Vec<Entry>, Vec<Entry>) = entries
            .into_iter()
            .partition(|e| common_prefix(&own, &e.contact.id) > depth);
        last.entries = stay;
        next.entries = deeper;
        let replacements = std::mem::take(&mut last.replacements);
        let (deeper, stay): (Vec<Contact>, Vec<Contact>) = replacements
            .into_iter()
            .partition(|c| common_prefix(&own, &c.id) > depth);
        last.replacements = stay;
        next.replacements = deeper;
        self.buckets.push(next);
    }

    /// A contact failed to answer. After two failures in a row (or at once when `force`) it is
    /// removed and the newest replacement, if any, takes its place.
    pub fn failed(&mut self, id: &NodeId, force: bool) {
        let index = self.bucket_index(id);
        let bucket = &mut self.buckets[index];
        let Some(pos) = bucket.entries.iter().position(|e| e.contact.id == *id) else {
            return;
        };
        bucket.entries[pos].failures += 1;
        if force || bucket.entries[pos].failures >= 2 {
            bucket.entries.remove(pos);
            if let Some(replacement) = bucket.replacements.pop() {
                let now = Instant::now();
                bucket.entries.insert(
                    0,
                    Entry {
                        contact: replacement,
                        // Not heard from lately: first in line for a ping.
                        last_seen: now.checked_sub(FRESH * 2).unwrap_or(now),
                        failures: 0,
                    },
                );
            }
        }
    }

    /// The pinged stale contact did not answer: drop it and promote a replacement.
    pub fn evict(&mut self, id: &NodeId) {
        self.failed(id, true);
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        let index = self.bucket_index(id);
        self.buckets[index]
            .entries
            .iter()
            .any(|e| e.contact.id == *id)
    }

    /// Up to `count` known contacts closest to `key`, closest first (excluding `exclude`).
    pub fn closest(&self, key: &NodeId, count: usize, exclude: Option<&NodeId>) -> Vec<Contact> {
        let mut all: Vec<Contact> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.contact))
            .filter(|c| Some(&c.id) != exclude)
            .collect();
        all.sort_by_key(|c| c.id.distance(key));
        all.truncate(count);
        all
    }

    /// Every known contact (for pinging the whole table in maintenance).
    pub fn stale_contacts(&self, older_than: Duration, now: Instant) -> Vec<Contact> {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| now.duration_since(e.last_seen) >= older_than)
            .map(|e| e.contact)
            .collect()
    }

    /// Marks the bucket covering `key` as recently looked up.
    pub fn touch(&mut self, key: &NodeId, now: Instant) {
        let index = self.bucket_index(key);
        self.buckets[index].touched = now;
    }

    /// Random ids inside each bucket not looked up for `stale_after` (to refresh them).
    pub fn stale_bucket_targets(&self, stale_after: Duration, now: Instant) -> Vec<NodeId> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| now.duration_since(b.touched) >= stale_after)
            .map(|(i, _)| self.random_id_in_bucket(i))
            .collect()
    }

    /// An id sharing exactly `index` leading bits with ours (the last bucket: at least that).
    pub fn random_id_in_bucket(&self, index: usize) -> NodeId {
        let mut id = NodeId::random();
        let own = &self.own.0;
        for bit in 0..index.min(ID_BITS) {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            id.0[byte] = (id.0[byte] & !mask) | (own[byte] & mask);
        }
        if index < self.buckets.len() - 1 && index < ID_BITS {
            let (byte, mask) = (index / 8, 0x80u8 >> (index % 8));
            id.0[byte] = (id.0[byte] & !mask) | (!own[byte] & mask);
        }
        id
    }

    pub fn buckets(&self, now: Instant) -> Vec<BucketInfo> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(index, b)| BucketInfo {
                index,
                contacts: b.entries.len(),
                replacements: b.replacements.len(),
                idle_secs: now.duration_since(b.touched).as_secs(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn contact(id: NodeId, port: u16) -> Contact {
        Contact {
            id,
            addr: SocketAddrV4::new([10, 0, 0, 1].into(), port),
        }
    }

    #[test]
    fn splits_near_buckets_and_keeps_the_closest() {
        let own = NodeId::random();
        let mut table = RoutingTable::new(own);
        let now = Instant::now();
        let mut ids = Vec::new();
        for port in 1..=200u16 {
            let id = NodeId::random();
            ids.push(id);
            table.insert(contact(id, port), now);
        }
        assert!(table.buckets.len() > 2, "{} buckets", table.buckets.len());
        let last = table.buckets.len() - 1;
        for (i, b) in table.buckets.iter().enumerate() {
            assert!(b.entries.len() <= K);
            for e in &b.entries {
                let cpl = common_prefix(&own, &e.contact.id);
                assert!(
                    cpl == i || (i == last && cpl >= i),
                    "bucket {i} holds cpl {cpl}"
                );
            }
        }
        // The closest id is always kept (its bucket split until it fitted).
        ids.sort_by_key(|id| id.distance(&own));
        assert_eq!(table.closest(&own, 1, None)[0].id, ids[0]);
        for i in 0..last {
            assert_eq!(table.bucket_index(&table.random_id_in_bucket(i)), i);
        }
        // A full far bucket asks for a ping instead of dropping the newcomer outright.
        let far = table.random_id_in_bucket(0);
        let later = now + FRESH * 2;
        assert!(matches!(
            table.insert(contact(far, 9999), later),
            Insert::PingFirst(_) | Insert::Added
        ));
    }
}
