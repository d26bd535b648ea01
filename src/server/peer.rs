//! `servers.peer`: the LBRY peer protocol (blob exchange over plain TCP).
//!
//! The protocol has no framing: a request is complete when the bytes received so far parse as a
//! JSON object, and a response is one JSON object followed immediately by the raw blob bytes.
//! The standard SDK download request asks four things at once:
//! `{"requested_blobs":[H],"lbrycrd_address":true,"blob_data_payment_rate":0.0,"requested_blob":H}`
//! and the answer carries only the keys `lbrycrd_address`, `available_blobs`,
//! `blob_data_payment_rate` and `incoming_blob` (the SDK client drops any response with another
//! top-level key). The wire facts and message types are [`crate::protocol::peer`]'s.
//!
//! Because "complete" means "parses", an unbounded client could make us buffer forever, so:
//! - a pending request larger than `max_request_size` closes the connection (`request_too_large`),
//!   as does invalid JSON (`invalid_peer_json`) or a first byte that is not `{`
//!   (`invalid_peer_request`, also used for well-formed JSON with wrongly typed fields);
//! - a request must arrive within `idle_timeout` of the previous answer (slow-loris bound);
//! - writing one answer may take at most `write_timeout`, and may make no progress for at most
//!   `limits.write_stall_timeout` (a client that stops reading cannot pin a blob for longer);
//! - at most `max_connections` connections are served at once, `max_connections_per_ip` of them
//!   from one address, and `max_concurrent_requests` blob requests (plus a bounded queue, the
//!   rule of every door: [`crate::server::door`]); the read buffer per connection is at most `max_request_size + 1` bytes,
//!   and the blob is the store's own `Bytes` (no copy), charged to the shared in-flight budget
//!   ([`budget`](super::budget)) while it is written: with no room in time the answer is an
//!   `incoming_blob` error and the connection stays usable;
//! - `requested_blobs` (availability) answers at most `max_requested_blobs` hashes per request,
//!   [`AVAILABILITY_CONCURRENCY`] at a time (each may cost an origin request; the caching tier
//!   single-flights and negatively caches them).
//!
//! Several requests may arrive back to back (even in one segment); they are answered in order.
//! Peers have no way to present an edge token, so protected blobs are never served here.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::blob::BlobHash;
use crate::config::PeerServerConfig;
use crate::metrics::{GaugeGuard, DIRECTION_DOWNLOAD};
use crate::protocol::peer::{
    next_frame, rate_answer, BadRequest, Frame, IncomingBlob, Request, Response,
};
use crate::server::accept::{self, Accepted, Acceptor};
use crate::server::access_log::{CacheResult, Entry};
use crate::server::budget::Charge;
use crate::server::door::{Door, DoorKind};
use crate::server::serve::{Ask, BlobService};

/// Availability checks of one request run at most this many at a time.
pub const AVAILABILITY_CONCURRENCY: usize = 8;

/// The peer front door's state.
pub struct PeerServer {
    service: Arc<BlobService>,
    door: Arc<Door>,
    config: PeerServerConfig,
    max_request_size: usize,
}

/// Why a connection ended early; becomes `reflector_error_total{error_type}`.
enum Close {
    /// Client went away, idled out, or we are shutting down: not an error.
    Quiet,
    Error(&'static str),
}

/// One answer: the serialized header, the blob bytes that follow it (empty when none), the
/// status for the latency histogram (HTTP codes, one vocabulary across doors) and the blob's
/// in-flight budget charge.
struct Answer {
    header: Vec<u8>,
    blob: Bytes,
    status: ::http::StatusCode,
    charge: Option<Charge>,
    /// The blob asked for (as the client wrote it) and what the store tree did, for the
    /// access log; `None` for a request that asked for no blob.
    blob_request: Option<(String, Option<CacheResult>)>,
}

impl PeerServer {
    pub fn new(service: Arc<BlobService>, config: &PeerServerConfig) -> Arc<PeerServer> {
        Arc::new(PeerServer {
            max_request_size: usize::try_from(config.max_request_size.0)
                .unwrap_or(usize::MAX)
                .max(1),
            door: service.open_door(DoorKind::Peer, config.settings()),
            service,
            config: config.clone(),
        })
    }

