//! Caches and stores built for a test, the way linkerd2-proxy's tests build proxies:
//!
//! ```ignore
//! let edge = Cache::new()
//!     .http()
//!     .name("edge")
//!     .tier(Store::mem().named("edge_mem").max_size("64MiB"))
//!     .origin(&origin)
//!     .start()
//!     .await;
//! let store = Store::http(&origin).named("cdn").timeout("5s").build_with(&metrics);
//! ```
//!
//! Both render YAML and hand it to the real loader (`prism_lite::config::parse`,
//! `app::start`, `app::start_from_dir`, or a `prism-lite blobcache` process reading
//! `blobcache.yaml`), so every test still goes through the configuration a user writes; the
//! tests just stop writing that YAML by hand. Doors listen on 127.0.0.1, port 0 unless given.
//! Values passed to `set` are YAML as written (flow style); paths and URLs given to the named
//! constructors are quoted here.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prism_lite::app::{self, RunOptions, Running};
use prism_lite::config::{self, BlobcacheConfig, StoreConfig};
use prism_lite::metrics::Metrics;
use prism_lite::store::{self, BlobStore, BuildContext};

use super::net::{within, HttpOrigin, ACCESS_KEY, BUCKET, SECRET_KEY};
use super::process::{free_port, Blobcache};

/// `s` as a YAML double-quoted scalar (a JSON string is one).
pub fn quoted(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).expect("a string serializes")
}

/// A path as a YAML scalar.
fn path_value(path: &Path) -> String {
    quoted(path.to_str().expect("test paths are UTF-8"))
}

