//! A full disk is a capacity, not an outage: a disk tier whose `max_size` exceeds its
//! filesystem keeps caching new blobs, evicting the least recently used to make room.
//!
//! The filesystem is a real one, small on purpose: a 2 MiB tmpfs mounted for the test. That
//! needs root (CI runs the tests as root); it is the only way to get a true ENOSPC from the
//! kernel without a disk image and a loop device (which also need root, plus a free loop
//! device). Without root the test fails with a message saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// A tmpfs mounted on a directory for the life of the guard.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "prism-test"])
            .arg(dir)
            .output()
            .expect("running mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs to fill a real filesystem, which needs root \
             (CI runs the tests as root): mount said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: maps the store still holds do not keep the mount busy.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_disk_tier_on_a_full_small_tmpfs_keeps_caching_new_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(dir.path(), "2m");
    // Configured for far more than the filesystem holds (start-up warns about it).
    let (store, metrics) = open(local(dir.path()).sharding(1).max_size("1GB"));
    let blobs: Vec<_> = (0..60).map(|i| blob_bytes(1400 + i, 100 * 1024)).collect();
    // 6 MB of blobs through a 2 MiB filesystem: every write succeeds and is served.
    for (i, data) in blobs.iter().enumerate() {
        let hash = BlobHash::of(data);
        if let Err(e) = store.put(&hash, data.clone()).await {
            panic!("put {i}: {e}");
        }
        assert_eq!(store.get(&hash).await.unwrap().data, *data, "blob {i}");
    }
    let capacity = store.capacity();
    assert!(
        capacity < 2 * 1024 * 1024,
        "capacity lowered to what the filesystem holds: {capacity}"
    );
    let text = String::from_utf8(metrics.render()).unwrap();
    assert_eq!(
        local_metric(&text, "prism_store_capacity_bytes"),
        capacity as f64
    );
    // Index and files agree, within the lowered capacity, and the newest blobs are the ones kept.
    let on_disk = files_on_disk(dir.path());
    let bytes: u64 = on_disk.iter().map(|(_, s)| s).sum();
    assert_eq!(store.used_bytes(), bytes);
    assert!(bytes <= capacity);
    let names: Vec<String> = on_disk.into_iter().map(|(n, _)| n).collect();
    assert_eq!(sorted_names(&store), names);
    for data in &blobs[55..] {
        assert!(store.has(&BlobHash::of(data)).await.unwrap());
    }
}
