//! `nat:` in `blobcache.yaml`: ask the home router to forward the peer and DHT ports.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::units::duration;

/// `nat:` settings. The section's presence turns port mapping on; each method can be turned
/// off on its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatConfig {
    /// Map through UPnP IGD (found with SSDP), as the LBRY SDK's `use_upnp` does.
    #[serde(default = "defaults::on")]
    pub upnp: bool,
    /// Map through PCP, falling back to NAT-PMP, when UPnP did not map.
    #[serde(default = "defaults::on")]
    pub natpmp: bool,
    /// The router for NAT-PMP/PCP; omitted = the default route's gateway.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Where SSDP searches go: the multicast group, or a router's own address where multicast
    /// is filtered.
    #[serde(default = "defaults::discovery")]
    pub discovery: SocketAddr,
    /// The lease asked for; mappings are renewed at half of what the router grants.
    #[serde(default = "defaults::lease", deserialize_with = "duration")]
    pub lease: Duration,
    /// How long finding a router and mapping may take, per method, at start.
    #[serde(default = "defaults::timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for NatConfig {
    fn default() -> NatConfig {
        NatConfig {
            upnp: true,
            natpmp: true,
            gateway: None,
            discovery: defaults::discovery(),
            lease: defaults::lease(),
            timeout: defaults::timeout(),
        }
    }
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn on() -> bool {
        true
    }
    /// SSDP's multicast group and port (UPnP Device Architecture 1.1, 1.3.2).
    pub fn discovery() -> SocketAddr {
        SocketAddr::from(([239, 255, 255, 250], 1900))
    }
    /// An hour: short enough that a crash leaves no mapping for long.
    pub fn lease() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(3)
    }
}
