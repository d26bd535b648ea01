//! The start-up index rebuild, in the background.
//!
//! A disk tier of 5 million blobs takes seconds (warm page cache) to minutes (cold) to list, so
//! the store serves before its index is complete: a lookup the index cannot answer yet checks
//! the file itself (see `Disk::lookup`). This module reads the shard directories in parallel on
//! a few threads of its own and adds what it finds, each file with the age of its modification
//! time (hits refresh it), so the files used longest ago are evicted first.
//!
//! Files and index agree throughout: each file is looked at (`fstatat`) and indexed under the
//! same per-hash lock a `delete` or an eviction takes, so a file removed meanwhile is never
//! indexed, and a blob read or written since start keeps the recency it has (the rebuild only
//! adds what is missing). Capacity is enforced once the rebuild is complete: before that, the
//! total size is not known.
//!
//! Nothing here deletes a blob file (except files with impossible sizes), so a process stopped
//! mid-rebuild loses nothing; the next start rebuilds from the files again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use prometheus::{Gauge, IntGauge};

use super::{files, Disk};
use crate::blob::{BlobHash, HASH_HEX_LEN, MAX_BLOB_SIZE};

/// Threads reading shard directories. More than the cores: with a cold page cache the work is
/// waiting for the disk, and several requests in flight keep it busy.
const REBUILD_THREADS: usize = 8;

/// Lets a test hold the rebuild at a known point (instead of racing it with sleeps).
///
/// The rebuild asks the gate before each shard directory; [`RebuildGate::after`]`(n)` lets `n`
/// directories through and holds the rest until [`RebuildGate::release`].
#[derive(Clone)]
pub struct RebuildGate(Arc<GateInner>);

struct GateInner {
    state: Mutex<GateState>,
    changed: Condvar,
}

struct GateState {
    allowed: usize,
    passed: usize,
    waiting: usize,
    released: bool,
}

impl RebuildGate {
    /// Lets `dirs` shard directories be read, then holds the rebuild.
    pub fn after(dirs: usize) -> RebuildGate {
        RebuildGate(Arc::new(GateInner {
            state: Mutex::new(GateState {
                allowed: dirs,
                passed: 0,
                waiting: 0,
                released: false,
            }),
            changed: Condvar::new(),
        }))
    }

    /// Holds the rebuild before it reads anything.
    pub fn closed() -> RebuildGate {
        RebuildGate::after(0)
    }

    /// Lets the rebuild run to the end.
    pub fn release(&self) {
        self.lock().released = true;
        self.0.changed.notify_all();
    }

    /// Waits until the rebuild is held at the gate; false if that did not happen within
    /// `deadline`.
    pub fn wait_until_held(&self, deadline: Duration) -> bool {
        let state = self.lock();
        let (_state, timeout) = self
            .0
            .changed
            .wait_timeout_while(state, deadline, |s| s.waiting == 0)
            .unwrap_or_else(|p| p.into_inner());
        !timeout.timed_out()
    }

    /// Blocks a rebuild thread until it may read one more directory (false: stop instead).
    fn pass(&self, cancelled: &AtomicBool) -> bool {
        let mut state = self.lock();
        loop {
            if cancelled.load(Ordering::Acquire) {
                return false;
            }
            if state.released || state.passed < state.allowed {
                state.passed += 1;
                return true;
            }
            state.waiting += 1;
            self.0.changed.notify_all();
            state = self
                .0
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
        }
    }

