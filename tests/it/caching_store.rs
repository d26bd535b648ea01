//! The caching store: verification, single-flight, detached fills, negative cache, soft cache
//! failures. The origin is an in-process `TestOrigin` whose gets wait at a gate the test opens,
//! so concurrency is arranged by observable state, not by timing.

use std::sync::Arc;

use crate::common::{
    blob_bytes, metric, wait_until, Families, OriginMode, Store, TestOrigin, TEST_TIMEOUT,
};
use bytes::Bytes;
use prism_lite::config::StoreConfig;
use prism_lite::metrics::Metrics;
use prism_lite::store::caching::CachingStore;
use prism_lite::store::memory::MemoryStore;
use prism_lite::store::{BlobStore, BuildContext, StoreError};
use tokio::time::timeout;

fn ctx(metrics: &Arc<Metrics>) -> BuildContext {
    BuildContext {
        metrics: Arc::clone(metrics),
    }
}

/// The configuration of a caching layer named `edge` (its tiers are given in code).
fn edge() -> Store {
    Store::caching(Store::noop(), Store::noop()).named("edge")
}

/// A caching store configured as `layer` over a 64 MiB memory tier and `origin`.
fn caching(
    origin: Arc<dyn BlobStore>,
    metrics: &Arc<Metrics>,
    layer: Store,
) -> (Arc<CachingStore>, Arc<dyn BlobStore>) {
    let StoreConfig::Caching(c) = layer.config() else {
        unreachable!()
    };
    let StoreConfig::Mem(m) = Store::mem().named("ram").max_size("64MiB").config() else {
        unreachable!()
    };
    let cache: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(&m, &ctx(metrics)));
    (
        Arc::new(CachingStore::new(
            &c,
            Arc::clone(&cache),
            origin,
            &ctx(metrics),
        )),
        cache,
    )
}

#[tokio::test]
async fn miss_fills_cache_then_hits() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(false);
    let hash = origin.insert(blob_bytes(1, 5000));
    let (store, cache) = caching(origin.clone(), &metrics, edge());

    let first = store.get(&hash).await.unwrap();
    assert_eq!(first.data, blob_bytes(1, 5000));
    let names: Vec<_> = first
        .trace
        .stacks
        .iter()
        .map(|s| s.origin_name.to_string())
        .collect();
    assert_eq!(names, ["test-origin", "edge"]);
    // The flight ends only after the cache write, so the blob is in the cache now.
    wait_until("fill finished", || store.fills_in_flight() == 0).await;
    assert!(cache.has(&hash).await.unwrap());

    let second = store.get(&hash).await.unwrap();
    assert_eq!(second.data, first.data);
    assert_eq!(origin.get_count(), 1, "second get must be a cache hit");
    let text = String::from_utf8(metrics.render()).unwrap();
    let labels = [("cache_type", "ram"), ("component", "edge")];
    assert_eq!(metric(&text, "reflector_cache_hit_total", &labels), 1.0);
    assert_eq!(metric(&text, "reflector_cache_miss_total", &labels), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_misses_make_one_origin_get() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(true);
    let data = blob_bytes(2, 100_000);
    let hash = origin.insert(data.clone());
    let (store, _) = caching(origin.clone(), &metrics, edge());

    let mut tasks = Vec::new();
    for _ in 0..100 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move { store.get(&hash).await }));
    }
    // 99 callers parked on the leader's flight, the leader parked at the origin's gate.
    let waiting = metrics
        .stores()
        .cache_waiting_requests_total
        .with_label_values(&["ram", "edge"]);
    wait_until("99 waiters", || waiting.get() == 99).await;
    // The leader's fill runs detached: it may reach the origin after the followers parked.
    wait_until("the leader at the origin", || origin.get_count() >= 1).await;
    assert_eq!(origin.get_count(), 1);
    origin.open_gate();
    for t in tasks {
        let blob = timeout(TEST_TIMEOUT, t).await.unwrap().unwrap().unwrap();
        assert_eq!(blob.data, data);
    }
    assert_eq!(origin.get_count(), 1, "exactly one origin request");
    assert_eq!(waiting.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_disconnecting_does_not_fail_the_others() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(true);
    let data = blob_bytes(3, 70_000);
    let hash = origin.insert(data.clone());
    let (store, cache) = caching(origin.clone(), &metrics, edge());

    let leader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.get(&hash).await })
    };
    wait_until("leader reached the origin", || origin.get_count() == 1).await;
    let followers: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.get(&hash).await })
        })
        .collect();
    let waiting = metrics
        .stores()
        .cache_waiting_requests_total
        .with_label_values(&["ram", "edge"]);
    wait_until("10 waiters", || waiting.get() == 10).await;
    leader.abort(); // the first client hangs up
    assert!(leader.await.unwrap_err().is_cancelled());
    origin.open_gate();
    for f in followers {
        let blob = timeout(TEST_TIMEOUT, f).await.unwrap().unwrap().unwrap();
        assert_eq!(blob.data, data);
    }
    wait_until("fill finished", || store.fills_in_flight() == 0).await;
    assert!(
        cache.has(&hash).await.unwrap(),
        "the detached fill still filled the cache"
    );
    assert_eq!(origin.get_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fill_wakes_every_waiter_with_the_error() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(true);
    let hash = origin.insert(blob_bytes(4, 1000));
    origin.set_mode(OriginMode::Failing);
    let (store, cache) = caching(origin.clone(), &metrics, edge());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.get(&hash).await })
        })
        .collect();
    let waiting = metrics
        .stores()
        .cache_waiting_requests_total
        .with_label_values(&["ram", "edge"]);
    wait_until("19 waiters", || waiting.get() == 19).await;
    origin.open_gate();
    for t in tasks {
        let err = timeout(TEST_TIMEOUT, t)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    }
    assert!(!cache.has(&hash).await.unwrap());
    // Errors are not remembered: the next get asks the origin again and succeeds.
    origin.set_mode(OriginMode::Honest);
    assert!(store.get(&hash).await.is_ok());
    assert_eq!(origin.get_count(), 2);
}

