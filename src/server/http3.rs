//! `servers.http3`: reflector.go's HTTP/3 blob API over QUIC.
//!
//! - `GET /get/{hash}[?trace=true][&edge_token=T]` -> 200 with the bytes (the `Via` trace only
//!   when `trace` is true, as reflector.go does), 404 when no store has it, 403 for protected
//!   content without the right token, 502/504 when the origin failed or timed out.
//! - `GET /has/{hash}` -> `{"lbrycrd_address":"...","is_available":bool}`, 200 or 404; 403 for
//!   protected content without the right token, as HTTP `HEAD` does (a protected blob's
//!   existence is not told to whoever asks). (Paths and bodies: [`crate::protocol::http3`].)
//! - 400 with a reason for a malformed hash, 405 for methods other than GET, 404 other paths.
//!
//! Bounds: `max_connections` QUIC connections (more are refused at the handshake), at most
//! `max_connections_per_ip` of them from one address, `max_streams_per_connection` concurrent
//! requests per connection (QUIC stream credit), and `max_concurrent_requests` store calls in
//! flight, with up to `max_queued_requests` more waiting at most `queue_timeout` (the rule every
//! door has, [`crate::server::door`]); a request refused for want of a slot has its stream
//! reset with `H3_REQUEST_REJECTED`, as one refused for want of budget room.
//!
//! A blob answer takes a charge on the shared in-flight budget ([`budget`](super::budget)) until
//! the client has acknowledged all of its bytes; with no room in time the stream is reset with
//! `H3_REQUEST_REJECTED` (the client may retry). A stream that takes no bytes for
//! `limits.write_stall_timeout`, or leaves them unacknowledged that long after the last one was
//! handed to QUIC, is reset. The body goes to QUIC without a copy
//! ([`crate::quic::h3_transport`]): QUIC holds views of the blob itself, at most
//! `servers.http3.send_window` unacknowledged bytes per connection.
//!
//! Reload (SIGHUP) applies a new `edge_token` and request limits to the running door
//! ([`Door::reconfigure`]); the other keys are fixed at start (`crate::reload` reports a
//! change to them as needing a restart).
//!
//! Shutdown: stop accepting connections, send every connection an HTTP/3 GOAWAY, let its
//! in-flight requests finish (up to `shutdown_timeout`), then close the endpoint and wait
//! (bounded) for the peers to acknowledge, so the UDP port is free again on return.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Http3ServerConfig;
use crate::protocol::http::BlobQuery;
use crate::protocol::http3::{parse_path, Availability, Route, LBRYCRD_ADDRESS};
use crate::quic::h3_transport::{self, Keep, Lent};
use crate::server::access_log::{self, CacheResult, Entry};
use crate::server::budget::Charge;
use crate::server::door::{Door, DoorKind};
use crate::server::forwarded;
use crate::server::playback::{Playback, PlaybackBody};
use crate::server::serve::{Ask, BlobService, Served};
use crate::server::web::{self, Cors};

/// A client must send its request headers within this time after opening a stream.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request header block accepted (requests are one short path).
const MAX_FIELD_SECTION_SIZE: u64 = 16 * 1024;
/// A body is handed to QUIC in pieces of this size (slices, no copy), so a stalled stream is
/// noticed by lack of progress rather than after the whole blob.
const SEND_CHUNK: usize = 256 * 1024;

type H3Conn = h3::server::Connection<h3_transport::Connection, Bytes>;
type H3Stream = h3::server::RequestStream<h3_transport::BidiStream, Bytes>;

/// What a route answers: the response head and its whole body.
struct Reply {
    head: Response<()>,
    body: Bytes,
    /// A blob's in-flight budget charge, held until the client has acknowledged the body; only
    /// blob answers have one (and only they are counted as downloads once sent).
    charge: Option<Charge>,
}

/// The HTTP/3 front door's state.
pub struct Http3Server {
    service: Arc<BlobService>,
    door: Arc<Door>,
    playback: Option<Arc<Playback>>,
    /// The settings as started; [`Door`] holds the live token and request limits.
    config: Http3ServerConfig,
    cors: Cors,
    /// Whose forwarding headers name the client (fixed at start).
    proxies: crate::config::Proxies,
}

impl Http3Server {
    pub fn new(
        service: Arc<BlobService>,
        config: &Http3ServerConfig,
        playback: Option<Arc<Playback>>,
    ) -> Arc<Http3Server> {
        Arc::new(Http3Server {
            door: service.open_door(DoorKind::Http3, config.settings()),
            service,
            playback,
            cors: Cors::configured("servers.http3", &config.cors_origin),
            proxies: config.settings().listen.proxies,
            config: config.clone(),
        })
    }

