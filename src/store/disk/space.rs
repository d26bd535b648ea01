//! Capacity: how many bytes the store may hold, and the filesystem it lives on.
//!
//! A full disk is a capacity, not an outage. `max_size` can be more than the filesystem holds
//! (a wrong setting, other files growing beside the cache, a smaller volume than planned): when
//! a write fails for lack of space, the store lowers its capacity to what it holds at that
//! moment, which is what the filesystem could take, evicts until the write fits and writes
//! again (see `Disk::write`). The lowered capacity holds until the process restarts. Start-up
//! warns when `max_size` exceeds the filesystem's size.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus::IntGauge;

use crate::store::metrics::StoreMetrics;

/// Share of the filesystem used when `max_size` is not configured.
const DEFAULT_FS_SHARE: f64 = 0.9;

/// The store's capacity and the gauges that show it and the filesystem.
pub(super) struct Space {
    effective: AtomicU64,
    /// Whether the first lowering was logged (later ones are not worth a warning each).
    lowered_logged: AtomicBool,
    capacity_gauge: IntGauge,
    fs_size_gauge: IntGauge,
    fs_free_gauge: IntGauge,
}

impl Space {
    /// `max_size` from the config, or 90% of the filesystem under `root`.
    pub(super) fn new(
        name: &str,
        root: &Path,
        max_size: Option<u64>,
        metrics: &StoreMetrics,
    ) -> std::io::Result<Space> {
        let fs_size = filesystem_size(root)?;
        let capacity = match max_size {
            Some(size) => {
                if size > fs_size {
                    tracing::warn!(store = %name, max_size = size, filesystem_size = fs_size,
                        "disk store max_size exceeds the size of its filesystem; \
                         it will hold what the filesystem takes");
                }
                size
            }
            None => {
                let cap = (fs_size as f64 * DEFAULT_FS_SHARE) as u64;
                tracing::warn!(store = %name, capacity = cap, "disk store has no max_size; using 90% of the filesystem");
                cap
            }
        };
        let space = Space {
            effective: AtomicU64::new(capacity),
            lowered_logged: AtomicBool::new(false),
            capacity_gauge: metrics.store_capacity_bytes.with_label_values(&[name]),
            fs_size_gauge: metrics.filesystem_size_bytes.with_label_values(&[name]),
            fs_free_gauge: metrics.filesystem_free_bytes.with_label_values(&[name]),
        };
        space.capacity_gauge.set(to_i64(capacity));
        Ok(space)
    }

    /// Bytes the store may hold.
    pub(super) fn effective(&self) -> u64 {
        self.effective.load(Ordering::Relaxed)
    }

    /// A write failed for lack of space with `held` bytes stored: lowers the capacity to that
    /// (never raises it) and returns the capacity now. Logged once, as a warning.
    pub(super) fn lower_to(&self, name: &str, held: u64) -> u64 {
        let before = self.effective.fetch_min(held, Ordering::Relaxed);
        let now = before.min(held);
        if now < before {
            self.capacity_gauge.set(to_i64(now));
            if !self.lowered_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(store = %name, from = before, to = now,
                    "disk full: capacity lowered to what the filesystem holds, evicting to make room \
                     (logged once; prism_store_capacity_bytes shows the capacity)");
            } else {
                tracing::debug!(store = %name, from = before, to = now, "disk full: capacity lowered");
            }
        }
        now
    }

    /// Refreshes the filesystem gauges.
    pub(super) fn update_gauges(&self, root: &Path) {
        if let Ok(stat) = rustix::fs::statvfs(root) {
            self.fs_size_gauge
                .set(to_i64(stat.f_blocks.saturating_mul(stat.f_frsize)));
            self.fs_free_gauge
                .set(to_i64(stat.f_bavail.saturating_mul(stat.f_frsize)));
        }
    }
}

/// Whether a write failed because the filesystem (or the user's quota) is full.
pub(super) fn is_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

fn filesystem_size(root: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(root).map_err(std::io::Error::from)?;
    Ok(stat.f_blocks.saturating_mul(stat.f_frsize))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
