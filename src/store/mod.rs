//! The store contract and the tree builder.
//!
//! Every backend and every composite is a [`BlobStore`]. Leaf stores talk to exactly one backend
//! (a directory, memory, a remote); composites (`caching`, `ittt`, `singleflight`, `gcache`,
//! `multiwriter`, `proxied-s3`, the blocklist layer) only combine other stores. The tree is built
//! recursively from one serde model ([`crate::config::StoreConfig`]), so a new backend is one new
//! file here plus one enum variant. Remote backends share their deadline, verification and
//! metrics through [`origin`], the rest of their store contract through [`remote`], and the retry
//! of a dead reused connection through [`reconnect`]; how they talk is [`crate::protocol`]'s,
//! never a front door's.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::blob::{BlobHash, VerifyError};
use crate::config::{Endpoint, Http3StoreConfig, PeerStoreConfig, StoreConfig, UpstreamConfig};
use crate::metrics::Metrics;
use crate::store::metrics::StoreMetrics;
use crate::store::remote::{Remote, RemoteStore};
use crate::trace::BlobTrace;

pub mod announce;
pub mod blocklist;
pub mod body;
pub mod caching;
pub mod check;
pub mod db_backed;
pub mod disk;
pub mod flight;
pub mod gcache;
pub mod http;
pub mod http3;
pub mod http_origin;
pub mod ittt;
pub mod memory;
pub mod metrics;
pub mod multiwriter;
pub mod noop;
pub mod origin;
pub mod peer;
pub mod pins;
pub mod pool;
pub mod proxied_s3;
pub mod reconnect;
pub mod remote;
pub mod s3;
pub mod served;
pub mod singleflight;
pub mod upstream;

/// A blob as a store hands it out: the bytes plus the trace of who served them.
#[derive(Debug, Clone)]
pub struct Blob {
    pub data: Bytes,
    pub trace: BlobTrace,
    /// The bytes are known to hash to their name: a remote store just checked them, or a local
    /// tier served them (local tiers only ever receive checked bytes, see [`BlobStore::put`]).
    /// `caching` hashes only blobs without this mark, so a blob is hashed once on its way in,
    /// not again by every layer it passes (SHA-384 of 2 MiB costs about 2.6 ms).
    pub verified: bool,
    /// The bytes came from a remote store for this request (a cache miss), not from a local
    /// tier; the access log's cache result.
    pub from_origin: bool,
}

impl Blob {
    /// A blob served by `store_name` itself, taking `timing`, not (yet) checked against its name.
    pub fn served_by(data: Bytes, timing: Duration, store_name: &str) -> Blob {
        Blob {
            data,
            trace: BlobTrace::default().stack(timing, store_name),
            verified: false,
            from_origin: false,
        }
    }

    /// Like [`Blob::served_by`], for bytes known to hash to their name (see [`Blob::verified`]).
    pub fn verified(data: Bytes, timing: Duration, store_name: &str) -> Blob {
        Blob {
            verified: true,
            ..Blob::served_by(data, timing, store_name)
        }
    }

    /// Adds a hop for a composite that passed this blob through.
    pub fn via(mut self, timing: Duration, store_name: &str) -> Blob {
        self.trace = self.trace.stack(timing, store_name);
        self
    }
}

/// What can go wrong in a store. Cloneable so one origin result can answer many waiters.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The blob is not in this store (or, for a chain, in any store of it).
    #[error("blob not found")]
    NotFound,
    /// The origin answered with bytes that are not the requested blob.
    #[error("{store}: origin sent a bad blob: {source}")]
    Corrupt {
        store: Arc<str>,
        #[source]
        source: VerifyError,
    },
    /// The backend did not answer in time.
    #[error("{store}: timed out after {after:?}")]
    Timeout { store: Arc<str>, after: Duration },
    /// The backend could not be reached or its answer was unusable. `message` is the detail
    /// for the log (cause chain, what was wrong); it never carries a secret or the origin's
    /// own words, and it never goes to a client (see [`StoreError::client_message`]).
    #[error("{store}: {message}")]
    Unavailable { store: Arc<str>, message: String },
    /// The origin answered with an HTTP error status the store does not read as "not found".
    /// Typed, so that callers decide on the number, not on text that happens to contain it.
    #[error("{store}: origin answered {status}{}", refusal_hint(*status))]
    OriginStatus {
        store: Arc<str>,
        status: ::http::StatusCode,
    },
    /// A local I/O error (disk full, permission, ...).
    #[error("{store}: {context}: {source}")]
    Io {
        store: Arc<str>,
        context: String,
        #[source]
        source: Arc<io::Error>,
    },
    /// The blob is refused by policy (too large to store, blocked, ...).
    #[error("{store}: {message}")]
    Refused { store: Arc<str>, message: String },
}

