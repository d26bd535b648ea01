//! `servers.http3`: reflector.go's HTTP/3 blob API over QUIC.
//!
//! - `GET /get/{hash}[?trace=true][&edge_token=T]` -> 200 with the bytes (the `Via` trace only
//!   when `trace` is true, as reflector.go does), 404 when no store has it, 403 for protected
//!   content without the right token, 502/504 when the origin failed or timed out.
//! - `GET /has/{hash}` -> `{"lbrycrd_address":"...","is_available":bool}`, 200 or 404.
//!   (Paths and bodies: [`crate::protocol::http3`].)
//! - 400 with a reason for a malformed hash, 405 for methods other than GET, 404 other paths.
//!
//! Bounds: `max_connections` QUIC connections (more are refused at the handshake),
//! `max_streams_per_connection` concurrent requests per connection (QUIC stream credit), and
//! `max_concurrent_requests` store calls in flight (further requests wait for a slot; the wait
//! is bounded by the stream and connection limits above, so it costs fixed memory).
//!
//! Shutdown: stop accepting connections, send every connection an HTTP/3 GOAWAY, let its
//! in-flight requests finish (up to `shutdown_timeout`), then close the endpoint and wait
//! (bounded) for the peers to acknowledge, so the UDP port is free again on return.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::blob::BlobHash;
use crate::config::Http3ServerConfig;
use crate::metrics::DIRECTION_DOWNLOAD;
use crate::protocol::http3::{parse_path, Availability, Route, LBRYCRD_ADDRESS};
use crate::server::{one_line, status_for, BlobQuery, Shared, PROTECTED_MESSAGE};
use crate::store::StoreError;

/// A client must send its request headers within this time after opening a stream.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request header block accepted (requests are one short path).
const MAX_FIELD_SECTION_SIZE: u64 = 16 * 1024;

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
type H3Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// What a route answers: the response head and its whole body, and whether it is a blob
/// (which the download counters count once it has been sent).
struct Reply {
    head: Response<()>,
    body: Bytes,
    is_blob: bool,
}

/// The HTTP/3 front door's state.
pub struct Http3Server {
    shared: Shared,
    config: Http3ServerConfig,
    slots: Arc<Semaphore>,
}

impl Http3Server {
    pub fn new(shared: Shared, config: Http3ServerConfig) -> Arc<Http3Server> {
        Arc::new(Http3Server {
            slots: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
            shared,
            config,
        })
    }

    /// Loads or generates the certificate and binds the UDP socket. Separate from
    /// [`serve`](Self::serve) so start-up errors (port in use, bad key file) fail `app::start`.
    pub fn bind(config: &Http3ServerConfig) -> anyhow::Result<quinn::Endpoint> {
        let identity = crate::quic::server_identity(config)?;
        if identity.self_signed {
            tracing::info!(
                "servers.http3: no cert_file/key_file configured; using a self-signed \
                 certificate generated at start (clients must skip verification or pin it)"
            );
        }
        let server_config = crate::quic::server_config(config, identity)?;
        let host = config.address.as_deref().unwrap_or("0.0.0.0");
        let bind = format!("{host}:{}", config.port);
        let addr: SocketAddr = match bind.parse() {
            Ok(a) => a,
            Err(_) => (host, config.port)
                .to_socket_addrs()
                .with_context(|| format!("resolving servers.http3 address {host}"))?
                .next()
                .with_context(|| format!("servers.http3 address {host} resolves to nothing"))?,
        };
        crate::quic::server_endpoint(server_config, addr)
            .with_context(|| format!("binding servers.http3 on udp {addr}"))
    }

