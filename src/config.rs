//! `blobcache.yaml`: the typed model and its loader.
//!
//! The vocabulary is reflector.go's (see PROTOCOLS.md), so an operator's existing file loads.
//! Every store is a one-key map `{type: {params}}` and composites nest children the same way;
//! that is one recursive serde enum ([`StoreConfig`]), not hand-parsing per composite.
//!
//! All validation happens *during* deserialization (custom `Deserialize` impls for sizes,
//! durations and unsupported types), so serde_yaml prefixes every error with the YAML path and
//! position it came from, e.g.
//! `store.caching.cache.disk.max_size: invalid size "5 parsecs" ... at line 7 column 19`.
//! reflector.go's one-key-map form of a store (`disk: {...}`) is serde_yaml's "singleton map"
//! representation of an enum, applied recursively to the whole file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

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
    /// Keep chosen channels' blobs warm (see `docs-prefetch.md`). Omitted = no prefetching.
    #[serde(default)]
    pub prefetch: Option<crate::prefetch::config::PrefetchConfig>,
    /// Blobs never to serve or keep.
    #[serde(default)]
    pub blocklist: Option<BlocklistConfig>,
    /// Take part in the LBRY DHT and announce cached streams (see `docs-dht.md`).
    #[serde(default)]
    pub dht: Option<crate::dht::DhtConfig>,
    /// Stream playback (`/stream/{sd_hash}`, player-server routes). Omitted = defaults.
    #[serde(default)]
    pub stream: Option<crate::playback::StreamConfig>,
}

/// `blocklist:`: blob hashes the cache refuses to serve and deletes from its stores.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocklistConfig {
    /// A local file: one hash per line (`#` comments) or a JSON array of hashes.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A URL serving the same formats, fetched at start and every `refresh_interval`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default = "defaults::blocklist_refresh", deserialize_with = "duration")]
    pub refresh_interval: Duration,
}

/// `servers:`: which front doors run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServersConfig {
    #[serde(default)]
    pub http: Option<HttpServerConfig>,
    #[serde(default)]
    pub http3: Option<Http3ServerConfig>,
    #[serde(default)]
    pub peer: Option<PeerServerConfig>,
}

/// `servers.peer`: the LBRY peer protocol (what the LBRY SDK and reflector.go peers speak).
///
/// The limits exist because the protocol has no framing: a request is "done" only when it parses
/// as JSON, so without a size cap and deadlines a client could hold memory and a slot forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerServerConfig {
    #[serde(default = "defaults::peer_port")]
    pub port: u16,
    /// Bind address; omitted = all interfaces.
    #[serde(default)]
    pub address: Option<String>,
    /// Largest pending request in bytes; a bigger one closes the connection. The SDK's standard
    /// request is about 300 bytes (the SDK server itself allows 1,200).
    #[serde(default = "defaults::peer_max_request_size")]
    pub max_request_size: ByteSize,
    /// How long a connection may sit between requests (and how long one request may take to
    /// arrive) before it is closed.
    #[serde(default = "defaults::peer_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// How long writing one response (header + blob) may take before the connection is closed.
    #[serde(
        default = "defaults::peer_write_timeout",
        deserialize_with = "duration"
    )]
    pub write_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's accept backlog.
    #[serde(default = "defaults::peer_max_connections")]
    pub max_connections: usize,
    /// The payment address reported for `lbrycrd_address: true` (payments are not used).
    #[serde(default)]
    pub lbrycrd_address: String,
}

