//! Wiring for `prism-lite blobcache`: build the store tree, bind the front doors and the
//! metrics port, run until told to stop, then drain.
//!
//! Tests use [`start`] directly with port 0 and read the bound addresses from [`Running`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::blocklist;
use crate::config::{BlobcacheConfig, StoreConfig};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::reload::{self, ReloadReport, Reloader};
use crate::server::access_log::{AccessLog, AccessLogMetrics};
use crate::server::admin::AdminServer;
use crate::server::admin_api::AdminApi;
use crate::server::budget::InflightBudget;
use crate::server::http::HttpServer;
use crate::server::http3::Http3Server;
use crate::server::metrics::ServerMetrics;
use crate::server::peer::PeerServer;
use crate::server::playback::Playback;
use crate::server::reflector::metrics::ReflectorMetrics;
use crate::server::reflector::{OnStreamStored, ReflectorServer};
use crate::server::BlobService;
use crate::store::announce::{AnnounceSink, AnnouncingStore, Sinks};
use crate::store::blocklist::BlocklistStore;
use crate::store::metrics::StoreMetrics;
use crate::store::{self, BlobStore, BuildContext};

/// Process-level options (from the command line, not the YAML).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where `blobcache.yaml` is read from (again on reload).
    pub conf_dir: PathBuf,
    /// Address for `/metrics`; port 0 picks a free one.
    pub metrics_addr: SocketAddr,
    /// Ignore the `blocklist:` section entirely.
    pub disable_blocklist: bool,
}

/// A started blobcache.
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    /// Where `servers.peer` listens, when configured.
    pub peer_addr: Option<SocketAddr>,
    /// The UDP address `servers.http3` listens on.
    pub http3_addr: Option<SocketAddr>,
    /// Where `servers.reflector` (stream uploads) listens, when configured.
    pub reflector_addr: Option<SocketAddr>,
    /// The UDP address of the DHT node, when `dht.enabled`.
    pub dht_addr: Option<SocketAddr>,
    /// The DHT node (for tests and status), when `dht.enabled`.
    pub dht: Option<crate::dht::Dht>,
    /// Port mapping on the router, when `nat:` is set.
    pub nat: Option<Arc<crate::nat::Nat>>,
    pub metrics_addr: SocketAddr,
    /// The root store as the front doors see it (blocklist applied).
    pub store: Arc<dyn BlobStore>,
    pub metrics: Arc<Metrics>,
    pub policy: Arc<Policy>,
    reloader: Arc<Reloader>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// A token that stops everything when cancelled (signal handlers hold a clone).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The reloader (signal handlers hold a clone).
    pub fn reloader(&self) -> Arc<Reloader> {
        Arc::clone(&self.reloader)
    }

    /// Re-reads `blobcache.yaml` and applies what can change live (see [`crate::reload`]).
    pub async fn reload(&self) -> anyhow::Result<ReloadReport> {
        self.reloader.reload().await
    }

    /// Runs until the shutdown token is cancelled and every server has drained.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops accepting, drains, and returns when done.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

/// Builds the store tree (blocking work runs off the async workers) and, when the blocklist is
/// in use, wraps it in the blocklist layer. Shared by the server and the one-shot commands.
pub async fn build_root(
    config: &BlobcacheConfig,
    metrics: &Arc<Metrics>,
    policy: &Arc<Policy>,
    with_blocklist: bool,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    // Relative paths in the YAML are relative to the working directory, as in reflector.go.
    let ctx = BuildContext {
        metrics: Arc::clone(metrics),
    };
    let store_config = config.store.clone();
    let tree = tokio::task::spawn_blocking(move || store::build(&store_config, &ctx))
        .await
        .context("store build task failed")??;
    tracing::info!(tree = %store::describe(&config.store).trim_end(), "store tree built");
    Ok(if with_blocklist {
        Arc::new(BlocklistStore::new(
            tree,
            Arc::clone(policy),
            Arc::clone(metrics),
        ))
    } else {
        tree
    })
}

