//! player-server's routes: `/api/v{3,4}/streams/free/{claim_name}/{claim_id}/{sd_hash_prefix}`.
//!
//! The claim is resolved (`lbry://{claim_name}#{claim_id}`) through the LBRY JSON-RPC API of
//! `stream.api`, the answer's `value.source.sd_hash` must start with the prefix in the path,
//! and then the stream is served as `/stream/{sd_hash}`. Answers are cached for
//! `resolve_cache_ttl` (claims are immutable per sd hash; an update only changes which sd hash
//! a claim points to, which the prefix check catches), and API calls in flight are bounded so a
//! flood of distinct names cannot turn into a flood on the API.

use std::sync::Arc;

use moka::sync::Cache;
use tokio::sync::Semaphore;

use crate::blob::BlobHash;
use crate::prefetch::api::{ApiError, LbryApi};

use super::metrics::PlaybackMetrics;
use crate::config::StreamConfig;

/// Longest claim name accepted (LBRY names are short; this bounds the cache key and the URL).
const MAX_CLAIM_NAME: usize = 255;

/// A parsed player-server path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    pub name: String,
    pub claim_id: String,
    pub sd_prefix: String,
}

impl ClaimPath {
    /// Parses the part after `/api/v{3,4}/streams/free/`; `Err` says what is wrong (for a 400).
    pub fn parse(rest: &str) -> Result<ClaimPath, &'static str> {
        let mut parts = rest.split('/');
        let (Some(name), Some(claim_id), Some(prefix), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected /{claim_name}/{claim_id}/{sd_hash_prefix}");
        };
        let name = percent_encoding::percent_decode_str(name)
            .decode_utf8()
            .map_err(|_| "claim name is not UTF-8")?;
        // Characters that would change the meaning of the lbry:// URL built from it.
        let forbidden = |c: char| c.is_control() || c.is_whitespace() || "#$:*/?&=%@".contains(c);
        if name.is_empty() || name.len() > MAX_CLAIM_NAME || name.contains(forbidden) {
            return Err("invalid claim name");
        }
        let hex = |s: &str, max: usize| !s.is_empty() && s.len() <= max && is_lower_hex(s);
        if !hex(claim_id, 40) {
            return Err("claim id must be 1 to 40 lowercase hex characters");
        }
        if !hex(prefix, 96) {
            return Err("sd hash prefix must be 1 to 96 lowercase hex characters");
        }
        Ok(ClaimPath {
            name: name.into_owned(),
            claim_id: claim_id.to_owned(),
            sd_prefix: prefix.to_owned(),
        })
    }

    pub fn lbry_url(&self) -> String {
        format!("lbry://{}#{}", self.name, self.claim_id)
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why a claim could not be turned into an sd hash.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The API says the claim does not exist, or it is not a stream, or its sd hash does not
    /// start with the prefix: 404.
    #[error("{0}")]
    NotFound(String),
    /// The API could not be reached or answered nonsense: 502.
    #[error("{0}")]
    Api(String),
}

/// Resolves claims through the LBRY API, with a bounded cache and bounded concurrency.
pub struct Resolver {
    api: LbryApi,
    cache: Cache<String, BlobHash>,
    in_flight: Arc<Semaphore>,
    metrics: PlaybackMetrics,
}

impl Resolver {
    pub fn new(
        api_url: &str,
        config: &StreamConfig,
        metrics: PlaybackMetrics,
    ) -> anyhow::Result<Resolver> {
        Ok(Resolver {
            // No retries: a viewer is waiting; the player retries if it wants to.
            api: LbryApi::new(api_url, config.api_timeout, 0, std::time::Duration::ZERO)?,
            cache: Cache::builder()
                .max_capacity(config.resolve_cache_size)
                .time_to_live(config.resolve_cache_ttl)
                .build(),
            in_flight: Arc::new(Semaphore::new(config.max_concurrent_resolves.max(1))),
            metrics,
        })
    }

    /// The sd hash of the claim at `path`, checked against its prefix.
    pub async fn sd_hash(&self, path: &ClaimPath) -> Result<BlobHash, ResolveError> {
        let url = path.lbry_url();
        let sd_hash = match self.cache.get(&url) {
            Some(hash) => {
                self.metrics.resolve.with_label_values(&["cached"]).inc();
                hash
            }
            None => {
                let hash = self.resolve(&url).await?;
                self.cache.insert(url.clone(), hash);
                hash
            }
        };
        if !sd_hash.to_hex().starts_with(&path.sd_prefix) {
            return Err(ResolveError::NotFound(format!(
                "the claim's sd hash does not start with {}",
                path.sd_prefix
            )));
        }
        Ok(sd_hash)
    }

    async fn resolve(&self, url: &str) -> Result<BlobHash, ResolveError> {
        let count = |result: &str| self.metrics.resolve.with_label_values(&[result]).inc();
        let _slot = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| ResolveError::Api("resolver is shutting down".into()))?;
        let entry = match self.api.resolve_entry(url).await {
            Ok(entry) => entry,
            Err(ApiError::Rpc { message, .. }) => {
                count("not_found");
                tracing::debug!(%url, %message, "claim did not resolve");
                return Err(ResolveError::NotFound("claim not found".into()));
            }
            Err(e) => {
                count("api_error");
                tracing::warn!(%url, error = %e, "LBRY API resolve failed");
                return Err(ResolveError::Api("the LBRY API is unavailable".into()));
            }
        };
        let sd_hash = entry
            .pointer("/value/source/sd_hash")
            .and_then(serde_json::Value::as_str)
            .and_then(|h| BlobHash::parse(h).ok());
        match sd_hash {
            Some(hash) => {
                count("resolved");
                Ok(hash)
            }
            None => {
                count("not_found");
                Err(ResolveError::NotFound(
                    "claim is not a stream (no sd_hash)".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_paths() {
        let p = ClaimPath::parse("my%20video/ad25e05a/449ab708").err();
        assert_eq!(p, Some("invalid claim name"));
        let p = ClaimPath::parse("caf%C3%A9-clip/ad25e05aa7dc5e9994869040c6103f9a8728db46/449a")
            .unwrap();
        assert_eq!(p.name, "café-clip");
        assert_eq!(
            p.lbry_url(),
            "lbry://café-clip#ad25e05aa7dc5e9994869040c6103f9a8728db46"
        );
        for bad in [
            "a/b",
            "a/ab/cd/ef",
            "/ab/cd",
            "a#b/ab/cd",
            "a/AB/cd",
            "a/ab/xyz",
            "a/ab/",
            &format!("a/{}/cd", "a".repeat(41)),
            &format!("{}/ab/cd", "n".repeat(256)),
            "%ff/ab/cd",
        ] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad}");
        }
    }
}
