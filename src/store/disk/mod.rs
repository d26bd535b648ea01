//! `disk`: blobs as files under `mount_point`, bounded in bytes, least recently used first out.
//!
//! Built for terabytes: 10 TB of 2 MiB blobs is 5 million files. The parts, one idea each:
//! - `files`: reflector.go's layout and atomic writes (temp file, fsync, rename).
//! - `mapped`: hits served from the page cache without a copy (a memory map as `Bytes`), and
//!   why a mapped blob cannot change under a reader.
//! - [`index`]: which blobs are held, their sizes and recency, in about 70 bytes a blob, with
//!   sampled-LRU eviction.
//! - `rebuild`: the index is rebuilt from the files at start, in the background and in
//!   parallel; the store serves from the first moment.
//! - `space`: capacity and the filesystem under the store; a full disk lowers the capacity.
//! - `integrity`: `check-integrity`, re-hashing every file.
//!
//! Invariants, and how they are kept:
//! - **A file is a whole verified blob or nothing** (`files`).
//! - **Index and files agree.** Every change to a blob's file and its index entry together
//!   (write, delete, eviction, the rebuild adding a file it found, dropping a file that vanished)
//!   happens under a per-hash lock, so a fresh file is never deleted by a stale eviction and a
//!   deleted file is never indexed. A file that vanished behind our back is dropped from the
//!   index when it is next read.
//! - **Served before indexed.** Until the start-up rebuild is complete, a lookup the index
//!   cannot answer looks at the file itself and indexes it if it is there, so every blob on disk
//!   is a hit from the first second. Eviction starts when the rebuild is complete (the total size
//!   is not known before); from then on capacity holds after every write.
//! - **Restart keeps the cache.** Nothing is deleted at start but crash leftovers and files with
//!   impossible sizes; files are indexed with the age of their modification time, which hits
//!   refresh (at most every 5 minutes), so the most recently used blobs are the last evicted.
//!   Names that are not blob hashes are left alone and reported.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};

use crate::blob::{check_size, BlobHash};
use crate::config::DiskConfig;
use crate::store::{Blob, BlobStore, BuildContext, StoreError, StoreResult};

mod files;
pub mod index;
mod integrity;
mod mapped;
mod rebuild;
mod space;

use files::Files;
use index::BlobIndex;
pub use integrity::IntegrityReport;
use mapped::{MapCache, ReadOutcome};
use rebuild::Progress;
pub use rebuild::RebuildGate;
use space::Space;

/// Per-hash locks, striped.
const LOCK_STRIPES: usize = 256;
/// Times a write is retried after making room on a full disk. Evicted files whose bytes are
/// still held (a response in flight, a memory tier above) free their space only when released,
/// so one round may not be enough; the bound keeps a put from evicting the whole store.
const FULL_DISK_ROUNDS: usize = 8;

/// How to open a [`DiskStore`] beyond its config.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Holds the start-up index rebuild at a known point (for tests).
    pub rebuild_gate: Option<RebuildGate>,
}

/// The store handle. Dropping it stops a rebuild still running.
pub struct DiskStore {
    disk: Arc<Disk>,
    rebuild: Mutex<Option<JoinHandle<()>>>,
}

/// The store's state, shared with the blocking tasks that touch files and the rebuild.
struct Disk {
    name: Arc<str>,
    files: Files,
    index: BlobIndex,
    maps: MapCache,
    locks: Box<[Mutex<()>]>,
    space: Space,
    progress: Progress,
    /// One evictor at a time, with its sampling randomness.
    evictor: Mutex<fastrand::Rng>,
    evictions: IntCounter,
    size_gauge: IntGauge,
    blobs_gauge: IntGauge,
    /// Pinned blobs are never evicted ([`crate::store::pins`]).
    pins: Arc<crate::store::pins::PinSlot>,
}

impl DiskStore {
    /// Opens (creating if needed) the store and starts rebuilding its index in the background.
    pub fn open(config: &DiskConfig, ctx: &BuildContext) -> io::Result<DiskStore> {
        DiskStore::open_with(config, ctx, OpenOptions::default())
    }

