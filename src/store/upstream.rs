//! `upstream`: the next blob cache up the chain, through its HTTP API
//! (`GET /blob?hash=H[&edge_token=T]`, `HEAD` = 204/404), reflector.go's or ours.
//!
//! The upstream's `Via` trace is read and extended with this store's hop, so the edge's `Via`
//! header shows every tier a blob crossed. The bytes are verified here like any origin's: an
//! upstream is another cache, and caches can be wrong. A 403 from an upstream means our
//! `edge_token` is missing or wrong, which is a configuration error
//! ([`StoreError::OriginStatus`]: 502 "origin refused (check edge_token)"), not a "not found"
//! that a negative cache would remember. The token is a secret: it is only ever in the request
//! URL, which no error or log line carries (see [`crate::store::http_fetch`]).

use std::time::Instant;

use reqwest::{StatusCode, Url};

use crate::secret::{ExposeSecret, SecretString};

use crate::blob::BlobHash;
use crate::config::{Endpoint, UpstreamConfig};
use crate::protocol::http::blob_request;
use crate::store::http_fetch::{HttpFetcher, StatusMeaning};
use crate::store::origin::{check_base_url, Origin};
use crate::store::remote::Remote;
use crate::store::{Blob, BuildContext, StoreResult};

pub struct UpstreamStore {
    fetcher: HttpFetcher,
    /// `http(s)://host:port[/prefix]/`: always ends in `/`, so `blob?...` is joined below it.
    base: Url,
    edge_token: Option<SecretString>,
}

impl UpstreamStore {
    /// The store for one `endpoint` of `config` (a pool has one per endpoint: see
    /// [`crate::store::pool`]).
    pub fn new(
        config: &UpstreamConfig,
        endpoint: &Endpoint,
        ctx: &BuildContext,
    ) -> anyhow::Result<UpstreamStore> {
        let name = config.name();
        let address = endpoint.address.as_str();
        let base = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let mut base = check_base_url(name, "upstream", &base)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let origin = Origin::new(name, config.timeout, &ctx.metrics.upstream_in_bytes);
        Ok(UpstreamStore {
            fetcher: HttpFetcher::new(origin, config.connect_deadline())?,
            base,
            edge_token: config
                .edge_token
                .clone()
                .filter(|t| !t.expose_secret().is_empty()),
        })
    }

    /// The request URL. It carries the token: it goes to reqwest and nowhere else.
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

impl Remote for UpstreamStore {
    fn origin(&self) -> &Origin {
        self.fetcher.origin()
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.fetcher.head(self.url(hash, true), meaning).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let fetched = self.fetcher.get(self.url(hash, true), meaning).await?;
        self.fetcher
            .origin()
            .verified_blob(hash, fetched.data, start, fetched.via.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn urls_carry_hash_and_encoded_token() {
        let ctx = BuildContext {
            metrics: Arc::new(Metrics::new()),
        };
        let endpoint = Endpoint::new("regional.example:5569/");
        let s = UpstreamStore::new(
            &UpstreamConfig {
                name: None,
                endpoints: vec![endpoint.clone()],
                edge_token: Some("a b&c".into()),
                timeout: Duration::from_secs(1),
                connect_timeout: None,
                health: Default::default(),
            },
            &endpoint,
            &ctx,
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
