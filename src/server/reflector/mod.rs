//! `servers.reflector`: the ingest door. LBRY publishers (the SDK's `StreamReflectorClient`,
//! reflector.go's uploader) push new streams here on the reflector protocol
//! ([`crate::protocol::reflector`]); every blob is SHA-384-verified in memory and only then
//! written through the root store's `put`, so a `multiwriter` (disk + S3) receives it whole
//! and no door ever sees part of a blob.
//!
//! Admission happens before a byte is read: the `allow` list, the global connection cap
//! and the per-address cap (both in [`Acceptor`]). The protocol itself runs in
//! `session`.
//!
//! When a stream's last blob is stored, the [`OnStreamStored`] hook is called (app.rs hands the
//! DHT announcer in, so uploaded streams are announced).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::blob::BlobHash;
use crate::metrics::GaugeGuard;
use crate::metrics::DIRECTION_UPLOAD;
use crate::server::accept::{self, Accepted, Acceptor, Admission};
use crate::server::serve::BlobService;

pub mod metrics;
mod session;

use self::metrics::ReflectorMetrics;

pub use crate::config::ReflectorServerConfig;

/// A stream whose sd blob and every content blob are now stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStream {
    pub sd_hash: BlobHash,
    /// The stream's first content blob (what a player asks for right after the sd blob).
    pub first_blob: Option<BlobHash>,
}

/// Called once per completed stream upload (and again when a re-upload finds the stream
/// complete). Must not block: it runs on the connection's task.
pub type OnStreamStored = Arc<dyn Fn(&StoredStream) + Send + Sync>;

/// The reflector door's state.
pub struct ReflectorServer {
    /// The root store (uploads are `put` through it), the policy and the metrics.
    service: Arc<BlobService>,
    /// The door's own metrics (errors go to the shared `reflector_error_total`).
    metrics: Arc<ReflectorMetrics>,
    config: ReflectorServerConfig,
    on_stored: Option<OnStreamStored>,
}

impl ReflectorServer {
    pub fn new(service: Arc<BlobService>, config: ReflectorServerConfig) -> ReflectorServer {
        ReflectorServer {
            metrics: service.metrics().family(),
            service,
            config,
            on_stored: None,
        }
    }

    /// Binds the listening socket (separate from [`serve`](Self::serve), so a taken port
    /// fails the start).
    pub async fn bind(config: &ReflectorServerConfig) -> anyhow::Result<TcpListener> {
        accept::bind_tcp("servers.reflector", &config.listen()).await
    }

    /// Calls `hook` for every stream an upload completes.
    pub fn on_stream_stored(mut self, hook: OnStreamStored) -> ReflectorServer {
        self.on_stored = Some(hook);
        self
    }

    /// Accepts uploads until `shutdown`, then stops accepting and waits (at most
    /// `shutdown_timeout`) for connections to end. A connection cut mid-blob stores nothing.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let m = self.service.metrics();
        let listen = self.config.listen();
        let refused = m
            .error_total
            .with_label_values(&[DIRECTION_UPLOAD, "too_many_connections"]);
        let mut acceptor = Acceptor::new(listener, Admission::new(&listen, refused, "reflector"));
        while let Some(Accepted { stream, peer, slot }) = acceptor.next(&shutdown).await {
            if !self.config.allows(peer.ip()) {
                tracing::debug!(%peer, "reflector upload refused: address not in allow");
                m.error(DIRECTION_UPLOAD, "not_allowed");
                continue; // dropping the stream closes it
            }
            let server = Arc::clone(&self);
            let shutdown = shutdown.child_token();
            tokio::spawn(async move {
                let _open = GaugeGuard::new(&server.metrics.reflector_connections);
                if let Err(kind) = session::run(&server, stream, shutdown).await {
                    tracing::debug!(%peer, error_type = kind, "reflector connection closed");
                    server.service.metrics().error(DIRECTION_UPLOAD, kind);
                }
                drop(slot);
            });
        }
        match acceptor.close_and_drain(listen.shutdown_timeout).await {
            true => tracing::info!("reflector server drained"),
            false => tracing::warn!(
                timeout = ?listen.shutdown_timeout,
                "reflector server drain timed out; leaving remaining uploads to the runtime"
            ),
        }
    }

    fn stream_stored(&self, stream: &StoredStream) {
        if let Some(hook) = &self.on_stored {
            hook(stream);
        }
    }
}
