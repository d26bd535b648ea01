//! `ittt` (if this, then that): read from `this`, fall back to `that`.
//!
//! Typical use: a nearby upstream cache first, the far origin second. Writes go to `this`.
//! When `this` failed (not merely missed) and `that` does not have the blob either, the answer
//! is `this`'s error, not "not found": we could not ask everyone, so a 404 would be a guess (and
//! a negative cache above us would remember it).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use prometheus::IntCounter;

use crate::blob::BlobHash;
use crate::store::{Blob, BlobStore, BuildContext, StoreError, StoreResult};

pub struct IfThisThenThat {
    name: Arc<str>,
    this: Arc<dyn BlobStore>,
    that: Arc<dyn BlobStore>,
    /// reflector.go's `ittt_hits_total{origin}` for `this` and for `that`, labelled with the
    /// name of the store that served.
    this_hits: IntCounter,
    that_hits: IntCounter,
}

impl IfThisThenThat {
    pub fn new(
        name: &str,
        this: Arc<dyn BlobStore>,
        that: Arc<dyn BlobStore>,
        ctx: &BuildContext,
    ) -> Self {
        let hits = &ctx.store_metrics().ittt_hits_total;
        IfThisThenThat {
            name: Arc::from(name),
            this_hits: hits.with_label_values(&[this.name()]),
            that_hits: hits.with_label_values(&[that.name()]),
            this,
            that,
        }
    }
}

#[async_trait]
impl BlobStore for IfThisThenThat {
    fn name(&self) -> &str {
        &self.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        match self.this.has(hash).await {
            Ok(true) => Ok(true),
            Ok(false) => self.that.has(hash).await,
            Err(this_err) => match self.that.has(hash).await {
                Ok(true) => Ok(true),
                _ => Err(this_err),
            },
        }
    }

    async fn delete_cached(&self, hash: &BlobHash) -> StoreResult<()> {
        let this = self.this.delete_cached(hash).await;
        let that = self.that.delete_cached(hash).await;
        this.and(that)
    }

    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool> {
        if let Ok(true) = self.this.has_cached(hash).await {
            return Ok(true);
        }
        self.that.has_cached(hash).await
    }

    async fn wait_for_fill(&self, hash: &BlobHash) {
        self.this.wait_for_fill(hash).await;
        self.that.wait_for_fill(hash).await;
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let this_err = match self.this.get(hash).await {
            Ok(blob) => {
                self.this_hits.inc();
                return Ok(blob.via(start.elapsed(), &self.name));
            }
            Err(e) => e,
        };
        if !this_err.is_not_found() {
            tracing::debug!(store = %self.name, error = %this_err, "ittt: `this` failed, trying `that`");
        }
        match self.that.get(hash).await {
            Ok(blob) => {
                self.that_hits.inc();
                Ok(blob.via(start.elapsed(), &self.name))
            }
            Err(StoreError::NotFound) if !this_err.is_not_found() => Err(this_err),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        self.this.put(hash, data).await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.this.delete(hash).await
    }

    /// Its contents are two stores', not one child's.
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, MemConfig};
    use crate::metrics::Metrics;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn hits_are_counted_under_the_name_of_the_store_that_served() {
        let ctx = BuildContext {
            metrics: Arc::new(Metrics::new()),
        };
        let mem = |name: &str| -> Arc<dyn BlobStore> {
            let config = MemConfig {
                name: Some(name.into()),
                max_size: ByteSize(1 << 20),
            };
            Arc::new(MemoryStore::new(&config, &ctx))
        };
        let (near, far) = (mem("near"), mem("far"));
        let ittt = IfThisThenThat::new("ittt", Arc::clone(&near), Arc::clone(&far), &ctx);
        let (a, data_a) = crate::blob::named(&b"in this"[..]);
        let (b, data_b) = crate::blob::named(&b"in that"[..]);
        near.put(&a, data_a).await.unwrap();
        far.put(&b, data_b).await.unwrap();
        ittt.get(&a).await.unwrap();
        ittt.get(&b).await.unwrap();
        ittt.get(&b).await.unwrap();
        assert!(ittt.get(&BlobHash::of(b"nowhere")).await.is_err());
        let hits = &ctx.store_metrics().ittt_hits_total;
        assert_eq!(hits.with_label_values(&["near"]).get(), 1);
        assert_eq!(hits.with_label_values(&["far"]).get(), 2);
    }
}
