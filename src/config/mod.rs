//! `blobcache.yaml`: the typed model and its loader.
//!
//! The vocabulary is reflector.go's, so an operator's existing file loads. One file per
//! section: [`servers`] (front doors), [`stores`] (the store tree), [`prefetch`] and [`dht`];
//! [`units`] (sizes and durations) is shared by all and depends on nothing else in the crate.
//! Every type is re-exported here, so `crate::config::X` names any of them. This module imports
//! nothing from the parts of the crate that consume the configuration.
//!
//! All validation happens *during* deserialization (custom `Deserialize` impls for sizes,
//! durations and unsupported types), so serde_yaml prefixes every error with the YAML path and
//! position it came from, e.g.
//! `store.caching.cache.disk.max_size: invalid size "5 parsecs" ... at line 7 column 19`.
//! reflector.go's one-key-map form of a store (`disk: {...}`) is serde_yaml's "singleton map"
//! representation of an enum, applied recursively to the whole file.

pub mod access_log;
pub mod admin;
pub mod clients;
pub mod dht;
pub mod limits;
pub mod nat;
pub mod pins;
pub mod pool;
pub mod prefetch;
pub mod reflector;
pub mod servers;
pub mod stores;
pub mod stream;
pub mod trackers;
pub mod units;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use self::access_log::{AccessLogConfig, AccessLogFormat};
pub use self::admin::AdminConfig;
pub use self::clients::Proxies;
pub use self::dht::DhtConfig;
pub use self::limits::LimitsConfig;
pub use self::nat::NatConfig;
pub use self::pins::PinsConfig;
pub use self::pool::{Endpoint, PoolHealthConfig};
pub use self::prefetch::PrefetchConfig;
pub use self::reflector::ReflectorServerConfig;
pub use self::servers::{
    DoorSettings, Http3ServerConfig, HttpServerConfig, Listen, PeerServerConfig, RequestLimits,
    ServersConfig,
};
pub use self::stores::{
    CachingConfig, DbBackedConfig, DiskConfig, GcacheConfig, GcacheStrategy, Http3StoreConfig,
    HttpOriginConfig, IttConfig, MemConfig, MultiwriterConfig, NoopConfig, PeerStoreConfig,
    ProxiedS3Config, S3Config, SingleflightConfig, StoreConfig, UpstreamConfig,
};
pub use self::stream::StreamConfig;
pub use self::trackers::TrackersConfig;
pub use self::units::{duration, opt_duration, ByteSize};

/// A configuration error: the YAML path, what is wrong, and (from serde) what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Loads `<conf_dir>/<command>.yaml`.
pub fn load_file<T: for<'de> Deserialize<'de>>(
    conf_dir: &Path,
    command: &str,
) -> Result<T, ConfigError> {
    let path = conf_dir.join(format!("{command}.yaml"));
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses YAML text; `file` only labels error messages.
pub fn parse<T: for<'de> Deserialize<'de>>(text: &str, file: &str) -> Result<T, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(
        serde_yaml::Deserializer::from_str(text),
        &mut track,
    );
    serde_yaml::with::singleton_map_recursive::deserialize(tracked).map_err(
        |err: serde_yaml::Error| {
            let path = track.path().to_string();
            ConfigError::Invalid {
                file: file.to_string(),
                message: with_full_path(&path, &err.to_string()),
            }
        },
    )
}

/// serde_yaml prefixes its messages with the path of the enclosing map (`store.disk: ...`);
/// serde_path_to_error knows the full path down to the field (`store.disk.max_size`). Use the
/// full one.
fn with_full_path(full: &str, message: &str) -> String {
    let full = if full == "." { "" } else { full };
    let rest = match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') && full.starts_with(prefix) => rest,
        _ => message,
    };
    if full.is_empty() {
        format!("(top level): {rest}")
    } else {
        format!("{full}: {rest}")
    }
}

