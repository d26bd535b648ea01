//! `proxied-s3`: reads through `reader`, writes through `writer`.
//!
//! reflector.go's production pattern: reads go through a cache in front of a CDN/HTTP origin
//! (cheap egress), writes go straight to the bucket (often a `multiwriter` or `db_backed`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use crate::blob::BlobHash;
use crate::store::{Blob, BlobStore, StoreResult};

pub struct ProxiedS3 {
    name: Arc<str>,
    reader: Arc<dyn BlobStore>,
    writer: Arc<dyn BlobStore>,
}

impl ProxiedS3 {
    pub fn new(name: &str, reader: Arc<dyn BlobStore>, writer: Arc<dyn BlobStore>) -> ProxiedS3 {
        ProxiedS3 {
            name: Arc::from(name),
            reader,
            writer,
        }
    }
}

#[async_trait]
impl BlobStore for ProxiedS3 {
    fn name(&self) -> &str {
        &self.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.reader.has(hash).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let blob = self.reader.get(hash).await?;
        Ok(blob.via(start.elapsed(), &self.name))
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        self.writer.put(hash, data).await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.writer.delete(hash).await
    }

    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.reader.has_cached(hash).await
    }

    async fn delete_cached(&self, hash: &BlobHash) -> StoreResult<()> {
        self.reader.delete_cached(hash).await
    }

    async fn wait_for_fill(&self, hash: &BlobHash) {
        self.reader.wait_for_fill(hash).await
    }

    /// Reads and writes go to different stores: no one listing is this store's contents.
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}
