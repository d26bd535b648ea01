//! The disk LRU store against a real directory: atomic writes, crash leftovers, capacity and
//! eviction (files and index agree), recency, restart, files it must not trust, and serving
//! while the index is rebuilt in the background (held at known points by a `RebuildGate`).

mod full;
mod mapped;
mod rebuild;

use std::path::Path;
use std::sync::Arc;

use crate::common::{blob_bytes, metric, Store, TEST_TIMEOUT};
use prism_lite::blob::BlobHash;
use prism_lite::config::StoreConfig;
use prism_lite::metrics::Metrics;
use prism_lite::store::disk::{DiskStore, OpenOptions, RebuildGate};
use prism_lite::store::{BlobStore, BuildContext};

/// The disk store at `dir` every test here opens: named `local`, the loader's defaults.
fn local(dir: &Path) -> Store {
    Store::disk(dir).named("local")
}

/// Opens the store and waits for its start-up index rebuild.
fn open(disk: Store) -> (DiskStore, Arc<Metrics>) {
    let (store, metrics) = open_with(disk, OpenOptions::default());
    assert!(store.wait_indexed(Some(TEST_TIMEOUT)), "index rebuilt");
    (store, metrics)
}

/// Opens the store; its index rebuild runs in the background (held by `options`' gate).
fn open_with(disk: Store, options: OpenOptions) -> (DiskStore, Arc<Metrics>) {
    let StoreConfig::Disk(d) = disk.config() else {
        unreachable!()
    };
    let metrics = Arc::new(Metrics::new());
    let ctx = BuildContext {
        metrics: Arc::clone(&metrics),
    };
    (DiskStore::open_with(&d, &ctx, options).unwrap(), metrics)
}

/// Opens the store with its rebuild held before it reads any directory.
fn open_held(disk: Store) -> (DiskStore, Arc<Metrics>, RebuildGate) {
    let gate = RebuildGate::closed();
    let (store, metrics) = open_with(
        disk,
        OpenOptions {
            rebuild_gate: Some(gate.clone()),
        },
    );
    assert!(gate.wait_until_held(TEST_TIMEOUT), "rebuild held");
    (store, metrics, gate)
}

/// A metric of the store named `local` (every store here) from a `/metrics` rendering.
fn local_metric(text: &str, name: &str) -> f64 {
    metric(text, name, &[("component", "local")])
}

/// Writes blob files the way reflector.go (or an earlier run) left them.
fn write_files(dir: &Path, sharding: usize, blobs: &[bytes::Bytes]) {
    for data in blobs {
        let path = dir.join(BlobHash::of(data).sharded_path(sharding));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

fn sorted_names(store: &DiskStore) -> Vec<String> {
    let mut names: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|h| h.to_string())
        .collect();
    names.sort();
    names
}

/// Every regular file under `dir` except the temp dir, as (name, size).
fn files_on_disk(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.file_name().unwrap() == ".tmp" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.file_name().unwrap().to_string_lossy().into(),
                    e.metadata().unwrap().len(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn put_get_delete_with_sharded_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(local(dir.path()).sharding(2));
    let data = blob_bytes(1, 10_000);
    let hash = BlobHash::of(&data);
    assert!(store.get(&hash).await.unwrap_err().is_not_found());
    store.put(&hash, data.clone()).await.unwrap();
    let hex = hash.to_string();
    assert!(
        dir.path().join(&hex[..2]).join(&hex).is_file(),
        "reflector.go layout"
    );
    assert_eq!(store.get(&hash).await.unwrap().data, data);
    assert!(store.has(&hash).await.unwrap());
    store.delete(&hash).await.unwrap();
    assert!(!store.has(&hash).await.unwrap());
    assert!(files_on_disk(dir.path()).is_empty());
    // Deleting again is fine.
    store.delete(&hash).await.unwrap();
}

#[tokio::test]
async fn oversized_and_empty_blobs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(local(dir.path()));
    let big = bytes::Bytes::from(vec![1u8; prism_lite::blob::MAX_BLOB_SIZE + 1]);
    assert!(store.put(&BlobHash::of(&big), big).await.is_err());
    let empty = bytes::Bytes::new();
    assert!(store.put(&BlobHash::of(&empty), empty).await.is_err());
    assert!(files_on_disk(dir.path()).is_empty());
}

#[tokio::test]
async fn crash_leftovers_are_swept_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = blob_bytes(2, 5000);
    let hash = BlobHash::of(&data);
    // A crash mid-write leaves a partial temp file named after the blob.
    let tmp = dir.path().join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(format!("{hash}.123.0")), &data[..100]).unwrap();
    std::fs::write(tmp.join(hash.to_string()), &data[..100]).unwrap();
    let (store, _) = open(local(dir.path()));
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp files swept"
    );
    assert!(store.get(&hash).await.unwrap_err().is_not_found());
    assert!(!store.has(&hash).await.unwrap());
}

