//! The metrics port: `/metrics` (Prometheus text format), `/healthz` (the process answers) and
//! `/readyz` (the store tree is built and every front door is bound), plus
//! `/prefetch/status` (JSON: the channel prefetcher's last run) when prefetch is configured,
//! `/dht/status` and `/trackers/status`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub struct AdminServer {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    /// `/prefetch/status`, when a prefetcher is configured.
    pub prefetch: Option<crate::prefetch::report::StatusHandle>,
    /// `/dht/status`, once the DHT node is bound (never, when `dht.enabled` is false).
    pub dht: Arc<std::sync::OnceLock<crate::dht::Dht>>,
    /// `/trackers/status`, once the tracker announcer runs (never without `trackers:`).
    pub trackers: Arc<std::sync::OnceLock<crate::tracker::Trackers>>,
    /// `/admin/...`, when `admin.token` is set, once the root store is built.
    pub api: Arc<std::sync::OnceLock<super::admin_api::AdminApi>>,
    /// Whether `admin:` is configured (before the API exists, its routes answer 503).
    pub api_configured: bool,
    /// `/` and `/status.json`.
    pub status: Arc<super::status::StatusPage>,
}

/// Connections the metrics port serves at once; more wait in the kernel's accept backlog.
const MAX_CONNECTIONS: usize = 64;

impl AdminServer {
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let slot = tokio::select! {
                s = Arc::clone(&slots).acquire_owned() => s.expect("never closed"),
                _ = shutdown.cancelled() => break,
            };
            let (stream, _) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let server = Arc::clone(&self);
            let service = hyper::service::service_fn(move |req| {
                let server = Arc::clone(&server);
                async move { Ok::<_, Infallible>(server.respond(&req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _slot = slot;
                tokio::select! {
                    _ = conn => {},
                    _ = shutdown.cancelled() => {},
                }
            });
        }
    }

    async fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if !path.starts_with("/admin/") {
            return self.route(req);
        }
        match self.api.get() {
            Some(api) => api.handle(req.method(), path, req.headers()).await,
            None if self.api_configured => plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            None => plain(
                StatusCode::NOT_FOUND,
                "the admin API is off (admin.token)\n",
            ),
        }
    }

    fn route<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/metrics" => {
                let mut r = Response::new(Full::new(Bytes::from(self.metrics.render())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            "/" => {
                let mut r = Response::new(Full::new(Bytes::from(self.status.html())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
            "/status.json" => json(self.status.json().to_string()),
            "/healthz" => plain(StatusCode::OK, "ok\n"),
            "/readyz" if self.ready.load(Ordering::Acquire) => plain(StatusCode::OK, "ready\n"),
            "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            "/prefetch/status" => match &self.prefetch {
                Some(status) => {
                    let mut r = Response::new(Full::new(Bytes::from(status.to_json())));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
                None => plain(StatusCode::NOT_FOUND, "prefetch is not configured\n"),
            },
            "/dht/status" => match self.dht.get() {
                Some(dht) => {
                    let mut r = Response::new(Full::new(Bytes::from(dht.status().to_string())));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
                None => plain(StatusCode::NOT_FOUND, "dht is not enabled\n"),
            },
            "/trackers/status" => match self.trackers.get() {
                Some(trackers) => json(trackers.status().to_string()),
                None => plain(StatusCode::NOT_FOUND, "trackers are not configured\n"),
            },
            _ => plain(
                StatusCode::NOT_FOUND,
                "routes: / /status.json /metrics /healthz /readyz /prefetch/status /dht/status /trackers/status\n",
            ),
        }
    }
}

fn json(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}
