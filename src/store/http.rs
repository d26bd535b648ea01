//! `http`: a read-only origin over plain HTTP(S) object storage or a CDN.
//!
//! A blob lives at `endpoint/[hash[0:sharding_size]/]hash` (reflector.go's layout, the same as
//! its S3 keys). An endpoint with a query string (a signed CDN URL,
//! `https://cdn/bucket/?sig=...`) keeps it: the hash goes into the path, the query is sent as
//! configured. The query and any userinfo password are secrets (see [`crate::secret`]): the
//! request URL is never printed, and transport errors are taken without it. 404 and 403 mean
//! "not here" (S3-style buckets answer 403 for a missing key when listing is not allowed); any
//! other non-2xx is an origin error, so a broken origin gives 502/504, never a 404 that a
//! negative cache would remember. Writes are refused: this store cannot upload.
//!
//! Only the layout and the statuses are this file's; the fetching is the one HTTP origin
//! ([`crate::store::http_origin`]) that `upstream` uses too.

use reqwest::{StatusCode, Url};

use crate::blob::BlobHash;
use crate::config::HttpOriginConfig;
use crate::store::http_origin::{Addressing, HttpOrigin, StatusMeaning};
use crate::store::origin::{check_base_url, Origin};
use crate::store::BuildContext;

/// Where object storage keeps a blob.
pub struct ObjectLayout {
    /// The configured endpoint, parsed once (path segments are appended per blob).
    endpoint: Url,
    sharding_size: usize,
}

/// The `http` store `config` describes.
pub fn origin(
    config: &HttpOriginConfig,
    ctx: &BuildContext,
) -> anyhow::Result<HttpOrigin<ObjectLayout>> {
    let layout = ObjectLayout::new(config)?;
    let origin = Origin::new(
        config.name(),
        config.timeout,
        &ctx.store_metrics().http_in_bytes,
    );
    HttpOrigin::new(origin, config.connect_deadline(), layout)
}

impl ObjectLayout {
    /// Fails (a config error at start-up) when `endpoint` is not an absolute http(s) URL.
    pub fn new(config: &HttpOriginConfig) -> anyhow::Result<ObjectLayout> {
        Ok(ObjectLayout {
            endpoint: check_base_url(config.name(), "endpoint", config.endpoint.expose())?,
            sharding_size: config.sharding_size,
        })
    }
}

impl Addressing for ObjectLayout {
    /// A CDN's or proxy's `Via` names no blob cache.
    const VIA_IS_A_TRACE: bool = false;

    /// The endpoint's path plus `[shard/]hash`, its query kept.
    fn url_of(&self, hash: &BlobHash) -> Url {
        let mut url = self.endpoint.clone();
        // An http(s) URL always has path segments (checked at construction), so this applies.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(hash.sharded_path(self.sharding_size).split('/'));
        }
        url
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::Arc;
    use std::time::Duration;

    fn config(name: Option<&str>, endpoint: &str, sharding_size: usize) -> HttpOriginConfig {
        HttpOriginConfig {
            name: name.map(Into::into),
            endpoint: endpoint.into(),
            sharding_size,
            timeout: Duration::from_secs(1),
            connect_timeout: None,
        }
    }

    fn layout(endpoint: &str, sharding_size: usize) -> ObjectLayout {
        ObjectLayout::new(&config(None, endpoint, sharding_size)).unwrap()
    }

    #[test]
    fn urls_follow_reflector_layout() {
        let h = BlobHash::of(b"x");
        let hex = h.to_hex();
        assert_eq!(
            layout("https://cdn.example/bucket/", 4).url_of(&h).as_str(),
            format!("https://cdn.example/bucket/{}/{hex}", &hex[..4])
        );
        assert_eq!(
            layout("https://cdn.example/bucket", 0).url_of(&h).as_str(),
            format!("https://cdn.example/bucket/{hex}")
        );
        assert_eq!(
            layout("https://cdn.example", 0).url_of(&h).as_str(),
            format!("https://cdn.example/{hex}")
        );
    }

    #[test]
    fn a_signed_endpoint_keeps_its_query_after_the_hash() {
        let h = BlobHash::of(b"x");
        let hex = h.to_hex();
        assert_eq!(
            layout("https://cdn.example/bucket/?sig=a%2Fb&exp=9", 2)
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
        let ctx = BuildContext {
            metrics: Arc::new(Metrics::new()),
        };
        let e = origin(&config(Some("o"), "s3.example/bucket", 0), &ctx);
        assert!(e.is_err());
    }
}
