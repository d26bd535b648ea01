//! `upstream`: the next blob cache up the chain, through its HTTP API
//! (`GET /blob?hash=H[&edge_token=T]`, `HEAD` = 204/404), reflector.go's or ours.
//!
//! The upstream's `Via` trace is read and extended with this store's hop, so the edge's `Via`
//! header shows every tier a blob crossed. The bytes are verified here like any origin's: an
//! upstream is another cache, and caches can be wrong. A 403 from an upstream means our
//! `edge_token` is missing or wrong, which is a configuration error (502 with a hint), not a
//! "not found" that a negative cache would remember.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::IntCounter;
use reqwest::StatusCode;

use crate::blob::BlobHash;
use crate::config::UpstreamConfig;
use crate::store::remote::{check_base_url, join_url, HttpFetcher, StatusMeaning};
use crate::store::{Blob, BlobStore, BuildContext, StoreError, StoreResult};
use crate::trace::BlobTrace;

pub struct UpstreamStore {
    fetcher: HttpFetcher,
    /// `http(s)://host:port`, no trailing slash.
    base: String,
    edge_token: Option<String>,
    in_bytes: IntCounter,
}

impl UpstreamStore {
    pub fn new(config: &UpstreamConfig, ctx: &BuildContext) -> anyhow::Result<UpstreamStore> {
        let name = config.name.as_deref().unwrap_or("upstream");
        let base = if config.upstream.contains("://") {
            config.upstream.clone()
        } else {
            format!("http://{}", config.upstream)
        };
        check_base_url(name, "upstream", &base)?;
        Ok(UpstreamStore {
            fetcher: HttpFetcher::new(name, config.timeout, config.connect_timeout)?,
            base: base.trim_end_matches('/').to_string(),
            edge_token: config.edge_token.clone().filter(|t| !t.is_empty()),
            in_bytes: ctx.metrics.upstream_in_bytes.clone(),
        })
    }

    fn url(&self, hash: &BlobHash, with_token: bool) -> String {
        let mut url = join_url(&self.base, &format!("blob?hash={hash}"));
        if let (true, Some(token)) = (with_token, &self.edge_token) {
            url.push_str("&edge_token=");
            url.extend(form_urlencoded::byte_serialize(token.as_bytes()));
        }
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

#[async_trait]
impl BlobStore for UpstreamStore {
    fn name(&self) -> &str {
        self.fetcher.name()
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.fetcher
            .head(&self.url(hash, true), meaning)
            .await
            .map_err(|e| with_token_hint(e, self.edge_token.is_some()))
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let fetched = self
            .fetcher
            .get(&self.url(hash, true), hash, meaning)
            .await
            .map_err(|e| with_token_hint(e, self.edge_token.is_some()))?;
        self.in_bytes.inc_by(fetched.data.len() as u64);
        let trace =
            BlobTrace::from_header(fetched.via.as_deref()).stack(start.elapsed(), self.name());
        Ok(Blob {
            data: fetched.data,
            trace,
            verified: true, // the shared fetch verifies every body
        })
    }

    async fn put(&self, _: &BlobHash, _: Bytes) -> StoreResult<()> {
        Err(StoreError::Refused {
            store: Arc::from(self.name()),
            message: "put is not supported: an upstream cache is read-only".into(),
        })
    }

    async fn delete(&self, _: &BlobHash) -> StoreResult<()> {
        Err(StoreError::Refused {
            store: Arc::from(self.name()),
            message: "delete is not supported: an upstream cache is read-only".into(),
        })
    }
}

/// Adds "check edge_token" to a 403 so the operator knows what to fix.
fn with_token_hint(err: StoreError, token_set: bool) -> StoreError {
    match err {
        StoreError::Unavailable { store, message } if message.contains("403") => {
            let hint = if token_set {
                "the upstream rejected our edge_token"
            } else {
                "the blob is protected upstream; set edge_token on this upstream store"
            };
            StoreError::Unavailable {
                store,
                message: format!("{message} ({hint})"),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::time::Duration;

    #[test]
    fn urls_carry_hash_and_encoded_token() {
        let ctx = BuildContext {
            metrics: Arc::new(Metrics::new()),
            base_dir: ".".into(),
        };
        let s = UpstreamStore::new(
            &UpstreamConfig {
                name: None,
                upstream: "regional.example:5569/".into(),
                edge_token: Some("a b&c".into()),
                timeout: Duration::from_secs(1),
                connect_timeout: None,
            },
            &ctx,
        )
        .unwrap();
        let h = BlobHash::of(b"x");
        assert_eq!(
            s.url(&h, true),
            format!("http://regional.example:5569/blob?hash={h}&edge_token=a+b%26c")
        );
        assert_eq!(
            s.url(&h, false),
            format!("http://regional.example:5569/blob?hash={h}")
        );
    }
}