    /// [`DiskStore::open`] with [`OpenOptions`].
    pub fn open_with(
        config: &DiskConfig,
        ctx: &BuildContext,
        options: OpenOptions,
    ) -> io::Result<DiskStore> {
        let disk = Arc::new(Disk::open(config, ctx, options)?);
        let rebuild = rebuild::spawn(Arc::clone(&disk))?;
        Ok(DiskStore {
            disk,
            rebuild: Mutex::new(Some(rebuild)),
        })
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.disk.space.effective()
    }

    /// Bytes currently accounted in the index.
    pub fn used_bytes(&self) -> u64 {
        self.disk.index.used_bytes()
    }

    /// Where `hash` lives on disk.
    pub fn path_of(&self, hash: &BlobHash) -> PathBuf {
        self.disk.files.path_of(hash)
    }

    /// Whether the start-up index rebuild is complete.
    pub fn is_indexed(&self) -> bool {
        self.disk.progress.is_complete()
    }

    /// Blocks until the start-up index rebuild is complete (and capacity enforced); false if it
    /// was not within `deadline` (`None`: as long as it takes).
    pub fn wait_indexed(&self, deadline: Option<Duration>) -> bool {
        self.disk.progress.wait(deadline)
    }

    /// Heap bytes the index holds (for benchmarks: bytes a blob).
    pub fn index_heap_bytes(&self) -> usize {
        self.disk.index.heap_bytes()
    }

    /// Runs blocking filesystem work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        context: &str,
        work: impl FnOnce(&Disk) -> io::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let disk = Arc::clone(&self.disk);
        match tokio::task::spawn_blocking(move || work(&disk)).await {
            Ok(result) => result.map_err(|e| StoreError::io(&self.disk.name, context, e)),
            Err(join) => Err(StoreError::io(
                &self.disk.name,
                context,
                io::Error::other(join.to_string()),
            )),
        }
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        self.disk.progress.cancel();
        let handle = self
            .rebuild
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            // Stops within one directory entry; joining means a store reopened right after sees
            // no rebuild of the old one still running.
            let _ = handle.join();
        }
    }
}

impl Disk {
    fn open(config: &DiskConfig, ctx: &BuildContext, options: OpenOptions) -> io::Result<Disk> {
        let name: Arc<str> = Arc::from(config.name());
        let root = config.mount_point.clone();
        let files = Files::open(root, config.sharding_size)?;
        let swept = files.sweep_temp()?;
        if swept > 0 {
            tracing::info!(store = %name, swept, "deleted temp files a crash left behind");
        }
        let m = ctx.store_metrics();
        let space = Space::new(&name, files.root(), config.max_size.map(|s| s.0), &m)?;
        let progress = Progress::new(
            options.rebuild_gate,
            m.disk_index_complete.with_label_values(&[&name]),
            m.disk_index_progress_ratio.with_label_values(&[&name]),
        );
        tracing::info!(store = %name, root = %files.root().display(), capacity = space.effective(),
            "disk store open; indexing its files in the background");
        Ok(Disk {
            evictions: m.cache_evict_total.with_label_values(&["disk", &name]),
            size_gauge: m.store_size_bytes.with_label_values(&[&name]),
            blobs_gauge: m.store_blobs.with_label_values(&[&name]),
            name,
            files,
            index: BlobIndex::new(),
            maps: MapCache::new(),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            space,
            progress,
            evictor: Mutex::new(fastrand::Rng::new()),
            pins: ctx.metrics.family(),
        })
    }

