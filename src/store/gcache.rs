//! `gcache`: bounds another store by blob *count*, evicting by a policy (reflector.go's
//! `gcache{name, max_size, strategy, store}`).
//!
//! The index is a moka cache of hashes; when it evicts one, the blob is deleted from the wrapped
//! store. The index is seeded from the wrapped store's listing at start (a `disk` lists its files)
//! so a restart does not forget what is already held and let the store grow unbounded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::blob::BlobHash;
use crate::config::{GcacheConfig, GcacheStrategy};
use crate::store::{Blob, BlobStore, BuildContext, StoreResult};

/// One start-up line when the configured strategy runs as a neighbour: moka has TinyLFU and
/// LRU, so reflector.go's ARC becomes TinyLFU and its "simple" (map order) becomes LRU.
fn note_approximation(config: &GcacheConfig) {
    let runs_as = match config.strategy {
        GcacheStrategy::Arc => "TinyLFU",
        GcacheStrategy::Simple => "LRU",
        GcacheStrategy::Lfu | GcacheStrategy::Lru => return,
    };
    tracing::info!(
        store = config.name(),
        "gcache: strategy {:?} runs as {runs_as} here",
        config.strategy
    );
}

pub struct GcacheStore {
    name: Arc<str>,
    store: Arc<dyn BlobStore>,
    index: Cache<BlobHash, ()>,
    doomed: Arc<Mutex<VecDeque<BlobHash>>>,
}

impl GcacheStore {
    pub fn new(config: &GcacheConfig, store: Arc<dyn BlobStore>, ctx: &BuildContext) -> Self {
        let name: Arc<str> = Arc::from(config.name());
        let policy = match config.strategy {
            GcacheStrategy::Lfu | GcacheStrategy::Arc => EvictionPolicy::tiny_lfu(),
            GcacheStrategy::Lru | GcacheStrategy::Simple => EvictionPolicy::lru(),
        };
        note_approximation(config);
        let doomed: Arc<Mutex<VecDeque<BlobHash>>> = Arc::default();
        let queue = Arc::clone(&doomed);
        let evictions = ctx
            .store_metrics()
            .cache_evict_total
            .with_label_values(&["gcache", &name]);
        let index = Cache::builder()
            .max_capacity(config.max_size)
            .eviction_policy(policy)
            .eviction_listener(move |hash: Arc<BlobHash>, _, cause| {
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    evictions.inc();
                    if let Ok(mut q) = queue.lock() {
                        q.push_back(*hash);
                    }
                }
            })
            .build();
        if let Some(existing) = store.list() {
            for hash in existing {
                index.insert(hash, ());
            }
        }
        GcacheStore {
            name,
            store,
            index,
            doomed,
        }
    }

    /// Applies pending evictions and deletes the evicted blobs from the wrapped store.
    async fn apply_evictions(&self) {
        self.index.run_pending_tasks();
        loop {
            let next = self.doomed.lock().ok().and_then(|mut q| q.pop_front());
            let Some(hash) = next else { break };
            if self.index.contains_key(&hash) {
                continue;
            }
            if let Err(e) = self.store.delete(&hash).await {
                tracing::warn!(store = %self.name, %hash, error = %e, "could not delete evicted blob");
            }
        }
    }
}

#[async_trait]
impl BlobStore for GcacheStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.store.has(hash).await
    }

    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.store.has_cached(hash).await
    }

    async fn wait_for_fill(&self, hash: &BlobHash) {
        self.store.wait_for_fill(hash).await;
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let blob = self.store.get(hash).await?;
        if self.index.get(hash).is_none() {
            self.index.insert(*hash, ());
            self.apply_evictions().await;
        }
        Ok(blob)
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        self.store.put(hash, data).await?;
        self.index.insert(*hash, ());
        self.apply_evictions().await;
        Ok(())
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.index.invalidate(hash);
        self.store.delete(hash).await
    }

    fn list(&self) -> Option<Vec<BlobHash>> {
        Some(self.index.iter().map(|(k, _)| *k).collect())
    }
}