    /// Accepts connections until `shutdown`, then drains (see the module docs).
    pub async fn serve(self: Arc<Self>, endpoint: quinn::Endpoint, shutdown: CancellationToken) {
        let connections = Arc::new(Semaphore::new(self.config.max_connections.max(1)));
        // Every connection task holds a clone of `alive`; `drained` yields None once all ended.
        let (alive, mut drained) = mpsc::channel::<()>(1);
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => match i { Some(i) => i, None => break },
                _ = shutdown.cancelled() => break,
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                self.shared
                    .metrics
                    .requests_rejected_total
                    .with_label_values(&["http3"])
                    .inc();
                tracing::debug!(peer = %incoming.remote_address(), "http3 connection refused: at max_connections");
                incoming.refuse();
                continue;
            };
            let server = Arc::clone(&self);
            let shutdown = shutdown.clone();
            let alive = alive.clone();
            tokio::spawn(async move {
                server.connection(incoming, shutdown).await;
                drop(permit);
                drop(alive);
            });
        }
        drop(alive);
        let timeout = self.config.shutdown_timeout;
        if tokio::time::timeout(timeout, drained.recv()).await.is_err() {
            tracing::warn!(
                ?timeout,
                "http3 drain timed out; closing remaining connections"
            );
        }
        endpoint.close(quinn::VarInt::from_u32(0), b"server shutting down");
        if tokio::time::timeout(timeout, endpoint.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("http3 endpoint did not go idle in time");
        }
        tracing::info!("http3 server drained");
    }

    /// One QUIC connection: handshake (bounded), then one task per request stream.
    async fn connection(self: Arc<Self>, incoming: quinn::Incoming, shutdown: CancellationToken) {
        let peer = incoming.remote_address();
        let connecting = match incoming.accept() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "http3 connection failed before handshake");
                return;
            }
        };
        let conn = match tokio::time::timeout(self.config.handshake_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "http3 handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "http3 handshake timed out");
                return;
            }
        };
        self.shared.metrics.http3_connections_total.inc();
        let mut builder = h3::server::builder();
        builder.max_field_section_size(MAX_FIELD_SECTION_SIZE);
        let h3 = builder.build(h3_quinn::Connection::new(conn));
        let mut h3: H3Conn = match tokio::time::timeout(self.config.handshake_timeout, h3).await {
            Ok(Ok(h3)) => h3,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "http3 session set-up failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "http3 session set-up timed out");
                return;
            }
        };
        // Every request task holds a clone of `in_flight`; `finished` yields None once all ended.
        let (in_flight, mut finished) = mpsc::channel::<()>(1);
        loop {
            let accepted = tokio::select! {
                a = h3.accept() => a,
                _ = shutdown.cancelled() => {
                    // GOAWAY: the client learns no new requests will be taken here.
                    if let Err(e) = h3.shutdown(0).await {
                        tracing::debug!(%peer, error = %e, "http3 goaway failed");
                    }
                    break;
                }
            };
            match accepted {
                Ok(Some(resolver)) => {
                    let server = Arc::clone(&self);
                    let in_flight = in_flight.clone();
                    tokio::spawn(async move {
                        server.request(resolver).await;
                        drop(in_flight);
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    if !e.is_h3_no_error() {
                        tracing::debug!(%peer, error = %e, "http3 connection ended with an error");
                    }
                    break;
                }
            }
        }
        // Let this connection's in-flight requests finish (`serve` bounds the wait), then
        // dropping `h3` closes the connection with H3_NO_ERROR.
        drop(in_flight);
        let _ = finished.recv().await;
    }

    async fn request(&self, resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>) {
        let (req, mut stream) =
            match tokio::time::timeout(HEADER_READ_TIMEOUT, resolver.resolve_request()).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "http3 request headers unreadable");
                    return;
                }
                Err(_) => {
                    tracing::debug!("http3 request headers timed out");
                    return;
                }
            };
        let start = Instant::now();
        let reply = self.route(&req).await;
        let status = reply.head.status();
        let (len, is_blob) = (reply.body.len(), reply.is_blob);
        match send(&mut stream, reply).await {
            Ok(()) if is_blob => {
                let m = &self.shared.metrics;
                m.blob_download_total.inc();
                m.http3_blob_download_total.inc();
                m.udp_out_bytes.inc_by(len as u64);
            }
            Ok(()) => {}
            Err(e) => tracing::debug!(error = %e, "http3 response not delivered"),
        }
        self.shared
            .metrics
            .request_duration_seconds
            .with_label_values(&["http3", status.as_str()])
            .observe(start.elapsed().as_secs_f64());
    }

    async fn route(&self, req: &Request<()>) -> Reply {
        let Some((route, hash_text)) = parse_path(req.uri().path()) else {
            return text(
                StatusCode::NOT_FOUND,
                "no such route; use /get/HASH or /has/HASH",
            );
        };
        let is_get = route == Route::Get;
        if req.method() != Method::GET {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed");
            r.head
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return r;
        }
        let hash = match BlobHash::parse(hash_text) {
            Ok(h) => h,
            Err(e) => {
                self.shared
                    .metrics
                    .error(DIRECTION_DOWNLOAD, "invalid_blob_hash");
                return text(StatusCode::BAD_REQUEST, &format!("bad hash in path: {e}"));
            }
        };
        let query = BlobQuery::parse(req.uri().query());
        if is_get
            && self.shared.refuses_protected(
                &hash,
                self.config.edge_token.as_deref(),
                query.edge_token.as_deref(),
            )
        {
            return text(StatusCode::FORBIDDEN, PROTECTED_MESSAGE);
        }
        // The semaphore is never closed, so this only fails if it were; answer 503 then.
        let Ok(_slot) = self.slots.acquire().await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
        };
        if !is_get {
            return match self.shared.store.has(&hash).await {
                Ok(available) => availability(available),
                Err(e) => self.store_error(&hash, e),
            };
        }
        match self.shared.store.get(&hash).await {
            Ok(blob) => {
                let mut head = Response::new(());
                let h = head.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.data.len()));
                if query.trace {
                    if let Ok(v) = HeaderValue::from_str(&blob.trace.to_header()) {
                        h.insert(header::VIA, v);
                    }
                }
                Reply {
                    head,
                    body: blob.data,
                    is_blob: true,
                }
            }
            Err(e) => self.store_error(&hash, e),
        }
    }

    fn store_error(&self, hash: &BlobHash, err: StoreError) -> Reply {
        let status = status_for(&err);
        if status != StatusCode::NOT_FOUND {
            tracing::warn!(%hash, error = %err, status = status.as_u16(), "http3 blob request failed");
            self.shared.metrics.error(DIRECTION_DOWNLOAD, err.kind());
        }
        text(status, &one_line(&err.to_string()))
    }
}

/// Writes the head, the body (one DATA frame; `Bytes` is handed over without a copy), and ends
/// the stream.
async fn send(stream: &mut H3Stream, reply: Reply) -> Result<(), h3::error::StreamError> {
    stream.send_response(reply.head).await?;
    if !reply.body.is_empty() {
        stream.send_data(reply.body).await?;
    }
    stream.finish().await
}

/// The `/has/` answer, in reflector.go's shape.
fn availability(available: bool) -> Reply {
    let body = Availability {
        lbrycrd_address: LBRYCRD_ADDRESS.into(),
        is_available: available,
    };
    let mut head = Response::new(());
    *head.status_mut() = if available {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    head.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Reply {
        head,
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        is_blob: false,
    }
}

fn text(status: StatusCode, message: &str) -> Reply {
    let mut head = Response::new(());
    *head.status_mut() = status;
    head.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Reply {
        head,
        body: Bytes::from(format!("{message}\n")),
        is_blob: false,
    }
}