    fn lock_for(&self, hash: &BlobHash) -> MutexGuard<'_, ()> {
        // The last byte: the first ones name the shard directory, which would put a whole
        // directory (what one rebuild thread reads) under one lock.
        let stripe = usize::from(hash.as_bytes()[47]) % LOCK_STRIPES;
        self.locks[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_gauges(&self) {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.size_gauge.set(to_i64(self.index.used_bytes()));
        self.blobs_gauge.set(to_i64(self.index.len() as u64));
        self.space.update_gauges(self.files.root());
    }

    /// The blob's size if the store holds it; `touch` counts the lookup as a use. Before the
    /// index is complete, a blob it does not know yet is looked for on disk.
    fn lookup(&self, hash: &BlobHash, touch: bool) -> io::Result<Option<u32>> {
        let indexed = if touch {
            self.index.touch(hash)
        } else {
            self.index.size_of(hash)
        };
        if indexed.is_some() || self.progress.is_complete() {
            return Ok(indexed);
        }
        self.adopt(hash)
    }

    /// Indexes `hash`'s file if it is on disk (the rebuild has not reached it yet).
    fn adopt(&self, hash: &BlobHash) -> io::Result<Option<u32>> {
        let _guard = self.lock_for(hash);
        if let Some(size) = self.index.touch(hash) {
            return Ok(Some(size));
        }
        let meta = match std::fs::symlink_metadata(self.files.path_of(hash)) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = meta.len();
        if !meta.is_file() || len == 0 || len > crate::blob::MAX_BLOB_SIZE as u64 {
            // The rebuild reports (and removes) files with impossible sizes.
            return Ok(None);
        }
        self.index.insert(hash, len as u32);
        Ok(Some(len as u32))
    }

    fn read(&self, hash: &BlobHash) -> io::Result<Option<Bytes>> {
        let Some(size) = self.lookup(hash, true)? else {
            return Ok(None);
        };
        match self.maps.read(hash, &self.files.path_of(hash), size)? {
            ReadOutcome::Blob(bytes) => Ok(Some(bytes)),
            ReadOutcome::Missing => {
                self.forget_vanished(hash);
                Ok(None)
            }
            ReadOutcome::Changed(len) => {
                self.drop_changed(hash, size, len);
                Ok(None)
            }
        }
    }

    /// The file is gone: drop the entry, unless a write put the file back meanwhile.
    fn forget_vanished(&self, hash: &BlobHash) {
        {
            let _guard = self.lock_for(hash);
            if !self.files.path_of(hash).exists() {
                self.index.remove(hash);
            }
        }
        self.update_gauges();
    }

    /// The file's size is not what this store wrote: not our file; do not serve it.
    fn drop_changed(&self, hash: &BlobHash, expected: u32, len: u64) {
        let path = self.files.path_of(hash);
        tracing::warn!(store = %self.name, path = %path.display(), size = len, expected,
            "blob file size changed on disk; dropping it");
        {
            let _guard = self.lock_for(hash);
            let now = std::fs::symlink_metadata(&path).map(|m| m.len()).ok();
            if now == Some(u64::from(expected)) {
                // A write put the blob back meanwhile.
                return;
            }
            self.index.remove(hash);
            self.maps.forget(hash);
            if let Err(e) = self.files.remove(hash) {
                tracing::warn!(store = %self.name, %hash, error = %e, "could not remove changed blob file");
            }
        }
        self.update_gauges();
    }

    /// Writes the blob. A full filesystem is a capacity, not an outage: make room and write
    /// again (see [`space`]).
    fn write(&self, hash: &BlobHash, data: &[u8]) -> io::Result<()> {
        let mut rounds = 0;
        loop {
            match self.write_once(hash, data) {
                Err(e) if space::is_full(&e) && rounds < FULL_DISK_ROUNDS => {
                    rounds += 1;
                    if self.make_room(data.len() as u64) == 0 {
                        return Err(e);
                    }
                }
                result => break result?,
            }
        }
        self.enforce_capacity();
        self.update_gauges();
        Ok(())
    }

    fn write_once(&self, hash: &BlobHash, data: &[u8]) -> io::Result<()> {
        let temp = self.files.write_temp(hash, data)?;
        self.files.make_parent(hash)?;
        let _guard = self.lock_for(hash);
        temp.install(&self.files.path_of(hash))?;
        self.index.insert(hash, data.len() as u32);
        Ok(())
    }

    /// The filesystem could not take `need` more bytes: evicts least recently used blobs to
    /// free them. Once the index is complete the capacity is lowered to what is stored (all the
    /// filesystem holds); before, the total is not known, so room is made without lowering it.
    /// Returns the bytes freed.
    fn make_room(&self, need: u64) -> u64 {
        let held = self.index.used_bytes();
        let held = if self.progress.is_complete() {
            self.space.lower_to(&self.name, held)
        } else {
            held
        };
        let target = held.saturating_sub(need);
        let mut freed = 0;
        {
            let mut rng = self.evictor.lock().unwrap_or_else(|p| p.into_inner());
            while self.index.used_bytes() > target {
                match self.evict_one(&mut rng) {
                    Some(size) => freed += u64::from(size),
                    None => break,
                }
            }
        }
        // Kept maps of evicted files pin their blocks until dropped: drop them now.
        self.maps.flush();
        self.update_gauges();
        freed
    }

    fn delete(&self, hash: &BlobHash) -> io::Result<()> {
        {
            let _guard = self.lock_for(hash);
            self.index.remove(hash);
            self.maps.forget(hash);
            self.files.remove(hash)?;
        }
        self.update_gauges();
        Ok(())
    }

    /// Evicts least recently used blobs until the store is within its capacity. Does nothing
    /// until the index is complete. Returns how many blobs went.
    fn enforce_capacity(&self) -> usize {
        if !self.progress.is_complete() {
            return 0;
        }
        let capacity = self.space.effective();
        if self.index.used_bytes() <= capacity {
            return 0;
        }
        let mut rng = self.evictor.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = 0;
        while self.index.used_bytes() > capacity {
            if self.evict_one(&mut rng).is_none() {
                break;
            }
            evicted += 1;
        }
        evicted
    }

    /// Evicts one of the least recently used blobs; returns its size (`None`: nothing to evict).
    fn evict_one(&self, rng: &mut fastrand::Rng) -> Option<u32> {
        // A sampled blob used between sampling and removal is kept; sample again (bounded: a
        // storm of hits cannot keep eviction spinning). A pinned candidate is kept and counted
        // as used, so it leaves the old end and later samples find unpinned blobs (pinned
        // bytes are at most `pin_max` < `max_size`, so there always are some).
        for _ in 0..64 {
            let candidate = self.index.sample_oldest(rng)?;
            if self.pins.is_pinned(&candidate.hash) {
                self.index.touch(&candidate.hash);
                continue;
            }
            let _guard = self.lock_for(&candidate.hash);
            if let Some(size) = self.index.remove_if_unused(&candidate) {
                self.maps.forget(&candidate.hash);
                if let Err(e) = self.files.remove(&candidate.hash) {
                    tracing::warn!(store = %self.name, hash = %candidate.hash, error = %e,
                        "could not delete evicted blob file");
                }
                self.evictions.inc();
                return Some(size);
            }
        }
        None
    }
}

#[async_trait]
impl BlobStore for DiskStore {
    fn name(&self) -> &str {
        &self.disk.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        if self.disk.index.contains(hash) {
            return Ok(true);
        }
        if self.disk.progress.is_complete() {
            return Ok(false);
        }
        let hash = *hash;
        self.blocking("looking up blob", move |disk| {
            Ok(disk.lookup(&hash, false)?.is_some())
        })
        .await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        if self.disk.progress.is_complete() && !self.disk.index.contains(hash) {
            return Err(StoreError::NotFound);
        }
        let hash = *hash;
        let read = self
            .blocking("reading blob", move |disk| disk.read(&hash))
            .await
            .inspect_err(|e| tracing::warn!(%hash, error = %e, "disk read failed"))?;
        match read {
            Some(data) => Ok(Blob::verified(data, start.elapsed(), &self.disk.name)),
            None => Err(StoreError::NotFound),
        }
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        check_size(data.len()).map_err(|e| StoreError::Refused {
            store: self.disk.name.clone(),
            message: e.to_string(),
        })?;
        if self.disk.index.contains(hash) {
            return Ok(());
        }
        let hash = *hash;
        self.blocking("writing blob", move |disk| {
            if disk.lookup(&hash, false)?.is_some() {
                return Ok(());
            }
            disk.write(&hash, &data)
        })
        .await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        let hash = *hash;
        self.blocking("deleting blob", move |disk| disk.delete(&hash))
            .await
    }

    /// Every blob held. Waits for the start-up index rebuild to complete (only a `gcache` over
    /// this store asks, once, when it is built).
    fn list(&self) -> Option<Vec<BlobHash>> {
        self.disk.progress.wait(None);
        let mut all = Vec::with_capacity(self.disk.index.len());
        self.disk.index.for_each_stripe(|hashes| all.extend(hashes));
        Some(all)
    }

    /// A backend, not a cache.
    async fn has_cached(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }

    /// Starts no fills.
    async fn wait_for_fill(&self, _: &BlobHash) {}
}