impl StoreError {
    pub fn io(store: &str, context: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io {
            store: Arc::from(store),
            context: context.into(),
            source: Arc::new(source),
        }
    }

    pub fn unavailable(store: &str, message: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            store: Arc::from(store),
            message: message.into(),
        }
    }

    /// An origin answered with more bytes than a blob may have.
    pub fn too_large(store: &str, len: usize) -> StoreError {
        StoreError::Corrupt {
            store: Arc::from(store),
            source: VerifyError::TooLarge(len),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound)
    }

    /// A short label for `reflector_error_total{error_type}`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound => "blob_not_found",
            StoreError::Corrupt {
                source: VerifyError::HashMismatch { .. },
                ..
            } => "hash_mismatch",
            StoreError::Corrupt {
                source: VerifyError::TooLarge(_),
                ..
            } => "blob_too_big",
            StoreError::Corrupt {
                source: VerifyError::Empty,
                ..
            } => "zero_byte_blob",
            StoreError::Timeout { .. } => "deadline_exceeded",
            StoreError::Unavailable { .. } | StoreError::OriginStatus { .. } => {
                "origin_unavailable"
            }
            StoreError::Io { .. } => "io_error",
            StoreError::Refused { .. } => "refused",
        }
    }

    /// What a client is told: short, fixed per kind, naming at most the store's configured
    /// name. The detail ([`Display`](std::fmt::Display)) is for the log only: it may name
    /// hosts, statuses and timings an anonymous client has no business seeing.
    pub fn client_message(&self) -> String {
        match self {
            StoreError::NotFound => "blob not found".into(),
            StoreError::Corrupt { store, .. } => format!("{store}: origin sent a bad blob"),
            StoreError::Timeout { store, .. } => format!("{store}: origin timed out"),
            StoreError::OriginStatus { store, status } if is_refusal(*status) => {
                format!("{store}: origin refused (check edge_token)")
            }
            StoreError::Unavailable { store, .. } | StoreError::OriginStatus { store, .. } => {
                format!("{store}: origin unavailable")
            }
            StoreError::Io { store, .. } => format!("{store}: local storage error"),
            // Our own policy texts ("put is not supported ...", "blob is too large").
            StoreError::Refused { store, message } => format!("{store}: {message}"),
        }
    }
}

/// 401/403 from an origin: it wants a credential we did not send or it rejected ours.
fn is_refusal(status: ::http::StatusCode) -> bool {
    status == ::http::StatusCode::UNAUTHORIZED || status == ::http::StatusCode::FORBIDDEN
}

fn refusal_hint(status: ::http::StatusCode) -> &'static str {
    if is_refusal(status) {
        " (edge_token missing or rejected: check this store's edge_token)"
    } else {
        ""
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A place blobs live. Object-safe: the tree is `Arc<dyn BlobStore>` all the way down.
///
/// Every method is required, with no default body. The last three ([`has_cached`],
/// [`wait_for_fill`], [`list`]) are ones a composite must pass on to the stores it wraps; with a
/// default, a composite that forgot one would still compile and silently answer "not cached" /
/// "nothing to wait for" / "cannot list" for its whole subtree (the prefetcher would then re-fetch
/// warm blobs, or report blobs as cached before they are). Without one, forgetting is a compile
/// error, and a leaf states its (one-line) answer where a reader can see it.
///
/// [`has_cached`]: BlobStore::has_cached
/// [`wait_for_fill`]: BlobStore::wait_for_fill
/// [`list`]: BlobStore::list
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The configured name (or the type name), used in metrics labels, logs and traces.
    fn name(&self) -> &str;

    /// Whether the store holds the blob. Cheap for local stores; remote stores may ask.
    async fn has(&self, hash: &BlobHash) -> StoreResult<bool>;

    /// The blob's bytes; [`StoreError::NotFound`] when absent.
    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob>;

    /// Stores `data` under `hash`. Callers pass verified bytes: local tiers trust what they are
    /// given and mark what they serve as verified. Within the tree this holds by construction
    /// (`caching` verifies before it writes its cache, and verifies what `put` is given).
    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()>;

    /// Removes the blob; deleting an absent blob is not an error.
    async fn delete(&self, hash: &BlobHash) -> StoreResult<()>;

    /// Removes the blob from every cache tier of this store, never from a backend (the admin
    /// API's purge). Leaves are backends: by default nothing happens. Composites forward to the
    /// stores a `get` would read from; `caching` deletes from its cache tier.
    async fn delete_cached(&self, _hash: &BlobHash) -> StoreResult<()> {
        Ok(())
    }

    /// Whether a `get` of this blob would be answered by a cache tier of this store, without an
    /// origin fetch. The prefetcher asks this rather than `has`, because a `caching` store's
    /// `has` also says yes for blobs its origin merely *could* supply. Leaves are backends, not
    /// caches: they answer `Ok(false)`. Composites ask the stores a `get` would read from.
    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool>;

    /// Returns once every cache fill for `hash` that this store (or any store below it) has
    /// started is finished, i.e. the blob is written to the cache tier or the fill failed;
    /// returns at once when none is running. That is its only meaning. The prefetcher calls it
    /// after each fetch so that a finished run (and a CLI process exiting after one) means the
    /// blobs really are in the cache. Leaves start no fills: they return at once.
    async fn wait_for_fill(&self, hash: &BlobHash);

    /// Every hash the store holds, for stores that can enumerate cheaply (used to seed
    /// count-bounded indexes at start). `None` means "cannot list" (remote leaves, and
    /// composites whose contents are not one child's).
    fn list(&self) -> Option<Vec<BlobHash>>;
}

