//! `servers.peer`: the LBRY peer protocol (blob exchange over plain TCP).
//!
//! The protocol has no framing: a request is complete when the bytes received so far parse as a
//! JSON object, and a response is one JSON object followed immediately by the raw blob bytes.
//! The standard SDK download request asks four things at once:
//! `{"requested_blobs":[H],"lbrycrd_address":true,"blob_data_payment_rate":0.0,"requested_blob":H}`
//! and the answer carries only the keys `lbrycrd_address`, `available_blobs`,
//! `blob_data_payment_rate` and `incoming_blob` (the SDK client drops any response with another
//! top-level key). See PROTOCOLS.md.
//!
//! Because "complete" means "parses", an unbounded client could make us buffer forever, so:
//! - a pending request larger than `max_request_size` closes the connection (`request_too_large`),
//!   as does invalid JSON (`invalid_peer_json`) or a first byte that is not `{`
//!   (`invalid_peer_request`, also used for well-formed JSON with wrongly typed fields);
//! - a request must arrive within `idle_timeout` of the previous answer (slow-loris bound);
//! - writing one answer may take at most `write_timeout` (a client that stops reading cannot pin
//!   a blob in memory for longer);
//! - at most `max_connections` connections are served at once; the read buffer per connection is
//!   at most `max_request_size + 1` bytes, and the blob is the store's own `Bytes` (no copy).
//!
//! Several requests may arrive back to back (even in one segment); they are answered in order.
//! Peers have no way to present an edge token, so protected blobs are never served here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::blob::BlobHash;
use crate::config::PeerServerConfig;
use crate::metrics::DIRECTION_DOWNLOAD;
use crate::server::accept::{Accepted, Acceptor};
use crate::server::http::status_for;
use crate::server::Shared;
use crate::store::flight::GaugeGuard;
use crate::store::StoreError;

/// How long shutdown waits for connections that are mid-request before returning anyway.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// `blob_data_payment_rate` answers.
pub const RATE_ACCEPTED: &str = "RATE_ACCEPTED";
pub const RATE_TOO_LOW: &str = "RATE_TOO_LOW";
pub const RATE_UNSET: &str = "RATE_UNSET";

/// What the bytes received so far hold.
#[derive(Debug)]
pub enum Frame {
    /// A whole JSON object, and how many bytes of the buffer it used (leading whitespace
    /// included). Bytes after it belong to the next message (or are blob bytes).
    Complete(Map<String, Value>, usize),
    /// Nothing but whitespace, or the beginning of an object: read more.
    Incomplete,
    /// The first non-whitespace byte is not `{`: this can never become a request.
    NotAnObject,
    /// The bytes are not a prefix of any JSON document.
    Invalid(serde_json::Error),
}

/// Finds the JSON object at the start of `buf` (the protocol's only framing rule).
///
/// serde_json's streaming deserializer parses exactly one value and reports where it ended, and
/// tells "ran out of input" (`is_eof`) apart from a syntax error; so this needs no hand-written
/// JSON scanner. Parsing is only attempted once a `}` has arrived, since no object can be
/// complete without one.
pub fn next_frame(buf: &[u8]) -> Frame {
    let Some(start) = buf.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Frame::Incomplete;
    };
    if buf[start] != b'{' {
        return Frame::NotAnObject;
    }
    if !buf[start..].contains(&b'}') {
        return Frame::Incomplete;
    }
    let mut values = serde_json::Deserializer::from_slice(&buf[start..]).into_iter::<Value>();
    match values.next() {
        Some(Ok(Value::Object(map))) => Frame::Complete(map, start + values.byte_offset()),
        Some(Ok(_)) => Frame::NotAnObject,
        Some(Err(e)) if e.is_eof() => Frame::Incomplete,
        Some(Err(e)) => Frame::Invalid(e),
        None => Frame::Incomplete,
    }
}

/// The response header. Field order follows reflector.go (and PROTOCOLS.md's example); absent
/// parts are omitted so only keys that were asked about appear.
#[derive(Debug, Default, Serialize)]
struct ResponseHeader<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    lbrycrd_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_blobs: Option<Vec<BlobHash>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blob_data_payment_rate: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incoming_blob: Option<IncomingBlob>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum IncomingBlob {
    Blob { blob_hash: BlobHash, length: usize },
    Error { error: String },
}