/// `servers.http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    #[serde(default = "defaults::http_port")]
    pub port: u16,
    /// Bind address; omitted = all interfaces.
    #[serde(default)]
    pub address: Option<String>,
    /// In-flight store calls at once; more requests wait in a bounded queue.
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// How many requests may wait for a slot before new ones get 503. Default: same as
    /// `max_concurrent_requests`.
    #[serde(default)]
    pub max_queued_requests: Option<usize>,
    /// How long a queued request waits for a slot before it gets 503.
    #[serde(default = "defaults::queue_timeout", deserialize_with = "duration")]
    pub queue_timeout: Duration,
    /// Token that unlocks protected blobs (`?edge_token=`).
    #[serde(default)]
    pub edge_token: Option<String>,
    /// Open connections at once; further ones wait in the kernel's accept backlog.
    #[serde(default = "defaults::http_max_connections")]
    pub max_connections: usize,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(default = "defaults::shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
}

/// `servers.http3`: reflector.go's HTTP/3 blob API over QUIC (UDP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http3ServerConfig {
    #[serde(default = "defaults::http3_port")]
    pub port: u16,
    /// Bind address; omitted = all interfaces.
    #[serde(default)]
    pub address: Option<String>,
    /// In-flight store calls at once; further requests wait for a slot.
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Token that unlocks protected blobs (`?edge_token=`).
    #[serde(default)]
    pub edge_token: Option<String>,
    /// PEM certificate chain. Omitted (with `key_file`) = a self-signed certificate generated at
    /// start, as reflector.go does.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A connection with no traffic for this long is closed.
    #[serde(
        default = "defaults::http3_idle_timeout",
        deserialize_with = "duration"
    )]
    pub idle_timeout: Duration,
    /// A client must complete the QUIC/TLS handshake within this time.
    #[serde(
        default = "defaults::http3_handshake_timeout",
        deserialize_with = "duration"
    )]
    pub handshake_timeout: Duration,
    /// Most QUIC connections served at once; more are refused.
    #[serde(default = "defaults::http3_max_connections")]
    pub max_connections: usize,
    /// Most concurrent request streams one connection may open.
    #[serde(default = "defaults::http3_max_streams")]
    pub max_streams_per_connection: u32,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(default = "defaults::shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
}

/// `http3` store: another cache's `servers.http3` as an origin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http3StoreConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// `host:port` of the upstream's HTTP/3 (UDP) port.
    pub address: String,
    /// Bound on one whole request (connect, headers, body).
    #[serde(
        default = "defaults::http3_store_timeout",
        deserialize_with = "duration"
    )]
    pub timeout: Duration,
    /// PEM CA certificate(s) to verify the upstream against (instead of the web PKI roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate, as reflector.go's client does with its self-signed peers.
    /// Off unless set explicitly.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One store: a one-key map `{type: {params}}`.
#[derive(Debug, Clone, Deserialize)]
pub enum StoreConfig {
    #[serde(rename = "disk")]
    Disk(DiskConfig),
    #[serde(rename = "mem")]
    Mem(MemConfig),
    #[serde(rename = "noop")]
    Noop(NoopConfig),
    #[serde(rename = "caching")]
    Caching(Box<CachingConfig>),
    #[serde(rename = "ittt")]
    Ittt(Box<IttConfig>),
    #[serde(rename = "singleflight")]
    Singleflight(Box<SingleflightConfig>),
    #[serde(rename = "gcache")]
    Gcache(Box<GcacheConfig>),
    #[serde(rename = "peer")]
    Peer(PeerStoreConfig),
    #[serde(rename = "s3")]
    S3(Box<S3Config>),
    #[serde(rename = "http")]
    Http(Box<HttpOriginConfig>),
    #[serde(rename = "upstream")]
    Upstream(Box<UpstreamConfig>),
    #[serde(rename = "multiwriter")]
    Multiwriter(Box<MultiwriterConfig>),
    #[serde(rename = "proxied-s3")]
    ProxiedS3(Box<ProxiedS3Config>),
    #[serde(rename = "db_backed")]
    DbBacked(Box<DbBackedConfig>),
    // reflector.go types that later releases add; they load as a clear error for now.
    #[serde(rename = "http3")]
    Http3(Http3StoreConfig),
}

