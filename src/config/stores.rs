//! `store:`: the tree of stores, one serde enum variant per reflector.go store type, and the
//! one-line summaries `check-config` prints for each.
//!
//! Every store is a one-key map `{type: {params}}` and composites nest children the same way;
//! that is one recursive serde enum ([`StoreConfig`]), not hand-parsing per composite.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::pool::{self, Endpoint, EndpointEntry, PoolHealthConfig};
use super::units::{duration, opt_duration, ByteSize};
use crate::secret::{shown, SecretString, SensitiveUrl};

/// `http3` store: another cache's `servers.http3` as an origin (or a pool of them).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Http3StoreFile")]
pub struct Http3StoreConfig {
    pub name: Option<String>,
    /// `host:port` of the upstream's HTTP/3 (UDP) port, or of each cache of a pool.
    pub addresses: Vec<Endpoint>,
    /// Bound on one whole request (connect, headers, body), per endpoint tried.
    pub timeout: Duration,
    /// PEM CA certificate(s) to verify the upstream against (instead of the web PKI roots).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate, as reflector.go's client does with its self-signed peers.
    /// Off unless set explicitly.
    pub insecure_skip_verify: bool,
    /// Passive health of a pool's endpoints.
    pub health: PoolHealthConfig,
}

/// [`Http3StoreConfig`] as written: `address:` or `addresses:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Http3StoreFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    addresses: Option<Vec<EndpointEntry>>,
    #[serde(
        default = "defaults::http3_store_timeout",
        deserialize_with = "duration"
    )]
    timeout: Duration,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    health: PoolHealthConfig,
}

impl TryFrom<Http3StoreFile> for Http3StoreConfig {
    type Error = String;
    fn try_from(f: Http3StoreFile) -> Result<Self, String> {
        Ok(Http3StoreConfig {
            addresses: pool::endpoints("address", f.address, "addresses", f.addresses)?,
            name: f.name,
            timeout: f.timeout,
            ca_file: f.ca_file,
            insecure_skip_verify: f.insecure_skip_verify,
            health: f.health,
        })
    }
}

impl Http3StoreConfig {
    /// For `check-config`: how the store will check its upstream's certificate.
    pub fn verify_summary(&self) -> String {
        match (&self.ca_file, self.insecure_skip_verify) {
            (Some(p), false) => format!("verify(ca_file={})", p.display()),
            (None, true) => "insecure_skip_verify".into(),
            (Some(_), true) => "invalid(ca_file+insecure_skip_verify)".into(),
            (None, false) => "verify(webpki roots)".into(),
        }
    }
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
    #[serde(rename = "http3")]
    Http3(Http3StoreConfig),
}

impl StoreConfig {
    /// The store's name: what its metrics labels, log lines, traces and errors call it. A
    /// section's configured `name`, or else the key it is written under (each section's own
    /// `name()`); `singleflight` goes by its `component`, and `db_backed` by
    /// its inner store's name, because it loads as that store.
    pub fn name(&self) -> &str {
        match self {
            StoreConfig::Disk(c) => c.name(),
            StoreConfig::Mem(c) => c.name(),
            StoreConfig::Noop(c) => c.name(),
            StoreConfig::Caching(c) => c.name(),
            StoreConfig::Ittt(c) => c.name(),
            StoreConfig::Singleflight(c) => &c.component,
            StoreConfig::Gcache(c) => c.name(),
            StoreConfig::Peer(c) => c.name(),
            StoreConfig::S3(c) => c.name(),
            StoreConfig::Http(c) => c.name(),
            StoreConfig::Upstream(c) => c.name(),
            StoreConfig::Multiwriter(c) => c.name(),
            StoreConfig::ProxiedS3(c) => c.name(),
            StoreConfig::DbBacked(c) => c.store.name(),
            StoreConfig::Http3(c) => c.name(),
        }
    }

