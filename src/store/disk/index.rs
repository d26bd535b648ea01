//! The disk tier's index: which blobs are on disk, how big each is and how recently it was used,
//! in about 70 bytes a blob.
//!
//! Why not moka (the memory tier's cache): a disk tier holds millions of small entries (10 TB of
//! 2 MiB blobs is 5 million), and a general-purpose concurrent cache spends a few hundred bytes on
//! each (measured: ~420 bytes a blob with the rebuild). Here an entry is the 48-byte hash, a
//! 4-byte size and an 8-byte recency tick, packed into 60 bytes, plus a 5-byte slot in a hash
//! table of positions (hashbrown's `HashTable<u32>`, at most 7/8 full).
//!
//! Layout: [`STRIPES`] independent stripes, chosen by one byte of the hash, each a mutex around a
//! dense array of entries and the table of positions into it. Removal moves the last entry into
//! the hole, so every array stays dense: a uniformly random position is a uniformly random blob,
//! which is what eviction samples. The arrays grow in fixed chunks, never by doubling, so growth
//! wastes at most one chunk a stripe.
//!
//! Eviction is sampled LRU (as Redis does it): look at [`SAMPLE`] random entries and evict the
//! least recently used of them. No list links are needed (a linked LRU or SIEVE queue would add
//! 8-16 bytes an entry and a global lock), any insertion order works (the rebuild inserts in
//! directory order, carrying each file's age), and with 32 samples the victim is among the
//! oldest ~3% of the cache, which keeps hit ratios within a fraction of a percent of exact LRU
//! (`benches/disk/zipf.rs` replays a Zipf trace through both). Small indexes are scanned whole,
//! so they evict exactly.
//!
//! The recency clock is a counter bumped on every use. Entries found on disk at start get a tick
//! below the clock's starting value, lower the older their file's modification time, so they
//! rank older than anything used since start and among themselves by age.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hashbrown::HashTable;

use crate::blob::BlobHash;

/// Independent stripes (locks); a power of two.
pub const STRIPES: usize = 64;
/// Entries looked at to choose one eviction victim.
pub const SAMPLE: usize = 32;
/// Entries sampled from each stripe visited while choosing a victim.
const SAMPLE_PER_STRIPE: usize = 8;
/// Entries per chunk of a stripe's array (15 KiB).
const CHUNK: usize = 256;
/// The clock's value when the process starts; ticks below it are ages of files found at start.
const CLOCK_START: u64 = 1 << 40;

/// One blob: packed so it takes 60 bytes, not 64. Fields are read by value (never by reference,
/// which packing forbids).
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Entry {
    hash: [u8; 48],
    size: u32,
    last_used: u64,
}

/// An eviction candidate: a blob and the tick it had when it was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub hash: BlobHash,
    last_used: u64,
}

/// The index. Every method takes `&self`; stripes lock independently.
pub struct BlobIndex {
    stripes: Box<[Mutex<Stripe>]>,
    clock: AtomicU64,
    used_bytes: AtomicU64,
    len: AtomicUsize,
}

impl Default for BlobIndex {
    fn default() -> Self {
        BlobIndex::new()
    }
}

impl BlobIndex {
    pub fn new() -> BlobIndex {
        BlobIndex {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            clock: AtomicU64::new(CLOCK_START),
            used_bytes: AtomicU64::new(0),
            len: AtomicUsize::new(0),
        }
    }

    /// Blobs indexed.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total size of the blobs indexed.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// Whether `hash` is indexed, without counting it as a use.
    pub fn contains(&self, hash: &BlobHash) -> bool {
        self.size_of(hash).is_some()
    }

    /// The blob's size, without counting it as a use.
    pub fn size_of(&self, hash: &BlobHash) -> Option<u32> {
        let stripe = self.stripe(hash);
        let pos = stripe.position(hash.as_bytes())?;
        Some(stripe.entries.get(pos).size)
    }

    /// The blob's size, counting this as a use (what a read does).
    pub fn touch(&self, hash: &BlobHash) -> Option<u32> {
        let mut stripe = self.stripe(hash);
        let pos = stripe.position(hash.as_bytes())?;
        let tick = self.tick();
        let entry = stripe.entries.get_mut(pos);
        entry.last_used = tick;
        Some(entry.size)
    }

