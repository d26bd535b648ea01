//! `trackers:` in `blobcache.yaml`: announce held streams to BitTorrent-style UDP trackers
//! (BEP-15), as LBRY clients also look peers up there (docs/dht.md, "Trackers").

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::duration;

/// `trackers:` settings. Only `servers` is needed; the rest have defaults that suit public
/// trackers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackersConfig {
    /// `host:port` of UDP trackers.
    pub servers: Vec<String>,
    /// How often a stream is announced again until a tracker names its own interval.
    #[serde(default = "defaults::interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// The shortest re-announce interval accepted from a tracker (a tracker asking for less
    /// gets this), so a broken tracker cannot make us flood it.
    #[serde(default = "defaults::min_interval", deserialize_with = "duration")]
    pub min_interval: Duration,
    /// How long to wait for the first answer to a request; each retry waits twice as long.
    #[serde(default = "defaults::timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Retries of an unanswered request (BEP-15 retransmission, with doubling waits).
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// After a failed announce (no answer, garbage, refusal), when it is tried again.
    #[serde(default = "defaults::retry_interval", deserialize_with = "duration")]
    pub retry_interval: Duration,
    /// Announces sent to one tracker together (BEP-15 takes one info hash per request).
    #[serde(default = "defaults::batch")]
    pub batch: usize,
    /// Most streams announced; beyond it new ones are not added.
    #[serde(default = "defaults::max_announced")]
    pub max_announced: usize,
    /// Where the announced streams are remembered across restarts (`tracker_announced`).
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
}

impl TrackersConfig {
    /// The settings for `servers` with every default.
    pub fn with_servers(servers: Vec<String>) -> TrackersConfig {
        TrackersConfig {
            servers,
            interval: defaults::interval(),
            min_interval: defaults::min_interval(),
            timeout: defaults::timeout(),
            retries: defaults::retries(),
            retry_interval: defaults::retry_interval(),
            batch: defaults::batch(),
            max_announced: defaults::max_announced(),
            data_dir: defaults::data_dir(),
        }
    }
}

mod defaults {
    use std::path::PathBuf;
    use std::time::Duration;

    pub fn interval() -> Duration {
        Duration::from_secs(30 * 60)
    }
    pub fn min_interval() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub fn retries() -> u32 {
        2
    }
    pub fn retry_interval() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn batch() -> usize {
        50
    }
    pub fn max_announced() -> usize {
        200_000
    }
    pub fn data_dir() -> PathBuf {
        PathBuf::from("./dht")
    }
}