impl StoreConfig {
    /// `type name=...` with the key parameters, for `check-config` output.
    pub fn summary(&self) -> String {
        match self {
            StoreConfig::Disk(c) => format!(
                "disk name={} mount_point={} sharding_size={} max_size={}",
                c.name.as_deref().unwrap_or("disk"),
                c.mount_point.display(),
                c.sharding_size,
                c.max_size
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "90% of the filesystem".into())
            ),
            StoreConfig::Mem(c) => format!(
                "mem name={} max_size={}",
                c.name.as_deref().unwrap_or("mem"),
                c.max_size
            ),
            StoreConfig::Noop(_) => "noop".into(),
            StoreConfig::Caching(c) => format!(
                "caching name={} negative_cache_ttl={:?} negative_cache_size={}",
                c.name.as_deref().unwrap_or("caching"),
                c.negative_cache_ttl,
                c.negative_cache_size
            ),
            StoreConfig::Ittt(c) => format!("ittt name={}", c.name.as_deref().unwrap_or("ittt")),
            StoreConfig::Singleflight(c) => format!("singleflight component={}", c.component),
            StoreConfig::Gcache(c) => format!(
                "gcache name={} max_size={} blobs strategy={:?}",
                c.name.as_deref().unwrap_or("gcache"),
                c.max_size,
                c.strategy
            ),
            StoreConfig::S3(c) => format!(
                "s3 name={} bucket={} region={} endpoint={} prefix={} sharding_size={} timeout={:?} retries={}",
                c.name.as_deref().unwrap_or("s3"),
                c.bucket,
                c.region.as_deref().unwrap_or(defaults::S3_REGION),
                c.endpoint.as_deref().unwrap_or("(AWS)"),
                c.prefix.as_deref().unwrap_or(""),
                c.sharding_size,
                c.timeout,
                c.retries
            ),
            StoreConfig::Http(c) => format!(
                "http name={} endpoint={} sharding_size={} timeout={:?}",
                c.name.as_deref().unwrap_or("http"),
                c.endpoint,
                c.sharding_size,
                c.timeout
            ),
            StoreConfig::Upstream(c) => format!(
                "upstream name={} upstream={} edge_token={} timeout={:?}",
                c.name.as_deref().unwrap_or("upstream"),
                c.upstream,
                if c.edge_token.is_some() { "set" } else { "none" },
                c.timeout
            ),
            StoreConfig::Multiwriter(c) => format!(
                "multiwriter name={} stores={}",
                c.name.as_deref().unwrap_or("multiwriter"),
                c.stores.len()
            ),
            StoreConfig::ProxiedS3(c) => format!(
                "proxied-s3 name={}{}",
                c.name.as_deref().unwrap_or("proxied-s3"),
                if c.reader.is_none() { " (no reader: reads use the writer)" } else { "" }
            ),
            StoreConfig::DbBacked(c) => format!(
                "db_backed (compatibility: loads as its inner store{}; MySQL settings ignored)",
                match (c.max_size, c.has_cap) {
                    (Some(size), Some(true) | None) => format!(", max_size {size} applied to its disk"),
                    _ => String::new(),
                }
            ),
            StoreConfig::Peer(c) => format!(
                "peer name={} address={} timeout={:?}",
                c.name.as_deref().unwrap_or("peer"),
                c.address,
                c.timeout
            ),
            StoreConfig::Http3(c) => format!(
                "http3 name={} address={} timeout={:?} tls={}",
                c.name.as_deref().unwrap_or("http3"),
                c.address,
                c.timeout,
                crate::quic::verify_summary(c)
            ),
        }
    }

    /// Every `disk` store in the tree (for maintenance commands).
    pub fn disks(&self) -> Vec<&DiskConfig> {
        match self {
            StoreConfig::Disk(d) => vec![d],
            other => other
                .children()
                .into_iter()
                .flat_map(|(_, child)| child.disks())
                .collect(),
        }
    }

    /// Child stores with their role, for walking the tree.
    pub fn children(&self) -> Vec<(&'static str, &StoreConfig)> {
        match self {
            StoreConfig::Caching(c) => vec![("cache", &c.cache), ("origin", &c.origin)],
            StoreConfig::Ittt(c) => vec![("this", &c.this), ("that", &c.that)],
            StoreConfig::Singleflight(c) => vec![("store", &c.store)],
            StoreConfig::Gcache(c) => vec![("store", &c.store)],
            StoreConfig::Multiwriter(c) => c.stores.iter().map(|s| ("store", s)).collect(),
            StoreConfig::ProxiedS3(c) => {
                let mut v = Vec::with_capacity(2);
                if let Some(reader) = &c.reader {
                    v.push(("reader", reader));
                }
                v.push(("writer", &c.writer));
                v
            }
            StoreConfig::DbBacked(c) => vec![("store", &c.store)],
            _ => vec![],
        }
    }
}

