//! Claims to streams: a player route's claim ([`ClaimRef`]) is looked up through the LBRY
//! JSON-RPC API of `stream.api` (`resolve` for `lbry://name#id`, `claim_search` with
//! `claim_id` for a bare id), reposts are followed to the stream they repost (at most
//! [`MAX_REPOST_DEPTH`] deep, as player-server does), and the stream's `value.source.sd_hash`
//! must start with the route's sd prefix.
//!
//! Answers are cached for `resolve_cache_ttl` (claims are immutable per sd hash; an update only
//! changes which sd hash a claim points to, which the prefix check catches), and API calls in
//! flight are bounded so a flood of distinct names cannot turn into a flood on the API.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::blob::BlobHash;
use crate::prefetch::api::{ApiError, LbryApi};

use super::metrics::PlaybackMetrics;
use super::player_path::{ClaimRef, PlayerPath};
use crate::config::StreamConfig;

/// Reposts followed before giving up (player-server's `maxDepth`).
pub const MAX_REPOST_DEPTH: usize = 5;

/// The stream a claim leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedStream {
    pub sd_hash: BlobHash,
    /// The stream claim's `timestamp` (when its current version was made), for `Last-Modified`.
    pub modified: Option<SystemTime>,
    /// The claim asks a fee (`value.fee.amount` > 0): never served on the free routes.
    pub paid: bool,
}

/// Why a claim could not be turned into a servable stream.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The API says the claim does not exist, or it is not a stream, or its sd hash does not
    /// start with the prefix, or its reposts go too deep: 404.
    #[error("{0}")]
    NotFound(String),
    /// The stream asks a fee: 402.
    #[error("paid streams are not served here")]
    Paid,
    /// The API could not be reached or answered nonsense: 502.
    #[error("{0}")]
    Api(String),
}

/// Resolves claims through the LBRY API, with a bounded cache and bounded concurrency.
pub struct Resolver {
    api: LbryApi,
    cache: Cache<String, ResolvedStream>,
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
            api: LbryApi::new(api_url, config.api_timeout, 0, Duration::ZERO)?,
            cache: Cache::builder()
                .max_capacity(config.resolve_cache_size)
                .time_to_live(config.resolve_cache_ttl)
                .build(),
            in_flight: Arc::new(Semaphore::new(config.max_concurrent_resolves.max(1))),
            metrics,
        })
    }

    /// The stream the route at `path` names: resolved (or cached), checked against the
    /// route's sd prefix, and refused if paid.
    pub async fn stream(&self, path: &PlayerPath) -> Result<ResolvedStream, ResolveError> {
        let key = path.claim.key();
        let stream = match self.cache.get(&key) {
            Some(stream) => {
                self.count("cached");
                stream
            }
            None => {
                let stream = self.resolve(&path.claim).await?;
                self.cache.insert(key, stream);
                stream
            }
        };
        if let Some(prefix) = &path.sd_prefix {
            if !stream.sd_hash.to_hex().starts_with(prefix.as_str()) {
                return Err(ResolveError::NotFound(format!(
                    "the claim's sd hash does not start with {prefix}"
                )));
            }
        }
        if stream.paid {
            return Err(ResolveError::Paid);
        }
        Ok(stream)
    }

    fn count(&self, result: &str) {
        self.metrics.resolve.with_label_values(&[result]).inc();
    }

    /// Looks the claim up and follows its reposts to a stream, under one in-flight slot.
    async fn resolve(&self, claim: &ClaimRef) -> Result<ResolvedStream, ResolveError> {
        let _slot = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| ResolveError::Api("resolver is shutting down".into()))?;
        let mut entry = self.lookup(claim).await?;
        for _ in 0..MAX_REPOST_DEPTH {
            if !is_repost(&entry) {
                break;
            }
            entry = match entry.get("reposted_claim").filter(|c| c.is_object()) {
                Some(reposted) => reposted.clone(),
                None => {
                    let id = reposted_id(&entry).ok_or_else(|| {
                        self.not_found("a repost without the claim id it reposts")
                    })?;
                    self.lookup(&ClaimRef::Id(id)).await?
                }
            };
        }
        if is_repost(&entry) {
            return Err(self.not_found("reposts deeper than 5"));
        }
        let stream = stream_of(&entry).ok_or_else(|| self.not_found("claim is not a stream"))?;
        self.count("resolved");
        Ok(stream)
    }

    /// One claim as the API has it: `resolve` for a named claim, `claim_search` by id.
    async fn lookup(&self, claim: &ClaimRef) -> Result<Value, ResolveError> {
        let found = match claim {
            ClaimRef::Named { .. } => self.api.resolve_entry(&claim.key()).await.map(Some),
            ClaimRef::Id(id) => self.api.claim_by_id(id).await,
        };
        match found {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) | Err(ApiError::Rpc { .. }) => {
                tracing::debug!(claim = %claim.key(), "claim did not resolve");
                Err(self.not_found("claim not found"))
            }
            Err(e) => {
                self.count("api_error");
                tracing::warn!(claim = %claim.key(), error = %e, "LBRY API lookup failed");
                Err(ResolveError::Api("the LBRY API is unavailable".into()))
            }
        }
    }

    fn not_found(&self, why: &str) -> ResolveError {
        self.count("not_found");
        ResolveError::NotFound(why.into())
    }
}

