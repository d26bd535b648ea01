//! `dht:` in `blobcache.yaml`: take part in the LBRY DHT so LBRY clients can find this cache.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::duration;

/// `dht:` settings. Everything but `enabled` has a default that suits the public network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhtConfig {
    /// Off unless set: joining a public network is an explicit choice.
    #[serde(default)]
    pub enabled: bool,
    /// UDP port (the SDK's default is 4444; see "Port pairing matters" in docs/dht.md).
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// Bind address; omitted = all IPv4 interfaces (the DHT's compact formats are IPv4-only).
    #[serde(default)]
    pub address: Option<String>,
    /// The public IPv4 other nodes reach us at, when behind NAT. Used to list ourselves in our
    /// own `findValue` answers and to mark ourselves in `dht peers`.
    #[serde(default)]
    pub announce_address: Option<Ipv4Addr>,
    /// The TCP port announced for blob downloads; default `servers.peer.port`.
    #[serde(default)]
    pub announce_port: Option<u16>,
    /// `host:port` of nodes to join through.
    #[serde(default = "defaults::bootstrap")]
    pub bootstrap: Vec<String>,
    /// Accept loopback and private addresses as contacts and announcers (test networks only).
    #[serde(default)]
    pub allow_private: bool,
    /// Where the node id is kept (`node_id` file) so restarts keep our place in the network.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// How long one RPC may take.
    #[serde(default = "defaults::rpc_timeout", deserialize_with = "duration")]
    pub rpc_timeout: Duration,
    /// How long we keep others' announcements (the LBRY network uses 24h; shorten only for
    /// test networks).
    #[serde(default = "defaults::expiry", deserialize_with = "duration")]
    pub expiry: Duration,
    /// How often each of our blobs is announced again; keep it well under the network's 24h
    /// expiry.
    #[serde(default = "defaults::reannounce", deserialize_with = "duration")]
    pub reannounce_interval: Duration,
    /// Announcements started per minute at most (each is a lookup plus up to 8 stores).
    #[serde(default = "defaults::announces_per_minute")]
    pub announces_per_minute: u32,
    /// Most blobs we keep announcing; beyond it new ones are not added.
    #[serde(default = "defaults::max_announced")]
    pub max_announced: usize,
    /// Most announcements of others held in memory.
    #[serde(default = "defaults::max_stored")]
    pub max_stored_announcements: usize,
    /// Requests accepted per second from one IP (burst: twice that); the rest are dropped.
    #[serde(default = "defaults::requests_per_second")]
    pub requests_per_second_per_ip: u32,
}

impl Default for DhtConfig {
    fn default() -> DhtConfig {
        DhtConfig {
            enabled: false,
            port: defaults::port(),
            address: None,
            announce_address: None,
            announce_port: None,
            bootstrap: defaults::bootstrap(),
            allow_private: false,
            data_dir: defaults::data_dir(),
            rpc_timeout: defaults::rpc_timeout(),
            expiry: defaults::expiry(),
            reannounce_interval: defaults::reannounce(),
            announces_per_minute: defaults::announces_per_minute(),
            max_announced: defaults::max_announced(),
            max_stored_announcements: defaults::max_stored(),
            requests_per_second_per_ip: defaults::requests_per_second(),
        }
    }
}

mod defaults {
    use std::path::PathBuf;
    use std::time::Duration;

    pub fn port() -> u16 {
        4444
    }
    pub fn bootstrap() -> Vec<String> {
        [
            "lbrynet1.lbry.com:4444",
            "lbrynet2.lbry.com:4444",
            "lbrynet3.lbry.com:4444",
            "lbrynet4.lbry.com:4444",
            "dht.lbry.madiator.com:4444",
        ]
        .map(String::from)
        .to_vec()
    }
    pub fn data_dir() -> PathBuf {
        PathBuf::from("./dht")
    }
    pub fn rpc_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn expiry() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn reannounce() -> Duration {
        Duration::from_secs(12 * 3600)
    }
    pub fn announces_per_minute() -> u32 {
        120
    }
    pub fn max_announced() -> usize {
        200_000
    }
    pub fn max_stored() -> usize {
        100_000
    }
    pub fn requests_per_second() -> u32 {
        50
    }
}
