//! Serving while the index is rebuilt in the background, held at known points by a
//! `RebuildGate` (no timing): hits before the index has them, fills kept, deletes not undone,
//! eviction once complete, restarts mid-rebuild, exact accounting.

use super::*;

#[tokio::test]
async fn blobs_are_served_before_the_index_has_them_and_fills_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk: Vec<_> = (0..30).map(|i| blob_bytes(700 + i, 2000)).collect();
    write_files(dir.path(), 2, &on_disk);
    let (store, metrics, gate) = open_held(local(dir.path()).sharding(2).max_size("1MB"));
    assert!(!store.is_indexed());
    assert_eq!(store.used_bytes(), 0, "nothing read yet");
    let text = String::from_utf8(metrics.render()).unwrap();
    assert_eq!(local_metric(&text, "prism_disk_index_complete"), 0.0);

    // Hits from the first moment: the file is looked at directly.
    for data in &on_disk[..10] {
        let hash = BlobHash::of(data);
        assert!(store.has(&hash).await.unwrap());
        assert_eq!(store.get(&hash).await.unwrap().data, *data);
    }
    // A blob that is not there is a miss, and a fill of it (as a caching store does) is kept.
    let fill = blob_bytes(799, 3000);
    let fill_hash = BlobHash::of(&fill);
    assert!(store.get(&fill_hash).await.unwrap_err().is_not_found());
    assert!(!store.has(&fill_hash).await.unwrap());
    store.put(&fill_hash, fill.clone()).await.unwrap();
    assert_eq!(store.get(&fill_hash).await.unwrap().data, fill);
    // A delete before the rebuild reaches the blob's directory is not undone by it.
    let gone = BlobHash::of(&on_disk[20]);
    store.delete(&gone).await.unwrap();

    gate.release();
    assert!(store.wait_indexed(Some(TEST_TIMEOUT)));
    assert_eq!(store.get(&fill_hash).await.unwrap().data, fill, "fill kept");
    assert!(
        !store.has(&gone).await.unwrap(),
        "deleted blob stays deleted"
    );
    for (i, data) in on_disk.iter().enumerate().filter(|(i, _)| *i != 20) {
        assert_eq!(
            store.get(&BlobHash::of(data)).await.unwrap().data,
            *data,
            "blob {i}"
        );
    }
    assert_eq!(sorted_names(&store).len(), 30, "29 found + 1 filled");
    let text = String::from_utf8(metrics.render()).unwrap();
    assert_eq!(local_metric(&text, "prism_disk_index_complete"), 1.0);
    assert_eq!(local_metric(&text, "prism_disk_index_progress_ratio"), 1.0);
}

#[tokio::test]
async fn eviction_waits_for_the_index_then_capacity_holds() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<_> = (0..10).map(|i| blob_bytes(800 + i, 1000)).collect();
    write_files(dir.path(), 1, &old);
    let (store, metrics, gate) = open_held(local(dir.path()).sharding(1).max_size("5000"));
    // Two writes while the index is incomplete: over capacity, but nothing is evicted yet
    // (the store does not know its total size).
    let new: Vec<_> = (0..2).map(|i| blob_bytes(850 + i, 1000)).collect();
    for data in &new {
        store.put(&BlobHash::of(data), data.clone()).await.unwrap();
    }
    assert_eq!(files_on_disk(dir.path()).len(), 12);

    gate.release();
    assert!(store.wait_indexed(Some(TEST_TIMEOUT)));
    let on_disk = files_on_disk(dir.path());
    let bytes: u64 = on_disk.iter().map(|(_, s)| s).sum();
    assert_eq!(bytes, 5000, "evicted down to capacity once indexed");
    assert_eq!(store.used_bytes(), 5000);
    let names: Vec<String> = on_disk.into_iter().map(|(n, _)| n).collect();
    assert_eq!(sorted_names(&store), names, "index and files agree");
    for data in &new {
        assert!(
            store.has(&BlobHash::of(data)).await.unwrap(),
            "blobs written since start are the most recent: kept"
        );
    }
    let text = String::from_utf8(metrics.render()).unwrap();
    assert_eq!(local_metric(&text, "reflector_cache_evict_total"), 7.0);
    // And from now on every write keeps it.
    let more = blob_bytes(860, 1000);
    store.put(&BlobHash::of(&more), more).await.unwrap();
    assert!(store.used_bytes() <= 5000);
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_rebuild_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<_> = (0..48)
        .map(|i| blob_bytes(900 + i, 1000 + i as usize))
        .collect();
    write_files(dir.path(), 1, &blobs);
    {
        // Four of the sixteen shard directories read, then the process goes away.
        let gate = RebuildGate::after(4);
        let (store, _) = open_with(
            local(dir.path()).sharding(1),
            OpenOptions {
                rebuild_gate: Some(gate.clone()),
            },
        );
        assert!(gate.wait_until_held(TEST_TIMEOUT));
        assert!(!store.is_indexed());
    }
    let (store, _) = open(local(dir.path()).sharding(1));
    assert_eq!(sorted_names(&store).len(), 48);
    for data in &blobs {
        assert_eq!(store.get(&BlobHash::of(data)).await.unwrap().data, *data);
    }
    let total: u64 = blobs.iter().map(|b| b.len() as u64).sum();
    assert_eq!(store.used_bytes(), total);
}

#[tokio::test]
async fn after_a_rebuild_the_index_accounts_exactly_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let found: Vec<_> = (0..40)
        .map(|i| blob_bytes(1000 + i, 500 + 37 * i as usize))
        .collect();
    write_files(dir.path(), 2, &found);
    std::fs::write(dir.path().join("NOTES"), b"an operator's file").unwrap();
    let (store, _, gate) = open_held(local(dir.path()).sharding(2));
    // Reads, writes and deletes race the rebuild (which is released half-way through them).
    for (i, data) in found.iter().enumerate().take(10) {
        let hash = BlobHash::of(data);
        if i % 2 == 0 {
            store.delete(&hash).await.unwrap();
        } else {
            store.get(&hash).await.unwrap();
        }
    }
    gate.release();
    for i in 0..10 {
        let data = blob_bytes(1100 + i, 700);
        store.put(&BlobHash::of(&data), data).await.unwrap();
    }
    assert!(store.wait_indexed(Some(TEST_TIMEOUT)));
    let on_disk = files_on_disk(dir.path());
    let file_bytes: u64 = on_disk
        .iter()
        .filter(|(n, _)| n != "NOTES")
        .map(|(_, s)| s)
        .sum();
    assert_eq!(store.used_bytes(), file_bytes);
    let names: Vec<String> = on_disk
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != "NOTES")
        .collect();
    assert_eq!(names.len(), 45, "40 found - 5 deleted + 10 written");
    assert_eq!(sorted_names(&store), names);
}
