//! `check-integrity`: re-hash every blob file and remove the ones whose bytes no longer match
//! their name.

use std::fs;
use std::io;

use rayon::prelude::*;

use super::DiskStore;
use crate::blob::BlobHash;

/// What [`DiskStore::check_integrity`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IntegrityReport {
    pub checked: usize,
    pub bytes: u64,
    pub corrupt_removed: Vec<BlobHash>,
}

impl DiskStore {
    /// Re-hashes every blob file (in parallel) and removes the ones whose bytes no longer match
    /// their name. Blocking: waits for the start-up index rebuild, then works through the index
    /// one stripe at a time (so millions of blobs never mean millions of hashes in memory at
    /// once). `progress` is called with each file's size as it is checked.
    ///
    /// Safe while a blobcache process uses the same directory: a blob removed here is a miss
    /// there (the file is gone), which refetches it from the origin. A response that process
    /// is sending keeps the bytes it holds (removal is an unlink).
    pub fn check_integrity(&self, progress: impl Fn(u64) + Sync) -> IntegrityReport {
        let disk = &self.disk;
        disk.progress.wait(None);
        let mut report = IntegrityReport::default();
        disk.index.for_each_stripe(|hashes| {
            let results: Vec<(u64, Option<BlobHash>)> = hashes
                .par_iter()
                .map(|hash| {
                    let path = disk.files.path_of(hash);
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
            for (size, corrupt) in results {
                report.checked += 1;
                report.bytes += size;
                if let Some(hash) = corrupt {
                    {
                        let _guard = disk.lock_for(&hash);
                        disk.index.remove(&hash);
                        disk.maps.forget(&hash);
                        if let Err(e) = disk.files.remove(&hash) {
                            tracing::warn!(%hash, error = %e, "cannot remove corrupt blob");
                        }
                    }
                    tracing::warn!(%hash, "corrupt blob removed");
                    report.corrupt_removed.push(hash);
                }
            }
        });
        disk.update_gauges();
        report
    }
}
