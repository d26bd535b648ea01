//! Stream plans by sd hash: fetch and parse the sd blob, learn the final blob's padding, and
//! remember the result, so a player's many range requests for one video cost one sd parse and
//! one final-blob probe. Bounded by `descriptor_cache_blobs`: each plan weighs its number of
//! content blobs (about 150 bytes each), so a hostile sd blob listing thousands of blobs cannot
//! make a small entry count hold a lot of memory.

use std::sync::Arc;

use moka::sync::Cache;

use crate::blob::BlobHash;
use crate::store::{BlobStore, StoreError};
use crate::stream::{StreamDescriptor, StreamError};

use super::layout::{final_plain_len, BlobFault, StreamPlan};

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("sd blob: {0}")]
    Store(StoreError),
    #[error("not a stream descriptor: {0}")]
    NotADescriptor(StreamError),
    #[error("final content blob: {0}")]
    FinalBlob(StoreError),
    #[error("final content blob: {0}")]
    FinalBlobFault(BlobFault),
    #[error("{0}")]
    Internal(String),
}

pub struct Plans {
    store: Arc<dyn BlobStore>,
    cache: Cache<BlobHash, Arc<StreamPlan>>,
}

impl Plans {
    pub fn new(store: Arc<dyn BlobStore>, max_blobs: u64) -> Plans {
        Plans {
            store,
            cache: Cache::builder()
                .max_capacity(max_blobs)
                .weigher(|_, plan: &Arc<StreamPlan>| {
                    u32::try_from(plan.blobs.len() + 1).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    /// The plan of the stream whose sd blob is `sd_hash`.
    pub async fn get(&self, sd_hash: &BlobHash) -> Result<Arc<StreamPlan>, PlanError> {
        if let Some(plan) = self.cache.get(sd_hash) {
            return Ok(plan);
        }
        let plan = Arc::new(self.build(sd_hash).await?);
        self.cache.insert(*sd_hash, Arc::clone(&plan));
        Ok(plan)
    }

    async fn build(&self, sd_hash: &BlobHash) -> Result<StreamPlan, PlanError> {
        let sd_blob = self.store.get(sd_hash).await.map_err(PlanError::Store)?;
        let sd = StreamDescriptor::parse(&sd_blob.data).map_err(PlanError::NotADescriptor)?;
        let provisional = StreamPlan::new(*sd_hash, &sd, None);
        let Some(last) = provisional.blobs.last() else {
            // No content blobs: an empty stream.
            return Ok(provisional);
        };
        let blob = self
            .store
            .get(&last.hash)
            .await
            .map_err(PlanError::FinalBlob)?;
        let (key, last) = (provisional.key.clone(), last.clone());
        let final_len = tokio::task::spawn_blocking(move || final_plain_len(&key, &last, &blob))
            .await
            .map_err(|e| PlanError::Internal(e.to_string()))?
            .map_err(PlanError::FinalBlobFault)?;
        Ok(StreamPlan::new(*sd_hash, &sd, Some(final_len)))
    }
}
