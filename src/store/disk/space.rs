//! Capacity: how many bytes the store may hold, and the filesystem it lives on.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::IntGauge;

use crate::metrics::Metrics;

/// Share of the filesystem used when `max_size` is not configured.
const DEFAULT_FS_SHARE: f64 = 0.9;

/// The store's capacity and the gauges that show it and the filesystem.
pub(super) struct Space {
    effective: AtomicU64,
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
        metrics: &Metrics,
    ) -> std::io::Result<Space> {
        let fs_size = filesystem_size(root)?;
        let capacity = match max_size {
            Some(size) => size,
            None => {
                let cap = (fs_size as f64 * DEFAULT_FS_SHARE) as u64;
                tracing::warn!(store = %name, capacity = cap, "disk store has no max_size; using 90% of the filesystem");
                cap
            }
        };
        let space = Space {
            effective: AtomicU64::new(capacity),
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

fn filesystem_size(root: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(root).map_err(std::io::Error::from)?;
    Ok(stat.f_blocks.saturating_mul(stat.f_frsize))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