/// The whole `blobcache.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobcacheConfig {
    /// Front doors. Omitted = none (useful for `getblob`-style tools only).
    #[serde(default)]
    pub servers: ServersConfig,
    /// Exactly one root store.
    pub store: StoreConfig,
    /// A file of protected blob hashes (one per line, `#` comments). Serving one of them needs
    /// the front door's `edge_token`. Relative paths are relative to the working
    /// directory, like every path in the file (as in reflector.go).
    #[serde(default)]
    pub protected_list: Option<PathBuf>,
    /// Keep chosen channels' blobs warm (docs/prefetch.md). Omitted = no prefetching.
    #[serde(default)]
    pub prefetch: Option<PrefetchConfig>,
    /// Blobs never to serve or keep.
    #[serde(default)]
    pub blocklist: Option<BlocklistConfig>,
    /// Take part in the LBRY DHT and announce cached streams (docs/dht.md).
    #[serde(default)]
    pub dht: Option<DhtConfig>,
    /// Map the peer and DHT ports on the home router (UPnP, NAT-PMP/PCP; docs/dht.md).
    /// Omitted = no mapping.
    #[serde(default)]
    pub nat: Option<NatConfig>,
    /// Announce held streams to UDP trackers too (docs/dht.md, "Trackers").
    #[serde(default)]
    pub trackers: Option<TrackersConfig>,
    /// The admin API on the metrics port; off unless set (docs/operations.md, "Admin API").
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Pinning's file and bound (docs/operations.md, "Pinning"). Omitted = defaults.
    #[serde(default)]
    pub pins: Option<PinsConfig>,
    /// Stream playback (`/stream/{sd_hash}`, player-server routes). Omitted = defaults.
    #[serde(default)]
    pub stream: Option<StreamConfig>,
    /// Bounds shared by every front door (docs/configuration.md, "Limits").
    #[serde(default)]
    pub limits: LimitsConfig,
    /// One line per request on every HTTP door and per blob on the peer door. Omitted = off.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
}

/// The `upload` command's `upload.yaml` (reflector.go's shape): the store uploads are put into
/// (its writer, for a `proxied-s3`), and reflector.go's MySQL `database:` section, accepted so
/// an existing file loads and ignored (prism-lite keeps no database; `has` on the store is the
/// exists check).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    #[serde(default)]
    pub database: Option<serde::de::IgnoredAny>,
    pub store: StoreConfig,
}

/// `blocklist:`: blob hashes the cache refuses to serve and deletes from its stores.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocklistConfig {
    /// A local file: one hash per line (`#` comments) or a JSON array of hashes.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A URL serving the same formats, fetched at start and every `refresh_interval`. Its
    /// userinfo password and query are never printed.
    #[serde(default)]
    pub url: Option<crate::secret::SensitiveUrl>,
    #[serde(default = "defaults::blocklist_refresh", deserialize_with = "duration")]
    pub refresh_interval: Duration,
}

mod defaults {
    use std::time::Duration;

