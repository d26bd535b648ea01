//! Wiring for `prism-lite blobcache`: build the store tree, bind the front doors and the
//! metrics port, run until told to stop, then drain.
//!
//! Tests use [`start`] directly with port 0 and read the bound addresses from [`Running`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::BlobcacheConfig;
use crate::metrics::Metrics;
use crate::protected::ProtectedList;
use crate::server::admin::AdminServer;
use crate::server::http::HttpServer;
use crate::server::http3::Http3Server;
use crate::server::Shared;
use crate::store::{self, BlobStore, BuildContext};

/// Process-level options (from the command line, not the YAML).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where `blobcache.yaml` was read from (for log messages).
    pub conf_dir: PathBuf,
    /// Address for `/metrics`; port 0 picks a free one.
    pub metrics_addr: SocketAddr,
    pub disable_blocklist: bool,
}

/// A started blobcache.
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    /// The UDP address `servers.http3` listens on.
    pub http3_addr: Option<SocketAddr>,
    pub metrics_addr: SocketAddr,
    pub store: Arc<dyn BlobStore>,
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// A token that stops everything when cancelled (signal handlers hold a clone).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
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

/// Builds everything and starts serving.
pub async fn start(config: BlobcacheConfig, opts: RunOptions) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let protected = match &config.protected_list {
        Some(path) => ProtectedList::load(path)?,
        None => ProtectedList::default(),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    // Metrics first, so a slow index rebuild can be watched (readyz says "starting").
    let metrics_listener = TcpListener::bind(opts.metrics_addr)
        .await
        .with_context(|| format!("binding metrics port {}", opts.metrics_addr))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let admin = Arc::new(AdminServer {
        metrics: Arc::clone(&metrics),
        ready: Arc::clone(&ready),
    });
    tasks.spawn(admin.serve(metrics_listener, shutdown.clone()));

    // Relative paths in the YAML are relative to the working directory, as in reflector.go.
    let ctx = BuildContext {
        metrics: Arc::clone(&metrics),
        base_dir: PathBuf::from("."),
    };
    let store_config = config.store.clone();
    let root = tokio::task::spawn_blocking(move || store::build(&store_config, &ctx))
        .await
        .context("store build task failed")??;
    tracing::info!(tree = %store::describe(&config.store).trim_end(), "store tree built");

    let shared = Shared {
        store: Arc::clone(&root),
        metrics: Arc::clone(&metrics),
        protected: Arc::new(protected),
    };
    let mut http_addr = None;
    if let Some(http) = config.servers.http.clone() {
        let host = http.address.clone().unwrap_or_else(|| "0.0.0.0".into());
        let bind = format!("{host}:{}", http.port);
        let listener = TcpListener::bind(&bind)
            .await
            .with_context(|| format!("binding servers.http on {bind}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "http server listening");
        http_addr = Some(addr);
        tasks.spawn(HttpServer::new(shared.clone(), http).serve(listener, shutdown.clone()));
    }
    let mut http3_addr = None;
    if let Some(http3) = config.servers.http3.clone() {
        let endpoint = Http3Server::bind(&http3)?;
        let addr = endpoint.local_addr()?;
        tracing::info!(%addr, "http3 server listening (udp)");
        http3_addr = Some(addr);
        tasks.spawn(Http3Server::new(shared.clone(), http3).serve(endpoint, shutdown.clone()));
    }
    if opts.disable_blocklist {
        tracing::info!("blocklist disabled by --disable-blocklist");
    }
    ready.store(true, Ordering::Release);
    tracing::info!(%metrics_addr, "metrics listening; ready");
    Ok(Running {
        http_addr,
        http3_addr,
        metrics_addr,
        store: root,
        metrics,
        shutdown,
        tasks,
    })
}
