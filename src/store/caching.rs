//! `caching`: a cache tier in front of an origin.
//!
//! get = cache, else origin -> verify SHA-384 -> answer -> fill the cache.
//!
//! - **Never a wrong byte.** Origin bytes are verified before anyone sees them; a blob that fails
//!   is an origin error, counted, and neither cached nor served.
//! - **One origin request per hash.** Concurrent misses join one [`flight`](super::flight). The
//!   fill runs in a detached task, so the client that started it can disconnect without failing
//!   the others; waiters are answered the moment the origin bytes are verified, before the cache
//!   write finishes, and the flight stays open until the write is done so nobody re-fetches.
//! - **Cache trouble is not client trouble.** A cache read error is treated as a miss and a cache
//!   write error (disk full) is logged and counted; the client still gets the origin's bytes.
//! - **Short negative cache.** An origin "not found" is remembered for a while (reflector.go:
//!   5 minutes / 2000 entries) so a storm of requests for a missing blob does not hammer the
//!   origin. A `put` of that blob clears it.
//! - **`has` like `get`.** An availability check (HTTP HEAD, HTTP/3 `/has`, the peer door's
//!   `requested_blobs`) that misses the cache asks the origin through its own single-flight
//!   table and shares the negative cache with `get`: a HEAD storm for one unknown hash costs
//!   one origin request, and repeating it costs none while the answer is remembered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::sync::Cache;
use prometheus::{IntCounter, IntGauge};

use crate::blob::{verify, BlobHash};
use crate::config::CachingConfig;
use crate::metrics::{GaugeGuard, Metrics, DIRECTION_DOWNLOAD};
use crate::store::flight::{wait_limit_for, Flights};
use crate::store::metrics::StoreMetrics;
use crate::store::{Blob, BlobStore, BuildContext, StoreError, StoreResult};

pub struct CachingStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    cache: Arc<dyn BlobStore>,
    origin: Arc<dyn BlobStore>,
    flights: Arc<Flights<BlobHash, StoreResult<Blob>>>,
    /// Origin availability checks in flight (separate from fills: the answer is a bool).
    has_flights: Arc<Flights<BlobHash, StoreResult<bool>>>,
    not_found: Option<Cache<BlobHash, ()>>,
    metrics: Arc<Metrics>,
    store_metrics: Arc<StoreMetrics>,
    counters: Counters,
}

/// Label-resolved metric handles, looked up once instead of per request.
struct Counters {
    hits: IntCounter,
    misses: IntCounter,
    origin_in_flight: IntGauge,
    waiting: IntGauge,
    fetch_ok: IntCounter,
    fetch_not_found: IntCounter,
    fetch_error: IntCounter,
    fetch_corrupt: IntCounter,
    write_errors: IntCounter,
}

impl CachingStore {
    pub fn new(
        config: &CachingConfig,
        cache: Arc<dyn BlobStore>,
        origin: Arc<dyn BlobStore>,
        ctx: &BuildContext,
    ) -> CachingStore {
        let name: Arc<str> = Arc::from(config.name());
        let m = ctx.store_metrics();
        let labels = [cache.name(), &*name];
        let counters = Counters {
            hits: m.cache_hit_total.with_label_values(&labels),
            misses: m.cache_miss_total.with_label_values(&labels),
            origin_in_flight: m.cache_origin_requests_total.with_label_values(&labels),
            waiting: m.cache_waiting_requests_total.with_label_values(&labels),
            fetch_ok: m.origin_fetch_total.with_label_values(&[&name, "ok"]),
            fetch_not_found: m
                .origin_fetch_total
                .with_label_values(&[&name, "not_found"]),
            fetch_error: m.origin_fetch_total.with_label_values(&[&name, "error"]),
            fetch_corrupt: m.origin_fetch_total.with_label_values(&[&name, "corrupt"]),
            write_errors: m
                .store_write_errors_total
                .with_label_values(&[cache.name()]),
        };
        let not_found = (!config.negative_cache_ttl.is_zero() && config.negative_cache_size > 0)
            .then(|| {
                Cache::builder()
                    .max_capacity(config.negative_cache_size)
                    .time_to_live(config.negative_cache_ttl)
                    .build()
            });
        CachingStore {
            inner: Arc::new(Inner {
                name,
                cache,
                origin,
                flights: Flights::new(wait_limit_for(&config.origin)),
                has_flights: Flights::new(wait_limit_for(&config.origin)),
                not_found,
                metrics: Arc::clone(&ctx.metrics),
                store_metrics: m,
                counters,
            }),
        }
    }