    pub fn blocklist_refresh() -> Duration {
        Duration::from_secs(3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<BlobcacheConfig, ConfigError> {
        parse(text, "blobcache.yaml")
    }

    fn error_of(text: &str) -> String {
        load(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    /// Every store's summary in the tree, one per line (what `check-config` prints, without
    /// the indentation), so these tests need nothing outside `config`.
    fn summaries(store: &StoreConfig) -> String {
        let mut out = store.summary();
        for (_, child) in store.children() {
            out.push('\n');
            out.push_str(&summaries(child));
        }
        out
    }

    #[test]
    fn loads_a_full_tree() {
        let cfg = load(
            r#"
servers:
  http:
    port: 7000
    address: 127.0.0.1
    max_concurrent_requests: 10
    edge_token: secret
store:
  caching:
    name: edge
    cache:
      caching:
        cache:
          mem: {max_size: 64MiB}
        origin:
          disk: {name: local, mount_point: ./data, sharding_size: 2, max_size: 500GB}
    origin:
      ittt:
        this:
          gcache: {max_size: 10, strategy: 0, store: {noop: {}}}
        that:
          singleflight: {component: sf, store: {noop: }}
"#,
        )
        .unwrap();
        let http = cfg.servers.http.unwrap();
        assert_eq!(http.port, 7000);
        use crate::secret::ExposeSecret;
        assert_eq!(
            http.edge_token.as_ref().map(|t| t.expose_secret()),
            Some("secret")
        );
        let StoreConfig::Caching(top) = &cfg.store else {
            panic!("root should be caching")
        };
        assert_eq!(top.name.as_deref(), Some("edge"));
        assert_eq!(top.negative_cache_ttl, Duration::from_secs(300));
        let StoreConfig::Caching(inner) = &top.cache else {
            panic!()
        };
        let StoreConfig::Disk(disk) = &inner.origin else {
            panic!()
        };
        assert_eq!(disk.max_size, Some(ByteSize(500_000_000_000)));
        assert_eq!(disk.sharding_size, 2);
        let StoreConfig::Mem(mem) = &inner.cache else {
            panic!()
        };
        assert_eq!(mem.max_size, ByteSize(64 * 1024 * 1024));
        let desc = summaries(&cfg.store);
        assert!(desc.contains("disk name=local"), "{desc}");
        assert!(
            desc.contains("gcache name=gcache max_size=10 blobs strategy=Lfu"),
            "{desc}"
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        for (text, bytes) in [
            ("500GB", 500_000_000_000u64),
            ("2GiB", 2 * 1024 * 1024 * 1024),
            ("512 MiB", 512 * 1024 * 1024),
            ("1024", 1024),
        ] {
            assert_eq!(text.parse::<ByteSize>().unwrap().0, bytes, "{text}");
        }
        let cfg = load(
            "store: {caching: {cache: {mem: {}}, origin: {noop: {}}, negative_cache_ttl: 90s}}",
        )
        .unwrap();
        let StoreConfig::Caching(c) = cfg.store else {
            panic!()
        };
        assert_eq!(c.negative_cache_ttl, Duration::from_secs(90));
    }

    #[test]
    fn unknown_store_type_names_path_and_allowed_types() {
        let e = error_of("store:\n  caching:\n    cache: {redis: {}}\n    origin: {noop: {}}\n");
        assert!(e.contains("store.caching.cache"), "{e}");
        assert!(e.contains("unknown variant `redis`"), "{e}");
        assert!(e.contains("`disk`") && e.contains("`gcache`"), "{e}");
    }

    #[test]
    fn unknown_key_names_path_and_allowed_keys() {
        let e = error_of("store:\n  disk: {mount_point: /tmp/x, max_sise: 1GB}\n");
        assert!(e.contains("store.disk"), "{e}");
        assert!(e.contains("unknown field `max_sise`"), "{e}");
        assert!(e.contains("`max_size`"), "{e}");
        let e = error_of("store: {noop: {}}\nstorez: 1\n");
        assert!(e.contains("unknown field `storez`"), "{e}");
    }

    #[test]
    fn bad_size_names_path() {
        let e = error_of("store: {disk: {mount_point: /tmp/x, max_size: 5 parsecs}}");
        assert!(e.contains("store.disk.max_size"), "{e}");
        assert!(e.contains("invalid size \"5 parsecs\""), "{e}");
        let e = error_of("store: {mem: {max_size: 0}}");
        assert!(
            e.contains("store.mem.max_size") && e.contains("greater than zero"),
            "{e}"
        );
    }

    #[test]
    fn bad_duration_names_path() {
        let e = error_of(
            "store: {caching: {cache: {mem: {}}, origin: {noop: {}}, negative_cache_ttl: soon}}",
        );
        assert!(e.contains("store.caching.negative_cache_ttl"), "{e}");
        assert!(e.contains("invalid duration \"soon\""), "{e}");
    }

    #[test]
    fn peer_server_and_store_defaults() {
        let cfg = load(
            "servers: {peer: {}}\nstore: {caching: {cache: {mem: {}}, origin: {peer: {address: \"10.0.0.1:5567\"}}}}\n",
        )
        .unwrap();
        let peer = cfg.servers.peer.expect("servers.peer");
        assert_eq!(peer.port, 5567);
        assert_eq!(peer.address, None);
        assert_eq!(peer.max_request_size, ByteSize(4096));
        assert_eq!(peer.idle_timeout, Duration::from_secs(30));
        assert_eq!(peer.write_timeout, Duration::from_secs(60));
        assert_eq!(peer.max_connections, 1024);
        assert_eq!(peer.lbrycrd_address, "");
        let desc = summaries(&cfg.store);
        assert!(
            desc.contains("peer name=peer address=10.0.0.1:5567 timeout=30s"),
            "{desc}"
        );
        let e = error_of("servers: {peer: {idle_timeout: never}}\nstore: {noop: {}}\n");
        assert!(e.contains("servers.peer.idle_timeout"), "{e}");
        let e = error_of("store: {peer: {address: x, edge_token: t}}");
        assert!(
            e.contains("store.peer") && e.contains("unknown field `edge_token`"),
            "{e}"
        );
        let e = error_of("store: {peer: {timeout: 5s}}");
        assert!(e.contains("missing field `address`"), "{e}");
    }

    #[test]
    fn missing_required_fields_are_named() {
        let e = error_of("store: {caching: {cache: {mem: {}}}}");
        assert!(
            e.contains("store.caching") && e.contains("missing field `origin`"),
            "{e}"
        );
        let e = error_of("servers: {}\n");
        assert!(e.contains("missing field `store`"), "{e}");
        let e = error_of("store: {disk: {max_size: 1GB}}");
        assert!(e.contains("missing field `mount_point`"), "{e}");
    }

    #[test]
    fn exactly_one_root_store() {
        let e = error_of("store:\n  mem: {}\n  noop: {}\n");
        assert!(e.contains("store"), "{e}");
    }

    #[test]
    fn bad_gcache_strategy_and_sharding() {
        let e = error_of("store: {gcache: {max_size: 5, strategy: 9, store: {noop: {}}}}");
        assert!(
            e.contains("store.gcache.strategy") && e.contains("allowed: 0 (LFU)"),
            "{e}"
        );
        let e = error_of("store: {disk: {mount_point: /x, sharding_size: 40}}");
        assert!(
            e.contains("store.disk.sharding_size") && e.contains("0 (flat) to 8"),
            "{e}"
        );
    }

    /// reflector.go's current forms: `multiwriter` with `one`/`two`/`three`, `noop` with a
    /// `name`, a quoted gcache `strategy`.
    #[test]
    fn reflector_go_current_vocabulary_loads() {
        let cfg = load(
            "store:\n  multiwriter:\n    name: w\n    one: {noop: {name: first}}\n    two: {mem: {}}\n    three: {noop: }\n",
        )
        .unwrap();
        let StoreConfig::Multiwriter(mw) = &cfg.store else {
            panic!("multiwriter")
        };
        let keys: Vec<&str> = mw.stores.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["one", "two", "three"]);
        assert_eq!(mw.stores[0].1.name(), "first");
        assert_eq!(mw.stores[2].1.name(), "noop");
        let desc = summaries(&cfg.store);
        assert!(desc.contains("multiwriter name=w stores=3"), "{desc}");
        assert!(desc.contains("noop name=first"), "{desc}");

        // reflector.go reads the same four keys for every server.
        let cfg = load("servers: {peer: {port: 5567, edge_token: t, max_concurrent_requests: 9}}\nstore: {noop: }\n").unwrap();
        assert!(cfg.servers.peer.unwrap().edge_token.is_some());

        let e = error_of("store: {multiwriter: {stores: [{noop: }], one: {noop: }}}");
        assert!(
            e.contains("store.multiwriter") && e.contains("not both"),
            "{e}"
        );
        let e = error_of("store: {multiwriter: {name: x}}");
        assert!(e.contains("at least one store"), "{e}");
        let e = error_of("store: {multiwriter: {one: {noop: }, four: {noop: }}}");
        assert!(
            e.contains("unknown field `four`") && e.contains("`three`"),
            "{e}"
        );
        let e = error_of("store: {noop: {nmae: x}}");
        assert!(e.contains("unknown field `nmae`"), "{e}");

        let cfg = load("store: {gcache: {max_size: 5, strategy: '1', store: {noop: }}}").unwrap();
        let StoreConfig::Gcache(g) = &cfg.store else {
            panic!("gcache")
        };
        assert_eq!(g.strategy, GcacheStrategy::Arc);
        let e = error_of("store: {gcache: {max_size: 5, strategy: lru, store: {noop: }}}");
        assert!(
            e.contains("store.gcache.strategy") && e.contains("2 (LRU)"),
            "{e}"
        );
    }

    #[test]
    fn wrong_value_type_is_named() {
        let e = error_of("servers: {http: {port: http}}\nstore: {noop: {}}\n");
        assert!(e.contains("servers.http.port"), "{e}");
    }

    #[test]
    fn http3_server_and_store_load_with_defaults_and_named_errors() {
        let cfg = load(
            "servers: {http3: {address: 127.0.0.1, idle_timeout: 5s}}\n\
             store: {http3: {address: \"up:5568\", insecure_skip_verify: true}}\n",
        )
        .unwrap();
        let h3 = cfg.servers.http3.unwrap();
        assert_eq!(h3.port, 5568);
        assert_eq!(h3.idle_timeout, Duration::from_secs(5));
        assert_eq!(h3.handshake_timeout, Duration::from_secs(10));
        assert_eq!(h3.max_streams_per_connection, 128);
        assert_eq!(h3.send_window.0, 256 * 1024);
        let StoreConfig::Http3(store) = &cfg.store else {
            panic!("root should be http3")
        };
        assert_eq!(store.timeout, Duration::from_secs(30));
        let desc = summaries(&cfg.store);
        assert!(desc.contains("http3 name=http3 address=up:5568"), "{desc}");
        assert!(desc.contains("insecure_skip_verify"), "{desc}");
        let e = error_of("store: {http3: {address: \"up:5568\", timeout: soon}}");
        assert!(e.contains("store.http3.timeout"), "{e}");
        let e = error_of("servers: {http3: {handshake_timeout: x}}\nstore: {noop: {}}\n");
        assert!(e.contains("servers.http3.handshake_timeout"), "{e}");
        let e = error_of("store: {http3: {timeout: 1s}}");
        assert!(e.contains("missing field `address`"), "{e}");
    }
}
