//! Endpoint lists for the remote stores that can talk to a *pool* of caches (`upstream`,
//! `http3`, `peer`): `upstreams: [URL, ...]` / `addresses: [host:port, ...]` next to the
//! single-endpoint `upstream:` / `address:` keys, plus the pool's passive health settings.
//!
//! The parsing lives here once so the three stores cannot drift: a list entry is a bare string
//! or `{url: ..., weight: W}` (`address:` is accepted for `url:`, so `http3`/`peer` lists read
//! naturally), exactly one of the single and list keys must be set, weights are finite and
//! positive, and no endpoint is listed twice. What the list *means* (rendezvous hashing,
//! failover, ejection) is [`crate::store::pool`]'s.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::units::duration;
use crate::secret::redact_url;

/// One endpoint of a store: where it is, and its relative share of the keyspace. An upstream
/// URL may carry a password or a signed query, so `Debug` shows it redacted.
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    /// A URL (`upstream`) or `host:port` (`http3`, `peer`), as written (trimmed).
    pub address: String,
    /// Relative share of the blobs this endpoint is home for (1 = an equal share).
    pub weight: f64,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &redact_url(&self.address))
            .field("weight", &self.weight)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint with weight 1 (the single-endpoint forms, and tests).
    pub fn new(address: impl Into<String>) -> Endpoint {
        Endpoint {
            address: address.into(),
            weight: 1.0,
        }
    }
}

/// One entry of an endpoint list as written: `"http://r1:5569"` or `{url: ..., weight: 2}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "an endpoint: a string, or a map {url: ..., weight: ...} ({address: ..., weight: ...} for http3 and peer)"
)]
pub enum EndpointEntry {
    Bare(String),
    Weighted(WeightedEntry),
}

/// The map form of an [`EndpointEntry`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedEntry {
    #[serde(alias = "address")]
    url: String,
    #[serde(default = "defaults::weight")]
    weight: f64,
}

/// Passive health of a pool's endpoints (`health:` in `upstream`, `http3` and `peer`).
///
/// After `failures` consecutive failed requests (connection error, timeout, a 5xx or a bad
/// blob) an endpoint is *ejected*: skipped at once, costing requests nothing, for a cool-down
/// that starts at `cooldown` and doubles with each failed re-try, up to `max_cooldown`. When the
/// cool-down is over, one real request is let through as a probe (one at a time per endpoint):
/// an answer puts the endpoint back in rotation, a failure ejects it again for twice as long.
/// Only pools of two or more endpoints eject: with one there is nothing to fail over to.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolHealthConfig {
    /// Consecutive failures that eject an endpoint (at least 1).
    #[serde(default = "defaults::failures", deserialize_with = "at_least_one")]
    pub failures: u32,
    /// First cool-down of an ejected endpoint.
    #[serde(default = "defaults::cooldown", deserialize_with = "duration")]
    pub cooldown: Duration,
    /// Longest cool-down (the doubling stops here).
    #[serde(default = "defaults::max_cooldown", deserialize_with = "duration")]
    pub max_cooldown: Duration,
}

impl Default for PoolHealthConfig {
    fn default() -> Self {
        PoolHealthConfig {
            failures: defaults::failures(),
            cooldown: defaults::cooldown(),
            max_cooldown: defaults::max_cooldown(),
        }
    }
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(
            "failures must be at least 1 (the consecutive failures that eject an endpoint)",
        ));
    }
    Ok(n)
}

/// The endpoints of a store from its single key (`single_key: value`) or its list key
/// (`list_key: [...]`): exactly one must be set. The error names the keys, for the loader to
/// prefix with the store's YAML path.
pub fn endpoints(
    single_key: &str,
    single: Option<String>,
    list_key: &str,
    list: Option<Vec<EndpointEntry>>,
) -> Result<Vec<Endpoint>, String> {
    let endpoints = match (single, list) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "set either `{single_key}` (one endpoint) or `{list_key}` (a pool), not both"
            ))
        }
        (None, None) => {
            return Err(format!(
                "missing field `{single_key}` (or `{list_key}`: a list of endpoints)"
            ))
        }
        (Some(one), None) => vec![Endpoint::new(one.trim())],
        (None, Some(list)) => list
            .into_iter()
            .map(|entry| match entry {
                EndpointEntry::Bare(address) => Endpoint::new(address.trim()),
                EndpointEntry::Weighted(w) => Endpoint {
                    address: w.url.trim().to_string(),
                    weight: w.weight,
                },
            })
            .collect(),
    };
    if endpoints.is_empty() {
        return Err(format!("`{list_key}` must list at least one endpoint"));
    }
    for (i, e) in endpoints.iter().enumerate() {
        if e.address.is_empty() {
            return Err(format!("`{list_key}`[{i}] is empty"));
        }
        if !(e.weight.is_finite() && e.weight > 0.0) {
            return Err(format!(
                "{:?}: weight {} must be a positive number",
                redact_url(&e.address),
                e.weight
            ));
        }
        if endpoints[..i].iter().any(|o| o.address == e.address) {
            return Err(format!(
                "{:?} is listed twice in `{list_key}`",
                redact_url(&e.address)
            ));
        }
    }
    Ok(endpoints)
}

