//! `disk`: blobs as files under `mount_point`, bounded in bytes with LRU eviction.
//!
//! Layout is reflector.go's: `mount_point/<first sharding_size hex chars>/<hash>` (flat when
//! `sharding_size` is 0), so an existing reflector.go cache directory is picked up as it is.
//!
//! Invariants, and how they are kept:
//! - **A file is a whole verified blob or nothing.** Writes go to `mount_point/.tmp/` (same
//!   filesystem), are fsynced, then renamed into place. Leftovers in `.tmp/` are a crash's
//!   remains and are deleted at start; they are never served because nothing reads `.tmp/`.
//! - **Index and files agree.** The index is a moka cache weighed in bytes with the LRU policy
//!   set explicitly. Entries it evicts (or refuses) are queued by its eviction listener and their
//!   files deleted right after the insert that caused it, under a per-hash lock that a
//!   concurrent re-`put` of the same hash also takes, so a fresh file is never deleted by a
//!   stale eviction. A file that vanished behind our back is dropped from the index on read.
//! - **Restart keeps the cache.** The index is rebuilt from the files at start, in parallel,
//!   oldest to newest by modification time (hits refresh it, at most every few minutes), so the
//!   most recently used blobs are the last to be evicted. Names that are not blob hashes are left
//!   alone and reported; files with impossible sizes are removed and reported.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use prometheus::{IntCounter, IntGauge};
use rayon::prelude::*;

use crate::blob::{check_size, BlobHash, HASH_HEX_LEN, MAX_BLOB_SIZE};
use crate::config::DiskConfig;
use crate::store::{Blob, BlobStore, BuildContext, StoreError, StoreResult};

/// Sub-directory for in-progress writes.
const TMP_DIR: &str = ".tmp";
/// Per-hash locks, striped.
const LOCK_STRIPES: usize = 64;
/// A hit refreshes the file's modification time (its recency after a restart) at most this often.
const TOUCH_INTERVAL: Duration = Duration::from_secs(300);
/// Share of the filesystem used when `max_size` is not configured.
const DEFAULT_FS_SHARE: f64 = 0.9;

/// The store handle; cheap to clone into blocking tasks.
pub struct DiskStore {
    disk: Arc<Disk>,
}

/// The store's state, shared with the blocking tasks that touch files.
struct Disk {
    name: Arc<str>,
    root: PathBuf,
    tmp_dir: PathBuf,
    sharding: usize,
    capacity: u64,
    index: Cache<BlobHash, u32>,
    /// Hashes the index let go of whose files still need deleting.
    doomed: Arc<Mutex<VecDeque<BlobHash>>>,
    locks: Vec<Mutex<()>>,
    tmp_counter: AtomicU64,
    size_gauge: IntGauge,
    blobs_gauge: IntGauge,
    fs_size_gauge: IntGauge,
    fs_free_gauge: IntGauge,
}

/// What the start-up scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub blobs: usize,
    pub bytes: u64,
    pub temp_files_swept: usize,
    pub foreign_files_skipped: usize,
    pub bad_size_removed: usize,
    pub evicted_over_capacity: usize,
}

/// What [`DiskStore::check_integrity`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IntegrityReport {
    pub checked: usize,
    pub bytes: u64,
    pub corrupt_removed: Vec<BlobHash>,
}

struct Found {
    hash: BlobHash,
    size: u32,
    modified: SystemTime,
}

impl DiskStore {
    /// Opens (creating if needed) the store and rebuilds its index from the files.
    pub fn open(config: &DiskConfig, ctx: &BuildContext) -> io::Result<DiskStore> {
        Ok(DiskStore {
            disk: Arc::new(Disk::open(config, ctx)?),
        })
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.disk.capacity
    }

    /// Bytes currently accounted in the index.
    pub fn used_bytes(&self) -> u64 {
        self.disk.index.run_pending_tasks();
        self.disk.index.weighted_size()
    }

    /// Where `hash` lives on disk.
    pub fn path_of(&self, hash: &BlobHash) -> PathBuf {
        self.disk.path_of(hash)
    }