#[tokio::test]
async fn corrupt_origin_blob_is_rejected_and_not_cached() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(false);
    let hash = origin.insert(blob_bytes(5, 4096));
    origin.set_mode(OriginMode::Corrupt);
    let (store, cache) = caching(origin.clone(), &metrics, edge());
    let err = store.get(&hash).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    wait_until("fill finished", || store.fills_in_flight() == 0).await;
    assert!(
        !cache.has(&hash).await.unwrap(),
        "a bad blob must never be cached"
    );
    let text = String::from_utf8(metrics.render()).unwrap();
    // Counted per caching layer here; `reflector_error_total` is the front door's, one per
    // request (the `http_server` module).
    assert_eq!(
        metric(&text, "prism_origin_fetch_total", &[("result", "corrupt")]),
        1.0
    );
}

#[tokio::test]
async fn origin_not_found_is_negatively_cached_until_put() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(false);
    let (store, _) = caching(origin.clone(), &metrics, edge());
    let data = blob_bytes(6, 2048);
    let hash = prism_lite::blob::BlobHash::of(&data);
    for _ in 0..5 {
        assert!(store.get(&hash).await.unwrap_err().is_not_found());
    }
    assert_eq!(
        origin.get_count(),
        1,
        "later misses answered from the negative cache"
    );
    store.put(&hash, data.clone()).await.unwrap();
    assert_eq!(store.get(&hash).await.unwrap().data, data);
}

#[tokio::test]
async fn negative_cache_can_be_disabled() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(false);
    let (store, _) = caching(
        origin.clone(),
        &metrics,
        edge().set("negative_cache_ttl", "0s"),
    );
    let hash = prism_lite::blob::BlobHash::of(b"absent");
    for _ in 0..3 {
        assert!(store.get(&hash).await.unwrap_err().is_not_found());
    }
    assert_eq!(origin.get_count(), 3);
}

/// A cache tier that cannot write (a full disk).
struct FullDisk;

#[async_trait::async_trait]
impl BlobStore for FullDisk {
    fn name(&self) -> &str {
        "full-disk"
    }
    async fn has(&self, _: &prism_lite::blob::BlobHash) -> prism_lite::store::StoreResult<bool> {
        Ok(false)
    }
    async fn get(
        &self,
        _: &prism_lite::blob::BlobHash,
    ) -> prism_lite::store::StoreResult<prism_lite::store::Blob> {
        Err(StoreError::NotFound)
    }
    async fn put(
        &self,
        _: &prism_lite::blob::BlobHash,
        _: Bytes,
    ) -> prism_lite::store::StoreResult<()> {
        Err(StoreError::io(
            "full-disk",
            "writing blob",
            std::io::Error::from_raw_os_error(28), // ENOSPC
        ))
    }
    async fn delete(&self, _: &prism_lite::blob::BlobHash) -> prism_lite::store::StoreResult<()> {
        Ok(())
    }
    async fn has_cached(
        &self,
        _: &prism_lite::blob::BlobHash,
    ) -> prism_lite::store::StoreResult<bool> {
        Ok(false)
    }
    async fn wait_for_fill(&self, _: &prism_lite::blob::BlobHash) {}
    fn list(&self) -> Option<Vec<prism_lite::blob::BlobHash>> {
        None
    }
}

#[tokio::test]
async fn cache_write_failure_still_answers_from_origin() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(false);
    let data = blob_bytes(7, 3000);
    let hash = origin.insert(data.clone());
    let StoreConfig::Caching(c) = edge().config() else {
        unreachable!()
    };
    let store = CachingStore::new(&c, Arc::new(FullDisk), origin.clone(), &ctx(&metrics));
    for _ in 0..2 {
        assert_eq!(store.get(&hash).await.unwrap().data, data);
    }
    wait_until("fills finished", || store.fills_in_flight() == 0).await;
    let writes_failed = metrics
        .stores()
        .store_write_errors_total
        .with_label_values(&["full-disk"]);
    assert_eq!(writes_failed.get(), 2);
}

#[tokio::test]
async fn put_refuses_bytes_that_do_not_match_their_name() {
    let metrics = Arc::new(Metrics::new());
    let origin = TestOrigin::new(false);
    let (store, cache) = caching(origin.clone(), &metrics, edge());
    let data = blob_bytes(8, 4096);
    let wrong = prism_lite::blob::BlobHash::of(b"another blob");
    let err = store.put(&wrong, data.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(
        !cache.has(&wrong).await.unwrap(),
        "nothing reached the cache tier"
    );
    assert!(
        !origin.has(&wrong).await.unwrap(),
        "nothing reached the origin"
    );
    let right = prism_lite::blob::BlobHash::of(&data);
    store.put(&right, data.clone()).await.unwrap();
    let blob = store.get(&right).await.unwrap();
    assert_eq!(blob.data, data);
    assert!(blob.verified, "cache-tier hits are marked verified");
}