    /// Fills in flight right now (for tests and status).
    pub fn fills_in_flight(&self) -> usize {
        self.inner.flights.len()
    }
}

impl Inner {
    async fn get_from_cache(&self, hash: &BlobHash) -> Option<Blob> {
        let start = Instant::now();
        match self.cache.get(hash).await {
            Ok(blob) => {
                self.record_speed("cache", blob.data.len(), start.elapsed());
                Some(blob)
            }
            Err(StoreError::NotFound) => None,
            Err(err) => {
                tracing::warn!(store = %self.name, %hash, error = %err, "cache read failed; treating as a miss");
                self.metrics.error(DIRECTION_DOWNLOAD, err.kind());
                None
            }
        }
    }

    /// Joins or leads the origin fetch for `hash`.
    async fn fill(self: &Arc<Self>, hash: &BlobHash) -> StoreResult<Blob> {
        let outcome = self
            .flights
            .run(hash, &self.counters.waiting, |leader| {
                let inner = Arc::clone(self);
                let hash = *hash;
                tokio::spawn(async move {
                    let result = inner.fetch_verified(&hash).await;
                    leader.publish(result.clone());
                    if let Ok(blob) = result {
                        inner.write_cache(&hash, blob.data).await;
                    }
                    drop(leader); // ends the flight only after the cache holds the blob
                });
            })
            .await;
        outcome.into_result(&self.name, "origin fetch")
    }

    /// Whether the origin has `hash`: remembered "no"s first, then one shared origin check per
    /// hash at a time (detached, like a fill); a "no" is remembered like a fill's not-found.
    async fn origin_has(self: &Arc<Self>, hash: &BlobHash) -> StoreResult<bool> {
        if self.is_known_missing(hash) {
            return Ok(false);
        }
        let outcome = self
            .has_flights
            .run(hash, &self.counters.waiting, |leader| {
                let inner = Arc::clone(self);
                let hash = *hash;
                tokio::spawn(async move {
                    let result = inner.origin.has(&hash).await;
                    if let (Ok(false), Some(nf)) = (&result, &inner.not_found) {
                        nf.insert(hash, ());
                    }
                    leader.publish(result);
                });
            })
            .await;
        outcome.into_result(&self.name, "origin availability check")
    }

    /// The origin recently answered "not found" for `hash`.
    fn is_known_missing(&self, hash: &BlobHash) -> bool {
        self.not_found
            .as_ref()
            .is_some_and(|nf| nf.contains_key(hash))
    }

    /// One origin get, verified. Runs detached from any client.
    async fn fetch_verified(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let in_flight = GaugeGuard::new(&self.counters.origin_in_flight);
        let result = self.origin.get(hash).await;
        drop(in_flight);
        match result.and_then(|blob| self.checked(blob, hash)) {
            Ok(blob) => {
                self.counters.fetch_ok.inc();
                self.record_speed("origin", blob.data.len(), start.elapsed());
                Ok(blob)
            }
            Err(StoreError::NotFound) => {
                self.counters.fetch_not_found.inc();
                if let Some(nf) = &self.not_found {
                    nf.insert(*hash, ());
                }
                Err(StoreError::NotFound)
            }
            // Our own check's verdict, or a remote origin's (they verify what they receive).
            // Counted per layer here; `reflector_error_total` is counted once, by the front door
            // that answers the request (every layer above sees the same error).
            Err(err @ StoreError::Corrupt { .. }) => {
                self.counters.fetch_corrupt.inc();
                tracing::error!(store = %self.name, %hash, error = %err, "origin blob failed verification; not cached, not served");
                Err(err)
            }
            Err(err) => {
                self.counters.fetch_error.inc();
                // Debug, not warn: with nested caching layers every layer sees the same failure;
                // the front door (or the prefetch report) reports it once.
                tracing::debug!(store = %self.name, %hash, error = %err, "origin get failed");
                Err(err)
            }
        }
    }