    /// The door's live settings and slots (a reload reconfigures them).
    pub fn door(&self) -> &Arc<Door> {
        &self.door
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
        let listen = config.settings().listen;
        let addr: SocketAddr = match listen.bind_text().parse() {
            Ok(a) => a,
            Err(_) => (listen.address.as_str(), listen.port)
                .to_socket_addrs()
                .with_context(|| format!("resolving servers.http3 address {}", listen.address))?
                .next()
                .with_context(|| {
                    format!(
                        "servers.http3 address {} resolves to nothing",
                        listen.address
                    )
                })?,
        };
        crate::quic::server_endpoint(server_config, addr)
            .with_context(|| format!("binding servers.http3 on udp {addr}"))
    }

    /// Accepts connections until `shutdown`, then drains (see the module docs).
    pub async fn serve(self: Arc<Self>, endpoint: quinn::Endpoint, shutdown: CancellationToken) {
        let admission = self.service.admission(&self.door);
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => match i { Some(i) => i, None => break },
                _ = shutdown.cancelled() => break,
            };
            let Some(slot) = admission.try_admit(incoming.remote_address().ip()) else {
                incoming.refuse();
                continue;
            };
            let server = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                server.connection(incoming, shutdown).await;
                drop(slot);
            });
        }
        let timeout = self.door.settings().listen.shutdown_timeout;
        if !admission.drain(timeout).await {
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
        self.service.door_metrics().http3_connections_total.inc();
        let mut builder = h3::server::builder();
        builder.max_field_section_size(MAX_FIELD_SECTION_SIZE);
        // Bodies lent to this connection's streams, sent without a copy.
        let lent = Lent::default();
        let h3 = builder.build(h3_transport::Connection::new(conn, lent.clone()));
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
                    let lent = lent.clone();
                    tokio::spawn(async move {
                        server.request(resolver, peer, lent).await;
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

    async fn request(
        self: &Arc<Self>,
        resolver: h3::server::RequestResolver<h3_transport::Connection, Bytes>,
        peer: SocketAddr,
        lent: Lent,
    ) {
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
        let client = forwarded::client(&self.proxies, peer.ip(), req.headers());
        let stall = self.service.budget().write_stall_timeout();
        let (status, bytes, cache) = if let Some(playback) = self
            .playback
            .as_ref()
            .filter(|p| p.claims(req.uri().path()) && !Cors::is_preflight(req.method()))
        {
            let mut response = playback.serve(&req, &self.door, client).await;
            self.cors.finish(response.status(), response.headers_mut());
            let status = response.status();
            let bytes = access_log::content_length(response.headers());
            if let Err(unsent) = send_playback(&mut stream, response, stall).await {
                reset_unsent(&mut stream, unsent, peer);
            }
            (status, bytes, None)
        } else {
            let Some(mut reply) = self.route(&req, client).await else {
                stream.stop_stream(h3::error::Code::H3_REQUEST_REJECTED);
                self.service.log(|| {
                    Entry::http(DoorKind::Http3, client, &req, start).answered(
                        StatusCode::SERVICE_UNAVAILABLE,
                        0,
                        None,
                    )
                });
                return;
            };
            let status = reply.head.status();
            self.cors.finish(status, reply.head.headers_mut());
            let (len, is_blob) = (reply.body.len(), reply.charge.is_some());
            let cache = reply.head.extensions().get::<CacheResult>().copied();
            match send(&mut stream, reply, stall, &lent).await {
                Ok(()) if is_blob => self.service.delivered(DoorKind::Http3, len),
                Ok(()) => {}
                Err(unsent) => reset_unsent(&mut stream, unsent, peer),
            }
            (status, len as u64, cache)
        };
        self.service.observe(DoorKind::Http3, status, start);
        self.service.log(|| {
            Entry::http(DoorKind::Http3, client, &req, start).answered(status, bytes, cache)
        });
    }

    /// The answer to a request, or `None` when the door is busy or the in-flight budget has
    /// no room: the stream is then reset with `H3_REQUEST_REJECTED` (the client may retry).
    async fn route(&self, req: &Request<()>, client: IpAddr) -> Option<Reply> {
        if Cors::is_preflight(req.method()) {
            return Some(Reply {
                head: self.cors.preflight(()),
                body: Bytes::new(),
                charge: None,
            });
        }
        let Some((route, hash_text)) = parse_path(req.uri().path()) else {
            return Some(text(
                StatusCode::NOT_FOUND,
                "no such route; use /get/HASH or /has/HASH",
            ));
        };
        if req.method() != Method::GET {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed");
            r.head
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return Some(r);
        }
        let query = BlobQuery::parse(req.uri().query());
        let ask = Ask {
            hash: hash_text,
            token: query.edge_token.as_deref(),
            client,
        };
        let etag = web::blob_etag(hash_text);
        if route == Route::Get && web::unchanged(req.headers(), &etag) {
            // The client holds these bytes already; confirmed after the same checks a fetch makes.
            return Some(
                match self.service.admit_listed(&self.door, ask.hash, ask.token) {
                    Ok(_) => {
                        let mut head = Response::new(());
                        *head.status_mut() = StatusCode::NOT_MODIFIED;
                        web::blob_cache_headers(head.headers_mut(), &etag);
                        Reply {
                            head,
                            body: Bytes::new(),
                            charge: None,
                        }
                    }
                    Err(refusal) => text(refusal.status(), &refusal.message(DoorKind::Http3)),
                },
            );
        }
        let answer = match route {
            Route::Has => self
                .service
                .presence(&self.door, ask)
                .await
                .map(availability),
            Route::Get => {
                (self.service.fetch(&self.door, ask).await).map(|served| blob(served, query.trace))
            }
        };
        match answer {
            Ok(reply) => Some(reply),
            Err(refusal) if refusal.is_busy() => None,
            Err(refusal) => {
                let mut reply = text(refusal.status(), &refusal.message(DoorKind::Http3));
                if let Some(cache) = refusal.cache_result() {
                    reply.head.extensions_mut().insert(cache);
                }
                Some(reply)
            }
        }
    }
}

/// A blob answer; the `Via` trace only when the client asked for it, as reflector.go does.
fn blob(served: Served, trace: bool) -> Reply {
    let cache = served.cache_result();
    let Served { hash, blob, charge } = served;
    let mut head = Response::new(());
    head.extensions_mut().insert(cache);
    let h = head.headers_mut();
    web::blob_cache_headers(h, &web::blob_etag(&hash.to_hex()));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.data.len()));
    if trace {
        if let Ok(v) = HeaderValue::from_str(&blob.trace.to_header()) {
            h.insert(header::VIA, v);
        }
    }
    Reply {
        head,
        body: blob.data,
        charge: Some(charge),
    }
}

