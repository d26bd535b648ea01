//! `upstream`: the next blob cache up the chain, through its HTTP API
//! (`GET /blob?hash=H[&edge_token=T]`, `HEAD` = 204/404), reflector.go's or ours.
//!
//! The upstream's `Via` trace is read and extended with this store's hop, so the edge's `Via`
//! header shows every tier a blob crossed. The bytes are verified here like any origin's: an
//! upstream is another cache, and caches can be wrong. A 403 from an upstream means our
//! `edge_token` is missing or wrong, which is a configuration error
//! ([`StoreError::OriginStatus`](crate::store::StoreError::OriginStatus): 502 "origin refused
//! (check edge_token)"), not a "not found" that a negative cache would remember. The token is a
//! secret: it is only ever in the request URL, which no error or log line carries (see
//! [`crate::store::http_origin`], the one HTTP origin this and `http` share).

use reqwest::{StatusCode, Url};

use crate::secret::{ExposeSecret, SecretString};

use crate::blob::BlobHash;
use crate::config::{Endpoint, UpstreamConfig};
use crate::protocol::http::blob_request;
use crate::store::http_origin::{Addressing, HttpOrigin, StatusMeaning};
use crate::store::origin::{check_base_url, Origin};
use crate::store::BuildContext;

/// Where another cache's HTTP API serves a blob, and the token it wants.
pub struct CacheApi {
    /// `http(s)://host:port[/prefix]/`: always ends in `/`, so `blob?...` is joined below it.
    base: Url,
    edge_token: Option<SecretString>,
}

/// The store for one `endpoint` of `config` (a pool has one per endpoint: see
/// [`crate::store::pool`]).
pub fn origin(
    config: &UpstreamConfig,
    endpoint: &Endpoint,
    ctx: &BuildContext,
) -> anyhow::Result<HttpOrigin<CacheApi>> {
    let api = CacheApi::new(config, endpoint)?;
    let origin = Origin::new(
        config.name(),
        config.timeout,
        &ctx.store_metrics().upstream_in_bytes,
    );
    HttpOrigin::new(origin, config.connect_deadline(), api)
}

impl CacheApi {
    /// A bare `host:port` is taken as `http://host:port`, as reflector.go's loader only
    /// concatenates. Fails (a config error at start-up) when that is not an http(s) URL.
    pub fn new(config: &UpstreamConfig, endpoint: &Endpoint) -> anyhow::Result<CacheApi> {
        let address = endpoint.address.as_str();
        let base = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let mut base = check_base_url(config.name(), "upstream", &base)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(CacheApi {
            base,
            edge_token: config
                .edge_token
                .clone()
                .filter(|t| !t.expose_secret().is_empty()),
        })
    }

    /// The request URL, with or without the token.
    fn url(&self, hash: &BlobHash, with_token: bool) -> Url {
        let token = self
            .edge_token
            .as_ref()
            .filter(|_| with_token)
            .map(|t| t.expose_secret());
        let mut url = self.base.clone();
        let request = blob_request(hash, token);
        let (path, query) = request.split_once('?').unwrap_or((&request, ""));
        let full_path = format!("{}{path}", self.base.path());
        url.set_path(&full_path);
        url.set_query(Some(query).filter(|q| !q.is_empty()));
        url
    }
}

impl Addressing for CacheApi {
    /// The upstream's trace of the tiers it asked.
    const VIA_IS_A_TRACE: bool = true;

    /// The request URL. It carries the token: it goes to reqwest and nowhere else.
    fn url_of(&self, hash: &BlobHash) -> Url {
        self.url(hash, true)
    }

    /// reflector.go's HTTP server semantics.
    fn meaning(status: StatusCode) -> StatusMeaning {
        if status == StatusCode::OK || status == StatusCode::NO_CONTENT {
            StatusMeaning::Found
        } else if status == StatusCode::NOT_FOUND {
            StatusMeaning::Missing
        } else {
            StatusMeaning::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn urls_carry_hash_and_encoded_token() {
        let endpoint = Endpoint::new("regional.example:5569/");
        let s = CacheApi::new(
            &UpstreamConfig {
                name: None,
                endpoints: vec![endpoint.clone()],
                edge_token: Some("a b&c".into()),
                timeout: Duration::from_secs(1),
                connect_timeout: None,
                health: Default::default(),
            },
            &endpoint,
        )
        .unwrap();
        let h = BlobHash::of(b"x");
        assert_eq!(
            s.url(&h, true).as_str(),
            format!("http://regional.example:5569/blob?hash={h}&edge_token=a+b%26c")
        );
        assert_eq!(
            s.url(&h, false).as_str(),
            format!("http://regional.example:5569/blob?hash={h}")
        );
    }
}