    /// Re-hashes every blob file (in parallel) and removes the ones whose bytes no longer match
    /// their name. Blocking; `progress` is called with each file's size as it is checked.
    ///
    /// Safe while a blobcache process uses the same directory: a blob removed here is a miss
    /// there (the file is gone), which refetches it from the origin.
    pub fn check_integrity(&self, progress: impl Fn(u64) + Sync) -> IntegrityReport {
        let disk = &self.disk;
        let hashes: Vec<BlobHash> = disk.index.iter().map(|(k, _)| *k).collect();
        let results: Vec<(u64, Option<BlobHash>)> = hashes
            .par_iter()
            .map(|hash| {
                let path = disk.path_of(hash);
                let (size, corrupt) = match fs::read(&path) {
                    Ok(bytes) => (
                        bytes.len() as u64,
                        crate::blob::verify(&bytes, hash).is_err(),
                    ),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => (0, true),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read blob file");
                        (0, true)
                    }
                };
                progress(size);
                (size, corrupt.then_some(*hash))
            })
            .collect();
        let mut report = IntegrityReport::default();
        for (size, corrupt) in results {
            report.checked += 1;
            report.bytes += size;
            if let Some(hash) = corrupt {
                let _guard = disk.lock_for(&hash);
                disk.index.invalidate(&hash);
                match fs::remove_file(disk.path_of(&hash)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(%hash, error = %e, "cannot remove corrupt blob"),
                }
                tracing::warn!(%hash, "corrupt blob removed");
                report.corrupt_removed.push(hash);
            }
        }
        disk.settle();
        report
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

impl Disk {
    fn open(config: &DiskConfig, ctx: &BuildContext) -> io::Result<Disk> {
        let name: Arc<str> = Arc::from(config.name.as_deref().unwrap_or("disk"));
        let root = config.mount_point.clone();
        let tmp_dir = root.join(TMP_DIR);
        fs::create_dir_all(&tmp_dir)?;
        let capacity = match config.max_size {
            Some(size) => size.0,
            None => {
                let stat = rustix::fs::statvfs(&root).map_err(io::Error::from)?;
                let total = stat.f_blocks.saturating_mul(stat.f_frsize);
                let cap = (total as f64 * DEFAULT_FS_SHARE) as u64;
                tracing::warn!(store = %name, capacity = cap, "disk store has no max_size; using 90% of the filesystem");
                cap
            }
        };
        let doomed: Arc<Mutex<VecDeque<BlobHash>>> = Arc::default();
        let evictions: IntCounter = ctx
            .metrics
            .cache_evict_total
            .with_label_values(&["disk", &name]);
        let listener_queue = Arc::clone(&doomed);
        let index = Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|_, size: &u32| *size)
            .eviction_listener(move |hash: Arc<BlobHash>, _, cause| {
                // Replaced: the same file was just rewritten. Explicit: `delete` removes the file
                // itself. Only capacity evictions leave a file behind for us to delete.
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    evictions.inc();
                    if let Ok(mut queue) = listener_queue.lock() {
                        queue.push_back(*hash);
                    }
                }
            })
            .build();
        ctx.metrics
            .store_capacity_bytes
            .with_label_values(&[&name])
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        let store = Disk {
            size_gauge: ctx.metrics.store_size_bytes.with_label_values(&[&name]),
            blobs_gauge: ctx.metrics.store_blobs.with_label_values(&[&name]),
            fs_size_gauge: ctx
                .metrics
                .filesystem_size_bytes
                .with_label_values(&[&name]),
            fs_free_gauge: ctx
                .metrics
                .filesystem_free_bytes
                .with_label_values(&[&name]),
            name,
            root,
            tmp_dir,
            sharding: config.sharding_size,
            capacity,
            index,
            doomed,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            tmp_counter: AtomicU64::new(0),
        };
        let started = Instant::now();
        let report = store.rebuild_index()?;
        tracing::info!(
            store = %store.name,
            root = %store.root.display(),
            blobs = report.blobs,
            bytes = report.bytes,
            capacity = store.capacity,
            swept_temp = report.temp_files_swept,
            skipped_foreign = report.foreign_files_skipped,
            removed_bad_size = report.bad_size_removed,
            evicted = report.evicted_over_capacity,
            took_ms = started.elapsed().as_millis() as u64,
            "disk index rebuilt"
        );
        Ok(store)
    }

    fn path_of(&self, hash: &BlobHash) -> PathBuf {
        self.root.join(hash.sharded_path(self.sharding))
    }

    fn lock_for(&self, hash: &BlobHash) -> std::sync::MutexGuard<'_, ()> {
        let stripe = usize::from(hash.as_bytes()[0]) % LOCK_STRIPES;
        self.locks[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_gauges(&self) {
        self.size_gauge
            .set(i64::try_from(self.index.weighted_size()).unwrap_or(i64::MAX));
        self.blobs_gauge
            .set(i64::try_from(self.index.entry_count()).unwrap_or(i64::MAX));
        if let Ok(stat) = rustix::fs::statvfs(&self.root) {
            let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.fs_size_gauge
                .set(to_i64(stat.f_blocks.saturating_mul(stat.f_frsize)));
            self.fs_free_gauge
                .set(to_i64(stat.f_bavail.saturating_mul(stat.f_frsize)));
        }
    }

    /// Lets the index apply pending evictions, then deletes the files of everything it evicted.
    fn settle(&self) -> usize {
        self.index.run_pending_tasks();
        let mut removed = 0;
        loop {
            let next = self.doomed.lock().ok().and_then(|mut q| q.pop_front());
            let Some(hash) = next else { break };
            let _guard = self.lock_for(&hash);
            // Re-put since it was evicted: the file on disk is the new one; keep it.
            if self.index.contains_key(&hash) {
                continue;
            }
            match fs::remove_file(self.path_of(&hash)) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(store = %self.name, %hash, error = %e, "could not delete evicted blob file")
                }
            }
        }
        self.update_gauges();
        removed
    }

    /// Scans `root`, sweeps temp files, and loads the index oldest-first.
    fn rebuild_index(&self) -> io::Result<ScanReport> {
        let mut report = ScanReport::default();
        for entry in fs::read_dir(&self.tmp_dir)? {
            let path = entry?.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => report.temp_files_swept += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not sweep temp file")
                }
            }
        }

        let dirs: Vec<PathBuf> = if self.sharding == 0 {
            vec![self.root.clone()]
        } else {
            let mut dirs = Vec::new();
            for entry in fs::read_dir(&self.root)? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name == TMP_DIR {
                    continue;
                }
                let is_shard = name.len() == self.sharding
                    && name.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
                if is_shard && entry.file_type()?.is_dir() {
                    dirs.push(entry.path());
                } else {
                    report.foreign_files_skipped += 1;
                    tracing::warn!(path = %entry.path().display(), "not a shard directory of this store; left alone");
                }
            }
            dirs
        };

        let scanned: Vec<(Vec<Found>, ScanReport)> = dirs
            .par_iter()
            .map(|dir| self.scan_dir(dir))
            .collect::<io::Result<_>>()?;
        let mut found = Vec::new();
        for (files, part) in scanned {
            found.extend(files);
            report.foreign_files_skipped += part.foreign_files_skipped;
            report.bad_size_removed += part.bad_size_removed;
        }
        found.sort_by_key(|f| f.modified);
        for f in &found {
            self.index.insert(f.hash, f.size);
        }
        report.evicted_over_capacity = self.settle();
        report.blobs = usize::try_from(self.index.entry_count()).unwrap_or(usize::MAX);
        report.bytes = self.index.weighted_size();
        Ok(report)
    }

    fn scan_dir(&self, dir: &Path) -> io::Result<(Vec<Found>, ScanReport)> {
        let mut report = ScanReport::default();
        let mut found = Vec::new();
        let shard = dir
            .strip_prefix(&self.root)
            .ok()
            .and_then(|p| p.to_str())
            .unwrap_or("");
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let name = file_name.to_string_lossy();
            if self.sharding == 0 && name == TMP_DIR {
                continue;
            }
            let hash = match BlobHash::parse(&name) {
                Ok(h) if name.len() == HASH_HEX_LEN && name.starts_with(shard) => h,
                _ => {
                    report.foreign_files_skipped += 1;
                    tracing::warn!(path = %entry.path().display(), "not a blob file of this store; left alone");
                    continue;
                }
            };
            let meta = entry.metadata()?;
            if !meta.is_file() {
                report.foreign_files_skipped += 1;
                continue;
            }
            let len = meta.len();
            if len == 0 || len > MAX_BLOB_SIZE as u64 {
                report.bad_size_removed += 1;
                tracing::warn!(path = %entry.path().display(), size = len, "blob file has an impossible size; removed");
                if let Err(e) = fs::remove_file(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not remove bad blob file");
                }
                continue;
            }
            found.push(Found {
                hash,
                size: len as u32,
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok((found, report))
    }

    fn read_blob(&self, hash: &BlobHash, expected: u32) -> io::Result<Option<Bytes>> {
        let path = self.path_of(hash);
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if meta.len() != u64::from(expected) {
            // Changed behind our back: not a file we wrote. Do not serve it.
            tracing::warn!(path = %path.display(), size = meta.len(), expected, "blob file size changed on disk; dropping it");
            drop(file);
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(expected as usize);
        file.read_to_end(&mut buf)?;
        if buf.len() != expected as usize {
            return Ok(None);
        }
        let stale = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > TOUCH_INTERVAL);
        if stale {
            // Recency for the next restart's rebuild; best effort.
            let _ = file.set_modified(SystemTime::now());
        }
        Ok(Some(Bytes::from(buf)))
    }

    fn write_blob(&self, hash: &BlobHash, data: &[u8]) -> io::Result<()> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp_dir
            .join(format!("{hash}.{}.{n}", std::process::id()));
        let result = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(data)?;
            file.sync_data()?;
            drop(file);
            let dest = self.path_of(hash);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            let _guard = self.lock_for(hash);
            fs::rename(&tmp, &dest)?;
            self.index.insert(*hash, data.len() as u32);
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

#[async_trait]
impl BlobStore for DiskStore {
    fn name(&self) -> &str {
        &self.disk.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        Ok(self.disk.index.contains_key(hash))
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        // `get` (not `contains_key`) so the index records the access for LRU.
        let Some(size) = self.disk.index.get(hash) else {
            return Err(StoreError::NotFound);
        };
        let hash = *hash;
        let read = self
            .blocking("reading blob", move |disk| disk.read_blob(&hash, size))
            .await
            .inspect_err(|e| tracing::warn!(%hash, error = %e, "disk read failed"))?;
        match read {
            Some(data) => Ok(Blob::verified(data, start.elapsed(), &self.disk.name)),
            None => {
                self.disk.index.invalidate(&hash);
                self.disk.update_gauges();
                Err(StoreError::NotFound)
            }
        }
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        check_size(data.len()).map_err(|e| StoreError::Refused {
            store: self.disk.name.clone(),
            message: e.to_string(),
        })?;
        if self.disk.index.contains_key(hash) {
            return Ok(());
        }
        let hash = *hash;
        self.blocking("writing blob", move |disk| {
            disk.write_blob(&hash, &data)?;
            disk.settle();
            Ok(())
        })
        .await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        let hash = *hash;
        self.blocking("deleting blob", move |disk| {
            {
                let _guard = disk.lock_for(&hash);
                disk.index.invalidate(&hash);
                match fs::remove_file(disk.path_of(&hash)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            disk.settle();
            Ok(())
        })
        .await
    }

    fn list(&self) -> Option<Vec<BlobHash>> {
        Some(self.disk.index.iter().map(|(k, _)| *k).collect())
    }

    /// A backend, not a cache.
    async fn has_cached(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }

    /// Starts no fills.
    async fn wait_for_fill(&self, _: &BlobHash) {}
}
