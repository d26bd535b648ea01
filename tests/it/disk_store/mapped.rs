//! Hits served from memory maps: the bytes are the file's, they stay whole while the blob is
//! evicted, deleted or removed by check-integrity, and no file descriptor stays open.

use super::*;

#[tokio::test]
async fn bytes_served_are_the_files_bytes_mapped_or_read() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(local(dir.path()).sharding(2));
    // Small blobs are read, larger ones mapped (16 KiB and up); the second get of each comes
    // from the kept map.
    let max = prism_lite::blob::MAX_BLOB_SIZE;
    for (i, len) in [1, 100, 16 * 1024 - 1, 16 * 1024, 100_000, max]
        .into_iter()
        .enumerate()
    {
        let data = blob_bytes(1200 + i as u64, len);
        let hash = BlobHash::of(&data);
        store.put(&hash, data.clone()).await.unwrap();
        for _ in 0..2 {
            let got = store.get(&hash).await.unwrap().data;
            assert_eq!(
                got,
                std::fs::read(store.path_of(&hash)).unwrap(),
                "{len} bytes"
            );
            assert_eq!(got, data, "{len} bytes");
        }
    }
}

#[tokio::test]
async fn bytes_in_flight_stay_whole_when_their_blob_is_evicted_deleted_or_found_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    // Room for two 2 MiB blobs.
    let (store, _) = open(local(dir.path()).sharding(1).max_size("5MiB"));
    let max = prism_lite::blob::MAX_BLOB_SIZE;
    let a = blob_bytes(1300, max);
    let ha = BlobHash::of(&a);
    let check = |held: &bytes::Bytes, what: &str| {
        assert!(held == &a, "{what}: bytes changed under the reader");
        prism_lite::blob::verify(held, &ha).unwrap();
    };

    // Deleted while a response holds the bytes.
    store.put(&ha, a.clone()).await.unwrap();
    let held = store.get(&ha).await.unwrap().data;
    store.delete(&ha).await.unwrap();
    assert!(!store.path_of(&ha).exists());
    check(&held, "delete");

    // Evicted by two newer blobs.
    store.put(&ha, a.clone()).await.unwrap();
    let held = store.get(&ha).await.unwrap().data;
    for seed in [1301, 1302] {
        let d = blob_bytes(seed, max);
        store.put(&BlobHash::of(&d), d).await.unwrap();
    }
    assert!(!store.has(&ha).await.unwrap(), "evicted");
    check(&held, "eviction");

    // Found corrupt by check-integrity (the file now holds other bytes of the same size, as a
    // disk error would leave it), and removed.
    store.put(&ha, a.clone()).await.unwrap();
    let held = store.get(&ha).await.unwrap().data;
    let rotten = dir.path().join("rotten");
    std::fs::write(&rotten, blob_bytes(1303, max)).unwrap();
    std::fs::rename(&rotten, store.path_of(&ha)).unwrap();
    let report = store.check_integrity(|_| ());
    assert_eq!(report.corrupt_removed, vec![ha]);
    check(&held, "check-integrity");
    assert!(store.get(&ha).await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_blobs_in_flight_hold_no_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    // 2,000 distinct blob files of 16 KiB: each one is served from a map. (Named by the hash of
    // their number, not of their bytes: the store trusts its own files on read, and hashing
    // 32 MB in a debug build would take most of this test's time.)
    let blobs: Vec<_> = (0..2000u32)
        .map(|i| {
            let mut data = vec![(i % 251) as u8; 16 * 1024];
            data[..4].copy_from_slice(&i.to_le_bytes());
            bytes::Bytes::from(data)
        })
        .collect();
    let hashes: Vec<_> = (0..2000u64)
        .map(|i| BlobHash::of(&i.to_le_bytes()))
        .collect();
    for (data, hash) in blobs.iter().zip(&hashes) {
        let path = dir.path().join(hash.sharded_path(2));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let (store, _) = open(local(dir.path()).sharding(2));
    let store = Arc::new(store);
    // All of them in flight at once: every response holds its bytes.
    let gets = hashes.iter().map(|hash| {
        let store = Arc::clone(&store);
        let hash = *hash;
        async move { store.get(&hash).await.unwrap().data }
    });
    let held = futures_util::future::join_all(gets).await;
    for (got, data) in held.iter().zip(&blobs) {
        assert_eq!(got, data);
    }
    let ours = open_descriptors_under(dir.path());
    assert_eq!(ours, 0, "descriptors still open on blob files");
}

/// This process's open file descriptors on files under `dir` (other tests' files do not count).
fn open_descriptors_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}
