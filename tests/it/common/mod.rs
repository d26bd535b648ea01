//! Shared test support: fixtures, blobs, a controllable origin, caches and stores built for a
//! test ([`Cache`], [`Store`]), metrics scraping.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prism_lite::blob::BlobHash;
use prism_lite::metrics::Metrics;
use prism_lite::server::metrics::ServerMetrics;
use prism_lite::store::metrics::StoreMetrics;
use prism_lite::store::{Blob, BlobStore, StoreError, StoreResult};
use tokio::sync::{Notify, Semaphore};

mod browser;
mod cache;
mod gateway;
mod h3;
mod haproxy;
mod lbry_api;
mod net;
mod process;
mod relay;
pub use browser::*;
pub use cache::*;
pub use gateway::*;
pub use h3::*;
pub use haproxy::*;
pub use lbry_api::*;
pub use net::*;
pub use process::*;
pub use relay::*;

/// The metric families tests read by handle, reached from the process's [`Metrics`]
/// (`running.metrics.doors().peer_download_total`).
pub trait Families {
    /// The download doors' metrics.
    fn doors(&self) -> Arc<ServerMetrics>;
    /// The stores' metrics.
    fn stores(&self) -> Arc<StoreMetrics>;
}

impl Families for Metrics {
    fn doors(&self) -> Arc<ServerMetrics> {
        self.family()
    }

    fn stores(&self) -> Arc<StoreMetrics> {
        self.family()
    }
}

/// Upper bound for any single wait in a test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// `../shared/fixtures/streams`, or `None` (with a message) when the fixtures are absent.
pub fn fixture_streams() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/streams"
    ));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: ../shared/fixtures not found");
        None
    }
}

/// Every fixture blob as (hash, bytes).
pub fn fixture_blobs() -> Vec<(BlobHash, Bytes)> {
    let Some(dir) = fixture_streams() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stream in std::fs::read_dir(dir).expect("read fixtures") {
        let blobs = stream.expect("entry").path().join("blobs");
        for f in std::fs::read_dir(blobs).expect("read blobs") {
            let path = f.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let data = Bytes::from(std::fs::read(&path).expect("read blob"));
            out.push((
                BlobHash::parse(&name).expect("fixture name is a hash"),
                data,
            ));
        }
    }
    out.sort_by_key(|(h, _)| *h);
    out
}

/// Deterministic pseudo-random blob bytes of `len` (distinct per `seed`).
pub fn blob_bytes(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// A blob of [`blob_bytes`]`(seed, len)` with its hash.
pub fn blob(seed: u64, len: usize) -> (BlobHash, Bytes) {
    let data = blob_bytes(seed, len);
    (BlobHash::of(&data), data)
}

/// How the test origin answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OriginMode {
    Honest,
    /// Serves other bytes than the hash names.
    Corrupt,
    /// Answers every get with an error.
    Failing,
}

/// An in-process origin the test controls: it holds blobs, counts gets, and can hold every get
/// at a gate until the test opens it (so concurrency tests need no sleeps).
pub struct TestOrigin {
    blobs: std::sync::Mutex<std::collections::HashMap<BlobHash, Bytes>>,
    pub gets: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
    /// Signalled each time a get arrives at the origin.
    pub arrived: Notify,
    mode: std::sync::Mutex<OriginMode>,
}

impl TestOrigin {
    pub fn new(gated: bool) -> Arc<TestOrigin> {
        Arc::new(TestOrigin {
            blobs: Default::default(),
            gets: AtomicUsize::new(0),
            gate: gated.then(|| Arc::new(Semaphore::new(0))),
            arrived: Notify::new(),
            mode: std::sync::Mutex::new(OriginMode::Honest),
        })
    }

    pub fn insert(&self, data: Bytes) -> BlobHash {
        let hash = BlobHash::of(&data);
        self.blobs.lock().unwrap().insert(hash, data);
        hash
    }

    pub fn set_mode(&self, mode: OriginMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Lets every waiting (and future) get through.
    pub fn open_gate(&self) {
        if let Some(g) = &self.gate {
            g.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    pub fn get_count(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl BlobStore for TestOrigin {
    fn name(&self) -> &str {
        "test-origin"
    }
    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        Ok(self.blobs.lock().unwrap().contains_key(hash))
    }
    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.arrived.notify_waiters();
        if let Some(g) = &self.gate {
            let _permit = g.acquire().await.expect("gate open");
        }
        let mode = *self.mode.lock().unwrap();
        if mode == OriginMode::Failing {
            return Err(StoreError::unavailable("test-origin", "origin is down"));
        }
        let data = self.blobs.lock().unwrap().get(hash).cloned();
        match data {
            Some(d) if mode == OriginMode::Corrupt => {
                let mut bad = d.to_vec();
                bad[0] ^= 0xff;
                Ok(Blob::served_by(
                    Bytes::from(bad),
                    Duration::ZERO,
                    "test-origin",
                ))
            }
            Some(d) => Ok(Blob::served_by(d, Duration::ZERO, "test-origin")),
            None => Err(StoreError::NotFound),
        }
    }
    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        self.blobs.lock().unwrap().insert(*hash, data);
        Ok(())
    }
    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.blobs.lock().unwrap().remove(hash);
        Ok(())
    }
    async fn has_cached(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }
    async fn wait_for_fill(&self, _: &BlobHash) {}
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}

/// The value of one sample in Prometheus text output, e.g.
/// `metric(&text, "reflector_cache_hit_total", &[("component", "edge")])`. Missing = 0.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let all_match = labels.iter().all(|(k, v)| {
            series_labels
                .split(',')
                .any(|kv| kv == format!("{k}=\"{v}\""))
        });
        if all_match {
            total += value.parse::<f64>().expect("metric value");
        }
    }
    total
}

/// Polls `cond` until true, yielding to the runtime between checks; panics after `TEST_TIMEOUT`.
/// Used to wait for *observable state* (a gauge, a counter), never as a fixed delay.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