/// Whether a claim entry is a repost (`value_type: repost`, or an embedded `reposted_claim`).
fn is_repost(entry: &Value) -> bool {
    entry.get("value_type").and_then(Value::as_str) == Some("repost")
        || entry.get("reposted_claim").is_some_and(Value::is_object)
}

/// The claim id a repost points at (`value.claim_id`), if it is a claim id.
fn reposted_id(entry: &Value) -> Option<String> {
    let id = entry.pointer("/value/claim_id")?.as_str()?;
    let valid = id.len() == 40 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then(|| id.to_owned())
}

/// The stream of a claim entry: its sd hash, timestamp and whether it asks a fee; `None` when
/// the claim is not a stream.
fn stream_of(entry: &Value) -> Option<ResolvedStream> {
    let sd_hash = entry
        .pointer("/value/source/sd_hash")
        .and_then(Value::as_str)
        .and_then(|h| BlobHash::parse(h).ok())?;
    let modified = entry
        .get("timestamp")
        .and_then(Value::as_u64)
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let fee = entry.pointer("/value/fee/amount");
    let amount = match fee {
        Some(Value::String(s)) => s.trim().parse::<f64>().unwrap_or(0.0),
        Some(v) => v.as_f64().unwrap_or(0.0),
        None => 0.0,
    };
    Some(ResolvedStream {
        sd_hash,
        modified,
        paid: amount > 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SD: &str = "9ddea316b511d9f720b1f67f5958cac381fdac5d1d3beabc754b9a1220a891024e983241e2fc7549f0f89ea0636c6c83";

    #[test]
    fn streams_reposts_and_fees_read_from_claim_entries() {
        let stream = json!({"value_type": "stream", "timestamp": 1655141671,
            "value": {"source": {"sd_hash": SD}}});
        let s = stream_of(&stream).unwrap();
        assert_eq!(s.sd_hash.to_hex(), SD);
        assert_eq!(
            s.modified,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1655141671))
        );
        assert!(!s.paid && !is_repost(&stream));
        let paid = json!({"value": {"source": {"sd_hash": SD}, "fee": {"amount": "0.5"}}});
        assert!(stream_of(&paid).unwrap().paid);
        let free = json!({"value": {"source": {"sd_hash": SD}, "fee": {"amount": 0}}});
        assert!(!stream_of(&free).unwrap().paid);
        assert!(stream_of(&json!({"value_type": "channel", "value": {}})).is_none());

        let id = "ad25e05aa7dc5e9994869040c6103f9a8728db46";
        let repost = json!({"value_type": "repost", "value": {"claim_id": id}});
        assert!(is_repost(&repost));
        assert_eq!(reposted_id(&repost).as_deref(), Some(id));
        assert_eq!(reposted_id(&json!({"value": {"claim_id": "../etc"}})), None);
        assert!(is_repost(&json!({"reposted_claim": stream})));
    }
}
