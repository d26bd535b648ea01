//! `noop`: holds nothing. Gets miss, writes are accepted and dropped. Useful as a placeholder
//! origin and in tests.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::blob::BlobHash;
use crate::store::{Blob, BlobStore, StoreError, StoreResult};

pub struct NoopStore {
    name: Arc<str>,
}

impl NoopStore {
    /// A noop store called `name` (its config's `name`, default `noop`).
    pub fn new(name: &str) -> NoopStore {
        NoopStore {
            name: Arc::from(name),
        }
    }
}

#[async_trait]
impl BlobStore for NoopStore {
    fn name(&self) -> &str {
        &self.name
    }
    async fn has(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }
    async fn get(&self, _: &BlobHash) -> StoreResult<Blob> {
        Err(StoreError::NotFound)
    }
    async fn put(&self, _: &BlobHash, _: Bytes) -> StoreResult<()> {
        Ok(())
    }
    async fn delete(&self, _: &BlobHash) -> StoreResult<()> {
        Ok(())
    }

    /// A backend, not a cache.
    async fn has_cached(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }

    /// Starts no fills.
    async fn wait_for_fill(&self, _: &BlobHash) {}

    /// Holds nothing worth seeding an index with.
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}
