//! `servers.reflector`: accepting stream uploads on the reflector protocol (see
//! [`crate::protocol::reflector`]).
//!
//! Every limit exists because uploaders are anonymous: a blob is held in memory until it is
//! complete and verified (so nothing partial is ever stored), which costs up to 2 MiB per
//! connection; connections and time per message are bounded so nobody can pin that memory.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer};

use super::clients::{networks as proxy_networks, parse_network, Proxies};
use super::units::{duration, ByteSize};
use crate::blob::MAX_BLOB_SIZE;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReflectorServerConfig {
    /// TCP port; 5566 is the reflector port LBRY publishers are configured with.
    #[serde(default = "defaults::reflector_port")]
    pub port: u16,
    /// Bind address; omitted = all interfaces.
    #[serde(default)]
    pub address: Option<String>,
    /// Who may upload: a list of CIDR blocks or single addresses. Omitted = anyone.
    #[serde(default, deserialize_with = "networks")]
    pub allow: Option<Vec<IpNet>>,
    /// Peers believed when they send a PROXY protocol header (`proxy_protocol`): the load
    /// balancers in front of this door. `allow` and the per-address cap then see the client.
    #[serde(default, deserialize_with = "proxy_networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Connections from `trusted_proxies` start with a PROXY protocol v1/v2 header.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Uploads served at once; further connections wait in the kernel's accept backlog.
    #[serde(default = "defaults::reflector_max_connections")]
    pub max_connections: usize,
    /// Uploads one client address may have open at once; more are closed at once.
    #[serde(default = "defaults::reflector_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Largest sd blob accepted (a descriptor lists ~170 bytes per content blob, so 1 MiB
    /// describes a stream of about 12 GB). Never more than the 2 MiB blob limit.
    #[serde(default = "defaults::reflector_max_sd_blob_size")]
    pub max_sd_blob_size: ByteSize,
    /// How long the next message (handshake or offer) may take to arrive.
    #[serde(
        default = "defaults::reflector_idle_timeout",
        deserialize_with = "duration"
    )]
    pub idle_timeout: Duration,
    /// How long the bytes of one accepted blob may take to arrive (2 MiB in 60 s is ~35 kB/s).
    #[serde(
        default = "defaults::reflector_blob_timeout",
        deserialize_with = "duration"
    )]
    pub blob_timeout: Duration,
    /// How long writing one answer may take.
    #[serde(
        default = "defaults::reflector_write_timeout",
        deserialize_with = "duration"
    )]
    pub write_timeout: Duration,
    /// How long uploads in progress may take to finish on shutdown.
    #[serde(default = "defaults::shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
}

impl Default for ReflectorServerConfig {
    /// Every key at its default: the upload door `prism-lite reflector` runs when the file has
    /// no `servers.reflector`.
    fn default() -> Self {
        serde_yaml::from_str("{}").expect("every servers.reflector key has a default")
    }
}

impl ReflectorServerConfig {
    /// `max_sd_blob_size` in bytes, clamped to the blob limit.
    pub fn sd_limit(&self) -> usize {
        usize::try_from(self.max_sd_blob_size.0)
            .unwrap_or(usize::MAX)
            .min(MAX_BLOB_SIZE)
    }

    /// Who may say who the client is.
    pub fn proxies(&self) -> Proxies {
        Proxies {
            trusted: self.trusted_proxies.clone(),
            proxy_protocol: self.proxy_protocol,
        }
    }

    /// Whether `ip` may upload.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match &self.allow {
            None => true,
            Some(nets) => nets.iter().any(|net| net.contains(&ip)),
        }
    }
}

/// `allow:` entries: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<IpNet>>, D::Error> {
    let Some(entries) = Option::<Vec<String>>::deserialize(d)? else {
        return Ok(None);
    };
    entries
        .iter()
        .map(|text| parse_network(text).map_err(|e| de::Error::custom(format!("allow {e}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

use super::servers::defaults;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_allow_entries() {
        let c: ReflectorServerConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c.port, 5566);
        assert!(c.allows("203.0.113.9".parse().unwrap()));
        assert_eq!(c.sd_limit(), 1024 * 1024);

        let c: ReflectorServerConfig = serde_yaml::from_str(
            "allow: [10.0.0.0/8, 127.0.0.1, '2001:db8::/32']\nmax_sd_blob_size: 8MiB",
        )
        .unwrap();
        assert!(c.allows("10.1.2.3".parse().unwrap()));
        assert!(c.allows("127.0.0.1".parse().unwrap()));
        assert!(c.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(c.allows("2001:db8::1".parse().unwrap()));
        assert!(!c.allows("127.0.0.2".parse().unwrap()));
        assert_eq!(c.sd_limit(), MAX_BLOB_SIZE, "clamped to the blob limit");

        let err = serde_yaml::from_str::<ReflectorServerConfig>("allow: [10.0.0.0/33]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a CIDR block"), "{err}");
        assert!(serde_yaml::from_str::<ReflectorServerConfig>("prot: 1").is_err());
    }
}