#[tokio::test]
async fn capacity_is_never_exceeded_and_evicted_files_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // Room for exactly five 1000-byte blobs.
    let (store, metrics) = open(local(dir.path()).max_size("5000").sharding(1));
    let blobs: Vec<_> = (0..12).map(|i| blob_bytes(100 + i, 1000)).collect();
    for (i, data) in blobs.iter().enumerate() {
        store.put(&BlobHash::of(data), data.clone()).await.unwrap();
        // Keep blob 0 hot: it must survive every eviction.
        assert!(
            store.get(&BlobHash::of(&blobs[0])).await.is_ok(),
            "after put {i}"
        );
        let on_disk = files_on_disk(dir.path());
        let bytes: u64 = on_disk.iter().map(|(_, s)| s).sum();
        assert!(bytes <= 5000, "after put {i}: {bytes} bytes on disk");
        assert!(store.used_bytes() <= 5000);
        // Files and index agree exactly.
        let listed: Vec<String> = {
            let mut l: Vec<_> = store
                .list()
                .unwrap()
                .iter()
                .map(|h| h.to_string())
                .collect();
            l.sort();
            l
        };
        let names: Vec<String> = on_disk.into_iter().map(|(n, _)| n).collect();
        assert_eq!(listed, names, "after put {i}");
    }
    assert!(
        store.has(&BlobHash::of(&blobs[0])).await.unwrap(),
        "hot blob kept"
    );
    assert!(
        store.has(&BlobHash::of(&blobs[11])).await.unwrap(),
        "newest kept"
    );
    assert!(
        !store.has(&BlobHash::of(&blobs[1])).await.unwrap(),
        "cold blob evicted"
    );
    let text = String::from_utf8(metrics.render()).unwrap();
    assert_eq!(local_metric(&text, "reflector_cache_evict_total"), 7.0);
    assert_eq!(local_metric(&text, "prism_store_size_bytes"), 5000.0);
    assert_eq!(local_metric(&text, "prism_store_blobs"), 5.0);
}

#[tokio::test]
async fn restart_rebuilds_the_index_with_content_intact() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<_> = (0..20)
        .map(|i| blob_bytes(200 + i, 3000 + i as usize))
        .collect();
    {
        let (store, _) = open(local(dir.path()).sharding(2).max_size("1MB"));
        for d in &blobs {
            store.put(&BlobHash::of(d), d.clone()).await.unwrap();
        }
    }
    let (store, _) = open(local(dir.path()).sharding(2).max_size("1MB"));
    assert_eq!(store.list().unwrap().len(), 20);
    let expected: u64 = blobs.iter().map(|b| b.len() as u64).sum();
    assert_eq!(store.used_bytes(), expected);
    for d in &blobs {
        assert_eq!(store.get(&BlobHash::of(d)).await.unwrap().data, *d);
    }
}

#[tokio::test]
async fn restart_with_a_smaller_capacity_evicts_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<_> = (0..6).map(|i| blob_bytes(300 + i, 1000)).collect();
    let base = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    {
        let (store, _) = open(local(dir.path()));
        for (i, d) in blobs.iter().enumerate() {
            let hash = BlobHash::of(d);
            store.put(&hash, d.clone()).await.unwrap();
            // Give each file a distinct age: blob 0 oldest.
            let f = std::fs::File::options()
                .write(true)
                .open(store.path_of(&hash))
                .unwrap();
            f.set_modified(base + std::time::Duration::from_secs(i as u64 * 60))
                .unwrap();
        }
    }
    let (store, _) = open(local(dir.path()).max_size("3000"));
    let kept: Vec<bool> = {
        let mut v = Vec::new();
        for d in &blobs {
            v.push(store.has(&BlobHash::of(d)).await.unwrap());
        }
        v
    };
    assert_eq!(kept, [false, false, false, true, true, true]);
    assert_eq!(
        files_on_disk(dir.path()).len(),
        3,
        "evicted files deleted at start"
    );
}

