//! `peer`: another LBRY peer (an SDK node, reflector.go or prism-lite `servers.peer`) as a
//! read-only origin.
//!
//! One exchange = one request on a TCP connection, answered by one JSON object and (for a blob)
//! exactly `length` raw bytes. The response has no framing either, so the JSON header and the
//! first blob bytes can arrive in one read, or the header can be split anywhere; both are handled
//! by parsing the buffered bytes with [`next_frame`] and treating what follows as blob bytes.
//! (The wire facts and message types: [`crate::protocol::peer`].)
//!
//! - Connections are reused through a small idle pool; a connection that saw anything unexpected
//!   (a protocol error, a timeout, bytes beyond `length`) is dropped, never returned, because
//!   with no framing there is no way to resynchronise.
//! - We send the SDK's full request (availability + rate + blob), not just `requested_blob`: the
//!   SDK server answers a missing blob by *not mentioning it*, and with only `requested_blob` it
//!   would send nothing at all and we would wait for the timeout.
//! - `length` is checked against [`MAX_BLOB_SIZE`] before any byte is buffered, and the bytes
//!   are SHA-384-verified (a mismatch is [`StoreError::Corrupt`]), so a bad peer cannot make us
//!   buffer more than 2 MiB or pass on a wrong byte.

use std::sync::Mutex;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::blob::{BlobHash, MAX_BLOB_SIZE};
use crate::config::{Endpoint, PeerStoreConfig};
use crate::protocol::peer::{next_frame, Answer, Frame, Incoming, Request};
use crate::store::origin::Origin;
use crate::store::reconnect::{retry_once_if_dead, Failure, Reuse};
use crate::store::remote::Remote;
use crate::store::{Blob, BuildContext, StoreError, StoreResult};

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;
/// Exchanges (and so connections) open at once; more callers wait (within their timeout).
const MAX_IN_FLIGHT: usize = 32;
/// Largest response header accepted. One hash asked about => a few hundred bytes in practice.
const MAX_HEADER: usize = 16 * 1024;

pub struct PeerStore {
    origin: Origin,
    address: String,
    idle: Mutex<Vec<TcpStream>>,
    in_flight: Semaphore,
}

