//! `http`: a read-only origin over plain HTTP(S) object storage or a CDN.
//!
//! A blob lives at `endpoint/[hash[0:sharding_size]/]hash` (reflector.go's layout, the same as
//! its S3 keys). 404 and 403 mean "not here" (S3-style buckets answer 403 for a missing key
//! when listing is not allowed); any other non-2xx is an origin error, so a broken origin gives
//! 502/504, never a 404 that a negative cache would remember. Writes are refused: this store
//! cannot upload.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::StatusCode;

use crate::blob::BlobHash;
use crate::config::HttpOriginConfig;
use crate::store::remote::{check_base_url, join_url, HttpFetcher, StatusMeaning};
use crate::store::{Blob, BlobStore, StoreError, StoreResult};

pub struct HttpOriginStore {
    fetcher: HttpFetcher,
    endpoint: String,
    sharding_size: usize,
}

impl HttpOriginStore {
    pub fn new(config: &HttpOriginConfig) -> anyhow::Result<HttpOriginStore> {
        let name = config.name.as_deref().unwrap_or("http");
        check_base_url(name, "endpoint", &config.endpoint)?;
        Ok(HttpOriginStore {
            fetcher: HttpFetcher::new(name, config.timeout, config.connect_timeout)?,
            endpoint: config.endpoint.clone(),
            sharding_size: config.sharding_size,
        })
    }

    /// The URL a blob is fetched from.
    pub fn url_of(&self, hash: &BlobHash) -> String {
        join_url(&self.endpoint, &hash.sharded_path(self.sharding_size))
    }

    fn refused(&self, what: &str) -> StoreError {
        StoreError::Refused {
            store: Arc::from(self.fetcher.name()),
            message: format!("{what} is not supported: the http origin is read-only"),
        }
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
        self.fetcher.name()
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.fetcher.head(&self.url_of(hash), meaning).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let fetched = self.fetcher.get(&self.url_of(hash), hash, meaning).await?;
        Ok(Blob::verified(fetched.data, start.elapsed(), self.name()))
    }

    async fn put(&self, _: &BlobHash, _: Bytes) -> StoreResult<()> {
        Err(self.refused("put"))
    }

    async fn delete(&self, _: &BlobHash) -> StoreResult<()> {
        Err(self.refused("delete"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn store(endpoint: &str, sharding_size: usize) -> HttpOriginStore {
        HttpOriginStore::new(&HttpOriginConfig {
            name: None,
            endpoint: endpoint.into(),
            sharding_size,
            timeout: Duration::from_secs(1),
            connect_timeout: None,
        })
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
        let e = HttpOriginStore::new(&HttpOriginConfig {
            name: Some("o".into()),
            endpoint: "s3.example/bucket".into(),
            sharding_size: 0,
            timeout: Duration::from_secs(1),
            connect_timeout: None,
        });
        assert!(e.is_err());
    }
}