    /// Indexes `hash` as used just now (a write). Returns the size it had if it was indexed.
    pub fn insert(&self, hash: &BlobHash, size: u32) -> Option<u32> {
        let tick = self.tick();
        self.upsert(hash, size, tick, true)
    }

    /// Indexes a blob found on disk whose file was last used `age` ago, unless it is indexed
    /// already (a read or write since start knows better). Returns whether it was added.
    pub fn insert_found(&self, hash: &BlobHash, size: u32, age: Duration) -> bool {
        let tick = CLOCK_START - 1 - age.as_secs().min(CLOCK_START - 1);
        self.upsert(hash, size, tick, false).is_none()
    }

    /// Forgets `hash`; returns its size if it was indexed.
    pub fn remove(&self, hash: &BlobHash) -> Option<u32> {
        let mut stripe = self.stripe(hash);
        let size = stripe.remove(hash.as_bytes())?;
        self.forgot(size);
        Some(size)
    }

    /// The least recently used of [`SAMPLE`] randomly chosen blobs (of all of them when there are
    /// no more than that). `None` when the index is empty.
    pub fn sample_oldest(&self, rng: &mut fastrand::Rng) -> Option<Candidate> {
        let exact = self.len() <= SAMPLE;
        let first = rng.usize(..STRIPES);
        let mut oldest: Option<Candidate> = None;
        let mut seen = 0;
        let mut consider = |entry: &Entry| {
            let last_used = entry.last_used;
            if oldest.is_none_or(|o| last_used < o.last_used) {
                oldest = Some(Candidate {
                    hash: BlobHash::from_bytes(entry.hash),
                    last_used,
                });
            }
        };
        for i in 0..STRIPES {
            let stripe = self.lock((first + i) % STRIPES);
            let n = stripe.entries.len();
            if exact || n <= SAMPLE_PER_STRIPE {
                (0..n).for_each(|pos| consider(stripe.entries.get(pos)));
                seen += n;
            } else {
                for _ in 0..SAMPLE_PER_STRIPE {
                    consider(stripe.entries.get(rng.usize(..n)));
                }
                seen += SAMPLE_PER_STRIPE;
            }
            if !exact && seen >= SAMPLE {
                break;
            }
        }
        oldest
    }

    /// Removes a sampled candidate unless it was used (or rewritten) since it was sampled.
    /// Returns its size when removed.
    pub fn remove_if_unused(&self, candidate: &Candidate) -> Option<u32> {
        let mut stripe = self.stripe(&candidate.hash);
        let pos = stripe.position(candidate.hash.as_bytes())?;
        let last_used = stripe.entries.get(pos).last_used;
        if last_used != candidate.last_used {
            return None;
        }
        let size = stripe.remove(candidate.hash.as_bytes())?;
        self.forgot(size);
        Some(size)
    }

    /// Every indexed hash, one stripe at a time (so a caller can work through millions of blobs
    /// holding one stripe's worth of hashes at a time).
    pub fn for_each_stripe(&self, mut f: impl FnMut(Vec<BlobHash>)) {
        for i in 0..STRIPES {
            let hashes = {
                let stripe = self.lock(i);
                (0..stripe.entries.len())
                    .map(|pos| BlobHash::from_bytes(stripe.entries.get(pos).hash))
                    .collect()
            };
            f(hashes);
        }
    }

    /// Heap bytes the index holds (entry arrays and position tables), for reports.
    pub fn heap_bytes(&self) -> usize {
        (0..STRIPES)
            .map(|i| {
                let stripe = self.lock(i);
                stripe.slots.allocation_size() + stripe.entries.heap_bytes()
            })
            .sum()
    }

    fn upsert(&self, hash: &BlobHash, size: u32, tick: u64, replace: bool) -> Option<u32> {
        let mut stripe = self.stripe(hash);
        if let Some(pos) = stripe.position(hash.as_bytes()) {
            let entry = stripe.entries.get_mut(pos);
            let old = entry.size;
            if replace {
                entry.size = size;
                entry.last_used = tick;
                self.used_bytes
                    .fetch_add(u64::from(size), Ordering::Relaxed);
                self.used_bytes.fetch_sub(u64::from(old), Ordering::Relaxed);
            }
            return Some(old);
        }
        stripe.push(Entry {
            hash: *hash.as_bytes(),
            size,
            last_used: tick,
        });
        self.used_bytes
            .fetch_add(u64::from(size), Ordering::Relaxed);
        self.len.fetch_add(1, Ordering::Relaxed);
        None
    }

