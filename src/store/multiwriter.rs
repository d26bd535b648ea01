//! `multiwriter`: writes go to every store, reads come from the first.
//!
//! Used to replicate uploads (e.g. two buckets). A failed write on one store does not stop the
//! others: every store is tried, then the first error is returned, so a caller that retries
//! re-sends to all (puts are idempotent).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::join_all;

use crate::blob::BlobHash;
use crate::store::{Blob, BlobStore, StoreError, StoreResult};

/// Says once, at build, that a `three:` is written to: reflector.go reads only `one` and `two`,
/// so an operator moving a file over learns that its third store now receives writes too.
pub fn note_three(config: &crate::config::MultiwriterConfig) {
    if let Some((_, third)) = config.stores.iter().find(|(key, _)| *key == "three") {
        tracing::info!(
            store = config.name(),
            third = third.name(),
            "multiwriter: `three` is written to as well (reflector.go reads only `one` and `two`)"
        );
    }
}

pub struct MultiWriter {
    name: Arc<str>,
    stores: Vec<Arc<dyn BlobStore>>,
}

impl MultiWriter {
    /// `stores` must not be empty (the builder checks).
    pub fn new(name: &str, stores: Vec<Arc<dyn BlobStore>>) -> MultiWriter {
        MultiWriter {
            name: Arc::from(name),
            stores,
        }
    }

    fn first(&self) -> StoreResult<&Arc<dyn BlobStore>> {
        self.stores.first().ok_or_else(|| StoreError::Refused {
            store: Arc::clone(&self.name),
            message: "multiwriter has no stores".into(),
        })
    }

    /// Runs `op` on every store concurrently; the first error (in config order) wins.
    async fn all<F, Fut>(&self, op: F) -> StoreResult<()>
    where
        F: Fn(Arc<dyn BlobStore>) -> Fut,
        Fut: std::future::Future<Output = StoreResult<()>>,
    {
        let results = join_all(self.stores.iter().map(|s| op(Arc::clone(s)))).await;
        let mut first_err = None;
        for (store, result) in self.stores.iter().zip(results) {
            if let Err(e) = result {
                tracing::warn!(store = %self.name, child = store.name(), error = %e, "multiwriter: write to one store failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl BlobStore for MultiWriter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.first()?.has(hash).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let blob = self.first()?.get(hash).await?;
        Ok(blob.via(start.elapsed(), &self.name))
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        let hash = *hash;
        self.all(|s| {
            let data = data.clone();
            async move { s.put(&hash, data).await }
        })
        .await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        let hash = *hash;
        self.all(|s| async move { s.delete(&hash).await }).await
    }

    /// Reads come from the first store, so that is whose cache counts.
    async fn delete_cached(&self, hash: &BlobHash) -> StoreResult<()> {
        let mut result = Ok(());
        for store in &self.stores {
            result = result.and(store.delete_cached(hash).await);
        }
        result
    }

    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool> {
        match self.stores.first() {
            Some(first) => first.has_cached(hash).await,
            None => Ok(false),
        }
    }

    async fn wait_for_fill(&self, hash: &BlobHash) {
        if let Some(first) = self.stores.first() {
            first.wait_for_fill(hash).await;
        }
    }

    /// The stores may hold different sets (a failed write lands in some only): no one listing
    /// is this store's contents.
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemConfig;
    use crate::metrics::Metrics;
    use crate::store::memory::MemoryStore;
    use crate::store::BuildContext;

    struct Broken;
    #[async_trait]
    impl BlobStore for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        async fn has(&self, _: &BlobHash) -> StoreResult<bool> {
            Ok(false)
        }
        async fn get(&self, _: &BlobHash) -> StoreResult<Blob> {
            Err(StoreError::NotFound)
        }
        async fn put(&self, _: &BlobHash, _: Bytes) -> StoreResult<()> {
            Err(StoreError::unavailable("broken", "down"))
        }
        async fn delete(&self, _: &BlobHash) -> StoreResult<()> {
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

    fn mem(name: &str) -> Arc<dyn BlobStore> {
        let ctx = BuildContext {
            metrics: Arc::new(Metrics::new()),
        };
        Arc::new(MemoryStore::new(
            &MemConfig {
                name: Some(name.into()),
                max_size: crate::config::ByteSize(16 << 20),
            },
            &ctx,
        ))
    }

    #[tokio::test]
    async fn writes_all_reads_first_and_reports_a_failed_write() {
        let (a, b) = (mem("a"), mem("b"));
        let mw = MultiWriter::new(
            "multiwriter",
            vec![Arc::clone(&a), Arc::new(Broken), Arc::clone(&b)],
        );
        let (hash, data) = crate::blob::named(&b"hello"[..]);
        let err = mw.put(&hash, data.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
        // Tried all: the store after the broken one has it too.
        assert!(a.has(&hash).await.unwrap());
        assert!(b.has(&hash).await.unwrap());
        assert_eq!(mw.get(&hash).await.unwrap().data, data);
        mw.delete(&hash).await.unwrap();
        assert!(!a.has(&hash).await.unwrap() && !b.has(&hash).await.unwrap());
    }
}
