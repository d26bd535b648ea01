//! `singleflight`: concurrent gets of one hash share one call to the wrapped store.
//!
//! reflector.go puts this in front of slow origins (`singleflight{component, store}`). The call
//! runs detached, like the caching store's fill, so one client going away cancels nothing.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::IntGauge;

use crate::blob::BlobHash;
use crate::config::SingleflightConfig;
use crate::metrics::GaugeGuard;
use crate::store::flight::{wait_limit_for, Flights};
use crate::store::{Blob, BlobStore, BuildContext, StoreResult};

pub struct SingleFlightStore {
    name: Arc<str>,
    store: Arc<dyn BlobStore>,
    flights: Arc<Flights<BlobHash, StoreResult<Blob>>>,
    in_flight: IntGauge,
    waiting: IntGauge,
}

impl SingleFlightStore {
    pub fn new(config: &SingleflightConfig, store: Arc<dyn BlobStore>, ctx: &BuildContext) -> Self {
        let labels = [store.name(), config.component.as_str()];
        SingleFlightStore {
            in_flight: ctx
                .store_metrics()
                .cache_origin_requests_total
                .with_label_values(&labels),
            waiting: ctx
                .store_metrics()
                .cache_waiting_requests_total
                .with_label_values(&labels),
            name: Arc::from(config.component.as_str()),
            store,
            flights: Flights::new(wait_limit_for(&config.store)),
        }
    }
}

#[async_trait]
impl BlobStore for SingleFlightStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.store.has(hash).await
    }

    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.store.has_cached(hash).await
    }

    async fn delete_cached(&self, hash: &BlobHash) -> StoreResult<()> {
        self.store.delete_cached(hash).await
    }

    async fn wait_for_fill(&self, hash: &BlobHash) {
        self.store.wait_for_fill(hash).await;
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let answer = self
            .flights
            .run(hash, &self.waiting, |leader| {
                let store = Arc::clone(&self.store);
                let in_flight = self.in_flight.clone();
                let hash = *hash;
                tokio::spawn(async move {
                    let guard = GaugeGuard::new(&in_flight);
                    let result = store.get(&hash).await;
                    drop(guard);
                    leader.publish(result);
                });
            })
            .await;
        answer
            .into_result(&self.name, "get")
            .map(|blob| blob.via(start.elapsed(), &self.name))
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        self.store.put(hash, data).await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.store.delete(hash).await
    }

    fn list(&self) -> Option<Vec<BlobHash>> {
        self.store.list()
    }
}