    /// Binds the listening socket (separate from [`serve`](Self::serve), so a taken port
    /// fails the start).
    pub async fn bind(config: &PeerServerConfig) -> anyhow::Result<TcpListener> {
        accept::bind_tcp("servers.peer", &config.settings().listen).await
    }

    /// The door's live settings and slots (a reload reconfigures them).
    pub fn door(&self) -> &Arc<Door> {
        &self.door
    }

    /// Accepts connections until `shutdown`, then stops accepting, closes idle connections and
    /// waits (at most `shutdown_timeout`) for answers being written to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let admission = self.service.admission(&self.door);
        let mut acceptor = Acceptor::new(listener, admission);
        let reachability = self
            .service
            .metrics()
            .family::<crate::reachability::ReachabilityMetrics>();
        while let Some(Accepted { stream, peer, slot }) = acceptor.next(&shutdown).await {
            reachability.note_peer_connection(peer.ip());
            let server = Arc::clone(&self);
            // A child token per connection: each connection waits on its own node, not on one
            // waiter list shared (and lock-contended) by every connection.
            let shutdown = shutdown.child_token();
            tokio::spawn(async move {
                let metrics = server.service.metrics();
                let _open = GaugeGuard::new(&server.service.door_metrics().peer_connections);
                match server.serve_connection(stream, peer.ip(), shutdown).await {
                    Close::Quiet => {}
                    Close::Error(kind) => {
                        tracing::debug!(%peer, error_type = kind, "peer connection closed");
                        metrics.error(DIRECTION_DOWNLOAD, kind);
                    }
                }
                drop(slot);
            });
        }
        let timeout = self.door.settings().listen.shutdown_timeout;
        match acceptor.close_and_drain(timeout).await {
            true => tracing::info!("peer server drained"),
            false => tracing::warn!(
                ?timeout,
                "peer server drain timed out; leaving remaining connections to the runtime"
            ),
        }
    }