    /// Wakes held threads so they see a cancellation.
    fn wake(&self) {
        let _state = self.lock();
        self.0.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How far the rebuild is, shared with the store and its metrics.
pub(super) struct Progress {
    complete: Mutex<bool>,
    completed: Condvar,
    /// The same as `complete`, readable without a lock on every lookup.
    complete_flag: AtomicBool,
    cancelled: AtomicBool,
    gate: Option<RebuildGate>,
    dirs_total: AtomicUsize,
    dirs_done: AtomicUsize,
    complete_gauge: IntGauge,
    progress_gauge: Gauge,
}

impl Progress {
    pub(super) fn new(
        gate: Option<RebuildGate>,
        complete_gauge: IntGauge,
        progress_gauge: Gauge,
    ) -> Progress {
        complete_gauge.set(0);
        progress_gauge.set(0.0);
        Progress {
            complete: Mutex::new(false),
            completed: Condvar::new(),
            complete_flag: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            gate,
            dirs_total: AtomicUsize::new(0),
            dirs_done: AtomicUsize::new(0),
            complete_gauge,
            progress_gauge,
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        self.complete_flag.load(Ordering::Acquire)
    }

    /// Waits for the rebuild to complete; false if it did not within `deadline` (or was
    /// stopped). `None` waits as long as it takes.
    pub(super) fn wait(&self, deadline: Option<Duration>) -> bool {
        let guard = self.complete.lock().unwrap_or_else(|p| p.into_inner());
        let stop = |done: &mut bool| !*done && !self.cancelled.load(Ordering::Acquire);
        let guard = match deadline {
            Some(d) => {
                self.completed
                    .wait_timeout_while(guard, d, stop)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => self
                .completed
                .wait_while(guard, stop)
                .unwrap_or_else(|p| p.into_inner()),
        };
        *guard
    }

    /// Stops the rebuild (the store is being dropped).
    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        if let Some(gate) = &self.gate {
            gate.wake();
        }
        let _guard = self.complete.lock().unwrap_or_else(|p| p.into_inner());
        self.completed.notify_all();
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn dir_done(&self) {
        let done = self.dirs_done.fetch_add(1, Ordering::AcqRel) + 1;
        let total = self.dirs_total.load(Ordering::Acquire).max(1);
        self.progress_gauge.set(done as f64 / total as f64);
    }

    /// Every file is indexed: lookups trust the index and eviction may run from now on.
    fn mark_indexed(&self) {
        self.complete_flag.store(true, Ordering::Release);
    }

    /// The rebuild is over (and the first eviction done): wakes whoever waits for it.
    fn mark_complete(&self) {
        self.mark_indexed();
        self.complete_gauge.set(1);
        self.progress_gauge.set(1.0);
        let mut guard = self.complete.lock().unwrap_or_else(|p| p.into_inner());
        *guard = true;
        self.completed.notify_all();
    }
}

/// What the rebuild found, for its log line.
#[derive(Default)]
struct Found {
    blobs: usize,
    bytes: u64,
    foreign: usize,
    bad_size_removed: usize,
}

impl Found {
    fn add(&mut self, other: Found) {
        self.blobs += other.blobs;
        self.bytes += other.bytes;
        self.foreign += other.foreign;
        self.bad_size_removed += other.bad_size_removed;
    }
}

/// Starts the rebuild on a thread of its own.
pub(super) fn spawn(disk: Arc<Disk>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("disk-index-{}", disk.name))
        .spawn(move || run(&disk))
}

fn run(disk: &Disk) {
    let started = Instant::now();
    let progress = &disk.progress;
    let dirs = match shard_dirs(disk) {
        Ok(dirs) => dirs,
        Err(e) => {
            // Without a listing nothing more can be found; what is read or written from now on
            // is indexed, and a full disk still evicts (see `Disk::make_room`).
            tracing::error!(store = %disk.name, root = %disk.files.root().display(), error = %e,
                "cannot list the disk store; its index holds only blobs used from now on");
            progress.mark_complete();
            return;
        }
    };
    progress.dirs_total.store(dirs.len(), Ordering::Release);
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Found::default());
    std::thread::scope(|scope| {
        for _ in 0..REBUILD_THREADS.min(dirs.len()) {
            scope.spawn(|| {
                let mut mine = Found::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(dir) = dirs.get(i) else { break };
                    let may_go = progress
                        .gate
                        .as_ref()
                        .is_none_or(|g| g.pass(&progress.cancelled));
                    if !may_go || progress.is_cancelled() {
                        break;
                    }
                    match scan_dir(disk, dir) {
                        Ok(part) => mine.add(part),
                        Err(e) => {
                            tracing::warn!(store = %disk.name, dir = %dir.display(), error = %e,
                            "cannot read shard directory; its blobs are indexed as they are used")
                        }
                    }
                    progress.dir_done();
                    disk.update_gauges();
                }
                found.lock().unwrap_or_else(|p| p.into_inner()).add(mine);
            });
        }
    });
    if progress.is_cancelled() {
        tracing::info!(store = %disk.name, "disk index rebuild stopped (store closed)");
        return;
    }
    let found = found.into_inner().unwrap_or_else(|p| p.into_inner());
    progress.mark_indexed();
    let evicted = disk.enforce_capacity();
    disk.update_gauges();
    progress.mark_complete();
    tracing::info!(
        store = %disk.name,
        root = %disk.files.root().display(),
        found = found.blobs,
        found_bytes = found.bytes,
        blobs = disk.index.len(),
        bytes = disk.index.used_bytes(),
        capacity = disk.space.effective(),
        skipped_foreign = found.foreign,
        removed_bad_size = found.bad_size_removed,
        evicted,
        took_ms = started.elapsed().as_millis() as u64,
        "disk index complete; capacity enforced from now on"
    );
}

/// The directories blob files live in (the root itself when the layout is flat).
fn shard_dirs(disk: &Disk) -> io::Result<Vec<PathBuf>> {
    let root = disk.files.root();
    let sharding = disk.files.sharding();
    if sharding == 0 {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut dirs = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == files::TMP_DIR {
            continue;
        }
        let is_shard =
            name.len() == sharding && name.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
        if is_shard && entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        } else {
            tracing::warn!(path = %entry.path().display(), "not a shard directory of this store; left alone");
        }
    }
    Ok(dirs)
}

fn scan_dir(disk: &Disk, dir: &Path) -> io::Result<Found> {
    let mut found = Found::default();
    let shard = dir
        .strip_prefix(disk.files.root())
        .ok()
        .and_then(|p| p.to_str())
        .unwrap_or_default();
    let now = SystemTime::now();
    for entry in fs::read_dir(dir)? {
        if disk.progress.is_cancelled() {
            break;
        }
        let entry = entry?;
        let file_name = entry.file_name();
        let name = file_name.to_string_lossy();
        if name == files::TMP_DIR && disk.files.sharding() == 0 {
            continue;
        }
        let hash = match BlobHash::parse(&name) {
            Ok(h) if name.len() == HASH_HEX_LEN && name.starts_with(shard) => h,
            _ => {
                found.foreign += 1;
                tracing::warn!(path = %entry.path().display(), "not a blob file of this store; left alone");
                continue;
            }
        };
        let _guard = disk.lock_for(&hash);
        if disk.index.contains(&hash) {
            // Read or written since start: indexed already, with a better recency.
            continue;
        }
        // `fstatat` on the directory entry, under the lock: a file deleted meanwhile is gone.
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot stat blob file; skipped");
                continue;
            }
        };
        if !meta.is_file() {
            found.foreign += 1;
            continue;
        }
        let len = meta.len();
        if len == 0 || len > MAX_BLOB_SIZE as u64 {
            found.bad_size_removed += 1;
            tracing::warn!(path = %entry.path().display(), size = len, "blob file has an impossible size; removed");
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove bad blob file");
            }
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if disk.index.insert_found(&hash, len as u32, age) {
            found.blobs += 1;
            found.bytes += len;
        }
    }
    Ok(found)
}