/// `disk`: files under `mount_point`, LRU-bounded by `max_size` bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub mount_point: PathBuf,
    /// Hex characters of the hash used as a sub-directory (0 = flat). reflector.go uses 2.
    #[serde(default, deserialize_with = "sharding_size")]
    pub sharding_size: usize,
    /// Capacity in bytes. Omitted: 90% of the filesystem's size, so the cache can never fill
    /// the disk.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
}

/// `mem`: an in-memory tier bounded in bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Capacity in bytes (reflector.go's `mem` is unbounded; ours never is).
    #[serde(default = "defaults::mem_size")]
    pub max_size: ByteSize,
}

/// `noop`: holds nothing, accepts and drops writes. Accepts `noop: {}` or a bare `noop:`.
#[derive(Debug, Clone, Default)]
pub struct NoopConfig;

impl<'de> Deserialize<'de> for NoopConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        Option::<Empty>::deserialize(d).map(|_| NoopConfig)
    }
}

/// `caching`: `cache` in front of `origin`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachingConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub cache: StoreConfig,
    pub origin: StoreConfig,
    /// How long an origin "not found" is remembered (0 disables).
    #[serde(default = "defaults::negative_ttl", deserialize_with = "duration")]
    pub negative_cache_ttl: Duration,
    /// How many "not found" answers are remembered.
    #[serde(default = "defaults::negative_size")]
    pub negative_cache_size: u64,
}

/// `peer`: another LBRY peer (an SDK node or a reflector.go/prism-lite peer server) as a
/// read-only origin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerStoreConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// `host:port` of the peer server.
    pub address: String,
    /// Deadline for one whole exchange (connect, request, response and blob bytes).
    #[serde(
        default = "defaults::peer_store_timeout",
        deserialize_with = "duration"
    )]
    pub timeout: Duration,
}

/// `ittt`: try `this`, fall back to `that`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IttConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub this: StoreConfig,
    pub that: StoreConfig,
}

/// `singleflight`: concurrent gets of one hash share one call to `store`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleflightConfig {
    /// The metrics label (reflector.go's `component`).
    #[serde(default = "defaults::singleflight_component")]
    pub component: String,
    pub store: StoreConfig,
}

/// `gcache`: bounds `store` by blob count, evicting by `strategy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcacheConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Most blobs kept (a count, not bytes).
    pub max_size: u64,
    #[serde(default)]
    pub strategy: GcacheStrategy,
    pub store: StoreConfig,
}

/// reflector.go's gcache strategies (0=LFU 1=ARC 2=LRU 3=simple).
///
/// moka offers TinyLFU and LRU; LFU and ARC (both frequency-aware) map to TinyLFU, LRU and
/// "simple" (insertion order, approximated by recency) map to LRU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GcacheStrategy {
    Lfu,
    Arc,
    #[default]
    Lru,
    Simple,
}

