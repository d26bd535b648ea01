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
//!   from one address; the read buffer per connection is at most `max_request_size + 1` bytes,
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
use crate::server::accept::{Accepted, Acceptor};
use crate::server::budget::Charge;
use crate::server::Shared;
use crate::store::StoreError;

/// How long shutdown waits for connections that are mid-request before returning anyway.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);
/// Availability checks of one request run at most this many at a time.
pub const AVAILABILITY_CONCURRENCY: usize = 8;

/// The peer front door's state.
pub struct PeerServer {
    shared: Shared,
    config: PeerServerConfig,
    max_request_size: usize,
}

/// Why a connection ended early; becomes `reflector_error_total{error_type}`.
enum Close {
    /// Client went away, idled out, or we are shutting down: not an error.
    Quiet,
    Error(&'static str),
}

impl PeerServer {
    pub fn new(shared: Shared, config: PeerServerConfig) -> Arc<PeerServer> {
        Arc::new(PeerServer {
            max_request_size: usize::try_from(config.max_request_size.0)
                .unwrap_or(usize::MAX)
                .max(1),
            shared,
            config,
        })
    }

    /// Accepts connections until `shutdown`, then stops accepting, closes idle connections and
    /// waits (at most [`SHUTDOWN_DRAIN`]) for answers being written to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let acceptor = Acceptor::new(
            listener,
            self.config.max_connections,
            self.config.max_connections_per_ip,
            self.shared
                .metrics
                .requests_rejected_total
                .with_label_values(&["peer"]),
            "peer",
        );
        while let Some(Accepted { stream, peer, slot }) = acceptor.next(&shutdown).await {
            let server = Arc::clone(&self);
            // A child token per connection: each connection waits on its own node, not on one
            // waiter list shared (and lock-contended) by every connection.
            let shutdown = shutdown.child_token();
            tokio::spawn(async move {
                let _open = GaugeGuard::new(&server.shared.metrics.peer_connections);
                match server.serve_connection(stream, peer.ip(), shutdown).await {
                    Close::Quiet => {}
                    Close::Error(kind) => {
                        tracing::debug!(%peer, error_type = kind, "peer connection closed");
                        server.shared.metrics.error(DIRECTION_DOWNLOAD, kind);
                    }
                }
                drop(slot);
            });
        }
        match acceptor.close_and_drain(SHUTDOWN_DRAIN).await {
            true => tracing::info!("peer server drained"),
            false => tracing::warn!(
                timeout = ?SHUTDOWN_DRAIN,
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
            let (header, blob, status, charge) = match self.answer(&request, ip).await {
                Ok(answer) => answer,
                Err(BadRequest(why)) => {
                    tracing::debug!(reason = %why, "bad peer request");
                    return Close::Error("invalid_peer_request");
                }
            };
            let blob_len = blob.len();
            let mut out = Bytes::from(header).chain(blob);
            let written = tokio::time::timeout(
                self.config.write_timeout,
                write_watched(
                    &mut stream,
                    &mut out,
                    self.shared.budget.write_stall_timeout(),
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
            drop(charge);
            let m = &self.shared.metrics;
            if blob_len > 0 {
                m.blob_download_total.inc();
                m.peer_download_total.inc();
                m.tcp_out_bytes.inc_by(blob_len as u64);
            }
            m.request_duration_seconds
                .with_label_values(&["peer", status])
                .observe(start.elapsed().as_secs_f64());
        }
    }

    /// Builds the answer to one request: the serialized header, the blob bytes to follow (empty
    /// when none), the status label for the latency histogram (HTTP codes, for one
    /// vocabulary across front doors) and the blob's in-flight budget charge.
    async fn answer(
        &self,
        request: &serde_json::Map<String, serde_json::Value>,
        ip: IpAddr,
    ) -> Result<(Vec<u8>, Bytes, &'static str, Option<Charge>), BadRequest> {
        let request = Request::from_object(request)?;
        let mut header = Response::default();
        let mut blob = Bytes::new();
        let mut status = "200";
        let mut charge = None;

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
            header.incoming_blob = Some(match self.fetch(text, ip).await {
                Ok((hash, data, c)) => {
                    let length = data.len();
                    blob = data;
                    charge = Some(c);
                    IncomingBlob::Blob {
                        blob_hash: hash,
                        length,
                    }
                }
                Err((error, s)) => {
                    status = s;
                    IncomingBlob::Error { error }
                }
            });
        }
        let bytes = serde_json::to_vec(&header)
            .map_err(|e| BadRequest(format!("cannot serialize response: {e}")))?;
        Ok((bytes, blob, status, charge))
    }

    /// The requested hashes the store tree has: the first `max_requested_blobs` distinct,
    /// unprotected ones, checked [`AVAILABILITY_CONCURRENCY`] at a time, in request order.
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
            if !wanted.contains(hash) && !self.shared.policy.is_protected(hash) {
                wanted.push(*hash);
            }
        }
        let checks = wanted.into_iter().map(|hash| async move {
            match self.shared.store.has(&hash).await {
                Ok(true) => Some(hash),
                Ok(false) => None,
                Err(e) => {
                    tracing::warn!(%hash, error = %e, "availability check failed");
                    self.shared.metrics.error(DIRECTION_DOWNLOAD, e.kind());
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

    /// Gets the requested blob from the root store (so a peer request fills caches like any
    /// other request), with its in-flight budget charge for `ip`: room is reserved after the
    /// request is checked and before the store is asked, as the other doors do. Errors come
    /// back as the message for `incoming_blob.error` plus a status.
    async fn fetch(
        &self,
        text: &str,
        ip: IpAddr,
    ) -> Result<(BlobHash, Bytes, Charge), (String, &'static str)> {
        let m = &self.shared.metrics;
        let hash = match BlobHash::parse(text) {
            Ok(h) => h,
            Err(e) => {
                m.error(DIRECTION_DOWNLOAD, "invalid_blob_hash");
                return Err((format!("invalid blob hash: {e}"), "400"));
            }
        };
        if self.shared.policy.is_protected(&hash) {
            m.error(DIRECTION_DOWNLOAD, "protected_blob");
            return Err((
                "requested blob is protected; use the HTTP API with an edge token".into(),
                "403",
            ));
        }
        let Some(reservation) = self.shared.budget.reserve(ip).await else {
            m.requests_rejected_total.with_label_values(&["peer"]).inc();
            return Err((
                "server is sending too much at once; retry shortly".into(),
                "503",
            ));
        };
        match self.shared.store.get(&hash).await {
            Ok(blob) => {
                let charge = reservation.charge(&blob.data);
                Ok((hash, blob.data, charge))
            }
            Err(StoreError::NotFound) => Err(("blob not found".into(), "404")),
            Err(e) => {
                let (status, message) = self.shared.store_failure("peer", &hash, &e);
                Err((message, status_label(status.as_u16())))
            }
        }
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

/// `&'static str` labels for the statuses a store error maps to.
fn status_label(code: u16) -> &'static str {
    match code {
        404 => "404",
        502 => "502",
        504 => "504",
        _ => "500",
    }
}
