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
use crate::server::admin::AdminServer;
use crate::server::http::HttpServer;
use crate::server::http3::Http3Server;
use crate::server::peer::PeerServer;
use crate::server::reflector::{OnStreamStored, ReflectorServer};
use crate::server::Shared;
use crate::store::announce::AnnouncingStore;
use crate::store::blocklist::BlocklistStore;
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

/// Reads `conf_dir/blobcache.yaml` and starts serving it.
pub async fn start_from_dir(opts: RunOptions) -> anyhow::Result<Running> {
    let (cfg, raw) = reload::read_config(&opts.conf_dir)?;
    start_with_raw(cfg, raw, opts).await
}

/// Builds everything and starts serving `config` (tests pass a parsed config directly; a later
/// reload re-reads `opts.conf_dir`).
pub async fn start(config: BlobcacheConfig, opts: RunOptions) -> anyhow::Result<Running> {
    start_with_raw(config, serde_yaml::Value::Null, opts).await
}

async fn start_with_raw(
    config: BlobcacheConfig,
    raw: serde_yaml::Value,
    opts: RunOptions,
) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::new());
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
    let metrics_listener = TcpListener::bind(opts.metrics_addr)
        .await
        .with_context(|| format!("binding metrics port {}", opts.metrics_addr))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let prefetch_status = config
        .prefetch
        .as_ref()
        .map(|p| crate::prefetch::report::StatusHandle::new(p.enabled, &p.api));
    // Filled in once the DHT is bound (after the peer server, whose port it announces).
    let dht_status = Arc::new(std::sync::OnceLock::new());
    let admin = Arc::new(AdminServer {
        metrics: Arc::clone(&metrics),
        ready: Arc::clone(&ready),
        prefetch: prefetch_status.clone(),
        dht: Arc::clone(&dht_status),
    });
    tasks.spawn(admin.serve(metrics_listener, shutdown.clone()));

    let tree = build_root(&config, &metrics, &policy, blocklist_settings.is_some()).await?;
    // Streams whose sd blob any door serves are announced once the DHT node exists.
    let announcing = Arc::new(AnnouncingStore::new(tree));
    let root: Arc<dyn BlobStore> = announcing.clone();

    if let (Some(settings), Some(cfg)) = (&blocklist_settings, &config.blocklist) {
        let hashes = blocklist::load(cfg, &blocklist::list_client(), &policy).await?;
        let newly = policy.set_blocked(hashes);
        tracing::info!(blocked = newly.len(), "blocklist loaded");
        let store = Arc::clone(&root);
        tasks.spawn(async move { blocklist::purge(store.as_ref(), &newly).await });
        tasks.spawn(blocklist::refresh_loop(
            Arc::clone(settings),
            Arc::clone(&policy),
            Arc::clone(&root),
            shutdown.clone(),
        ));
    } else if opts.disable_blocklist {
        tracing::info!("blocklist disabled by --disable-blocklist");
    }

    let playback = crate::server::playback::Playback::new(
        config.stream.clone().unwrap_or_default(),
        Arc::clone(&root),
        Arc::clone(&policy),
        Arc::clone(&metrics),
    )
    .context("setting up stream playback")?;
    let shared_budget =
        crate::server::budget::InflightBudget::new(&config.limits, metrics.inflight_bytes.clone());
    let shared = Shared {
        store: Arc::clone(&root),
        metrics: Arc::clone(&metrics),
        policy: Arc::clone(&policy),
        playback: Some(playback),
        budget: Arc::clone(&shared_budget),
    };
    let mut http_addr = None;
    let mut http_server = None;
    if let Some(http) = config.servers.http.clone() {
        let host = http.address.clone().unwrap_or_else(|| "0.0.0.0".into());
        let bind = format!("{host}:{}", http.port);
        let listener = TcpListener::bind(&bind)
            .await
            .with_context(|| format!("binding servers.http on {bind}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "http server listening");
        http_addr = Some(addr);
        let server = HttpServer::new(shared.clone(), http);
        http_server = Some(Arc::clone(&server));
        tasks.spawn(server.serve(listener, shutdown.clone()));
    }
    let mut peer_addr = None;
    if let Some(peer) = config.servers.peer.clone() {
        let host = peer.address.clone().unwrap_or_else(|| "0.0.0.0".into());
        let bind = format!("{host}:{}", peer.port);
        let listener = TcpListener::bind(&bind)
            .await
            .with_context(|| format!("binding servers.peer on {bind}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "peer server listening");
        peer_addr = Some(addr);
        tasks.spawn(PeerServer::new(shared.clone(), peer).serve(listener, shutdown.clone()));
    }
    let mut http3_addr = None;
    let mut http3_server = None;
    if let Some(http3) = config.servers.http3.clone() {
        let endpoint = Http3Server::bind(&http3)?;
        let addr = endpoint.local_addr()?;
        tracing::info!(%addr, "http3 server listening (udp)");
        http3_addr = Some(addr);
        let server = Http3Server::new(shared.clone(), http3);
        http3_server = Some(Arc::clone(&server));
        tasks.spawn(server.serve(endpoint, shutdown.clone()));
    }
    // Bound now (a taken port fails the start early); served once the DHT exists, so the
    // streams it receives can be announced.
    let mut reflector = None;
    if let Some(cfg) = config.servers.reflector.clone() {
        let host = cfg.address.clone().unwrap_or_else(|| "0.0.0.0".into());
        let bind = format!("{host}:{}", cfg.port);
        let listener = TcpListener::bind(&bind)
            .await
            .with_context(|| format!("binding servers.reflector on {bind}"))?;
        tracing::info!(addr = %listener.local_addr()?, "reflector (upload) server listening");
        reflector = Some((ReflectorServer::new(shared.clone(), cfg), listener));
    }
    let reflector_addr = match &reflector {
        Some((_, listener)) => Some(listener.local_addr()?),
        None => None,
    };
    let mut dht = None;
    if let Some(dht_config) = config.dht.as_ref().filter(|d| d.enabled) {
        let node_id = crate::dht::load_or_create_node_id(&dht_config.data_dir)?;
        let node = crate::dht::Dht::bind(
            dht_config,
            peer_addr.map(|a| a.port()),
            node_id,
            &metrics.registry,
        )
        .await?;
        tracing::info!(addr = %node.local_addr(), node_id = %node_id, "dht node listening (udp)");
        let _ = dht_status.set(node.clone());
        announcing.attach(Arc::new(node.announcer()));
        let remembered = node.open_journal(&dht_config.data_dir, dht_config.max_announced)?;
        // A root that is itself a local tier (an origin or ingest box) holds what it `has`;
        // otherwise "held" means in a cache tier (`has` would ask the origin).
        let local_root = matches!(
            config.store,
            StoreConfig::Disk(_) | StoreConfig::Mem(_) | StoreConfig::DbBacked(_)
        );
        tasks.spawn(restore_announcements(
            Arc::clone(&root),
            local_root,
            node.announcer(),
            remembered,
        ));
        tasks.spawn(node.clone().run(shutdown.clone()));
        dht = Some(node);
    }
    if let Some((server, listener)) = reflector {
        let server = match &dht {
            Some(node) => server.on_stream_stored(announce_stored_streams(node.announcer())),
            None => server,
        };
        tasks.spawn(Arc::new(server).serve(listener, shutdown.clone()));
    }
    let mut prefetcher = None;
    if let (Some(prefetch), Some(status)) = (config.prefetch.clone(), prefetch_status) {
        if !prefetch.enabled {
            tracing::info!("channel prefetch configured but disabled (prefetch.enabled: false)");
        }
        // Its own task with its own small concurrency limit: it never holds a front door's
        // slot, and stops with everything else on the shutdown token. It exists even while
        // disabled, so a reload can enable it.
        let built = crate::prefetch::Prefetcher::new(
            prefetch,
            Arc::clone(&root),
            &metrics.registry,
            status,
        )
        .context("starting the prefetcher")?;
        // Streams it warms are announced in the DHT by the root store's announcing layer,
        // which sees their sd blobs pass, as it does for every door.
        let running = Arc::new(built);
        tasks.spawn(Arc::clone(&running).run_forever(shutdown.clone()));
        prefetcher = Some(running);
    }

    let reloader = Arc::new(Reloader::new(
        opts.conf_dir.clone(),
        raw,
        Arc::clone(&policy),
        Arc::clone(&root),
        reload::LiveDoors {
            http: http_server,
            http3: http3_server,
            budget: Arc::clone(&shared_budget),
        },
        blocklist_settings,
        prefetcher,
    ));
    ready.store(true, Ordering::Release);
    tracing::info!(%metrics_addr, "metrics listening; ready");
    Ok(Running {
        http_addr,
        peer_addr,
        http3_addr,
        reflector_addr,
        dht_addr: dht.as_ref().map(|d| SocketAddr::V4(d.local_addr())),
        dht,
        metrics_addr,
        store: root,
        metrics,
        policy,
        reloader,
        shutdown,
        tasks,
    })
}

/// Uploaded streams are announced in the DHT: the sd blob (what LBRY clients look up first)
/// and the first content blob (what they fetch right after).
fn announce_stored_streams(announcer: crate::dht::Announcer) -> OnStreamStored {
    Arc::new(move |stream| {
        crate::store::announce::announce_stream(
            &announcer,
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
    announcer: crate::dht::Announcer,
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
            "dht: announcements restored after restart"
        );
    }
}