    /// `type name=...` with the key parameters, for `check-config` output.
    pub fn summary(&self) -> String {
        match self {
            StoreConfig::Disk(c) => format!(
                "disk name={} mount_point={} sharding_size={} max_size={}",
                c.name(),
                c.mount_point.display(),
                c.sharding_size,
                c.max_size
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "90% of the filesystem".into())
            ),
            StoreConfig::Mem(c) => format!(
                "mem name={} max_size={}",
                c.name(),
                c.max_size
            ),
            StoreConfig::Noop(c) => format!("noop name={}", c.name()),
            StoreConfig::Caching(c) => format!(
                "caching name={} negative_cache_ttl={:?} negative_cache_size={}",
                c.name(),
                c.negative_cache_ttl,
                c.negative_cache_size
            ),
            StoreConfig::Ittt(c) => format!("ittt name={}", c.name()),
            StoreConfig::Singleflight(c) => format!("singleflight component={}", c.component),
            StoreConfig::Gcache(c) => format!(
                "gcache name={} max_size={} blobs strategy={:?}",
                c.name(),
                c.max_size,
                c.strategy
            ),
            StoreConfig::S3(c) => format!(
                "s3 name={} bucket={} region={} endpoint={} keys={} prefix={} sharding_size={} timeout={:?} retries={}",
                c.name(),
                c.bucket,
                c.region(),
                c.endpoint
                    .as_ref()
                    .map_or_else(|| "(AWS)".to_string(), ToString::to_string),
                if c.aws_id.is_some() { shown(c.aws_secret.as_ref()) } else { "(AWS chain)" },
                c.prefix(),
                c.sharding_size,
                c.timeout,
                c.retries
            ),
            StoreConfig::Http(c) => format!(
                "http name={} endpoint={} sharding_size={} timeout={:?}",
                c.name(),
                c.endpoint,
                c.sharding_size,
                c.timeout
            ),
            StoreConfig::Upstream(c) => format!(
                "upstream name={} {} edge_token={} timeout={:?}",
                c.name(),
                pool::summary("upstream", "upstreams", &c.endpoints, pool::url_name),
                shown(c.edge_token.as_ref()),
                c.timeout
            ),
            StoreConfig::Multiwriter(c) => format!(
                "multiwriter name={} stores={}",
                c.name(),
                c.stores.len()
            ),
            StoreConfig::ProxiedS3(c) => format!(
                "proxied-s3 name={}{}",
                c.name(),
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
                "peer name={} {} timeout={:?}",
                c.name(),
                pool::summary("address", "addresses", &c.addresses, pool::address_name),
                c.timeout
            ),
            StoreConfig::Http3(c) => format!(
                "http3 name={} {} timeout={:?} tls={}",
                c.name(),
                pool::summary("address", "addresses", &c.addresses, pool::address_name),
                c.timeout,
                c.verify_summary()
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
            StoreConfig::Multiwriter(c) => c.stores.iter().map(|(key, s)| (*key, s)).collect(),
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

/// Gives each store section a `name()`: its configured `name`, or else the key the section is
/// written under. This is the one place a store's default name is decided, so the store built
/// from a section, its metrics labels and `check-config` cannot name it differently.
macro_rules! named_after_key {
    ($($section:ty => $key:literal,)*) => {$(
        impl $section {
            #[doc = concat!("The configured `name`, or `", $key, "`.")]
            pub fn name(&self) -> &str {
                self.name.as_deref().unwrap_or($key)
            }
        }
    )*};
}

named_after_key! {
    DiskConfig => "disk",
    MemConfig => "mem",
    NoopConfig => "noop",
    CachingConfig => "caching",
    IttConfig => "ittt",
    GcacheConfig => "gcache",
    PeerStoreConfig => "peer",
    S3Config => "s3",
    HttpOriginConfig => "http",
    UpstreamConfig => "upstream",
    MultiwriterConfig => "multiwriter",
    ProxiedS3Config => "proxied-s3",
    Http3StoreConfig => "http3",
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

/// `noop`: holds nothing, accepts and drops writes. Accepts `noop: {}`, `noop: {name: x}` (as
/// reflector.go) or a bare `noop:`.
#[derive(Debug, Clone, Default)]
pub struct NoopConfig {
    pub name: Option<String>,
}

impl<'de> Deserialize<'de> for NoopConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Written {
            #[serde(default)]
            name: Option<String>,
        }
        Option::<Written>::deserialize(d).map(|w| NoopConfig {
            name: w.and_then(|w| w.name),
        })
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

/// `peer`: another LBRY peer (an SDK node or a reflector.go/prism-lite peer server), or a pool
/// of them, as a read-only origin.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "PeerStoreFile")]
pub struct PeerStoreConfig {
    pub name: Option<String>,
    /// `host:port` of the peer server, or of each peer of a pool.
    pub addresses: Vec<Endpoint>,
    /// Deadline for one whole exchange (connect, request, response and blob bytes), per
    /// endpoint tried.
    pub timeout: Duration,
    /// Passive health of a pool's endpoints.
    pub health: PoolHealthConfig,
}

/// [`PeerStoreConfig`] as written: `address:` or `addresses:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerStoreFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    addresses: Option<Vec<EndpointEntry>>,
    #[serde(
        default = "defaults::peer_store_timeout",
        deserialize_with = "duration"
    )]
    timeout: Duration,
    #[serde(default)]
    health: PoolHealthConfig,
}

impl TryFrom<PeerStoreFile> for PeerStoreConfig {
    type Error = String;
    fn try_from(f: PeerStoreFile) -> Result<Self, String> {
        Ok(PeerStoreConfig {
            addresses: pool::endpoints("address", f.address, "addresses", f.addresses)?,
            name: f.name,
            timeout: f.timeout,
            health: f.health,
        })
    }
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
    /// A number, or a number in quotes (reflector.go's loader reads `"2"` as 2).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        let allowed = "allowed: 0 (LFU), 1 (ARC), 2 (LRU), 3 (simple)";
        let n = match Written::deserialize(d)
            .map_err(|_| de::Error::custom(format!("expected a number; {allowed}")))?
        {
            Written::Number(n) => n,
            Written::Text(t) => t.trim().parse().map_err(|_| {
                de::Error::custom(format!("unknown gcache strategy {t:?}; {allowed}"))
            })?,
        };
        match n {
            0 => Ok(GcacheStrategy::Lfu),
            1 => Ok(GcacheStrategy::Arc),
            2 => Ok(GcacheStrategy::Lru),
            3 => Ok(GcacheStrategy::Simple),
            n => Err(de::Error::custom(format!(
                "unknown gcache strategy {n}; {allowed}"
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
    /// Base URL, e.g. `https://s3.example.com/blobs-bucket/` (a trailing `/` is optional). A
    /// query string (a signed CDN URL's signature) is kept on every request and, like a
    /// userinfo password, never printed.
    pub endpoint: SensitiveUrl,
    #[serde(default, deserialize_with = "sharding_size")]
    pub sharding_size: usize,
    /// Whole-request deadline (connect + headers + body).
    #[serde(default = "defaults::origin_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Deadline for establishing a connection. Default: the smaller of 10s and `timeout`.
    #[serde(default, deserialize_with = "opt_duration")]
    pub connect_timeout: Option<Duration>,
}

/// `upstream`: another blob cache's HTTP API (`GET /blob?hash=H`), reflector.go or prism-lite,
/// or a pool of them (`upstreams:`) that split the keyspace by rendezvous hashing.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "UpstreamFile")]
pub struct UpstreamConfig {
    pub name: Option<String>,
    /// Base URL of the next cache, e.g. `http://regional.example.com:5569`, or of each cache
    /// of a pool. A bare `host:port` is taken as `http://host:port`, as reflector.go's loader
    /// only concatenates.
    pub endpoints: Vec<Endpoint>,
    /// Sent as `&edge_token=` so the upstream serves protected blobs. A secret.
    pub edge_token: Option<SecretString>,
    /// Whole-request deadline, per endpoint tried.
    pub timeout: Duration,
    /// Deadline for establishing a connection. Default: the smaller of 10s and `timeout`.
    pub connect_timeout: Option<Duration>,
    /// Passive health of a pool's endpoints.
    pub health: PoolHealthConfig,
}

/// [`UpstreamConfig`] as written: `upstream:` or `upstreams:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    upstreams: Option<Vec<EndpointEntry>>,
    #[serde(default)]
    edge_token: Option<SecretString>,
    #[serde(default = "defaults::origin_timeout", deserialize_with = "duration")]
    timeout: Duration,
    #[serde(default, deserialize_with = "opt_duration")]
    connect_timeout: Option<Duration>,
    #[serde(default)]
    health: PoolHealthConfig,
}

impl TryFrom<UpstreamFile> for UpstreamConfig {
    type Error = String;
    fn try_from(f: UpstreamFile) -> Result<Self, String> {
        Ok(UpstreamConfig {
            endpoints: pool::endpoints("upstream", f.upstream, "upstreams", f.upstreams)?,
            name: f.name,
            edge_token: f.edge_token,
            timeout: f.timeout,
            connect_timeout: f.connect_timeout,
            health: f.health,
        })
    }
}

/// `s3`: an S3-protocol bucket (AWS, Wasabi, MinIO, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    #[serde(default)]
    pub name: Option<String>,
    /// Access key id; omitted = the standard AWS chain (env, profile, instance role).
    #[serde(default)]
    pub aws_id: Option<SecretString>,
    /// A secret, like `aws_id`: neither is ever printed.
    #[serde(default)]
    pub aws_secret: Option<SecretString>,
    #[serde(default)]
    pub region: Option<String>,
    pub bucket: String,
    /// Custom endpoint for non-AWS services, e.g. `https://s3.wasabisys.com`.
    #[serde(default)]
    pub endpoint: Option<SensitiveUrl>,
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

impl S3Config {
    /// The configured `region`, or AWS's default one (what S3-compatible services that ignore
    /// regions accept too).
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(defaults::S3_REGION)
    }

    /// The configured key `prefix`; none is the bucket's root.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or_default()
    }

    /// The deadline for connecting to S3 (not configurable: the default, within `timeout`).
    pub fn connect_deadline(&self) -> Duration {
        connect_deadline(None, self.timeout)
    }
}

impl HttpOriginConfig {
    /// The connect deadline that applies: `connect_timeout`, or 10 s, within `timeout`.
    pub fn connect_deadline(&self) -> Duration {
        connect_deadline(self.connect_timeout, self.timeout)
    }
}

impl UpstreamConfig {
    /// The connect deadline that applies: `connect_timeout`, or 10 s, within `timeout`.
    pub fn connect_deadline(&self) -> Duration {
        connect_deadline(self.connect_timeout, self.timeout)
    }
}

/// The deadline for making a connection to a remote: the configured `connect_timeout`, or 10 s,
/// and never longer than the whole call's `timeout` (a connect cannot outlive its call).
fn connect_deadline(configured: Option<Duration>, timeout: Duration) -> Duration {
    configured.unwrap_or(defaults::CONNECT_TIMEOUT).min(timeout)
}

/// `multiwriter`: writes to every store, reads from the first.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "MultiwriterFile")]
pub struct MultiwriterConfig {
    pub name: Option<String>,
    /// The stores in order, each with the key it was written under (`one`, `two`, `three`, or
    /// `stores` for every entry of the list form).
    pub stores: Vec<(&'static str, StoreConfig)>,
}

/// [`MultiwriterConfig`] as written: prism-lite's `stores:` list, or reflector.go's numbered
/// `one:`/`two:`/`three:` (what its `upload.yaml` and ingest writers use). reflector.go itself
/// reads only `one` and `two`; a `three` here is written to as well, and said so at start.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiwriterFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stores: Option<Vec<StoreConfig>>,
    #[serde(default)]
    one: Option<StoreConfig>,
    #[serde(default)]
    two: Option<StoreConfig>,
    #[serde(default)]
    three: Option<StoreConfig>,
}

impl TryFrom<MultiwriterFile> for MultiwriterConfig {
    type Error = String;
    fn try_from(f: MultiwriterFile) -> Result<Self, String> {
        let numbered: Vec<(&'static str, StoreConfig)> =
            [("one", f.one), ("two", f.two), ("three", f.three)]
                .into_iter()
                .filter_map(|(key, store)| store.map(|s| (key, s)))
                .collect();
        let stores = match (f.stores, numbered.is_empty()) {
            (Some(_), false) => {
                return Err("write either `stores:` or `one:`/`two:`/`three:`, not both".into())
            }
            (Some(list), true) => list.into_iter().map(|s| ("stores", s)).collect(),
            (None, _) => numbered,
        };
        if stores.is_empty() {
            return Err(
                "needs at least one store: `stores: [...]` or `one:`/`two:`/`three:`".into(),
            );
        }
        Ok(MultiwriterConfig {
            name: f.name,
            stores,
        })
    }
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
    use crate::config::units::ByteSize;
    use std::time::Duration;

    pub fn http3_store_timeout() -> Duration {
        Duration::from_secs(30)
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
    pub const S3_REGION: &str = "us-east-1";
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
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
