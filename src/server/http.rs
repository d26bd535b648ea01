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
//! amount of memory. (The API's wire facts: [`crate::protocol::http`].) The blob is handed to
//! hyper as the store's own `Bytes` (no copy); hyper writes headers and body with one vectored
//! write.
//!
//! Against hostile clients: at most `max_connections_per_ip` connections per address (below
//! the global `max_connections`, so an address idling on all of its connections leaves room
//! for others); a request's headers must arrive within `header_read_timeout`, which also ends
//! idle keep-alive connections; a blob answer takes a charge on the shared in-flight budget
//! ([`budget`](super::budget); 503 when there is no room in time) that is given back once its
//! bytes are written ([`watched_io`](super::watched_io)), and a connection whose writes make no
//! progress for `limits.write_stall_timeout` is closed.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{HttpServerConfig, Proxies};
use crate::protocol::http::{BlobQuery, BLOB_PATH};
use crate::server::accept::{self, Accepted, Acceptor};
use crate::server::access_log::{self, CacheResult, Entry};
use crate::server::budget::Charge;
use crate::server::door::{Door, DoorKind};
use crate::server::forwarded;
use crate::server::playback::hyper_body::{self, HyperBody};
use crate::server::playback::Playback;
use crate::server::serve::{Ask, BlobService, Refusal, Served};
use crate::server::watched_io::{HandedOver, WatchedIo};
use crate::server::web::{self, Cors};

/// A response body: the whole answer, plus the budget charge for a blob, which is handed to
/// the connection's [`HandedOver`] when hyper drops the body (all of it queued for writing).
pub struct Body {
    data: Full<Bytes>,
    charge: Option<(Charge, Arc<HandedOver>)>,
}

impl Body {
    fn new(data: Bytes) -> Body {
        Body {
            data: Full::new(data),
            charge: None,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.data).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.data.size_hint()
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some((charge, handed_over)) = self.charge.take() {
            handed_over.hold(charge);
        }
    }
}

/// The HTTP front door's state.
pub struct HttpServer {
    service: Arc<BlobService>,
    door: Arc<Door>,
    playback: Option<Arc<Playback>>,
    /// Fixed at start: hyper takes it per connection.
    header_read_timeout: std::time::Duration,
    cors: Cors,
    /// Whose forwarding headers name the client (fixed at start).
    proxies: Proxies,
}

impl HttpServer {
    pub fn new(
        service: Arc<BlobService>,
        config: &HttpServerConfig,
        playback: Option<Arc<Playback>>,
    ) -> Arc<HttpServer> {
        Arc::new(HttpServer {
            door: service.open_door(DoorKind::Http, config.settings()),
            header_read_timeout: config.header_read_timeout,
            cors: Cors::configured("servers.http", &config.cors_origin),
            proxies: config.settings().listen.proxies,
            service,
            playback,
        })
    }

    /// Binds the listening socket (separate from [`serve`](Self::serve), so a taken port
    /// fails the start).
    pub async fn bind(config: &HttpServerConfig) -> anyhow::Result<TcpListener> {
        accept::bind_tcp("servers.http", &config.settings().listen).await
    }

    /// The door's live settings and slots (a reload reconfigures them).
    pub fn door(&self) -> &Arc<Door> {
        &self.door
    }