/// `key=value` for one endpoint, `keys=[a, b*2]` for a pool (weights other than 1 shown), for
/// `check-config`. `show` turns an address into its printable form (no secrets).
pub fn summary(
    single_key: &str,
    list_key: &str,
    endpoints: &[Endpoint],
    show: impl Fn(&str) -> String,
) -> String {
    match endpoints {
        [one] if one.weight == 1.0 => format!("{single_key}={}", show(&one.address)),
        many => {
            let items: Vec<String> = many
                .iter()
                .map(|e| {
                    if e.weight == 1.0 {
                        show(&e.address)
                    } else {
                        format!("{}*{}", show(&e.address), e.weight)
                    }
                })
                .collect();
            format!("{list_key}=[{}]", items.join(", "))
        }
    }
}

/// The name of an `upstream` endpoint: `scheme://host[:port][/path]`, without user info, query or
/// fragment, lower-case host, no default port, no trailing `/` (a bare `host:port` is
/// `http://host:port`, as the store reads it). It is the endpoint's identity for rendezvous
/// hashing, so edges whose lists spell one cache differently (`HTTP://R1:80/` and `http://r1`)
/// still agree on every blob's home; and it is safe to show (metrics labels, logs,
/// `check-config`) because no secret a URL can carry survives it.
pub fn url_name(address: &str) -> String {
    let address = address.trim();
    let with_scheme = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    match reqwest::Url::parse(&with_scheme) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        // Not a URL (the store refuses it at build time): show it without anything secret-shaped.
        Err(_) => {
            let no_query = with_scheme.split(['?', '#']).next().unwrap_or_default();
            match no_query.split_once("://") {
                Some((scheme, rest)) => {
                    format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or_default())
                }
                None => no_query.to_string(),
            }
        }
    }
}