/// `key: value` pairs of one flow mapping, in the order set; setting a key again replaces it.
#[derive(Clone, Debug, Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn set(&mut self, key: &str, value: impl Display) {
        let value = value.to_string();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flow(&self) -> String {
        let entries: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", entries.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// Stores.

/// One store of the tree (`mem`, `disk`, `caching`, `http`, ...) with its keys.
#[derive(Clone, Debug)]
pub struct Store {
    kind: String,
    fields: Fields,
}

impl Store {
    /// A store of `kind` with no keys yet (the loader's defaults).
    pub fn new(kind: &str) -> Store {
        Store {
            kind: kind.to_string(),
            fields: Fields::default(),
        }
    }

    /// Sets `key` to `value`, written as YAML (`"5s"`, `2`, `true`, `[a, b]`, a quoted string).
    pub fn set(mut self, key: &str, value: impl Display) -> Store {
        self.fields.set(key, value);
        self
    }

    pub fn named(self, name: &str) -> Store {
        self.set("name", name)
    }

    pub fn timeout(self, timeout: &str) -> Store {
        self.set("timeout", timeout)
    }

    pub fn max_size(self, size: &str) -> Store {
        self.set("max_size", size)
    }

    pub fn sharding(self, size: usize) -> Store {
        self.set("sharding_size", size)
    }

    /// `mem` with the default size (set one with [`Store::max_size`]).
    pub fn mem() -> Store {
        Store::new("mem")
    }

    /// `disk` at `dir`.
    pub fn disk(dir: impl AsRef<Path>) -> Store {
        Store::new("disk").set("mount_point", path_value(dir.as_ref()))
    }

    pub fn noop() -> Store {
        Store::new("noop")
    }

    /// `http` origin reading the test origin's `/bucket/` (see [`HttpOrigin::endpoint`]).
    pub fn http(origin: &HttpOrigin) -> Store {
        Store::http_url(&origin.endpoint())
    }

    /// `http` origin at `endpoint`.
    pub fn http_url(endpoint: &str) -> Store {
        Store::new("http").set("endpoint", quoted(endpoint))
    }

    /// `upstream` with one cache at `url` (`upstream: "http://..."`).
    pub fn upstream(url: &str) -> Store {
        Store::new("upstream").set("upstream", quoted(url))
    }

    /// `upstream` pooling the caches at `urls` (`upstreams: [...]`).
    pub fn upstreams<S: AsRef<str>>(urls: &[S]) -> Store {
        let list: Vec<String> = urls.iter().map(quoted).collect();
        Store::new("upstream").set("upstreams", format!("[{}]", list.join(", ")))
    }

    /// `peer` origin asking the peer door at `addr`.
    pub fn peer(addr: SocketAddr) -> Store {
        Store::new("peer").set("address", quoted(addr.to_string()))
    }

    /// `http3` origin asking the HTTP/3 door at `addr`.
    pub fn http3(addr: SocketAddr) -> Store {
        Store::new("http3").set("address", quoted(addr.to_string()))
    }

    /// `s3` on the test S3 server at `endpoint` (its keys, region and bucket; one retry).
    pub fn s3(endpoint: &str) -> Store {
        Store::new("s3")
            .set("aws_id", ACCESS_KEY)
            .set("aws_secret", SECRET_KEY)
            .set("region", "us-east-1")
            .set("bucket", BUCKET)
            .set("endpoint", quoted(endpoint))
            .set("retries", 1)
    }

    /// `caching`: `cache` in front of `origin`.
    pub fn caching(cache: Store, origin: Store) -> Store {
        Store::new("caching")
            .set("cache", cache.yaml())
            .set("origin", origin.yaml())
    }

    /// `ittt`: `this`, and `that` when `this` does not have the blob.
    pub fn ittt(this: Store, that: Store) -> Store {
        Store::new("ittt")
            .set("this", this.yaml())
            .set("that", that.yaml())
    }

    /// `multiwriter` over `stores`.
    pub fn multiwriter(stores: &[Store]) -> Store {
        let list: Vec<String> = stores.iter().map(Store::yaml).collect();
        Store::new("multiwriter").set("stores", format!("[{}]", list.join(", ")))
    }

    /// This store as a one-line YAML node: `{kind: {key: value, ...}}`.
    pub fn yaml(&self) -> String {
        format!("{{{}: {}}}", self.kind, self.fields.flow())
    }

    /// The parsed configuration, as the loader reads it.
    pub fn config(&self) -> StoreConfig {
        config::parse(&self.yaml(), "test-store.yaml").expect("store config parses")
    }

    /// Builds the store with its metrics in `metrics`; an error is the loader's or the build's.
    pub fn try_build_with(&self, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<dyn BlobStore>> {
        let cfg: StoreConfig = config::parse(&self.yaml(), "test-store.yaml")?;
        let ctx = BuildContext {
            metrics: Arc::clone(metrics),
        };
        store::build(&cfg, &ctx)
    }

    /// Builds the store with its metrics in `metrics`.
    pub fn build_with(&self, metrics: &Arc<Metrics>) -> Arc<dyn BlobStore> {
        self.try_build_with(metrics)
            .unwrap_or_else(|e| panic!("store {} builds: {e:#}", self.yaml()))
    }

    /// Builds the store with metrics of its own (not looked at).
    pub fn build(&self) -> Arc<dyn BlobStore> {
        self.build_with(&Arc::new(Metrics::new()))
    }
}

impl From<&HttpOrigin> for Store {
    fn from(origin: &HttpOrigin) -> Store {
        Store::http(origin)
    }
}

// ---------------------------------------------------------------------------------------------
// Doors.

/// One `servers:` entry: `http`, `http3`, `peer` or `reflector`, on 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Door {
    kind: &'static str,
    fields: Fields,
}

impl Door {
    fn new(kind: &'static str) -> Door {
        let mut fields = Fields::default();
        fields.set("port", 0);
        fields.set("address", "127.0.0.1");
        Door { kind, fields }
    }

    pub fn http() -> Door {
        Door::new("http")
    }

    pub fn http3() -> Door {
        Door::new("http3")
    }

    pub fn peer() -> Door {
        Door::new("peer")
    }

    pub fn reflector() -> Door {
        Door::new("reflector")
    }

    /// Listens on `port` instead of any free one.
    pub fn port(self, port: u16) -> Door {
        self.set("port", port)
    }

    pub fn token(self, edge_token: &str) -> Door {
        self.set("edge_token", edge_token)
    }

    /// Sets `key` to `value`, written as YAML.
    pub fn set(mut self, key: &str, value: impl Display) -> Door {
        self.fields.set(key, value);
        self
    }

    fn port_number(&self) -> u16 {
        self.fields
            .get("port")
            .and_then(|p| p.parse().ok())
            .expect("a door's port is a number")
    }
}

// ---------------------------------------------------------------------------------------------
// Caches.

/// A blobcache to start: its doors, its store tree and any other sections.
///
/// The tree is the tiers in the order given, each a `caching` layer over the next, over the
/// origin; `.name()` names the outermost layer (its metrics `component`). A lone tier or a lone
/// origin is the whole tree. `.store()` sets a tree of any other shape.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    doors: Vec<Door>,
    name: Option<String>,
    tiers: Vec<Store>,
    origin: Option<Store>,
    store: Option<Store>,
    sections: Vec<(String, String)>,
    conf_dir: Option<PathBuf>,
    disable_blocklist: bool,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Adds a door (or replaces the one of the same kind).
    pub fn door(mut self, door: Door) -> Cache {
        self.doors.retain(|d| d.kind != door.kind);
        self.doors.push(door);
        self
    }

    pub fn http(self) -> Cache {
        self.door(Door::http())
    }

    pub fn http3(self) -> Cache {
        self.door(Door::http3())
    }

    pub fn peer(self) -> Cache {
        self.door(Door::peer())
    }

    pub fn reflector(self) -> Cache {
        self.door(Door::reflector())
    }

    /// A DHT node on 127.0.0.1 (any port), bootstrapping from nobody, private addresses
    /// allowed, its state in `data_dir`.
    pub fn dht(self, data_dir: impl AsRef<Path>) -> Cache {
        self.section(
            "dht",
            format!(
                "{{enabled: true, port: 0, address: 127.0.0.1, bootstrap: [], allow_private: true, \
                 data_dir: {}}}",
                path_value(data_dir.as_ref())
            ),
        )
    }

    /// Names the outermost caching layer.
    pub fn name(mut self, name: &str) -> Cache {
        self.name = Some(name.to_string());
        self
    }

    /// A cache tier below the ones already added.
    pub fn tier(mut self, store: Store) -> Cache {
        self.tiers.push(store);
        self
    }

    /// What the lowest tier fills from.
    pub fn origin(mut self, origin: impl Into<Store>) -> Cache {
        self.origin = Some(origin.into());
        self
    }

    /// The whole store tree (instead of tiers and an origin).
    pub fn store(mut self, store: Store) -> Cache {
        self.store = Some(store);
        self
    }

    pub fn protected_list(self, path: impl AsRef<Path>) -> Cache {
        let value = path_value(path.as_ref());
        self.section("protected_list", value)
    }

    pub fn blocklist_file(self, path: impl AsRef<Path>) -> Cache {
        let value = format!("{{file: {}}}", path_value(path.as_ref()));
        self.section("blocklist", value)
    }

    /// `limits:` as a flow mapping, e.g. `"{max_inflight_bytes: 8MiB}"`.
    pub fn limits(self, limits: &str) -> Cache {
        self.section("limits", limits)
    }

    /// A top-level section `key: value` (value as YAML, e.g. `"{readahead: 0}"`); setting a
    /// key again replaces it.
    pub fn section(mut self, key: &str, value: impl Display) -> Cache {
        let value = value.to_string();
        match self.sections.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.sections.push((key.to_string(), value)),
        }
        self
    }

    /// The configuration directory an in-process cache reloads from (default: the current
    /// directory).
    pub fn conf_dir(mut self, dir: impl AsRef<Path>) -> Cache {
        self.conf_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Starts with `--disable-blocklist`.
    pub fn disable_blocklist(mut self) -> Cache {
        self.disable_blocklist = true;
        self
    }

    fn tree(&self) -> Store {
        if let Some(store) = &self.store {
            assert!(
                self.tiers.is_empty() && self.origin.is_none() && self.name.is_none(),
                "a cache with .store() takes no tiers, origin or name"
            );
            return store.clone();
        }
        let mut tree = self.origin.clone();
        for tier in self.tiers.iter().rev() {
            tree = Some(match tree {
                None => tier.clone(),
                Some(origin) => Store::caching(tier.clone(), origin),
            });
        }
        let tree =
            tree.expect("a cache needs a store: .mem(), .disk(), .tier(), .origin() or .store()");
        match &self.name {
            Some(name) => {
                assert_eq!(tree.kind, "caching", ".name() names a caching layer");
                tree.named(name)
            }
            None => tree,
        }
    }

    /// The configuration file this cache is started from.
    pub fn yaml(&self) -> String {
        let mut yaml = String::new();
        if !self.doors.is_empty() {
            yaml.push_str("servers:\n");
            for door in &self.doors {
                yaml.push_str(&format!("  {}: {}\n", door.kind, door.fields.flow()));
            }
        }
        yaml.push_str(&format!("store: {}\n", self.tree().yaml()));
        for (key, value) in &self.sections {
            yaml.push_str(&format!("{key}: {value}\n"));
        }
        yaml
    }

    /// The parsed configuration.
    pub fn config(&self) -> BlobcacheConfig {
        config::parse(&self.yaml(), "test.yaml")
            .unwrap_or_else(|e| panic!("test config parses: {e}\n{}", self.yaml()))
    }

    fn options(&self, conf_dir: PathBuf) -> RunOptions {
        RunOptions {
            conf_dir,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            disable_blocklist: self.disable_blocklist,
        }
    }

    /// Starts the cache in this process (`app::start`); metrics on a free port.
    pub async fn start(&self) -> Running {
        self.try_start()
            .await
            .unwrap_or_else(|e| panic!("cache starts: {e:#}\n{}", self.yaml()))
    }

    /// [`Cache::start`] for tests that expect (or retry) a failed start, e.g. a port still held.
    pub async fn try_start(&self) -> anyhow::Result<Running> {
        let cfg: BlobcacheConfig = config::parse(&self.yaml(), "test.yaml")?;
        let conf_dir = self.conf_dir.clone().unwrap_or_else(|| ".".into());
        within("cache start", app::start(cfg, self.options(conf_dir))).await
    }

    /// Writes `dir/blobcache.yaml`.
    pub fn write_to(&self, dir: impl AsRef<Path>) {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("blobcache.yaml"), self.yaml()).unwrap();
    }

    /// Writes `dir/blobcache.yaml` and starts from it in this process (`app::start_from_dir`),
    /// as the binary does; a reload re-reads that file.
    pub async fn start_in(&self, dir: impl AsRef<Path>) -> Running {
        self.write_to(&dir);
        within(
            "cache start",
            app::start_from_dir(self.options(dir.as_ref().to_path_buf())),
        )
        .await
        .unwrap_or_else(|e| panic!("cache starts: {e:#}\n{}", self.yaml()))
    }

    /// Gives every door still on port 0 a free port of its own, for a process whose
    /// addresses the test must know in advance.
    pub fn fixed_ports(mut self) -> Cache {
        for door in &mut self.doors {
            if door.port_number() == 0 {
                door.fields.set("port", free_port());
            }
        }
        self
    }

    /// The address a door of `kind` listens on (its port must be fixed).
    pub fn addr(&self, kind: &str) -> SocketAddr {
        let door = self
            .doors
            .iter()
            .find(|d| d.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} door"));
        let port = door.port_number();
        assert_ne!(
            port, 0,
            "the {kind} door has no fixed port: use .fixed_ports()"
        );
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Runs the cache as a `prism-lite blobcache` process configured from `conf_dir` (doors on
    /// port 0 get free ports first); returns once it is ready.
    pub async fn spawn(&self, conf_dir: impl AsRef<Path>) -> Blobcache {
        let cache = self.clone().fixed_ports();
        let http = cache.addr("http");
        Blobcache::start(conf_dir.as_ref(), http.port(), &cache.yaml()).await
    }
}