#[tokio::test]
async fn untrusted_files_are_skipped_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    let good = blob_bytes(400, 2000);
    let good_hash = BlobHash::of(&good);
    let hex = good_hash.to_string();
    std::fs::create_dir_all(dir.path().join(&hex[..2])).unwrap();
    std::fs::write(dir.path().join(&hex[..2]).join(&hex), &good).unwrap();
    // An operator's note: not ours, left alone.
    std::fs::write(dir.path().join("README.txt"), b"hello").unwrap();
    // A blob-named empty file: impossible size, removed.
    let empty_hash = BlobHash::of(b"x").to_string();
    std::fs::create_dir_all(dir.path().join(&empty_hash[..2])).unwrap();
    let empty_path = dir.path().join(&empty_hash[..2]).join(&empty_hash);
    std::fs::write(&empty_path, b"").unwrap();
    // A blob in the wrong shard directory: skipped, never served.
    let stray = BlobHash::of(b"stray").to_string();
    let wrong = if &stray[..2] == "00" { "01" } else { "00" };
    std::fs::create_dir_all(dir.path().join(wrong)).unwrap();
    std::fs::write(dir.path().join(wrong).join(&stray), b"stray").unwrap();

    let (store, _) = open(local(dir.path()).sharding(2));
    assert_eq!(store.list().unwrap(), vec![good_hash]);
    assert_eq!(store.get(&good_hash).await.unwrap().data, good);
    assert!(dir.path().join("README.txt").exists());
    assert!(!empty_path.exists());
    assert!(store
        .get(&BlobHash::parse(&stray).unwrap())
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn a_file_changed_behind_our_back_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(local(dir.path()));
    let data = blob_bytes(500, 4000);
    let hash = BlobHash::of(&data);
    store.put(&hash, data).await.unwrap();
    std::fs::write(store.path_of(&hash), b"truncated").unwrap();
    assert!(store.get(&hash).await.unwrap_err().is_not_found());
    assert!(!store.has(&hash).await.unwrap(), "dropped from the index");
    // Removed by someone else entirely: same.
    let data2 = blob_bytes(501, 4000);
    let hash2 = BlobHash::of(&data2);
    store.put(&hash2, data2).await.unwrap();
    std::fs::remove_file(store.path_of(&hash2)).unwrap();
    assert!(store.get(&hash2).await.unwrap_err().is_not_found());
    assert!(!store.has(&hash2).await.unwrap());
}

#[tokio::test]
async fn write_failure_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(local(dir.path()).sharding(2));
    let data = blob_bytes(600, 4000);
    let hash = BlobHash::of(&data);
    // Make the shard directory impossible to create: a plain file sits where it must go.
    let hex = hash.to_string();
    std::fs::write(dir.path().join(&hex[..2]), b"in the way").unwrap();
    let err = store.put(&hash, data).await.unwrap_err();
    assert!(err.to_string().contains("writing blob"), "{err}");
    assert!(!store.has(&hash).await.unwrap());
    assert_eq!(
        std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn concurrent_puts_and_reads_keep_index_and_files_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(local(dir.path()).max_size("20000").sharding(1));
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..25u64 {
                let data = blob_bytes(1000 + (worker * 7 + i) % 40, 1000);
                let hash = BlobHash::of(&data);
                store.put(&hash, data.clone()).await.unwrap();
                if let Ok(b) = store.get(&hash).await {
                    assert_eq!(b.data, data, "never a wrong byte");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut listed: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|h| h.to_string())
        .collect();
    listed.sort();
    let names: Vec<String> = files_on_disk(dir.path())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(listed, names);
    assert!(store.used_bytes() <= 20000);
}