impl<'de> Deserialize<'de> for GcacheStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            0 => Ok(GcacheStrategy::Lfu),
            1 => Ok(GcacheStrategy::Arc),
            2 => Ok(GcacheStrategy::Lru),
            3 => Ok(GcacheStrategy::Simple),
            n => Err(de::Error::custom(format!(
                "unknown gcache strategy {n}; allowed: 0 (LFU), 1 (ARC), 2 (LRU), 3 (simple)"
            ))),
        }
    }
}

/// `http`: a read-only origin over plain HTTP(S) object storage or a CDN, laid out as
/// `endpoint/[hash[0:sharding_size]/]hash`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOriginConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Base URL, e.g. `https://s3.example.com/blobs-bucket/` (a trailing `/` is optional).
    pub endpoint: String,
    #[serde(default, deserialize_with = "sharding_size")]
    pub sharding_size: usize,
    /// Whole-request deadline (connect + headers + body).
    #[serde(default = "defaults::origin_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Deadline for establishing a connection. Default: the smaller of 10s and `timeout`.
    #[serde(default, deserialize_with = "opt_duration")]
    pub connect_timeout: Option<Duration>,
}

/// `upstream`: another blob cache's HTTP API (`GET /blob?hash=H`), reflector.go or prism-lite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Base URL of the next cache, e.g. `http://regional.example.com:5569`. A bare `host:port`
    /// is taken as `http://host:port`, as reflector.go's loader only concatenates.
    pub upstream: String,
    /// Sent as `&edge_token=` so the upstream serves protected blobs.
    #[serde(default)]
    pub edge_token: Option<String>,
    #[serde(default = "defaults::origin_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default, deserialize_with = "opt_duration")]
    pub connect_timeout: Option<Duration>,
}

/// `s3`: an S3-protocol bucket (AWS, Wasabi, MinIO, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    #[serde(default)]
    pub name: Option<String>,
    /// Access key id; omitted = the standard AWS chain (env, profile, instance role).
    #[serde(default)]
    pub aws_id: Option<String>,
    #[serde(default)]
    pub aws_secret: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub bucket: String,
    /// Custom endpoint for non-AWS services, e.g. `https://s3.wasabisys.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default, deserialize_with = "sharding_size")]
    pub sharding_size: usize,
    /// Path-style addressing (`endpoint/bucket/key`). Default: on when `endpoint` is set
    /// (what MinIO-style services need), off for AWS.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Key prefix inside the bucket, e.g. `blobs/`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Deadline of one S3 call, per attempt.
    #[serde(default = "defaults::origin_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Retries of a failed call (with exponential backoff); 0 = one attempt only.
    #[serde(default = "defaults::s3_retries")]
    pub retries: u32,
}

/// `multiwriter`: writes to every store, reads from the first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiwriterConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub stores: Vec<StoreConfig>,
}

/// `proxied-s3`: reads through `reader`, writes through `writer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxiedS3Config {
    #[serde(default)]
    pub name: Option<String>,
    /// Omitted (as in reflector.go's `upload.yaml`) = reads go to the writer too.
    #[serde(default)]
    pub reader: Option<StoreConfig>,
    pub writer: StoreConfig,
}

/// `db_backed`: reflector.go tracks a store's contents in MySQL. prism-lite's disk store keeps
/// its own index, so this loads as the inner `store`, with `max_size` applied to it; the
/// MySQL settings are accepted (so existing files load) and ignored with a warning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbBackedConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub store: StoreConfig,
    /// reflector.go only applies `max_size` when `has_cap` is true; we apply it unless
    /// `has_cap` is explicitly false.
    #[serde(default)]
    pub has_cap: Option<bool>,
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    // Accepted for compatibility, ignored (see `store::db_backed`).
    #[serde(default)]
    pub user: Option<de::IgnoredAny>,
    #[serde(default)]
    pub password: Option<de::IgnoredAny>,
    #[serde(default)]
    pub database: Option<de::IgnoredAny>,
    #[serde(default)]
    pub host: Option<de::IgnoredAny>,
    #[serde(default)]
    pub port: Option<de::IgnoredAny>,
    #[serde(default)]
    pub access_tracking: Option<de::IgnoredAny>,
    #[serde(default)]
    pub soft_deletes: Option<de::IgnoredAny>,
    #[serde(default)]
    pub delete_on_miss: Option<de::IgnoredAny>,
    #[serde(default)]
    pub log_queries: Option<de::IgnoredAny>,
}