/// What building a store tree needs from its surroundings. Relative paths in the config (e.g.
/// `mount_point: ./data`) are resolved against the process's working directory, as reflector.go
/// does, so nothing else is needed here.
#[derive(Clone)]
pub struct BuildContext {
    pub metrics: Arc<Metrics>,
}

impl BuildContext {
    /// The stores' metrics, registered in `metrics` on first use.
    pub fn store_metrics(&self) -> Arc<StoreMetrics> {
        self.metrics.family()
    }
}

/// Builds the store tree described by `config`. Does blocking file-system work (creating
/// directories, sweeping a disk store's temp files, starting its background index rebuild), so
/// call it from `spawn_blocking` or before serving. A `gcache` over a `disk` waits here for that
/// disk's index, because it seeds from the full listing.
pub fn build(config: &StoreConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn BlobStore>> {
    use anyhow::Context;
    let store: Arc<dyn BlobStore> =
        match config {
            StoreConfig::Disk(c) => {
                create_mount_point(&c.mount_point)?;
                Arc::new(disk::DiskStore::open(c, ctx).with_context(|| {
                    format!("opening disk store at {}", c.mount_point.display())
                })?)
            }
            StoreConfig::Mem(c) => Arc::new(memory::MemoryStore::new(c, ctx)),
            StoreConfig::Noop(c) => Arc::new(noop::NoopStore::new(c.name())),
            StoreConfig::Caching(c) => {
                let cache = build(&c.cache, ctx).context("in caching.cache")?;
                let origin = build(&c.origin, ctx).context("in caching.origin")?;
                Arc::new(caching::CachingStore::new(c, cache, origin, ctx))
            }
            StoreConfig::Ittt(c) => {
                let this = build(&c.this, ctx).context("in ittt.this")?;
                let that = build(&c.that, ctx).context("in ittt.that")?;
                Arc::new(ittt::IfThisThenThat::new(c.name(), this, that, ctx))
            }
            StoreConfig::Singleflight(c) => {
                let inner = build(&c.store, ctx).context("in singleflight.store")?;
                Arc::new(singleflight::SingleFlightStore::new(c, inner, ctx))
            }
            StoreConfig::Gcache(c) => {
                let inner = build(&c.store, ctx).context("in gcache.store")?;
                Arc::new(gcache::GcacheStore::new(c, inner, ctx))
            }
            StoreConfig::Multiwriter(c) => {
                let stores = c
                    .stores
                    .iter()
                    .enumerate()
                    .map(|(i, (key, s))| {
                        build(s, ctx).with_context(|| format!("in multiwriter.{key}[{i}]"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                multiwriter::note_three(c);
                Arc::new(multiwriter::MultiWriter::new(c.name(), stores))
            }
            StoreConfig::ProxiedS3(c) => {
                let writer = build(&c.writer, ctx).context("in proxied-s3.writer")?;
                let reader = match &c.reader {
                    Some(r) => build(r, ctx).context("in proxied-s3.reader")?,
                    None => Arc::clone(&writer),
                };
                Arc::new(proxied_s3::ProxiedS3::new(c.name(), reader, writer))
            }
            StoreConfig::DbBacked(c) => {
                let resolved = db_backed::resolve(c);
                db_backed::warn(&resolved);
                return build(&resolved.store, ctx).context("in db_backed.store");
            }
            StoreConfig::Http(c) => Arc::new(RemoteStore::new(http::origin(c, ctx)?)),
            StoreConfig::S3(c) => Arc::new(RemoteStore::new(s3::S3Store::new(c, ctx)?)),
            StoreConfig::Upstream(c) => upstream_pool(c, ctx)?,
            StoreConfig::Peer(c) => peer_pool(c, ctx)?,
            StoreConfig::Http3(c) => http3_pool(c, ctx)?,
        };
    Ok(store)
}

/// `upstream`: one HTTP origin per endpoint, pooled (a single endpoint is a pool of one).
fn upstream_pool(c: &UpstreamConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn BlobStore>> {
    let spec = pool::PoolSpec {
        store: c.name(),
        endpoints: &c.endpoints,
        health: &c.health,
        name_of: crate::config::pool::url_name,
    };
    remote_pool(spec, ctx, |e| upstream::origin(c, e, ctx))
}

/// `peer`: one peer-protocol client per address, pooled.
fn peer_pool(c: &PeerStoreConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn BlobStore>> {
    let spec = pool::PoolSpec {
        store: c.name(),
        endpoints: &c.addresses,
        health: &c.health,
        name_of: crate::config::pool::address_name,
    };
    remote_pool(spec, ctx, |e| Ok(peer::PeerStore::new(c, e, ctx)))
}

/// `http3`: one HTTP/3 client per address, pooled.
fn http3_pool(c: &Http3StoreConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn BlobStore>> {
    use anyhow::Context;
    let spec = pool::PoolSpec {
        store: c.name(),
        endpoints: &c.addresses,
        health: &c.health,
        name_of: crate::config::pool::address_name,
    };
    remote_pool(spec, ctx, |e| {
        http3::Http3Store::new(c, e, ctx)
            .with_context(|| format!("setting up http3 store for {}", e.address))
    })
}

/// The pool `spec` describes, of one [`RemoteStore`] per endpoint.
fn remote_pool<R: Remote>(
    spec: pool::PoolSpec<'_>,
    ctx: &BuildContext,
    mut endpoint_remote: impl FnMut(&Endpoint) -> anyhow::Result<R>,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    let pool = pool::build(spec, ctx, |e| {
        Ok(Arc::new(RemoteStore::new(endpoint_remote(e)?)))
    })?;
    Ok(Arc::new(pool))
}

/// Creates a disk store's `mount_point` when it does not exist yet, saying so: a typo in the
/// path then shows up in the log as a new directory instead of passing unnoticed.
fn create_mount_point(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    if !path.exists() {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating disk mount_point {}", path.display()))?;
        tracing::info!(mount_point = %path.display(), "disk mount_point did not exist; created it");
    }
    Ok(())
}

/// A one-line description of the tree, for `check-config` and the start-up log.
pub fn describe(config: &StoreConfig) -> String {
    let mut out = String::new();
    describe_into(config, 0, &mut out);
    out
}

fn describe_into(config: &StoreConfig, depth: usize, out: &mut String) {
    use std::fmt::Write;
    let pad = "  ".repeat(depth);
    let _ = writeln!(out, "{pad}{}", config.summary());
    if let StoreConfig::DbBacked(c) = config {
        // Show the store as it will actually be built (with the capacity applied).
        let _ = writeln!(out, "{pad}  store:");
        describe_into(&db_backed::resolve(c).store, depth + 2, out);
        return;
    }
    for (role, child) in config.children() {
        let _ = writeln!(out, "{pad}  {role}:");
        describe_into(child, depth + 2, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BlobcacheConfig;

    fn config(store: &str) -> StoreConfig {
        let file: BlobcacheConfig =
            crate::config::parse(&format!("store:\n  {store}\n"), "t.yaml").expect("parses");
        file.store
    }

    /// The name a store is built with is the one its config reports, default or configured,
    /// for every type (remote leaves and pools included).
    #[tokio::test]
    async fn a_built_store_is_named_as_its_config_says() {
        let ctx = BuildContext {
            metrics: Arc::new(Metrics::new()),
        };
        for (store, name) in [
            ("mem: {}", "mem"),
            ("mem: {name: hot}", "hot"),
            ("noop:", "noop"),
            ("noop: {name: x}", "x"),
            ("multiwriter: {name: w, one: {noop: }, two: {mem: {}}}", "w"),
            ("caching: {cache: {mem: {}}, origin: {noop: }}", "caching"),
            ("ittt: {this: {noop: }, that: {noop: }}", "ittt"),
            ("singleflight: {component: sf, store: {noop: }}", "sf"),
            ("multiwriter: {stores: [{noop: }]}", "multiwriter"),
            ("proxied-s3: {name: up, writer: {noop: }}", "up"),
            ("http: {endpoint: \"http://127.0.0.1:1/b/\"}", "http"),
            ("upstream: {upstream: \"127.0.0.1:1\"}", "upstream"),
            (
                "upstream: {name: regional, upstream: \"127.0.0.1:1\"}",
                "regional",
            ),
            ("s3: {bucket: b, endpoint: \"http://127.0.0.1:1\"}", "s3"),
            ("peer: {address: \"127.0.0.1:1\"}", "peer"),
            ("http3: {address: \"127.0.0.1:1\"}", "http3"),
        ] {
            let config = config(store);
            assert_eq!(config.name(), name, "{store}");
            let built = build(&config, &ctx).expect(store);
            assert_eq!(built.name(), name, "{store}");
        }
    }
}
