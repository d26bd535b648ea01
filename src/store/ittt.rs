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

use crate::blob::BlobHash;
use crate::store::{Blob, BlobStore, StoreError, StoreResult};

pub struct IfThisThenThat {
    name: Arc<str>,
    this: Arc<dyn BlobStore>,
    that: Arc<dyn BlobStore>,
}

impl IfThisThenThat {
    pub fn new(name: &str, this: Arc<dyn BlobStore>, that: Arc<dyn BlobStore>) -> Self {
        IfThisThenThat {
            name: Arc::from(name),
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
            Ok(blob) => return Ok(blob.via(start.elapsed(), &self.name)),
            Err(e) => e,
        };
        if !this_err.is_not_found() {
            tracing::debug!(store = %self.name, error = %this_err, "ittt: `this` failed, trying `that`");
        }
        match self.that.get(hash).await {
            Ok(blob) => Ok(blob.via(start.elapsed(), &self.name)),
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