/// A request that is well-formed JSON but cannot be answered; the connection is closed.
#[derive(Debug)]
struct BadRequest(String);

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
        let acceptor = Acceptor::new(listener, self.config.max_connections, "peer");
        while let Some(Accepted { stream, peer, slot }) = acceptor.next(&shutdown).await {
            let server = Arc::clone(&self);
            // A child token per connection: each connection waits on its own node, not on one
            // waiter list shared (and lock-contended) by every connection.
            let shutdown = shutdown.child_token();
            tokio::spawn(async move {
                let _open = GaugeGuard::new(&server.shared.metrics.peer_connections);
                match server.serve_connection(stream, shutdown).await {
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
    async fn serve_connection(&self, mut stream: TcpStream, shutdown: CancellationToken) -> Close {
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
            let (header, blob, status) = match self.answer(&request).await {
                Ok(answer) => answer,
                Err(BadRequest(why)) => {
                    tracing::debug!(reason = %why, "bad peer request");
                    return Close::Error("invalid_peer_request");
                }
            };
            let blob_len = blob.len();
            let mut out = Bytes::from(header).chain(blob);
            match tokio::time::timeout(self.config.write_timeout, stream.write_all_buf(&mut out))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "peer write failed");
                    return Close::Error("write_failed");
                }
                Err(_) => return Close::Error("write_timeout"),
            }
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
    /// when none) and the status label for the latency histogram (HTTP codes, for one
    /// vocabulary across front doors).
    async fn answer(
        &self,
        request: &Map<String, Value>,
    ) -> Result<(Vec<u8>, Bytes, &'static str), BadRequest> {
        let mut header = ResponseHeader::default();
        let mut blob = Bytes::new();
        let mut status = "200";
        let mut understood = false;

        if let Some(wanted) = request.get("lbrycrd_address") {
            understood = true;
            match wanted {
                Value::Bool(true) => header.lbrycrd_address = Some(&self.config.lbrycrd_address),
                Value::Bool(false) | Value::Null => {}
                other => return Err(BadRequest(format!("lbrycrd_address is {other}"))),
            }
        }
        if let Some(list) = request.get("requested_blobs") {
            understood = true;
            let Value::Array(list) = list else {
                return Err(BadRequest("requested_blobs is not a list".into()));
            };
            let mut available = Vec::new();
            for item in list {
                let Some(hash) = item.as_str().and_then(|s| BlobHash::parse(s).ok()) else {
                    continue; // not a blob name: certainly not available
                };
                if available.contains(&hash) || self.shared.policy.is_protected(&hash) {
                    continue;
                }
                match self.shared.store.has(&hash).await {
                    Ok(true) => available.push(hash),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%hash, error = %e, "availability check failed");
                        self.shared.metrics.error(DIRECTION_DOWNLOAD, e.kind());
                    }
                }
            }
            header.available_blobs = Some(available);
        }
        if let Some(rate) = request.get("blob_data_payment_rate") {
            understood = true;
            header.blob_data_payment_rate = Some(match rate.as_f64() {
                Some(r) if r < 0.0 => RATE_TOO_LOW,
                Some(_) => RATE_ACCEPTED,
                // null or a non-number: the key was asked about but carries no offer.
                None => RATE_UNSET,
            });
        }
        if let Some(requested) = request.get("requested_blob") {
            understood = true;
            let Value::String(text) = requested else {
                return Err(BadRequest("requested_blob is not a string".into()));
            };
            header.incoming_blob = Some(match self.fetch(text).await {
                Ok((hash, data)) => {
                    let length = data.len();
                    blob = data;
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
        if !understood {
            return Err(BadRequest("no known request key".into()));
        }
        let bytes = serde_json::to_vec(&header)
            .map_err(|e| BadRequest(format!("cannot serialize response: {e}")))?;
        Ok((bytes, blob, status))
    }

    /// Gets the requested blob from the root store (so a peer request fills caches like any
    /// other request). Errors come back as the message for `incoming_blob.error` plus a status.
    async fn fetch(&self, text: &str) -> Result<(BlobHash, Bytes), (String, &'static str)> {
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
        match self.shared.store.get(&hash).await {
            Ok(blob) => Ok((hash, blob.data)),
            Err(StoreError::NotFound) => Err(("blob not found".into(), "404")),
            Err(e) => {
                tracing::warn!(%hash, error = %e, "peer blob request failed");
                m.error(DIRECTION_DOWNLOAD, e.kind());
                let status = status_for(&e);
                Err((
                    e.to_string().replace(['\n', '\r'], " "),
                    status_label(status.as_u16()),
                ))
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_finds_one_object_and_leaves_the_rest() {
        let buf = br#"  {"a":"}{","b":[1,{"c":2}]}{"next":1}"#;
        let Frame::Complete(map, used) = next_frame(buf) else {
            panic!("expected a complete object")
        };
        assert_eq!(map["a"], "}{");
        assert_eq!(&buf[used..], br#"{"next":1}"#);
        // Every strict prefix is incomplete, never an error.
        let first = &buf[..used];
        for cut in 0..first.len() {
            assert!(
                matches!(next_frame(&first[..cut]), Frame::Incomplete),
                "prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn framing_rejects_garbage_early() {
        assert!(matches!(next_frame(b"GET / HTTP/1.1"), Frame::NotAnObject));
        assert!(matches!(next_frame(b"[1]"), Frame::NotAnObject));
        assert!(matches!(next_frame(b"{\"a\" 1}"), Frame::Invalid(_)));
        assert!(matches!(next_frame(b" \n"), Frame::Incomplete));
    }

    #[test]
    fn framing_accepts_binary_after_the_object() {
        let mut buf = br#"{"incoming_blob":{"length":3}}"#.to_vec();
        buf.extend_from_slice(&[0xff, 0x00, b'}']);
        let Frame::Complete(_, used) = next_frame(&buf) else {
            panic!("expected a complete object")
        };
        assert_eq!(&buf[used..], &[0xff, 0x00, b'}']);
    }

    #[test]
    fn header_has_reflector_field_order_and_omits_unasked_parts() {
        let h = ResponseHeader {
            lbrycrd_address: Some("addr"),
            available_blobs: Some(vec![]),
            blob_data_payment_rate: Some(RATE_ACCEPTED),
            incoming_blob: Some(IncomingBlob::Error {
                error: "blob not found".into(),
            }),
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"lbrycrd_address":"addr","available_blobs":[],"blob_data_payment_rate":"RATE_ACCEPTED","incoming_blob":{"error":"blob not found"}}"#
        );
        let h = ResponseHeader {
            blob_data_payment_rate: Some(RATE_TOO_LOW),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"blob_data_payment_rate":"RATE_TOO_LOW"}"#
        );
    }
}
