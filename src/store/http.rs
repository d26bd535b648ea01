//! `http`: a read-only origin over plain HTTP(S) object storage or a CDN.
//!
//! A blob lives at `endpoint/[hash[0:sharding_size]/]hash` (reflector.go's layout, the same as
//! its S3 keys). 404 and 403 mean "not here" (S3-style buckets answer 403 for a missing key
//! when listing is not allowed); any other non-2xx is an origin error, so a broken origin gives
//! 502/504, never a 404 that a negative cache would remember. Writes are refused: this store
//! cannot upload.

use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::StatusCode;

use crate::blob::BlobHash;
use crate::config::HttpOriginConfig;
use crate::store::http_fetch::{join_url, HttpFetcher, StatusMeaning};
use crate::store::origin::{check_base_url, Origin};
use crate::store::{Blob, BlobStore, BuildContext, StoreResult};

pub struct HttpOriginStore {
    fetcher: HttpFetcher,
    endpoint: String,
    sharding_size: usize,
}

impl HttpOriginStore {
    pub fn new(config: &HttpOriginConfig, ctx: &BuildContext) -> anyhow::Result<HttpOriginStore> {
        let name = config.name.as_deref().unwrap_or("http");
        check_base_url(name, "endpoint", &config.endpoint)?;
        let origin = Origin::new(name, config.timeout, &ctx.metrics.upstream_in_bytes);
        Ok(HttpOriginStore {
            fetcher: HttpFetcher::new(origin, config.connect_timeout)?,
            endpoint: config.endpoint.clone(),
            sharding_size: config.sharding_size,
        })
    }

    /// The URL a blob is fetched from.
    pub fn url_of(&self, hash: &BlobHash) -> String {
        join_url(&self.endpoint, &hash.sharded_path(self.sharding_size))
    }
}

/// Object-storage status semantics.
fn meaning(status: StatusCode) -> StatusMeaning {
    if status.is_success() {
        StatusMeaning::Found
    } else if status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN {
        StatusMeaning::Missing
    } else {
        StatusMeaning::Failed
    }
}

#[async_trait]
impl BlobStore for HttpOriginStore {
    fn name(&self) -> &str {
        self.fetcher.origin().name()
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.fetcher.head(&self.url_of(hash), meaning).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let fetched = self.fetcher.get(&self.url_of(hash), meaning).await?;
        self.fetcher
            .origin()
            .verified_blob(hash, fetched.data, start, None)
    }

    async fn put(&self, _: &BlobHash, _: Bytes) -> StoreResult<()> {
        Err(self.fetcher.origin().read_only("put"))
    }

    async fn delete(&self, _: &BlobHash) -> StoreResult<()> {
        Err(self.fetcher.origin().read_only("delete"))
    }

    /// A backend, not a cache.
    async fn has_cached(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }

    /// Starts no fills.
    async fn wait_for_fill(&self, _: &BlobHash) {}

    /// A remote (or nothing): cannot list.
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::Arc;
    use std::time::Duration;

    fn ctx() -> BuildContext {
        BuildContext {
            metrics: Arc::new(Metrics::new()),
        }
    }

    fn store(endpoint: &str, sharding_size: usize) -> HttpOriginStore {
        HttpOriginStore::new(
            &HttpOriginConfig {
                name: None,
                endpoint: endpoint.into(),
                sharding_size,
                timeout: Duration::from_secs(1),
                connect_timeout: None,
            },
            &ctx(),
        )
        .unwrap()
    }

    #[test]
    fn urls_follow_reflector_layout() {
        let h = BlobHash::of(b"x");
        let hex = h.to_hex();
        assert_eq!(
            store("https://cdn.example/bucket/", 4).url_of(&h),
            format!("https://cdn.example/bucket/{}/{hex}", &hex[..4])
        );
        assert_eq!(
            store("https://cdn.example/bucket", 0).url_of(&h),
            format!("https://cdn.example/bucket/{hex}")
        );
    }

    #[test]
    fn bad_endpoint_is_a_build_error() {
        let e = HttpOriginStore::new(
            &HttpOriginConfig {
                name: Some("o".into()),
                endpoint: "s3.example/bucket".into(),
                sharding_size: 0,
                timeout: Duration::from_secs(1),
                connect_timeout: None,
            },
            &ctx(),
        );
        assert!(e.is_err());
    }
}