impl PeerStore {
    /// The store for one `endpoint` of `config` (a pool has one per endpoint: see
    /// [`crate::store::pool`]).
    pub fn new(config: &PeerStoreConfig, endpoint: &Endpoint, ctx: &BuildContext) -> PeerStore {
        PeerStore {
            origin: Origin::new(
                config.name(),
                config.timeout,
                &ctx.store_metrics().tcp_in_bytes,
            ),
            address: endpoint.address.clone(),
            idle: Mutex::new(Vec::new()),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    fn unavailable(&self, message: impl Into<String>) -> StoreError {
        self.origin.unavailable(message)
    }

    /// The peer went away before answering: on a pooled connection, worth one fresh retry.
    fn closed_before_answer(&self, why: impl std::fmt::Display) -> Failure {
        Failure::connection_died(self.unavailable(format!("peer {}: {why}", self.address)))
    }

    fn take_idle(&self) -> Option<TcpStream> {
        self.idle.lock().ok()?.pop()
    }

    fn put_idle(&self, conn: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    async fn connect(&self) -> StoreResult<TcpStream> {
        let conn = TcpStream::connect(&self.address)
            .await
            .map_err(|e| self.unavailable(format!("connecting to peer {}: {e}", self.address)))?;
        let _ = conn.set_nodelay(true);
        Ok(conn)
    }

    /// Runs one exchange on an idle pooled connection, or a fresh one when none is idle (a
    /// pooled one that turns out dead is retried once on a fresh one: see
    /// [`retry_once_if_dead`]), all within the store's timeout.
    async fn with_connection(&self, ask: Ask) -> StoreResult<Reply> {
        let request = ask.request().to_bytes();
        let started = Instant::now();
        self.origin
            .bounded(async {
                let _slot = self
                    .in_flight
                    .acquire()
                    .await
                    .map_err(|_| self.unavailable("peer store is closed"))?;
                let first = match self.take_idle() {
                    Some(conn) => (conn, Reuse::Reused),
                    None => (self.connect().await?, Reuse::Fresh),
                };
                retry_once_if_dead(
                    self.origin.name(),
                    first,
                    || self.connect(),
                    |conn| self.exchange(conn, &request, ask, started),
                )
                .await
            })
            .await
    }

    /// One exchange on `conn`. The connection goes back to the idle pool only when the exchange
    /// left it in a known state.
    async fn exchange(
        &self,
        mut conn: TcpStream,
        request: &[u8],
        ask: Ask,
        started: Instant,
    ) -> Result<Reply, Failure> {
        conn.write_all(request)
            .await
            .map_err(|e| self.closed_before_answer(format!("sending request: {e}")))?;
        let (reply, reusable) = match ask {
            Ask::Download(hash) => {
                let (blob, reusable) = self
                    .download(&mut conn, BytesMut::new(), hash, started)
                    .await?;
                (Reply::Blob(blob), reusable)
            }
            Ask::Has(hash) => {
                let (has, reusable) = self.availability(&mut conn, BytesMut::new(), hash).await?;
                (Reply::Has(has), reusable)
            }
        };
        if reusable {
            self.put_idle(conn);
        }
        Ok(reply)
    }
}

/// What one exchange asks the peer.
#[derive(Clone, Copy)]
enum Ask {
    Download(BlobHash),
    Has(BlobHash),
}

/// What one exchange learned.
enum Reply {
    Blob(StoreResult<Blob>),
    Has(bool),
}

impl Ask {
    fn request(&self) -> Request {
        match self {
            Ask::Download(hash) => Request::download(hash),
            Ask::Has(hash) => Request::availability(hash),
        }
    }
}

impl PeerStore {
    /// Reads one response header; returns it and any bytes that followed it in the same reads.
    async fn read_header(
        &self,
        conn: &mut TcpStream,
        mut buf: BytesMut,
    ) -> Result<(Map<String, Value>, BytesMut), Failure> {
        loop {
            match next_frame(&buf) {
                Frame::Complete(map, used) => {
                    let rest = buf.split_off(used);
                    return Ok((map, rest));
                }
                Frame::NotAnObject => {
                    return Err(self.unavailable("peer answered with non-JSON bytes").into())
                }
                Frame::Invalid(e) => {
                    return Err(self
                        .unavailable(format!("peer answered invalid JSON: {e}"))
                        .into())
                }
                Frame::Incomplete if buf.len() > MAX_HEADER => {
                    return Err(self
                        .unavailable(format!("peer response header exceeds {MAX_HEADER} bytes"))
                        .into())
                }
                Frame::Incomplete => {}
            }
            let room = MAX_HEADER + 1 - buf.len();
            buf.reserve(room.min(4096));
            let n = conn
                .read_buf(&mut (&mut buf).limit(room))
                .await
                .map_err(|e| self.closed_before_answer(format!("reading response: {e}")))?;
            if n == 0 {
                let msg = "peer closed the connection before answering";
                return Err(if buf.is_empty() {
                    self.closed_before_answer(msg)
                } else {
                    self.unavailable(format!("{msg} completely")).into()
                });
            }
        }
    }

    /// One download exchange on `conn`. Returns the verified blob (or NotFound) and whether the
    /// connection is still in a known state.
    async fn download(
        &self,
        conn: &mut TcpStream,
        buf: BytesMut,
        hash: BlobHash,
        since: Instant,
    ) -> Result<(StoreResult<Blob>, bool), Failure> {
        let (header, mut rest) = self.read_header(conn, buf).await?;
        let answer = Answer::read(&header).map_err(|e| self.unavailable(e))?;
        let length = match answer.incoming() {
            Incoming::Malformed => {
                return Err(self
                    .unavailable("peer sent a malformed incoming_blob")
                    .into());
            }
            // The SDK server leaves a blob it does not have out of the answer entirely.
            Incoming::Absent if !answer.lists(&hash) => {
                return Ok((Err(StoreError::NotFound), true))
            }
            Incoming::Absent => {
                return Err(self
                    .unavailable("peer listed the blob but did not send it")
                    .into())
            }
            Incoming::Refused(error) => {
                tracing::debug!(store = self.origin.name(), %hash, %error, "peer does not have the blob");
                return Ok((Err(StoreError::NotFound), rest.is_empty()));
            }
            Incoming::Blob { blob_hash, length } => {
                if blob_hash != Some(hash.to_string().as_str()) {
                    return Err(self
                        .unavailable("peer announced a different blob than requested")
                        .into());
                }
                length.ok_or_else(|| self.unavailable("peer sent no valid blob length"))?
            }
        };
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        // Refuse before buffering anything.
        self.origin.check_declared(length)?;
        let mut reusable = true;
        if rest.len() > length {
            // More bytes than announced: the stream is out of step; use the blob, drop the conn.
            rest.truncate(length);
            reusable = false;
        }
        let mut data = BytesMut::with_capacity(length);
        data.extend_from_slice(&rest);
        drop(rest);
        while data.len() < length {
            let room = length - data.len();
            let n = conn
                .read_buf(&mut (&mut data).limit(room))
                .await
                .map_err(|e| self.unavailable(format!("reading blob bytes: {e}")))?;
            if n == 0 {
                return Err(self
                    .unavailable(format!(
                        "peer closed after {} of {length} blob bytes",
                        data.len()
                    ))
                    .into());
            }
        }
        debug_assert!(data.len() <= MAX_BLOB_SIZE);
        let blob = self.origin.verified_blob(&hash, data.freeze(), since, None);
        // A peer that sent wrong bytes is not trusted with the next exchange either.
        let reusable = reusable && blob.is_ok();
        Ok((blob, reusable))
    }

    async fn availability(
        &self,
        conn: &mut TcpStream,
        buf: BytesMut,
        hash: BlobHash,
    ) -> Result<(bool, bool), Failure> {
        let (header, rest) = self.read_header(conn, buf).await?;
        let answer = Answer::read(&header).map_err(|e| self.unavailable(e))?;
        if !answer.has_availability() {
            return Err(self
                .unavailable("peer answered without available_blobs")
                .into());
        }
        Ok((answer.lists(&hash), rest.is_empty()))
    }
}

impl Remote for PeerStore {
    fn origin(&self) -> &Origin {
        &self.origin
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        match self.with_connection(Ask::Has(*hash)).await? {
            Reply::Has(has) => Ok(has),
            Reply::Blob(_) => Err(self.unavailable("internal: blob answer to a has request")),
        }
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        match self.with_connection(Ask::Download(*hash)).await? {
            Reply::Blob(blob) => blob,
            Reply::Has(_) => Err(self.unavailable("internal: has answer to a get request")),
        }
    }
}