/// The name of an `http3` or `peer` endpoint (`host:port`): trimmed, lower-case, anything up to
/// an `@` dropped. Its identity for rendezvous hashing and its label, like [`url_name`].
pub fn address_name(address: &str) -> String {
    address
        .trim()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

mod defaults {
    use std::time::Duration;

    pub fn weight() -> f64 {
        1.0
    }
    pub fn failures() -> u32 {
        3
    }
    pub fn cooldown() -> Duration {
        Duration::from_secs(1)
    }
    pub fn max_cooldown() -> Duration {
        Duration::from_secs(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(yaml: &str) -> Vec<EndpointEntry> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn single_and_list_forms() {
        assert_eq!(
            endpoints("upstream", Some(" http://a ".into()), "upstreams", None).unwrap(),
            vec![Endpoint::new("http://a")]
        );
        let got = endpoints(
            "address",
            None,
            "addresses",
            Some(list(
                "[\"a:1\", {address: \"b:1\", weight: 2.5}, {url: \"c:1\"}]",
            )),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Endpoint::new("a:1"),
                Endpoint {
                    address: "b:1".into(),
                    weight: 2.5
                },
                Endpoint::new("c:1"),
            ]
        );
        assert_eq!(
            summary("address", "addresses", &got, str::to_string),
            "addresses=[a:1, b:1*2.5, c:1]"
        );
    }

    #[test]
    fn bad_lists_are_named() {
        let e = endpoints("upstream", Some("x".into()), "upstreams", Some(vec![])).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = endpoints("upstream", None, "upstreams", None).unwrap_err();
        assert!(e.contains("missing field `upstream`"), "{e}");
        let e = endpoints("upstream", None, "upstreams", Some(vec![])).unwrap_err();
        assert!(e.contains("at least one"), "{e}");
        let e = endpoints("a", None, "b", Some(list("[x, x]"))).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        for w in ["0", "-1", ".nan", ".inf"] {
            let e = endpoints(
                "a",
                None,
                "b",
                Some(list(&format!("[{{url: x, weight: {w}}}]"))),
            )
            .unwrap_err();
            assert!(e.contains("positive"), "{w}: {e}");
        }
        let e = serde_yaml::from_str::<Vec<EndpointEntry>>("[{url: x, wieght: 2}]").unwrap_err();
        assert!(e.to_string().contains("an endpoint"), "{e}");
    }

    #[test]
    fn endpoint_names_are_normalised_and_carry_no_secrets() {
        for (written, name) in [
            ("r1.example:5569", "http://r1.example:5569"),
            ("HTTP://R1.example:80/", "http://r1.example"),
            (
                "http://user:pw@r1:5569/base/?edge_token=t#x",
                "http://r1:5569/base",
            ),
            ("https://r1/", "https://r1"),
        ] {
            assert_eq!(url_name(written), name, "{written}");
        }
        assert_eq!(url_name("http://u:p@[bad?q=1"), "http://[bad");
        assert_eq!(address_name(" Peer.Example:5567 "), "peer.example:5567");
        assert_eq!(address_name("u:p@h:1"), "h:1");
    }

    #[test]
    fn health_defaults_and_bounds() {
        let h: PoolHealthConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(h, PoolHealthConfig::default());
        assert_eq!(
            (h.failures, h.cooldown, h.max_cooldown),
            (3, Duration::from_secs(1), Duration::from_secs(60))
        );
        assert!(serde_yaml::from_str::<PoolHealthConfig>("{failures: 0}").is_err());
        assert!(serde_yaml::from_str::<PoolHealthConfig>("{fails: 2}").is_err());
    }

    fn load(yaml: &str) -> Result<crate::config::BlobcacheConfig, String> {
        crate::config::parse(yaml, "blobcache.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn pool_forms_load_in_every_store_and_errors_name_the_store() {
        use crate::config::StoreConfig;
        let cfg = load(
            "store:\n  upstream:\n    upstreams: [\"http://u:p@R1:5569/?edge_token=x\", {url: \"r2:5569\", weight: 2}]\n    health: {failures: 5, cooldown: 250ms}\n",
        )
        .unwrap();
        let StoreConfig::Upstream(up) = &cfg.store else {
            panic!("upstream")
        };
        assert_eq!(up.endpoints.len(), 2);
        assert_eq!(up.health.failures, 5);
        assert_eq!(up.health.cooldown, Duration::from_millis(250));
        assert_eq!(up.health.max_cooldown, Duration::from_secs(60));
        let summary = cfg.store.summary();
        assert!(
            summary.contains("upstreams=[http://r1:5569, http://r2:5569*2]"),
            "no secrets in check-config: {summary}"
        );
        let cfg = load("store: {upstream: {upstream: \"r1:5569\"}}").unwrap();
        assert!(cfg.store.summary().contains("upstream=http://r1:5569 "));

        let cfg = load("store: {peer: {addresses: [\"a:1\", \"b:1\"]}}").unwrap();
        assert!(cfg.store.summary().contains("addresses=[a:1, b:1]"));
        let cfg =
            load("store: {http3: {addresses: [{address: \"a:1\", weight: 3}], insecure_skip_verify: true}}")
                .unwrap();
        assert!(cfg.store.summary().contains("addresses=[a:1*3]"));

        for (yaml, expected) in [
            (
                "store: {upstream: {upstream: a, upstreams: [b]}}",
                "store.upstream",
            ),
            ("store: {upstream: {upstreams: []}}", "at least one"),
            (
                "store: {upstream: {upstreams: [a], healthy: {}}}",
                "unknown field `healthy`",
            ),
            (
                "store: {peer: {addresses: [a:1], health: {failures: 0}}}",
                "store.peer.health.failures",
            ),
            (
                "store: {http3: {addresses: [a:1, {address: b:1, weight: -1}]}}",
                "positive",
            ),
            ("store: {peer: {timeout: 5s}}", "missing field `address`"),
        ] {
            let e = load(yaml).unwrap_err();
            assert!(e.contains(expected), "{yaml}: {e}");
        }
    }
}