/// The process's metrics with every always-present family registered, so the first scrape
/// shows them all whichever doors and stores are configured (each owner takes its family again
/// when it is built: the same handles).
pub fn process_metrics() -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new());
    metrics.family::<StoreMetrics>();
    metrics.family::<ServerMetrics>();
    metrics.family::<ReflectorMetrics>();
    metrics.family::<AccessLogMetrics>();
    metrics.family::<crate::tracker::metrics::TrackerMetrics>();
    metrics.family::<crate::store::pins::PinSlot>();
    metrics
}

/// Reads `conf_dir/blobcache.yaml` and starts serving it.
pub async fn start_from_dir(opts: RunOptions) -> anyhow::Result<Running> {
    let file = opts.conf_dir.join("blobcache.yaml");
    let (cfg, raw) = reload::read_config(&file)?;
    start_loaded(cfg, raw, opts, Some(file)).await
}

/// Builds everything and starts serving `config` (tests pass a parsed config directly; a later
/// reload re-reads `opts.conf_dir/blobcache.yaml`).
pub async fn start(config: BlobcacheConfig, opts: RunOptions) -> anyhow::Result<Running> {
    let file = opts.conf_dir.join("blobcache.yaml");
    start_loaded(config, serde_yaml::Value::Null, opts, Some(file)).await
}

/// Starts serving `config`, read (as `raw`) from `reload_file`, which a reload re-reads; the
/// `reflector` command's entry (its file is `reflector.yaml`, or none when built from flags).
pub async fn start_loaded(
    config: BlobcacheConfig,
    raw: serde_yaml::Value,
    opts: RunOptions,
    reload_file: Option<PathBuf>,
) -> anyhow::Result<Running> {
    let metrics = process_metrics();
    let policy = Arc::new(Policy::new(
        reload::load_protected(&config)?,
        HashSet::new(),
    ));
    let blocklist_settings = (!opts.disable_blocklist)
        .then(|| Arc::new(ArcSwap::from_pointee(config.blocklist.clone())));
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    // Metrics first, so a slow index rebuild can be watched (readyz says "starting").
    let admin = start_admin(
        &config,
        &metrics,
        &ready,
        opts.metrics_addr,
        &mut tasks,
        &shutdown,
    )
    .await?;

    let tree = build_root(&config, &metrics, &policy, blocklist_settings.is_some()).await?;
    // Streams whose sd blob any door serves are announced once the DHT node exists.
    let announcing = Arc::new(AnnouncingStore::new(tree));
    announcing.learn_streams(metrics.family());
    let root: Arc<dyn BlobStore> = announcing.clone();
    let pins = open_pins(&config, &metrics)?;
    if let Some(pins) = &pins {
        let _ = admin.pins_status.set(Arc::clone(pins));
    }
    if let Some(admin_config) = &config.admin {
        let api = AdminApi::new(
            admin_config,
            Arc::clone(&root),
            pins.clone(),
            metrics.family(),
        );
        let _ = admin.api.set(api);
    }
    let blocklist = blocklist_settings.as_ref();
    start_blocklist(&config, blocklist, &policy, &root, &mut tasks, &shutdown).await?;

    let inflight_bytes = metrics.family::<ServerMetrics>().inflight_bytes.clone();
    let budget = InflightBudget::new(&config.limits, inflight_bytes);
    let service = BlobService::new(
        Arc::clone(&root),
        Arc::clone(&policy),
        Arc::clone(&budget),
        Arc::clone(&metrics),
    );
    let access_log = match &config.access_log {
        Some(log) => Some(AccessLog::open(log, &metrics.family())?),
        None => None,
    };
    if let Some(log) = &access_log {
        service.log_to(Arc::clone(log));
    }
    let mut doors = Doors::start(&config, &service, &mut tasks, &shutdown).await?;
    let nat = start_nat(&config, &doors, &metrics, &mut tasks, &shutdown).await;
    let peer_port = doors.peer_addr.map(|a| a.port());
    let config = announce_through_nat(config, nat.as_deref(), peer_port);
    let dht = start_dht(
        &config,
        &doors,
        &announcing,
        &metrics,
        &mut tasks,
        &shutdown,
    )
    .await?;
    if let Some(node) = &dht {
        let _ = admin.dht_status.set(node.clone());
    }
    let trackers = start_trackers(
        &config,
        &doors,
        &announcing,
        &metrics,
        &mut tasks,
        &shutdown,
    )?;
    if let Some(trackers) = &trackers {
        let _ = admin.trackers_status.set(trackers.clone());
    }
    let sink = announce_sink(dht.as_ref(), trackers.as_ref());
    if let Some(sink) = &sink {
        announcing.attach(Arc::clone(sink));
    }
    if let Some(check) = reachability_check(peer_port, &dht, &trackers, &nat, &metrics) {
        tasks.spawn(Arc::clone(&check).run(shutdown.clone()));
        let _ = admin.reachability.set(check);
    }
    // Bound with the other doors; served once the DHT and trackers exist, so the streams it
    // receives can be announced.
    let reflector_addr = doors.serve_reflector(sink, &mut tasks, &shutdown);
    let prefetcher = match (config.prefetch.clone(), admin.prefetch_status) {
        (Some(prefetch), Some(status)) => Some(start_prefetch(
            prefetch, status, &root, pins, &metrics, &mut tasks, &shutdown,
        )?),
        _ => None,
    };

    let reloader = Arc::new(Reloader::new(
        reload_file,
        raw,
        Arc::clone(&policy),
        Arc::clone(&root),
        doors.live(budget, access_log),
        blocklist_settings,
        prefetcher,
    ));
    ready.store(true, Ordering::Release);
    let metrics_addr = admin.addr;
    tracing::info!(%metrics_addr, "metrics listening; ready");
    Ok(Running {
        http_addr: doors.http_addr,
        peer_addr: doors.peer_addr,
        http3_addr: doors.http3_addr,
        reflector_addr,
        dht_addr: dht.as_ref().map(|d| SocketAddr::V4(d.local_addr())),
        dht,
        nat,
        metrics_addr,
        store: root,
        metrics,
        policy,
        reloader,
        shutdown,
        tasks,
    })
}

