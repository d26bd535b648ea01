//! The blocklist as a store layer around the root: blocked blobs are absent to everyone who asks
//! through the tree (every front door, the prefetcher, `getblob`) and cannot be written back.
//!
//! It reads the live [`Policy`], so a refreshed or reloaded list applies to the next request.
//! Purging what is already cached is [`crate::blocklist::purge`]'s job.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::blob::BlobHash;
use crate::metrics::{Metrics, DIRECTION_DOWNLOAD};
use crate::policy::Policy;
use crate::store::{Blob, BlobStore, StoreError, StoreResult};

pub struct BlocklistStore {
    inner: Arc<dyn BlobStore>,
    policy: Arc<Policy>,
    metrics: Arc<Metrics>,
}

impl BlocklistStore {
    pub fn new(inner: Arc<dyn BlobStore>, policy: Arc<Policy>, metrics: Arc<Metrics>) -> Self {
        BlocklistStore {
            inner,
            policy,
            metrics,
        }
    }

    fn blocked(&self, hash: &BlobHash) -> bool {
        let blocked = self.policy.is_blocked(hash);
        if blocked {
            self.metrics.error(DIRECTION_DOWNLOAD, "blocked_blob");
        }
        blocked
    }
}

#[async_trait]
impl BlobStore for BlocklistStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        if self.blocked(hash) {
            return Ok(false);
        }
        self.inner.has(hash).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        if self.blocked(hash) {
            return Err(StoreError::NotFound);
        }
        self.inner.get(hash).await
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        if self.policy.is_blocked(hash) {
            return Err(StoreError::Refused {
                store: Arc::from(self.inner.name()),
                message: format!("{hash} is blocklisted"),
            });
        }
        self.inner.put(hash, data).await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.inner.delete(hash).await
    }

    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool> {
        if self.policy.is_blocked(hash) {
            return Ok(false);
        }
        self.inner.has_cached(hash).await
    }

    async fn delete_cached(&self, hash: &BlobHash) -> StoreResult<()> {
        self.inner.delete_cached(hash).await
    }

    async fn wait_for_fill(&self, hash: &BlobHash) {
        self.inner.wait_for_fill(hash).await
    }

    fn list(&self) -> Option<Vec<BlobHash>> {
        self.inner.list()
    }
}