    /// Accepts connections until `shutdown`, then stops accepting and gives in-flight requests
    /// up to `shutdown_timeout` to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut acceptor = Acceptor::new(listener, self.service.admission(&self.door));
        while let Some(Accepted { stream, peer, slot }) = acceptor.next(&shutdown).await {
            let server = Arc::clone(&self);
            let handed_over = Arc::new(HandedOver::default());
            let io = WatchedIo::new(
                stream,
                self.service.budget().write_stall_timeout(),
                Arc::clone(&handed_over),
            );
            let service = hyper::service::service_fn(move |req| {
                let server = Arc::clone(&server);
                let handed_over = Arc::clone(&handed_over);
                async move { Ok::<_, Infallible>(server.handle(req, peer, handed_over).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.header_read_timeout)
                .writev(true)
                .serve_connection(TokioIo::new(io), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "http connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(acceptor);
        let deadline = self.door.settings().listen.shutdown_timeout;
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
        peer: SocketAddr,
        handed_over: Arc<HandedOver>,
    ) -> Response<HyperBody> {
        let start = Instant::now();
        let client = forwarded::client(&self.proxies, peer.ip(), req.headers());
        let playback = self
            .playback
            .as_ref()
            .filter(|p| p.claims(req.uri().path()));
        let mut response = match playback {
            _ if Cors::is_preflight(req.method()) => self
                .cors
                .preflight(hyper_body::infallible(Body::new(Bytes::new()))),
            Some(playback) => playback
                .serve(&req, &self.door, client)
                .await
                .map(|body| hyper_body::playback(body, handed_over)),
            _ => self
                .route(&req, client, handed_over)
                .await
                .map(hyper_body::infallible),
        };
        self.cors.finish(response.status(), response.headers_mut());
        self.service
            .observe(DoorKind::Http, response.status(), start);
        self.service.log(|| {
            // A streamed (playback) body knows its length only from its header.
            let bytes = hyper::body::Body::size_hint(response.body())
                .exact()
                .unwrap_or_else(|| access_log::content_length(response.headers()));
            let cache = response.extensions().get::<CacheResult>().copied();
            Entry::http(DoorKind::Http, client, &req, start).answered(
                response.status(),
                bytes,
                cache,
            )
        });
        response
    }

    async fn route(
        &self,
        req: &Request<Incoming>,
        client: IpAddr,
        handed_over: Arc<HandedOver>,
    ) -> Response<Body> {
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
        let ask = Ask {
            hash: query.hash.as_deref().unwrap_or_default(),
            token: query.edge_token.as_deref(),
            client,
        };
        let etag = web::blob_etag(ask.hash);
        if !is_head && web::unchanged(req.headers(), &etag) {
            return self.unchanged(ask, &etag);
        }
        if is_head {
            return match self.service.presence(&self.door, ask).await {
                Ok(true) => empty(StatusCode::NO_CONTENT),
                Ok(false) => empty(StatusCode::NOT_FOUND),
                Err(refusal) => refused(&refusal),
            };
        }
        match self.service.fetch(&self.door, ask).await {
            Ok(served) => self.blob(served, handed_over),
            Err(refusal) => refused(&refusal),
        }
    }

    /// 304 for a client that holds the blob already (its `If-None-Match` names the hash, and the
    /// hash names the bytes), after the same checks a fetch makes: a protected or blocked blob
    /// is refused as it would be, not confirmed.
    fn unchanged(&self, ask: Ask<'_>, etag: &str) -> Response<Body> {
        if let Err(refusal) = self.service.admit_listed(&self.door, ask.hash, ask.token) {
            return refused(&refusal);
        }
        let mut r = empty(StatusCode::NOT_MODIFIED);
        web::blob_cache_headers(r.headers_mut(), etag);
        r
    }

    /// A blob answer: the store's own `Bytes` as the body, its charge handed to the
    /// connection once hyper has queued all of it.
    fn blob(&self, served: Served, handed_over: Arc<HandedOver>) -> Response<Body> {
        let cache = served.cache_result();
        let Served { hash, blob, charge } = served;
        self.service.delivered(DoorKind::Http, blob.data.len());
        let via = blob.trace.to_header();
        let mut r = Response::new(Body {
            data: Full::new(blob.data),
            charge: Some((charge, handed_over)),
        });
        r.extensions_mut().insert(cache);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("filename={hash}")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        web::blob_cache_headers(h, &web::blob_etag(&hash.to_hex()));
        if let Ok(v) = HeaderValue::from_str(&via) {
            h.insert(header::VIA, v);
        }
        r
    }
}

/// A refusal on this door's wire: its status and one line of text; `Retry-After` when busy.
fn refused(refusal: &Refusal) -> Response<Body> {
    let mut r = text(refusal.status(), &refusal.message(DoorKind::Http));
    if let Some(cache) = refusal.cache_result() {
        r.extensions_mut().insert(cache);
    }
    if refusal.is_busy() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::new()));
    *r.status_mut() = status;
    r
}
