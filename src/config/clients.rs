//! `trusted_proxies` and `proxy_protocol` on the TCP doors (and `trusted_proxies` on HTTP/3):
//! which peers may tell us who the client really is.
//!
//! Behind a CDN or a load balancer every connection comes from the proxy; only the proxy knows
//! the client. A peer inside `trusted_proxies` is believed when it says so (the HTTP doors read
//! `Forwarded` / `X-Forwarded-For`, a TCP door with `proxy_protocol: true` reads a PROXY
//! protocol header); anyone else's claims are ignored, so an anonymous client cannot pick the
//! address our per-address limits and the access log see.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer};

/// A door's resolved `trusted_proxies` / `proxy_protocol`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    /// Peers whose forwarding headers (and PROXY headers) are believed.
    pub trusted: Vec<IpNet>,
    /// A connection from a trusted peer starts with a PROXY protocol (v1 or v2) header.
    pub proxy_protocol: bool,
}

impl Proxies {
    /// Whether `ip` is one of the trusted proxies (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// A configuration that cannot work, said in words (`section` names the door): a PROXY
    /// header accepted from nobody.
    pub fn problem(&self, section: &str) -> Option<String> {
        (self.proxy_protocol && self.trusted.is_empty()).then(|| {
            format!(
                "{section}: proxy_protocol: true needs trusted_proxies (the addresses of the \
                 load balancers that send the PROXY header)"
            )
        })
    }
}

impl super::ServersConfig {
    /// The first door whose `proxy_protocol` no peer is trusted to send (what start-up refuses;
    /// `check-config` asks the same).
    pub fn proxy_problem(&self) -> Option<String> {
        [
            (
                "servers.http",
                self.http.as_ref().map(|c| c.settings().listen.proxies),
            ),
            (
                "servers.peer",
                self.peer.as_ref().map(|c| c.settings().listen.proxies),
            ),
            (
                "servers.reflector",
                self.reflector.as_ref().map(|c| c.proxies()),
            ),
        ]
        .into_iter()
        .find_map(|(section, proxies)| proxies?.problem(section))
    }
}

/// A list of CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`) or bare addresses (a /32 or /128),
/// refused at load with the entry named when one is neither.
pub fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| parse_network(text).map_err(de::Error::custom))
        .collect()
}

/// One entry of a list of networks.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("entry {text:?} is not a CIDR block (10.0.0.0/8) or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct List {
        #[serde(deserialize_with = "networks")]
        nets: Vec<IpNet>,
    }

    #[test]
    fn entries_parse_and_a_bad_one_is_named() {
        let l: List = serde_yaml::from_str("nets: [10.0.0.0/8, 127.0.0.1, '::1']").unwrap();
        let proxies = Proxies {
            trusted: l.nets,
            proxy_protocol: false,
        };
        assert!(proxies.trusts("10.9.8.7".parse().unwrap()));
        assert!(proxies.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!proxies.trusts("127.0.0.2".parse().unwrap()));
        let e = serde_yaml::from_str::<List>("nets: [10.0.0.0/40]")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"10.0.0.0/40\" is not a CIDR block"), "{e}");
        let lonely = Proxies {
            trusted: vec![],
            proxy_protocol: true,
        };
        assert!(lonely
            .problem("servers.peer")
            .unwrap()
            .contains("needs trusted_proxies"));
    }
}