/// The metrics port, serving, and the status it shows that later start-up steps fill in.
struct StartedAdmin {
    addr: SocketAddr,
    prefetch_status: Option<crate::prefetch::report::StatusHandle>,
    /// Set once the DHT is bound (after the peer door, whose port it announces).
    dht_status: Arc<std::sync::OnceLock<crate::dht::Dht>>,
    /// Set once the tracker announcer exists (after the peer door too).
    trackers_status: Arc<std::sync::OnceLock<crate::tracker::Trackers>>,
    /// Set once the root store is built, when `admin:` is configured.
    api: Arc<std::sync::OnceLock<AdminApi>>,
    /// Set once the pin registry is open (with a disk tier).
    pins_status: Arc<std::sync::OnceLock<Arc<crate::store::pins::Pins>>>,
    /// Set once the DHT, trackers and NAT mapping have started.
    reachability: Arc<std::sync::OnceLock<Arc<crate::reachability::SelfCheck>>>,
}

/// Binds the metrics port and serves it (`/metrics`, health, status).
async fn start_admin(
    config: &BlobcacheConfig,
    metrics: &Arc<Metrics>,
    ready: &Arc<AtomicBool>,
    addr: SocketAddr,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<StartedAdmin> {
    let prefetch_status = config
        .prefetch
        .as_ref()
        .map(|p| crate::prefetch::report::StatusHandle::new(p.enabled, &p.api));
    let dht_status = Arc::new(std::sync::OnceLock::new());
    let trackers_status = Arc::new(std::sync::OnceLock::new());
    let api = Arc::new(std::sync::OnceLock::new());
    let pins_status = Arc::new(std::sync::OnceLock::new());
    let reachability = Arc::new(std::sync::OnceLock::new());
    let status = Arc::new(crate::server::status::StatusPage::new(
        Arc::clone(metrics),
        crate::server::status::Sources {
            dht: Arc::clone(&dht_status),
            trackers: Arc::clone(&trackers_status),
            pins: Arc::clone(&pins_status),
            prefetch: prefetch_status.clone(),
            reachability: Arc::clone(&reachability),
        },
    ));
    tasks.spawn(Arc::clone(&status).sample_forever(shutdown.clone()));
    let admin = Arc::new(AdminServer {
        status,
        api: Arc::clone(&api),
        api_configured: config.admin.is_some(),
        metrics: Arc::clone(metrics),
        ready: Arc::clone(ready),
        prefetch: prefetch_status.clone(),
        dht: Arc::clone(&dht_status),
        trackers: Arc::clone(&trackers_status),
    });
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics port {addr}"))?;
    let bound = listener.local_addr()?;
    tasks.spawn(admin.serve(listener, shutdown.clone()));
    Ok(StartedAdmin {
        addr: bound,
        prefetch_status,
        dht_status,
        trackers_status,
        api,
        pins_status,
        reachability,
    })
}

/// The front doors, bound (so a taken port fails the start) and, except the upload door,
/// serving.
struct Doors {
    http: Option<Arc<HttpServer>>,
    http3: Option<Arc<Http3Server>>,
    peer: Option<Arc<PeerServer>>,
    http_addr: Option<SocketAddr>,
    http3_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    /// Bound; served by [`Doors::serve_reflector`] once the DHT exists.
    reflector: Option<(ReflectorServer, TcpListener)>,
}

impl Doors {
    async fn start(
        config: &BlobcacheConfig,
        service: &Arc<BlobService>,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Doors> {
        let servers = &config.servers;
        // Playback is a route of the HTTP doors.
        let playback = Playback::new(
            config.stream.clone().unwrap_or_default(),
            Arc::clone(service),
        )
        .context("setting up stream playback")?;
        let mut doors = Doors {
            http: None,
            http3: None,
            peer: None,
            http_addr: None,
            http3_addr: None,
            peer_addr: None,
            reflector: None,
        };
        if let Some(http) = &servers.http {
            let listener = HttpServer::bind(http).await?;
            doors.http_addr = Some(listener.local_addr()?);
            let server = HttpServer::new(Arc::clone(service), http, Some(Arc::clone(&playback)));
            tasks.spawn(Arc::clone(&server).serve(listener, shutdown.clone()));
            doors.http = Some(server);
        }
        if let Some(peer) = &servers.peer {
            if peer.edge_token.is_some() {
                tracing::info!("servers.peer.edge_token: accepted and ignored (peers cannot present a token; protected blobs are never served on the peer door)");
            }
            let listener = PeerServer::bind(peer).await?;
            doors.peer_addr = Some(listener.local_addr()?);
            let server = PeerServer::new(Arc::clone(service), peer);
            tasks.spawn(Arc::clone(&server).serve(listener, shutdown.clone()));
            doors.peer = Some(server);
        }
        if let Some(http3) = &servers.http3 {
            let endpoint = Http3Server::bind(http3)?;
            doors.http3_addr = Some(endpoint.local_addr()?);
            let server = Http3Server::new(Arc::clone(service), http3, Some(playback));
            tasks.spawn(Arc::clone(&server).serve(endpoint, shutdown.clone()));
            doors.http3 = Some(server);
        }
        if let Some(reflector) = &servers.reflector {
            let listener = ReflectorServer::bind(reflector).await?;
            let server = ReflectorServer::new(Arc::clone(service), reflector.clone());
            doors.reflector = Some((server, listener));
        }
        for (door, addr) in [
            ("http", doors.http_addr),
            ("peer", doors.peer_addr),
            ("http3 (udp)", doors.http3_addr),
            ("reflector (upload)", doors.reflector_addr()),
        ] {
            if let Some(addr) = addr {
                tracing::info!(%addr, "{door} server listening");
            }
        }
        Ok(doors)
    }

    /// What a reload reconfigures: each serving door's settings, and the shared budget.
    fn live(
        &self,
        budget: Arc<InflightBudget>,
        access_log: Option<Arc<AccessLog>>,
    ) -> reload::LiveDoors {
        reload::LiveDoors {
            access_log,
            http: self.http.as_ref().map(|d| Arc::clone(d.door())),
            http3: self.http3.as_ref().map(|d| Arc::clone(d.door())),
            peer: self.peer.as_ref().map(|d| Arc::clone(d.door())),
            budget,
        }
    }

    fn reflector_addr(&self) -> Option<SocketAddr> {
        self.reflector
            .as_ref()
            .and_then(|(_, listener)| listener.local_addr().ok())
    }

    /// Starts serving the upload door, announcing the streams it stores when there is a DHT
    /// or trackers.
    fn serve_reflector(
        &mut self,
        sink: Option<Arc<dyn AnnounceSink>>,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Option<SocketAddr> {
        let addr = self.reflector_addr();
        let (server, listener) = self.reflector.take()?;
        let server = match sink {
            Some(sink) => server.on_stream_stored(announce_stored_streams(sink)),
            None => server,
        };
        tasks.spawn(Arc::new(server).serve(listener, shutdown.clone()));
        addr
    }
}

/// Loads the blocklist, purges what it newly blocks, and keeps it fresh; `settings` is `None`
/// under `--disable-blocklist`.
async fn start_blocklist(
    config: &BlobcacheConfig,
    settings: Option<&Arc<ArcSwap<Option<crate::config::BlocklistConfig>>>>,
    policy: &Arc<Policy>,
    root: &Arc<dyn BlobStore>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(settings) = settings else {
        tracing::info!("blocklist disabled by --disable-blocklist");
        return Ok(());
    };
    let Some(cfg) = &config.blocklist else {
        return Ok(());
    };
    let hashes = blocklist::load(cfg, &blocklist::list_client(), policy).await?;
    let newly = policy.set_blocked(hashes);
    tracing::info!(blocked = newly.len(), "blocklist loaded");
    let store = Arc::clone(root);
    tasks.spawn(async move { blocklist::purge(store.as_ref(), &newly).await });
    tasks.spawn(blocklist::refresh_loop(
        Arc::clone(settings),
        Arc::clone(policy),
        Arc::clone(root),
        shutdown.clone(),
    ));
    Ok(())
}

/// When `nat:` is set: maps the peer door's TCP port and the DHT's UDP port on the router
/// (bounded by `nat.timeout` per method; never fails the start) and keeps them mapped.
async fn start_nat(
    config: &BlobcacheConfig,
    doors: &Doors,
    metrics: &Metrics,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Option<Arc<crate::nat::Nat>> {
    use crate::nat::{PortRequest, Transport};
    let nat_config = config.nat.as_ref()?;
    let mut requests = Vec::new();
    if let Some(peer) = doors.peer_addr {
        requests.push(PortRequest {
            transport: Transport::Tcp,
            port: peer.port(),
            purpose: "peer",
        });
    }
    if let Some(dht) = config.dht.as_ref().filter(|d| d.enabled && d.port != 0) {
        requests.push(PortRequest {
            transport: Transport::Udp,
            port: dht.port,
            purpose: "dht",
        });
    }
    let nat_metrics = metrics.family::<crate::nat::NatMetrics>();
    let nat = crate::nat::Nat::start(nat_config, requests, nat_metrics, tasks, shutdown).await;
    Some(Arc::new(nat))
}

/// The config the DHT announces with: the router's external address and the peer door's
/// external port, where port mapping learned them and `dht.announce_address` /
/// `dht.announce_port` do not say otherwise.
fn announce_through_nat(
    mut config: BlobcacheConfig,
    nat: Option<&crate::nat::Nat>,
    peer_port: Option<u16>,
) -> BlobcacheConfig {
    let (Some(nat), Some(dht)) = (nat, config.dht.as_mut()) else {
        return config;
    };
    let status = nat.status();
    if dht.announce_address.is_none() {
        dht.announce_address = status.external_ipv4();
    }
    if dht.announce_port.is_none() {
        dht.announce_port = peer_port
            .and_then(|port| status.external_port(crate::nat::Transport::Tcp, port))
            .filter(|external| Some(*external) != peer_port);
    }
    config
}

/// When `dht.enabled`: binds the DHT node (it announces the peer door's port), has it announce
/// the streams the root store serves, restores the announcements of an earlier run, and runs it.
async fn start_dht(
    config: &BlobcacheConfig,
    doors: &Doors,
    announcing: &Arc<AnnouncingStore>,
    metrics: &Metrics,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<crate::dht::Dht>> {
    let Some(dht_config) = config.dht.as_ref().filter(|d| d.enabled) else {
        return Ok(None);
    };
    let node_id = crate::dht::load_or_create_node_id(&dht_config.data_dir)?;
    let node = crate::dht::Dht::bind(
        dht_config,
        doors.peer_addr.map(|a| a.port()),
        node_id,
        &metrics.registry,
    )
    .await?;
    tracing::info!(addr = %node.local_addr(), node_id = %node_id, "dht node listening (udp)");
    let remembered = node.open_journal(&dht_config.data_dir, dht_config.max_announced)?;
    tasks.spawn(restore_announcements(
        Arc::clone(announcing) as Arc<dyn BlobStore>,
        local_root(config),
        Arc::new(node.announcer()),
        remembered,
    ));
    tasks.spawn(node.clone().run(shutdown.clone()));
    Ok(Some(node))
}

/// The pin registry, when the tree has a disk tier (the first one found, depth first): its
/// file and bound from `pins:` or their defaults; disk tiers consult it from now on.
fn open_pins(
    config: &BlobcacheConfig,
    metrics: &Metrics,
) -> anyhow::Result<Option<Arc<crate::store::pins::Pins>>> {
    let Some(disk) = first_disk(&config.store) else {
        return Ok(None);
    };
    let settings = config.pins.clone().unwrap_or_default();
    let file = settings.file.unwrap_or_else(|| {
        let mut name = disk.mount_point.clone().into_os_string();
        name.push(".pins.json");
        PathBuf::from(name)
    });
    let tier_max = disk.max_size.map_or(u64::MAX, |s| s.0);
    let pin_max = settings.pin_max.map_or(tier_max / 2, |s| s.0).min(tier_max);
    let slot = metrics.family::<crate::store::pins::PinSlot>();
    let pins = crate::store::pins::Pins::open(&file, pin_max, &slot)
        .with_context(|| format!("reading the pins file {}", file.display()))?;
    let pins = Arc::new(pins);
    slot.set(Arc::clone(&pins));
    Ok(Some(pins))
}

fn first_disk(store: &StoreConfig) -> Option<&crate::config::DiskConfig> {
    match store {
        StoreConfig::Disk(disk) => Some(disk),
        other => other
            .children()
            .into_iter()
            .find_map(|(_, c)| first_disk(c)),
    }
}

/// A root that is itself a local tier (an origin or ingest box) holds what it `has`;
/// otherwise "held" means in a cache tier (`has` would ask the origin).
fn local_root(config: &BlobcacheConfig) -> bool {
    matches!(
        config.store,
        StoreConfig::Disk(_) | StoreConfig::Mem(_) | StoreConfig::DbBacked(_)
    )
}

/// When `trackers:` is set: the tracker announcer, advertising the port the DHT would
/// (`dht.announce_port`, else the peer door's) and `dht.announce_address` when set; restores
/// an earlier run's announcements and runs until shutdown (then sends `stopped`).
fn start_trackers(
    config: &BlobcacheConfig,
    doors: &Doors,
    announcing: &Arc<AnnouncingStore>,
    metrics: &Metrics,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<crate::tracker::Trackers>> {
    let Some(trackers_config) = config.trackers.clone() else {
        return Ok(None);
    };
    let dht = config.dht.clone().unwrap_or_default();
    let Some(port) = dht.announce_port.or(doors.peer_addr.map(|a| a.port())) else {
        tracing::warn!(
            "trackers: configured, but there is no peer door (servers.peer) or \
             dht.announce_port to announce; not announcing"
        );
        return Ok(None);
    };
    let data_dir = trackers_config.data_dir.clone();
    let trackers = crate::tracker::Trackers::new(
        trackers_config,
        port,
        dht.announce_address,
        metrics.family(),
    );
    let remembered = trackers
        .open_journal(&data_dir)
        .with_context(|| format!("opening the tracker journal in {}", data_dir.display()))?;
    tracing::info!(port, servers = ?config.trackers.as_ref().map(|t| &t.servers), "trackers: announcing");
    tasks.spawn(restore_announcements(
        Arc::clone(announcing) as Arc<dyn BlobStore>,
        local_root(config),
        Arc::new(trackers.clone()),
        remembered,
    ));
    tasks.spawn(trackers.clone().run(shutdown.clone()));
    Ok(Some(trackers))
}

/// The reachability self-check, for a cache LBRY clients are told about: a peer door
/// announced in the DHT or to trackers.
fn reachability_check(
    peer_port: Option<u16>,
    dht: &Option<crate::dht::Dht>,
    trackers: &Option<crate::tracker::Trackers>,
    nat: &Option<Arc<crate::nat::Nat>>,
    metrics: &Metrics,
) -> Option<Arc<crate::reachability::SelfCheck>> {
    (peer_port.is_some() && (dht.is_some() || trackers.is_some())).then(|| {
        Arc::new(crate::reachability::SelfCheck::new(
            dht.clone(),
            trackers.clone(),
            nat.clone(),
            peer_port,
            metrics.family(),
        ))
    })
}

/// Where announcements go: the DHT, the trackers, both, or nowhere.
fn announce_sink(
    dht: Option<&crate::dht::Dht>,
    trackers: Option<&crate::tracker::Trackers>,
) -> Option<Arc<dyn AnnounceSink>> {
    let mut sinks: Vec<Arc<dyn AnnounceSink>> = Vec::new();
    if let Some(node) = dht {
        sinks.push(Arc::new(node.announcer()));
    }
    if let Some(trackers) = trackers {
        sinks.push(Arc::new(trackers.clone()));
    }
    match sinks.len() {
        0 => None,
        1 => sinks.pop(),
        _ => Some(Arc::new(Sinks(sinks))),
    }
}

/// Starts the channel prefetcher. It runs on its own task with its own small concurrency
/// limit (it never holds a front door's slot), exists even while disabled so a reload can
/// enable it, and stops with everything else on the shutdown token.
fn start_prefetch(
    prefetch: crate::config::PrefetchConfig,
    status: crate::prefetch::report::StatusHandle,
    root: &Arc<dyn BlobStore>,
    pins: Option<Arc<crate::store::pins::Pins>>,
    metrics: &Arc<Metrics>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<crate::prefetch::Prefetcher>> {
    if !prefetch.enabled {
        tracing::info!("channel prefetch configured but disabled (prefetch.enabled: false)");
    }
    // Streams it warms are announced in the DHT by the root store's announcing layer, which
    // sees their sd blobs pass, as it does for every door.
    let prefetcher = Arc::new(
        crate::prefetch::Prefetcher::new(prefetch, Arc::clone(root), &metrics.registry, status)
            .context("starting the prefetcher")?
            .with_pins(pins)
            .with_served_streams(metrics.family()),
    );
    tasks.spawn(Arc::clone(&prefetcher).run_forever(shutdown.clone()));
    Ok(prefetcher)
}

/// Uploaded streams are announced in the DHT (the sd blob, what LBRY clients look up first,
/// and the first content blob, what they fetch right after) and to the trackers.
fn announce_stored_streams(sink: Arc<dyn AnnounceSink>) -> OnStreamStored {
    Arc::new(move |stream| {
        crate::store::announce::announce_stream(
            sink.as_ref(),
            &stream.sd_hash,
            stream.first_blob.as_ref(),
        )
    })
}

/// Announces again, after a restart, the blobs an earlier run announced that the cache tiers
/// still hold (evicted ones are dropped), in the background so start-up does not wait on it.
async fn restore_announcements(
    store: Arc<dyn BlobStore>,
    local_root: bool,
    announcer: Arc<dyn AnnounceSink>,
    remembered: Vec<crate::blob::BlobHash>,
) {
    let (mut kept, total) = (0usize, remembered.len());
    for hash in remembered {
        let held = if local_root {
            store.has(&hash).await
        } else {
            store.has_cached(&hash).await
        };
        if matches!(held, Ok(true)) && announcer.announce(&hash) {
            kept += 1;
        }
    }
    announcer.restored();
    if total > 0 {
        tracing::info!(
            kept,
            dropped = total - kept,
            "announcements restored after restart"
        );
    }
}
