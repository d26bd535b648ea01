//! `servers.http`: reflector.go's HTTP blob API.
//!
//! - `GET /blob?hash=H[&edge_token=T]` -> 200 with the bytes (+ `Via` trace), 404 when no store
//!   in the chain has it, 403 for protected content without the right token, 502/504 when the
//!   origin failed or timed out.
//! - `HEAD /blob?hash=H` -> 204 present / 404 absent.
//! - 400 with a reason for a missing or malformed hash, 405 for other methods on `/blob`.
//!
//! `max_concurrent_requests` bounds store calls in flight; up to `max_queued_requests` more wait
//! (at most `queue_timeout`), and anything beyond gets 503 at once, so a flood costs a fixed
//! amount of memory. (The API's wire facts: [`crate::protocol::http`].) The blob is handed to hyper as the store's own `Bytes` (no copy); hyper
//! writes headers and body with one vectored write.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::blob::BlobHash;
use crate::config::HttpServerConfig;
use crate::metrics::DIRECTION_DOWNLOAD;
use crate::protocol::http::BLOB_PATH;
use crate::secret::SecretString;
use crate::server::accept::{Accepted, Acceptor};
use crate::server::playback::hyper_body::{self, HyperBody};
use crate::server::playback::Door;
use crate::server::slots::Slots;
use crate::server::{BlobQuery, Shared, PROTECTED_MESSAGE};
use crate::store::StoreError;

/// A client must finish sending request headers within this time.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type Body = Full<Bytes>;

/// The HTTP front door's state.
pub struct HttpServer {
    shared: Shared,
    /// Live settings: `edge_token` and the limits change on reload; port and address do not.
    settings: ArcSwap<HttpServerConfig>,
    slots: Slots,
    queued: AtomicUsize,
}

impl HttpServer {
    pub fn new(shared: Shared, config: HttpServerConfig) -> Arc<HttpServer> {
        // The series exists from the start (zero), so rate() panels work before the first 503.
        shared
            .metrics
            .requests_rejected_total
            .with_label_values(&["http"]);
        Arc::new(HttpServer {
            slots: Slots::new(config.max_concurrent_requests),
            queued: AtomicUsize::new(0),
            settings: ArcSwap::from_pointee(config),
            shared,
        })
    }

    /// Applies reloadable settings (token, limits). Lowering the request limit takes effect as
    /// in-flight requests finish; nothing in flight is interrupted.
    pub fn reconfigure(&self, config: HttpServerConfig) {
        self.slots.resize(config.max_concurrent_requests);
        self.settings.store(Arc::new(config));
    }

    /// Accepts connections until `shutdown`, then stops accepting and gives in-flight requests
    /// up to `shutdown_timeout` to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let acceptor = Acceptor::new(listener, self.settings.load().max_connections, "http");
        while let Some(Accepted { stream, peer, slot }) = acceptor.next(&shutdown).await {
            let server = Arc::clone(&self);
            let service = hyper::service::service_fn(move |req| {
                let server = Arc::clone(&server);
                async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .writev(true)
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "http connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(acceptor);
        let deadline = self.settings.load().shutdown_timeout;
        tokio::select! {
            _ = graceful.shutdown() => tracing::info!("http server drained"),
            _ = tokio::time::sleep(deadline) => {
                tracing::warn!(timeout = ?deadline, "http server drain timed out; closing remaining connections");
            }
        }
    }

    async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Response<HyperBody> {
        let start = Instant::now();
        let response = match &self.shared.playback {
            Some(playback) if playback.claims(req.uri().path()) => {
                let door: Arc<dyn Door> = Arc::clone(self) as Arc<dyn Door>;
                playback
                    .serve(req.method(), req.uri(), req.headers(), door)
                    .await
                    .map(hyper_body::playback)
            }
            _ => self.route(&req).await.map(hyper_body::full),
        };
        self.shared
            .metrics
            .request_duration_seconds
            .with_label_values(&["http", response.status().as_str()])
            .observe(start.elapsed().as_secs_f64());
        response
    }

    async fn route(&self, req: &Request<Incoming>) -> Response<Body> {
        if req.uri().path() != BLOB_PATH {
            return text(StatusCode::NOT_FOUND, "no such route; use /blob?hash=HASH");
        }
        let is_head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "only GET and HEAD are allowed on /blob",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return r;
            }
        };
        let query = BlobQuery::parse(req.uri().query());
        let hash = match BlobHash::parse(query.hash.as_deref().unwrap_or("")) {
            Ok(h) => h,
            Err(e) => {
                self.shared
                    .metrics
                    .error(DIRECTION_DOWNLOAD, "invalid_blob_hash");
                return text(StatusCode::BAD_REQUEST, &format!("bad hash parameter: {e}"));
            }
        };
        let settings = self.settings.load();
        if self.shared.refuses_protected(
            &hash,
            settings.edge_token.as_ref(),
            query.edge_token.as_deref(),
        ) {
            return text(StatusCode::FORBIDDEN, PROTECTED_MESSAGE);
        }
        let _slot = match self.acquire_slot(&settings).await {
            Some(slot) => slot,
            None => {
                self.shared
                    .metrics
                    .requests_rejected_total
                    .with_label_values(&["http"])
                    .inc();
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server is at its request limit; retry shortly",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        };
        if is_head {
            return match self.shared.store.has(&hash).await {
                Ok(true) => empty(StatusCode::NO_CONTENT),
                Ok(false) => empty(StatusCode::NOT_FOUND),
                Err(e) => self.store_error(&hash, e),
            };
        }
        match self.shared.store.get(&hash).await {
            Ok(blob) => {
                let m = &self.shared.metrics;
                m.blob_download_total.inc();
                m.http_blob_download_total.inc();
                m.http_out_bytes.inc_by(blob.data.len() as u64);
                let via = blob.trace.to_header();
                let mut r = Response::new(Full::new(blob.data));
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("filename={hash}")) {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
                if let Ok(v) = HeaderValue::from_str(&via) {
                    h.insert(header::VIA, v);
                }
                r
            }
            Err(e) => self.store_error(&hash, e),
        }
    }

    /// Waits for an in-flight slot, unless the wait queue is already full.
    async fn acquire_slot(&self, settings: &HttpServerConfig) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(self.slots.semaphore()).try_acquire_owned() {
            return Some(permit);
        }
        let queue_gauge = &self.shared.metrics.http_blob_request_queue_size;
        let max_queued = settings
            .max_queued_requests
            .unwrap_or(settings.max_concurrent_requests);
        if self.queued.fetch_add(1, Ordering::AcqRel) >= max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        queue_gauge.inc();
        let permit = tokio::time::timeout(
            settings.queue_timeout,
            Arc::clone(self.slots.semaphore()).acquire_owned(),
        )
        .await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        queue_gauge.dec();
        permit.ok().and_then(Result::ok)
    }

    fn store_error(&self, hash: &BlobHash, err: StoreError) -> Response<Body> {
        let (status, message) = self.shared.store_failure("http", hash, &err);
        text(status, &message)
    }
}

/// Playback shares the door's token and request slots.
#[async_trait::async_trait]
impl Door for HttpServer {
    fn edge_token(&self) -> Option<SecretString> {
        self.settings.load().edge_token.clone()
    }

    async fn request_slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.acquire_slot(&self.settings.load()).await;
        if slot.is_none() {
            self.shared
                .metrics
                .requests_rejected_total
                .with_label_values(&["http"])
                .inc();
        }
        slot
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}