/// A size in bytes: an integer, or a string such as `500GB`, `2GiB`, `512 MiB`.
/// Decimal units are powers of 1000 (`GB`), binary ones powers of 1024 (`GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    /// Binary units for sizes that are whole MiB (`256.0 MiB`), decimal otherwise (`10.0 GB`),
    /// so a size reads back the way it was most likely written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binary = self.0.is_multiple_of(1 << 20);
        write!(f, "{}", bytesize::ByteSize(self.0).to_string_as(binary))
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        trimmed
            .parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|_| {
                format!("invalid size {text:?}; write a byte count or a number with a unit such as 500MB, 2GiB, 1.5TB")
            })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let size = match Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a size: a byte count or a string such as 500GB or 2GiB")
        })? {
            Raw::Int(n) => ByteSize(n),
            Raw::Text(t) => t.parse().map_err(de::Error::custom)?,
        };
        if size.0 == 0 {
            return Err(de::Error::custom("size must be greater than zero"));
        }
        Ok(size)
    }
}

/// A duration: a string such as `30s`, `5m`, `1h 30m`, or a number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)
        .map_err(|_| de::Error::custom("expected a duration such as 30s, 5m or 1h"))?
    {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {t:?} ({e}); write e.g. 500ms, 30s, 5m, 1h"
            ))
        }),
    }
}

/// An optional [`duration`].
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn sharding_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n > 8 {
        return Err(de::Error::custom(format!(
            "sharding_size {n} is too large; allowed: 0 (flat) to 8 hex characters"
        )));
    }
    Ok(n)
}

mod defaults {
    use super::ByteSize;
    use std::time::Duration;

    pub fn http_port() -> u16 {
        5569
    }
    pub fn http3_port() -> u16 {
        5568
    }
    pub fn http3_idle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn http3_handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn http3_max_connections() -> usize {
        4096
    }
    pub fn http3_max_streams() -> u32 {
        128
    }
    pub fn http3_store_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn http_max_connections() -> usize {
        8192
    }
    pub fn max_concurrent_requests() -> usize {
        200
    }
    pub fn queue_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn shutdown_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn peer_port() -> u16 {
        5567
    }
    pub fn peer_max_request_size() -> ByteSize {
        ByteSize(4 * 1024)
    }
    pub fn peer_idle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn peer_write_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn peer_max_connections() -> usize {
        1024
    }
    pub fn peer_store_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn mem_size() -> ByteSize {
        ByteSize(256 * 1024 * 1024)
    }
    pub fn negative_ttl() -> Duration {
        Duration::from_secs(300)
    }
    pub fn negative_size() -> u64 {
        2000
    }
    pub fn blocklist_refresh() -> Duration {
        Duration::from_secs(3600)
    }
    pub const S3_REGION: &str = "us-east-1";
    pub fn origin_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn s3_retries() -> u32 {
        3
    }
    pub fn singleflight_component() -> String {
        "singleflight".into()
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
        assert_eq!(http.edge_token.as_deref(), Some("secret"));
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
        let desc = crate::store::describe(&cfg.store);
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
        let desc = crate::store::describe(&cfg.store);
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
        let StoreConfig::Http3(store) = &cfg.store else {
            panic!("root should be http3")
        };
        assert_eq!(store.timeout, Duration::from_secs(30));
        let desc = crate::store::describe(&cfg.store);
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
