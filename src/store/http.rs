//! `http`: a read-only origin over plain HTTP(S) object storage or a CDN.
//!
//! A blob lives at `endpoint/[hash[0:sharding_size]/]hash` (reflector.go's layout, the same as
//! its S3 keys). An endpoint with a query string (a signed CDN URL,
//! `https://cdn/bucket/?sig=...`) keeps it: the hash goes into the path, the query is sent as
//! configured. The query and any userinfo password are secrets (see [`crate::secret`]): the
//! request URL is never printed, and transport errors are taken without it. 404 and 403 mean "not here" (S3-style buckets answer 403 for a missing key
//! when listing is not allowed); any other non-2xx is an origin error, so a broken origin gives
//! 502/504, never a 404 that a negative cache would remember. Writes are refused: this store
//! cannot upload.

use std::time::Instant;

use reqwest::{StatusCode, Url};

use crate::blob::BlobHash;
use crate::config::HttpOriginConfig;
use crate::store::http_fetch::{HttpFetcher, StatusMeaning};
use crate::store::origin::{check_base_url, Origin};
use crate::store::remote::Remote;
use crate::store::{Blob, BuildContext, StoreResult};

pub struct HttpOriginStore {
    fetcher: HttpFetcher,
    /// The configured endpoint, parsed once (path segments are appended per blob).
    endpoint: Url,
    sharding_size: usize,
}

impl HttpOriginStore {
    pub fn new(config: &HttpOriginConfig, ctx: &BuildContext) -> anyhow::Result<HttpOriginStore> {
        let name = config.name();
        let endpoint = check_base_url(name, "endpoint", config.endpoint.expose())?;
        let origin = Origin::new(name, config.timeout, &ctx.metrics.upstream_in_bytes);
        Ok(HttpOriginStore {
            fetcher: HttpFetcher::new(origin, config.connect_deadline())?,
            endpoint,
            sharding_size: config.sharding_size,
        })
    }

    /// The URL a blob is fetched from: the endpoint's path plus `[shard/]hash`, its query kept.
    pub fn url_of(&self, hash: &BlobHash) -> Url {
        let mut url = self.endpoint.clone();
        // An http(s) URL always has path segments (checked at construction), so this applies.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(hash.sharded_path(self.sharding_size).split('/'));
        }
        url
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

impl Remote for HttpOriginStore {
    fn origin(&self) -> &Origin {
        self.fetcher.origin()
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.fetcher.head(self.url_of(hash), meaning).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let fetched = self.fetcher.get(self.url_of(hash), meaning).await?;
        self.fetcher
            .origin()
            .verified_blob(hash, fetched.data, start, None)
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
            store("https://cdn.example/bucket/", 4).url_of(&h).as_str(),
            format!("https://cdn.example/bucket/{}/{hex}", &hex[..4])
        );
        assert_eq!(
            store("https://cdn.example/bucket", 0).url_of(&h).as_str(),
            format!("https://cdn.example/bucket/{hex}")
        );
        assert_eq!(
            store("https://cdn.example", 0).url_of(&h).as_str(),
            format!("https://cdn.example/{hex}")
        );
    }

    #[test]
    fn a_signed_endpoint_keeps_its_query_after_the_hash() {
        let h = BlobHash::of(b"x");
        let hex = h.to_hex();
        assert_eq!(
            store("https://cdn.example/bucket/?sig=a%2Fb&exp=9", 2)
                .url_of(&h)
                .as_str(),
            format!(
                "https://cdn.example/bucket/{}/{hex}?sig=a%2Fb&exp=9",
                &hex[..2]
            )
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