    /// Answers requests on one connection until it closes, misbehaves or idles out.
    async fn serve_connection(
        &self,
        mut stream: TcpStream,
        ip: IpAddr,
        shutdown: CancellationToken,
    ) -> Close {
        let max = self.max_request_size;
        let mut buf: Vec<u8> = Vec::with_capacity(max.min(64 * 1024) + 1);
        // Registered once per connection rather than once per read.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            let deadline = tokio::time::Instant::now() + self.config.idle_timeout;
            let request = loop {
                match next_frame(&buf) {
                    Frame::Complete(map, used) => {
                        buf.drain(..used);
                        break map;
                    }
                    Frame::NotAnObject => return Close::Error("invalid_peer_request"),
                    Frame::Invalid(_) => return Close::Error("invalid_peer_json"),
                    Frame::Incomplete if buf.len() > max => {
                        return Close::Error("request_too_large")
                    }
                    Frame::Incomplete => {}
                }
                // Read at most one byte past the limit: enough to know it was exceeded.
                let room = max + 1 - buf.len();
                let mut limited = (&mut buf).limit(room);
                let read = tokio::select! {
                    r = tokio::time::timeout_at(deadline, stream.read_buf(&mut limited)) => r,
                    _ = &mut cancelled => return Close::Quiet,
                };
                match read {
                    Ok(Ok(0)) => return Close::Quiet,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "peer read failed");
                        return Close::Quiet;
                    }
                    Err(_) => return Close::Quiet, // idle timeout
                }
            };

            let start = Instant::now();
            let answer = match self.answer(&request, ip).await {
                Ok(answer) => answer,
                Err(BadRequest(why)) => {
                    tracing::debug!(reason = %why, "bad peer request");
                    return Close::Error("invalid_peer_request");
                }
            };
            let blob_len = answer.blob.len();
            let mut out = Bytes::from(answer.header).chain(answer.blob);
            let written = tokio::time::timeout(
                self.config.write_timeout,
                write_watched(
                    &mut stream,
                    &mut out,
                    self.service.budget().write_stall_timeout(),
                ),
            );
            match written.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Close::Error("write_timeout")
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "peer write failed");
                    return Close::Error("write_failed");
                }
                Err(_) => return Close::Error("write_timeout"),
            }
            // Every byte is with the kernel now.
            drop(answer.charge);
            if blob_len > 0 {
                self.service.delivered(DoorKind::Peer, blob_len);
            }
            self.service.observe(DoorKind::Peer, answer.status, start);
            if let Some((hash, cache)) = answer.blob_request {
                self.service.log(|| {
                    Entry::peer_blob(ip, &hash, start).answered(
                        answer.status,
                        blob_len as u64,
                        cache,
                    )
                });
            }
        }
    }

    /// Builds the answer to one request.
    async fn answer(
        &self,
        request: &serde_json::Map<String, serde_json::Value>,
        ip: IpAddr,
    ) -> Result<Answer, BadRequest> {
        let request = Request::from_object(request)?;
        let mut header = Response::default();
        let mut answer = Answer {
            header: Vec::new(),
            blob: Bytes::new(),
            status: ::http::StatusCode::OK,
            charge: None,
            blob_request: None,
        };
        if request.lbrycrd_address == Some(true) {
            header.lbrycrd_address = Some(&self.config.lbrycrd_address);
        }
        if let Some(list) = &request.requested_blobs {
            header.available_blobs = Some(self.available(list).await);
        }
        if let Some(offer) = request.blob_data_payment_rate {
            header.blob_data_payment_rate = Some(rate_answer(offer));
        }
        if let Some(text) = &request.requested_blob {
            let ask = Ask {
                hash: text,
                token: None,
                client: ip,
            };
            header.incoming_blob = Some(match self.service.fetch(&self.door, ask).await {
                Ok(served) => {
                    answer.blob_request = Some((text.clone(), Some(served.cache_result())));
                    let length = served.blob.data.len();
                    answer.blob = served.blob.data;
                    answer.charge = Some(served.charge);
                    IncomingBlob::Blob {
                        blob_hash: served.hash,
                        length,
                    }
                }
                Err(refusal) => {
                    answer.blob_request = Some((text.clone(), refusal.cache_result()));
                    answer.status = refusal.status();
                    IncomingBlob::Error {
                        error: refusal.message(DoorKind::Peer),
                    }
                }
            });
        }
        answer.header = serde_json::to_vec(&header)
            .map_err(|e| BadRequest(format!("cannot serialize response: {e}")))?;
        Ok(answer)
    }

    /// The requested hashes the store tree has: the first `max_requested_blobs` distinct,
    /// unprotected ones, checked [`AVAILABILITY_CONCURRENCY`] at a time, in request order,
    /// under one of the door's request slots (none: nothing is listed as available).
    async fn available(&self, list: &[BlobHash]) -> Vec<BlobHash> {
        let mut wanted: Vec<BlobHash> = Vec::new();
        for hash in list {
            if wanted.len() >= self.config.max_requested_blobs {
                tracing::debug!(
                    asked = list.len(),
                    answered = wanted.len(),
                    "requested_blobs over max_requested_blobs; the rest are not listed"
                );
                break;
            }
            if !wanted.contains(hash) && !self.service.policy().is_protected(hash) {
                wanted.push(*hash);
            }
        }
        if wanted.is_empty() {
            return wanted;
        }
        let Ok(_slot) = self.service.slot(&self.door).await else {
            return Vec::new();
        };
        let store = self.service.store();
        let checks = wanted.into_iter().map(|hash| async move {
            match store.has(&hash).await {
                Ok(true) => Some(hash),
                Ok(false) => None,
                Err(e) => {
                    tracing::warn!(%hash, error = %e, "availability check failed");
                    self.service.metrics().error(DIRECTION_DOWNLOAD, e.kind());
                    None
                }
            }
        });
        stream::iter(checks)
            .buffered(AVAILABILITY_CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }
}

/// Writes all of `out`, failing with `TimedOut` when one write makes no progress for `stall`.
async fn write_watched(
    stream: &mut TcpStream,
    out: &mut impl Buf,
    stall: Duration,
) -> std::io::Result<()> {
    while out.has_remaining() {
        match tokio::time::timeout(stall, stream.write_buf(out)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
    Ok(())
}
