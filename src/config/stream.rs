//! `stream:` in `blobcache.yaml`: playback settings (the routes are described in `crate::server::playback`).

use std::time::Duration;

use serde::Deserialize;

use super::units::duration;

/// `stream:`. Omitted = `/stream/{sd_hash}` is served with these defaults and the player-server
/// routes answer 404 (they need `api`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// `false` turns every playback route off (they answer 404 like any unknown path).
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// The LBRY JSON-RPC API (`http://host:port/`) that resolves `lbry://name#claim_id` for the
    /// player-server routes. Omitted = those routes answer 404.
    #[serde(default)]
    pub api: Option<String>,
    /// How long one API call may take before the route answers 502.
    #[serde(default = "defaults::api_timeout", deserialize_with = "duration")]
    pub api_timeout: Duration,
    /// API calls in flight at once (over all clients); more wait for a slot.
    #[serde(default = "defaults::max_concurrent_resolves")]
    pub max_concurrent_resolves: usize,
    /// How long a resolved claim -> sd hash answer is reused.
    #[serde(default = "defaults::resolve_cache_ttl", deserialize_with = "duration")]
    pub resolve_cache_ttl: Duration,
    /// Resolutions kept at most.
    #[serde(default = "defaults::resolve_cache_size")]
    pub resolve_cache_size: u64,
    /// Blobs fetched ahead of the one a response is reading (player-server's `prefetch-count`).
    /// 0 = no readahead.
    #[serde(default = "defaults::readahead")]
    pub readahead: usize,
    /// Readahead fetches in flight over all responses; when all are busy a readahead is
    /// skipped (the response then fetches the blob itself when it gets there).
    #[serde(default = "defaults::max_readahead")]
    pub max_readahead: usize,
    /// Content blobs listed by the parsed stream descriptors kept in memory (about 150 bytes
    /// each), so a player's many range requests parse the sd blob and probe the last blob once.
    /// Counted in blobs, not streams, because one sd blob may list thousands.
    #[serde(default = "defaults::descriptor_cache_blobs")]
    pub descriptor_cache_blobs: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        // One source of truth: the serde defaults.
        serde_yaml::from_str("{}").expect("empty stream config uses defaults")
    }
}

mod defaults {
    use std::time::Duration;

    pub fn enabled() -> bool {
        true
    }
    pub fn api_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_concurrent_resolves() -> usize {
        16
    }
    pub fn resolve_cache_ttl() -> Duration {
        Duration::from_secs(300)
    }
    pub fn resolve_cache_size() -> u64 {
        10_000
    }
    pub fn readahead() -> usize {
        2
    }
    pub fn max_readahead() -> usize {
        32
    }
    pub fn descriptor_cache_blobs() -> u64 {
        200_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c = StreamConfig::default();
        assert!(c.enabled);
        assert_eq!(c.readahead, 2);
        assert_eq!(c.api, None);
        assert_eq!(c.resolve_cache_ttl, Duration::from_secs(300));
        let c: StreamConfig =
            serde_yaml::from_str("{api: \"http://127.0.0.1:5279/\", readahead: 4}").unwrap();
        assert_eq!(c.api.as_deref(), Some("http://127.0.0.1:5279/"));
        assert_eq!(c.readahead, 4);
        assert!(serde_yaml::from_str::<StreamConfig>("{prefetch: 1}").is_err());
    }
}
