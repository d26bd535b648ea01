//! Reading a blob file without copying it: a memory map of the file, handed out as `Bytes`.
//!
//! A disk hit used to cost a 2 MiB allocation and a 2 MiB copy out of the page cache. Now the
//! file is mapped (`mmap`, pages populated up front on the blocking thread, so the async threads
//! that send the bytes never wait for the disk) and the map becomes a `Bytes`
//! (`Bytes::from_owner`): every front door (HTTP/1.1, HTTP/3, the peer protocol) sends straight
//! from the page cache, and the map is released when the last response holding it is done. A
//! small cache of recent maps (by bytes, [`MAP_CACHE_BYTES`]) lets a hot blob skip even the
//! `open` and `mmap`: a hit is then a `stat` (to see the file is still the one mapped) and a
//! reference count. Files hold no descriptor once mapped, so neither in-flight responses nor
//! the cache use file descriptors.
//!
//! **Why a mapped blob cannot change under a reader.** The store never writes into a blob file
//! after it is renamed into place (see [`super::files`]): a blob is replaced by renaming a new
//! file over it (a new inode; the map keeps the old one) and removed by unlinking it (eviction,
//! `delete`, `check-integrity`), and an unlinked file's data stays until its last map is gone.
//! So bytes a reader holds are the bytes that were verified when the blob was written, whatever
//! happens to the directory meanwhile. What would break this is someone else truncating or
//! rewriting a file in place under `mount_point` (a reader touching a page past the new end
//! gets SIGBUS): remove files, never edit them.
//!
//! **Memory.** Mapped pages are the kernel's page cache, shared by every response for the same
//! blob and counted in a process's `RssFile`, not `RssAnon`: 2,000 concurrent downloads of disk
//! blobs do not add 2,000 blob-sized buffers, and the kernel can reclaim the pages under
//! pressure (a later access reads them again).
//!
//! **Disk space.** An evicted blob's blocks are freed when its last map is dropped: by responses
//! in flight, and by a memory tier above this one holding the `Bytes` (bounded by that tier's
//! size). The maps this cache holds are dropped at once on eviction and delete.
//!
//! Blobs under [`MAP_MIN`] bytes are read into memory instead: for a few pages a copy is cheaper
//! than a map, and it keeps the number of maps (`vm.max_map_count`) down. A map that fails
//! (e.g. that limit) falls back to reading.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use moka::sync::Cache;

use crate::blob::BlobHash;

/// Blobs this size or larger are mapped; smaller ones are read.
pub(super) const MAP_MIN: u32 = 16 * 1024;
/// Bytes of recently used maps kept ready.
pub(super) const MAP_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// A hit refreshes the file's modification time (its recency after a restart) at most this often.
const TOUCH_INTERVAL: Duration = Duration::from_secs(300);

/// What reading a blob file found.
pub(super) enum ReadOutcome {
    Blob(Bytes),
    /// No file (removed behind the index's back).
    Missing,
    /// A file of another size than the index says: not a file this store wrote.
    Changed(u64),
}

/// A map kept ready, and which file it maps.
#[derive(Clone)]
struct Mapped {
    bytes: Bytes,
    dev: u64,
    ino: u64,
}

/// Reads blob files, keeping recent maps.
pub(super) struct MapCache {
    maps: Cache<BlobHash, Mapped>,
    map_failure_logged: AtomicBool,
}

impl MapCache {
    pub(super) fn new() -> MapCache {
        MapCache {
            maps: Cache::builder()
                .max_capacity(MAP_CACHE_BYTES)
                .weigher(|_, m: &Mapped| u32::try_from(m.bytes.len()).unwrap_or(u32::MAX))
                .build(),
            map_failure_logged: AtomicBool::new(false),
        }
    }

    /// Drops the kept map of `hash` (its file is being removed).
    pub(super) fn forget(&self, hash: &BlobHash) {
        self.maps.invalidate(hash);
    }

    /// Finishes dropping forgotten maps (the cache releases them lazily), so the blocks of
    /// files unlinked meanwhile are freed now rather than later.
    pub(super) fn flush(&self) {
        self.maps.run_pending_tasks();
    }

    /// The blob at `path`, expected to be `expected` bytes. Blocking.
    pub(super) fn read(
        &self,
        hash: &BlobHash,
        path: &Path,
        expected: u32,
    ) -> io::Result<ReadOutcome> {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(hash);
                return Ok(ReadOutcome::Missing);
            }
            Err(e) => return Err(e),
        };
        if meta.len() != u64::from(expected) {
            self.forget(hash);
            return Ok(ReadOutcome::Changed(meta.len()));
        }
        refresh_recency(path, &meta);
        if let Some(kept) = self.maps.get(hash) {
            if kept.dev == meta.dev() && kept.ino == meta.ino() {
                return Ok(ReadOutcome::Blob(kept.bytes));
            }
        }
        let mut file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ReadOutcome::Missing),
            Err(e) => return Err(e),
        };
        // The file opened may not be the one just stat'ed (replaced meanwhile): check again.
        let meta = file.metadata()?;
        if meta.len() != u64::from(expected) {
            return Ok(ReadOutcome::Changed(meta.len()));
        }
        if expected >= MAP_MIN {
            match map(&file) {
                Ok(bytes) => {
                    self.maps.insert(
                        *hash,
                        Mapped {
                            bytes: bytes.clone(),
                            dev: meta.dev(),
                            ino: meta.ino(),
                        },
                    );
                    return Ok(ReadOutcome::Blob(bytes));
                }
                Err(e) => {
                    if !self.map_failure_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(path = %path.display(), error = %e,
                            "cannot map blob file; reading it instead (logged once)");
                    }
                }
            }
        }
        let mut buf = Vec::with_capacity(expected as usize);
        file.read_to_end(&mut buf)?;
        if buf.len() != expected as usize {
            return Ok(ReadOutcome::Changed(buf.len() as u64));
        }
        Ok(ReadOutcome::Blob(Bytes::from(buf)))
    }
}

/// Maps the whole file read-only, its pages read in now (on this blocking thread).
fn map(file: &fs::File) -> io::Result<Bytes> {
    // SAFETY: the mapped bytes must not change while mapped. Blob files are never written after
    // they are renamed into place; they are replaced by rename and removed by unlink, both of
    // which leave this map's inode and its data as they are (module docs). The map is read-only
    // and `Bytes` never hands out `&mut`.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Moves the file's modification time to now if it is older than [`TOUCH_INTERVAL`]: it is
/// the blob's recency when the index is rebuilt at the next start. Best effort.
fn refresh_recency(path: &Path, meta: &fs::Metadata) {
    let stale = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > TOUCH_INTERVAL);
    if stale {
        let _ = fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()));
    }
}