    fn forgot(&self, size: u32) {
        self.used_bytes
            .fetch_sub(u64::from(size), Ordering::Relaxed);
        self.len.fetch_sub(1, Ordering::Relaxed);
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn stripe(&self, hash: &BlobHash) -> MutexGuard<'_, Stripe> {
        // Not the first bytes: those name the shard directory, and the rebuild reads one
        // directory per thread; byte 16 spreads every directory over every stripe.
        self.lock(usize::from(hash.as_bytes()[16]) % STRIPES)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Stripe> {
        // A panic while holding a stripe cannot leave it half-updated in a way that matters more
        // than losing the cache would, so a poisoned lock is used as is.
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The table key of a hash: 8 bytes of a SHA-384 are already uniformly distributed.
fn table_key(hash: &[u8; 48]) -> u64 {
    let mut key = [0u8; 8];
    key.copy_from_slice(&hash[8..16]);
    u64::from_le_bytes(key)
}

/// One stripe: a dense array of entries and a table of positions into it.
#[derive(Default)]
struct Stripe {
    slots: HashTable<u32>,
    entries: Chunked,
}

impl Stripe {
    fn position(&self, hash: &[u8; 48]) -> Option<usize> {
        self.slots
            .find(table_key(hash), |&pos| {
                self.entries.get(pos as usize).hash == *hash
            })
            .map(|&pos| pos as usize)
    }

    fn push(&mut self, entry: Entry) {
        let Stripe { slots, entries } = self;
        // A stripe holds far fewer than 2^32 entries (that would be 2^38 blobs in all).
        let pos = entries.len() as u32;
        let key = table_key(&entry.hash);
        entries.push(entry);
        slots.insert_unique(key, pos, |&p| table_key(&entries.get(p as usize).hash));
    }

    /// Removes `hash` and moves the last entry into its place. Returns the removed size.
    fn remove(&mut self, hash: &[u8; 48]) -> Option<u32> {
        let Stripe { slots, entries } = self;
        let slot = slots
            .find_entry(table_key(hash), |&pos| {
                entries.get(pos as usize).hash == *hash
            })
            .ok()?;
        let (pos, _) = slot.remove();
        let pos = pos as usize;
        let removed = entries.swap_remove(pos);
        if pos < entries.len() {
            // The former last entry now lives at `pos`: point its slot there.
            let moved = entries.get(pos).hash;
            let old_pos = entries.len() as u32;
            if let Some(p) = slots.find_mut(table_key(&moved), |&p| p == old_pos) {
                *p = pos as u32;
            }
        }
        Some(removed.size)
    }
}

/// A growable array in fixed-size chunks: growing never copies or doubles.
#[derive(Default)]
struct Chunked {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

impl Chunked {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, pos: usize) -> &Entry {
        &self.chunks[pos / CHUNK][pos % CHUNK]
    }

    fn get_mut(&mut self, pos: usize) -> &mut Entry {
        &mut self.chunks[pos / CHUNK][pos % CHUNK]
    }

    fn push(&mut self, entry: Entry) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(entry);
        }
        self.len += 1;
    }

    /// Removes the entry at `pos`, moving the last one into its place.
    fn swap_remove(&mut self, pos: usize) -> Entry {
        let last_chunk = self
            .chunks
            .last_mut()
            .expect("pos < len, so a chunk exists");
        let last = last_chunk.pop().expect("chunks are never kept empty");
        if last_chunk.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        if pos == self.len {
            last
        } else {
            std::mem::replace(self.get_mut(pos), last)
        }
    }

    fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<Entry>>()
            + self.chunks.len() * CHUNK * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> BlobHash {
        BlobHash::of(&i.to_le_bytes())
    }

    #[test]
    fn entry_is_sixty_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 60);
    }

    #[test]
    fn insert_touch_remove_keep_counts() {
        let index = BlobIndex::new();
        for i in 0..5000 {
            assert_eq!(index.insert(&h(i), 10 + i as u32), None);
        }
        assert_eq!(index.len(), 5000);
        let total: u64 = (0..5000).map(|i| 10 + i).sum();
        assert_eq!(index.used_bytes(), total);
        // Remove every other one: positions are reshuffled by swap-remove; all others stay found.
        for i in (0..5000).step_by(2) {
            assert_eq!(index.remove(&h(i)), Some(10 + i as u32));
        }
        for i in 0..5000 {
            let expected = (i % 2 == 1).then_some(10 + i as u32);
            assert_eq!(index.touch(&h(i)), expected, "blob {i}");
        }
        assert_eq!(index.len(), 2500);
        let mut listed = Vec::new();
        index.for_each_stripe(|hashes| listed.extend(hashes));
        assert_eq!(listed.len(), 2500);
        // Rewriting replaces the size.
        let odd_total: u64 = (1..5000).step_by(2).map(|i| 10 + i).sum();
        assert_eq!(index.used_bytes(), odd_total);
        assert_eq!(index.insert(&h(1), 99), Some(11));
        assert_eq!(index.used_bytes(), odd_total - 11 + 99);
    }

    #[test]
    fn found_entries_never_override_and_rank_older_than_any_use() {
        let index = BlobIndex::new();
        index.insert(&h(1), 7);
        assert!(!index.insert_found(&h(1), 8, Duration::from_secs(10)));
        assert_eq!(index.touch(&h(1)), Some(7));
        assert!(index.insert_found(&h(2), 5, Duration::from_secs(10)));
        assert!(index.insert_found(&h(3), 5, Duration::from_secs(1000)));
        let mut rng = fastrand::Rng::with_seed(1);
        let oldest = index.sample_oldest(&mut rng).unwrap();
        assert_eq!(oldest.hash, h(3), "the oldest file goes first");
        assert_eq!(index.remove_if_unused(&oldest), Some(5));
        let next = index.sample_oldest(&mut rng).unwrap();
        assert_eq!(
            next.hash,
            h(2),
            "then the younger file, before anything used since start"
        );
    }

    #[test]
    fn small_indexes_evict_exactly_in_lru_order() {
        let index = BlobIndex::new();
        for i in 0..20 {
            index.insert(&h(i), 1);
        }
        // Use them in reverse: 19 is now the least recently used, 0 the most.
        for i in (0..20).rev() {
            index.touch(&h(i));
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for expected in (0..20).rev() {
            let c = index.sample_oldest(&mut rng).unwrap();
            assert_eq!(c.hash, h(expected));
            assert_eq!(index.remove_if_unused(&c), Some(1));
        }
        assert!(index.sample_oldest(&mut rng).is_none());
    }

    #[test]
    fn a_candidate_used_after_sampling_is_not_removed() {
        let index = BlobIndex::new();
        index.insert(&h(1), 1);
        index.insert(&h(2), 1);
        let mut rng = fastrand::Rng::with_seed(3);
        let c = index.sample_oldest(&mut rng).unwrap();
        assert_eq!(c.hash, h(1));
        index.touch(&h(1));
        assert_eq!(index.remove_if_unused(&c), None);
        assert!(index.contains(&h(1)));
    }

    #[test]
    fn large_indexes_evict_from_the_old_end() {
        let index = BlobIndex::new();
        let n = 100_000u64;
        for i in 0..n {
            index.insert(&h(i), 1);
        }
        let position: std::collections::HashMap<BlobHash, u64> =
            (0..n).map(|i| (h(i), i)).collect();
        let mut rng = fastrand::Rng::with_seed(11);
        // 1000 evictions from 100,000 blobs used in order 0, 1, 2, ...: victims come from the old
        // end (on average from the oldest ~3%; every one from the oldest half).
        let mut sum = 0;
        for _ in 0..1000 {
            let c = index.sample_oldest(&mut rng).unwrap();
            let i = position[&c.hash];
            assert!(i < n / 2, "victim {i}");
            sum += i;
            assert_eq!(index.remove_if_unused(&c), Some(1));
        }
        assert!(sum / 1000 < n / 15, "mean victim position {}", sum / 1000);
        assert_eq!(index.len(), 99_000);
        let per_blob = index.heap_bytes() / index.len();
        assert!(per_blob < 90, "{per_blob} heap bytes a blob");
    }
}