/// Writes a playback response chunk by chunk, each step within `stall` as [`send`] does, and
/// each chunk's budget charge dropped once QUIC holds its bytes. A body that fails mid-way is
/// [`Unsent::Cut`]: the caller resets the stream, so the client sees an aborted response rather
/// than a short one that looks complete.
async fn send_playback(
    stream: &mut H3Stream,
    response: Response<PlaybackBody>,
    stall: Duration,
) -> Result<(), Unsent> {
    let (head, body) = response.into_parts();
    within(stall, stream.send_response(Response::from_parts(head, ()))).await?;
    match body {
        PlaybackBody::Full(bytes) => send_pieces(stream, bytes, stall).await?,
        PlaybackBody::Stream(mut chunks) => {
            use futures_util::StreamExt;
            while let Some(chunk) = chunks.next().await {
                // The body already logged and counted why it was cut.
                let chunk = chunk.map_err(|_| Unsent::Cut)?;
                send_pieces(stream, chunk.bytes, stall).await?;
                drop(chunk.charge);
            }
        }
    }
    within(stall, stream.finish()).await
}

/// Why a response was not delivered.
enum Unsent {
    /// No progress for the stall timeout.
    Stalled,
    /// A playback body failed mid-way.
    Cut,
    Stream(h3::error::StreamError),
}

/// Writes the head, the body (DATA frames of [`SEND_CHUNK`]; slices of the `Bytes`, no copy),
/// and ends the stream; each step must make progress within `stall`. A blob's body is lent to
/// the stream with its budget charge, which the stream keeps until the client has acknowledged
/// the bytes (see [`h3_transport`]).
async fn send(
    stream: &mut H3Stream,
    reply: Reply,
    stall: Duration,
    lent: &Lent,
) -> Result<(), Unsent> {
    let _loan = reply.charge.map(|charge| {
        let keep: Keep = Box::new(charge);
        lent.lend(stream.send_id(), reply.body.clone(), keep, stall)
    });
    within(stall, stream.send_response(reply.head)).await?;
    send_pieces(stream, reply.body, stall).await?;
    within(stall, stream.finish()).await
}

/// Hands `body` to QUIC as DATA frames of [`SEND_CHUNK`], each within `stall`.
async fn send_pieces(
    stream: &mut H3Stream,
    mut body: Bytes,
    stall: Duration,
) -> Result<(), Unsent> {
    while !body.is_empty() {
        let piece = body.split_to(body.len().min(SEND_CHUNK));
        within(stall, stream.send_data(piece)).await?;
    }
    Ok(())
}

/// Ends a response that was not delivered. A stalled or cut stream is reset: a reset (unlike a
/// drop, which finishes the stream) discards what QUIC buffered and tells the client the
/// response is incomplete. (A cut body already logged and counted why.)
fn reset_unsent(stream: &mut H3Stream, unsent: Unsent, peer: SocketAddr) {
    match unsent {
        Unsent::Stalled => {
            tracing::debug!(%peer, "http3 response stalled; stream reset");
            stream.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
        }
        Unsent::Cut => stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR),
        Unsent::Stream(e) => tracing::debug!(%peer, error = %e, "http3 response not delivered"),
    }
}

/// One send step, which must complete within `stall`.
async fn within(
    stall: Duration,
    step: impl std::future::Future<Output = Result<(), h3::error::StreamError>>,
) -> Result<(), Unsent> {
    match tokio::time::timeout(stall, step).await {
        Ok(result) => result.map_err(Unsent::Stream),
        Err(_) => Err(Unsent::Stalled),
    }
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
        charge: None,
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
        charge: None,
    }
}