    /// `blob` if it is known to match `hash`: already checked by the store that produced it (a
    /// remote store, or a cache tier further down, which holds only checked bytes), or checked
    /// now. Hashing an already-checked blob again would only cost.
    fn checked(&self, blob: Blob, hash: &BlobHash) -> StoreResult<Blob> {
        if blob.verified {
            return Ok(blob);
        }
        verify(&blob.data, hash).map_err(|source| StoreError::Corrupt {
            store: Arc::from(self.origin.name()),
            source,
        })?;
        Ok(Blob {
            verified: true,
            ..blob
        })
    }

    async fn write_cache(&self, hash: &BlobHash, data: Bytes) {
        if let Err(err) = self.cache.put(hash, data).await {
            self.counters.write_errors.inc();
            tracing::warn!(store = %self.name, %hash, error = %err, "cache write failed; blob served from origin bytes only");
        }
    }

    fn record_speed(&self, source: &str, bytes: usize, took: Duration) {
        let secs = took.as_secs_f64();
        if secs > 0.0 {
            let mbps = bytes as f64 * 8.0 / 1_000_000.0 / secs;
            self.store_metrics
                .speed_mbps
                .with_label_values(&[self.cache.name(), &self.name, source])
                .set(mbps);
        }
    }
}

#[async_trait]
impl BlobStore for CachingStore {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        match self.inner.cache.has(hash).await {
            Ok(true) => Ok(true),
            _ => self.inner.origin_has(hash).await,
        }
    }

    /// In the cache tier (any layer of it), or cached further down the origin's own tree.
    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool> {
        if let Ok(true) = self.inner.cache.has(hash).await {
            return Ok(true);
        }
        self.inner.origin.has_cached(hash).await
    }

    /// The fill flight ends only after the cache write, so waiting for it is waiting for the
    /// write (at most the flight's wait limit); nested composites may have their own fills.
    async fn wait_for_fill(&self, hash: &BlobHash) {
        if !self.inner.flights.ended(hash).await {
            tracing::warn!(store = %self.inner.name, %hash, "cache fill still running after the wait limit");
        }
        self.inner.cache.wait_for_fill(hash).await;
        self.inner.origin.wait_for_fill(hash).await;
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let inner = &self.inner;
        if let Some(blob) = inner.get_from_cache(hash).await {
            inner.counters.hits.inc();
            return Ok(blob.via(start.elapsed(), &inner.name));
        }
        inner.counters.misses.inc();
        if inner.is_known_missing(hash) {
            return Err(StoreError::NotFound);
        }
        let blob = inner.fill(hash).await?;
        Ok(blob.via(start.elapsed(), &inner.name))
    }

    /// Verifies `data` first: this is the tree's way in for writes, and the cache tier below
    /// trusts what it is given.
    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        verify(&data, hash).map_err(|e| StoreError::Refused {
            store: Arc::clone(&self.inner.name),
            message: format!("not writing {hash}: {e}"),
        })?;
        self.inner.origin.put(hash, data.clone()).await?;
        if let Some(nf) = &self.inner.not_found {
            nf.invalidate(hash);
        }
        self.inner.write_cache(hash, data).await;
        Ok(())
    }

    /// Deletes from the cache even when the origin refuses (a read-only origin must not keep a
    /// blocklisted blob in our cache); the origin's error, if any, is still reported.
    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        let cached = self.inner.cache.delete(hash).await;
        let origin = self.inner.origin.delete(hash).await;
        cached.and(origin)
    }

    async fn delete_cached(&self, hash: &BlobHash) -> StoreResult<()> {
        let cached = self.inner.cache.delete(hash).await;
        let below = self.inner.origin.delete_cached(hash).await;
        cached.and(below)
    }

    /// Cache plus origin is not one child's contents: cannot list.
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}
