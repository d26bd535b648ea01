//! One upload connection: handshake, then offers answered one at a time.
//!
//! - An offered blob is read whole into memory (at most 2 MiB, or `max_sd_blob_size` for an
//!   sd blob), SHA-384-verified, and only then `put` into the root store; wrong bytes are
//!   answered `received_*: false` and close the connection (the byte stream may be out of step).
//! - "Already held" is the root store's `has`, not `has_cached`: an ingest server's job is to
//!   make the blob durable in its tree, and `has` answers "a get would succeed" — true for a
//!   blob already in S3 behind an empty local cache, which must not be uploaded again. When
//!   that check fails (a reader is down), the blob is asked for rather than the connection
//!   closed: the `put` decides, so a tree whose writer works still takes the upload (the soak
//!   found uploads closed with `origin_unavailable`).
//! - After an sd blob (v2, or v1 that sends one), only that stream's content blobs are asked
//!   for. v1 (`{"version": 0}`, reflector.go's uploader) may also offer lone blobs with no sd
//!   blob first; v2 without an sd blob gets `send_blob: false`.
//! - Refusals: a blocked or unrequested blob gets `send_blob: false`. A blocked sd blob closes
//!   the connection: any answer to an sd offer would make the SDK client record the stream as
//!   fully reflected. Bad offers (size 0, over the limit, bad hash, garbage) close it too.

use std::collections::HashSet;

use bytes::{BufMut, Bytes};
use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::blob::{verify, BlobHash, MAX_BLOB_SIZE};
use crate::metrics::DIRECTION_UPLOAD;
use crate::protocol::reflector::{next_frame, Frame, Request, Response, VERSION_1, VERSION_2};
use crate::store::StoreError;
use crate::stream::StreamDescriptor;

use super::{ReflectorServer, StoredStream};

/// Largest pending message. Offers are about 150 bytes.
const MAX_MESSAGE: usize = 4 * 1024;

/// `has` checks in flight at once when listing a known stream's missing blobs (each may be a
/// remote request, e.g. an S3 HEAD).
const HAS_CONCURRENCY: usize = 16;

/// Why a connection ended.
enum End {
    /// The client hung up or idled out between messages, or we are shutting down.
    Quiet,
    /// Counted in `reflector_error_total{direction="upload", error_type}`.
    Error(&'static str),
}

type Step<T = ()> = Result<T, End>;

/// The stream being uploaded on this connection.
struct Upload {
    sd_hash: BlobHash,
    first_blob: Option<BlobHash>,
    content: HashSet<BlobHash>,
    /// Content blobs not yet known to be stored.
    missing: HashSet<BlobHash>,
}

struct Session<'a> {
    server: &'a ReflectorServer,
    socket: TcpStream,
    /// Received bytes not yet consumed: at most one message (plus whatever followed it).
    buf: Vec<u8>,
    shutdown: CancellationToken,
    version: u64,
    upload: Option<Upload>,
}

/// Serves one connection; `Err(kind)` when it ended on an error worth counting.
pub(super) async fn run(
    server: &ReflectorServer,
    socket: TcpStream,
    shutdown: CancellationToken,
) -> Result<(), &'static str> {
    let mut session = Session {
        server,
        socket,
        buf: Vec::with_capacity(512),
        shutdown,
        version: VERSION_2,
        upload: None,
    };
    match session.serve().await {
        Ok(()) | Err(End::Quiet) => Ok(()),
        Err(End::Error(kind)) => Err(kind),
    }
}

impl Session<'_> {
    async fn serve(&mut self) -> Step {
        match self.read_request().await? {
            Request::Handshake { version } if version == VERSION_1 || version == VERSION_2 => {
                self.version = version;
                self.send(Response::Version { version }).await?;
            }
            Request::Handshake { .. } => return Err(End::Error("protocol_version")),
            _ => return Err(End::Error("invalid_request")),
        }
        loop {
            match self.read_request().await? {
                Request::SdOffer { hash, size } => self.sd_offer(hash, size).await?,
                Request::BlobOffer { hash, size } => self.blob_offer(hash, size).await?,
                Request::Handshake { .. } => return Err(End::Error("invalid_request")),
            }
        }
    }

    async fn sd_offer(&mut self, hash: BlobHash, size: u64) -> Step {
        let size = checked_size(size, self.server.config.sd_limit())?;
        if self.server.service.policy().is_blocked(&hash) {
            return Err(End::Error("blocked_blob"));
        }
        self.upload = None;
        if self.held(&hash).await {
            match self.server.service.store().get(&hash).await {
                Ok(blob) => return self.known_stream(hash, &blob.data).await,
                // Held, but not readable now: take it again rather than fail the upload.
                Err(e) => self.unsure(&hash, e.kind()),
            }
        }
        self.send(Response::SendSdBlob {
            send_sd_blob: true,
            needed_blobs: None,
        })
        .await?;
        let data = self.receive(hash, size, true).await?;
        // Only a descriptor is stored as one: its content list is what we ask for next.
        let descriptor = match StreamDescriptor::parse(&data) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(%hash, error = %e, "offered sd blob is not a stream descriptor");
                self.count("invalid_sd_blob");
                return self.send(received_sd(false)).await;
            }
        };
        if !self.store(hash, data, true).await {
            return self.send(received_sd(false)).await;
        }
        let upload = Upload::of(hash, &descriptor);
        let complete = upload.missing.is_empty();
        self.upload = Some(upload);
        self.send(received_sd(true)).await?;
        if complete {
            self.completed(true);
        }
        Ok(())
    }

    /// The sd blob (`data`) is already held: answer which of its content blobs are still
    /// missing.
    async fn known_stream(&mut self, hash: BlobHash, data: &[u8]) -> Step {
        let store = &self.server.service.store();
        let Ok(descriptor) = StreamDescriptor::parse(data) else {
            // Held, and the same bytes as offered, but not a descriptor: nothing to ask for.
            return self
                .send(Response::SendSdBlob {
                    send_sd_blob: false,
                    needed_blobs: Some(Vec::new()),
                })
                .await;
        };
        let mut upload = Upload::of(hash, &descriptor);
        let checks = descriptor.content_blobs().map(|(_, blob, _)| async move {
            // A failed check counts as missing: asking for a blob we hold is harmless.
            (blob, matches!(store.has(&blob).await, Ok(true)))
        });
        let held: Vec<(BlobHash, bool)> = stream::iter(checks)
            .buffered(HAS_CONCURRENCY)
            .collect()
            .await;
        let mut needed = Vec::new();
        for (blob, is_held) in held {
            if is_held {
                upload.missing.remove(&blob);
            } else if !needed.contains(&blob) {
                needed.push(blob);
            }
        }
        let complete = needed.is_empty();
        self.upload = Some(upload);
        self.send(Response::SendSdBlob {
            send_sd_blob: false,
            needed_blobs: Some(needed),
        })
        .await?;
        if complete {
            // A re-upload of a complete stream: tell the hook again (announcing is idempotent,
            // and this heals an announce list that lost the stream).
            self.completed(false);
        }
        Ok(())
    }

    async fn blob_offer(&mut self, hash: BlobHash, size: u64) -> Step {
        let size = checked_size(size, MAX_BLOB_SIZE)?;
        let wanted = match &self.upload {
            Some(upload) => upload.content.contains(&hash),
            None => self.version == VERSION_1,
        };
        if !wanted {
            return self.send(send_blob(false)).await;
        }
        if self.server.service.policy().is_blocked(&hash) {
            self.count("blocked_blob");
            return self.send(send_blob(false)).await;
        }
        if self.held(&hash).await {
            self.send(send_blob(false)).await?;
            self.stored(&hash);
            return Ok(());
        }
        self.send(send_blob(true)).await?;
        let data = self.receive(hash, size, false).await?;
        let ok = self.store(hash, data, false).await;
        self.send(Response::ReceivedBlob { received_blob: ok })
            .await?;
        if ok {
            self.stored(&hash);
        }
        Ok(())
    }

    /// Whether the root store already holds `hash` (see the module docs for why `has`). A
    /// check that fails (an origin down) counts as "not held": the publisher sends the blob
    /// again, which costs bytes, where closing would fail the upload.
    async fn held(&self, hash: &BlobHash) -> bool {
        match self.server.service.store().has(hash).await {
            Ok(held) => held,
            Err(e) => {
                self.unsure(hash, e.kind());
                false
            }
        }
    }

    /// A store check failed mid-upload: counted and logged, and the blob asked for.
    fn unsure(&self, hash: &BlobHash, kind: &'static str) {
        tracing::debug!(%hash, error_type = kind, "reflector: cannot tell whether a blob is held; asking for it");
        self.count(kind);
    }

    /// Reads the `size` raw bytes of an accepted offer and checks them against `hash`. Wrong
    /// bytes are answered (`received_*: false`) and end the connection.
    async fn receive(&mut self, hash: BlobHash, size: usize, is_sd: bool) -> Step<Bytes> {
        let deadline = Instant::now() + self.server.config.blob_timeout;
        let mut data = Vec::with_capacity(size);
        let already = size.min(self.buf.len());
        data.extend(self.buf.drain(..already));
        while data.len() < size {
            let room = size - data.len();
            let mut limited = (&mut data).limit(room);
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.socket.read_buf(&mut limited)) => r,
                _ = self.shutdown.cancelled() => return Err(End::Quiet),
            };
            match read {
                Ok(Ok(0)) => return Err(End::Error("unexpected_eof")),
                Ok(Ok(n)) => self.server.metrics.reflector_in_bytes.inc_by(n as u64),
                Ok(Err(_)) => return Err(End::Error("read_conn_reset")),
                Err(_) => return Err(End::Error("io_timeout")),
            }
        }
        self.server
            .metrics
            .reflector_in_bytes
            .inc_by(already as u64);
        let data = Bytes::from(data);
        if let Err(e) = verify(&data, &hash) {
            tracing::debug!(%hash, error = %e, "uploaded blob refused");
            let kind = StoreError::Corrupt {
                store: "reflector".into(),
                source: e,
            }
            .kind();
            let answer = match is_sd {
                true => received_sd(false),
                false => Response::ReceivedBlob {
                    received_blob: false,
                },
            };
            // Best effort: the connection ends either way.
            let _ = self.send(answer).await;
            return Err(End::Error(kind));
        }
        Ok(data)
    }

    /// Writes verified bytes through the root store; false (counted) when the store refuses.
    async fn store(&self, hash: BlobHash, data: Bytes, is_sd: bool) -> bool {
        let m = &self.server.metrics;
        match self.server.service.store().put(&hash, data).await {
            Ok(()) => {
                m.blob_upload_total.inc();
                if is_sd {
                    m.sdblob_upload_total.inc();
                }
                tracing::debug!(%hash, sd = is_sd, "uploaded blob stored");
                true
            }
            Err(e) => {
                tracing::warn!(%hash, error = %e, "storing an uploaded blob failed");
                self.count(match &e {
                    StoreError::Refused { .. }
                        if self.server.service.policy().is_blocked(&hash) =>
                    {
                        "blocked_blob"
                    }
                    _ => e.kind(),
                });
                false
            }
        }
    }

    /// Marks a content blob of the current stream as stored; completes the stream on the last.
    fn stored(&mut self, hash: &BlobHash) {
        let Some(upload) = &mut self.upload else {
            return;
        };
        if upload.missing.remove(hash) && upload.missing.is_empty() {
            self.completed(true);
        }
    }

    fn completed(&self, fresh: bool) {
        let Some(upload) = &self.upload else {
            return;
        };
        if fresh {
            self.server.metrics.reflector_streams_total.inc();
            tracing::info!(sd_hash = %upload.sd_hash, "uploaded stream complete");
        }
        self.server.stream_stored(&StoredStream {
            sd_hash: upload.sd_hash,
            first_blob: upload.first_blob,
        });
    }

    fn count(&self, kind: &str) {
        self.server.service.metrics().error(DIRECTION_UPLOAD, kind);
    }

    /// The next message. EOF or the idle timeout between messages is a quiet end; the same
    /// in the middle of a message is counted.
    async fn read_request(&mut self) -> Step<Request> {
        let deadline = Instant::now() + self.server.config.idle_timeout;
        loop {
            match next_frame(&self.buf) {
                Frame::Complete(map, used) => {
                    self.buf.drain(..used);
                    return Request::from_object(&map).map_err(|e| {
                        tracing::debug!(error = %e, "bad reflector request");
                        End::Error(e.kind())
                    });
                }
                Frame::NotAnObject | Frame::Invalid(_) => return Err(End::Error("json_syntax")),
                Frame::Incomplete if self.buf.len() > MAX_MESSAGE => {
                    return Err(End::Error("request_too_large"))
                }
                Frame::Incomplete => {}
            }
            // Read at most one byte past the limit: enough to know it was exceeded.
            let room = MAX_MESSAGE + 1 - self.buf.len();
            let mut limited = (&mut self.buf).limit(room);
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.socket.read_buf(&mut limited)) => r,
                _ = self.shutdown.cancelled() => return Err(End::Quiet),
            };
            let midway = self.buf.iter().any(|b| !b.is_ascii_whitespace());
            match read {
                Ok(Ok(0)) if midway => return Err(End::Error("unexpected_eof")),
                Ok(Ok(0)) => return Err(End::Quiet),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(End::Quiet),
                Err(_) if midway => return Err(End::Error("io_timeout")),
                Err(_) => return Err(End::Quiet),
            }
        }
    }

    async fn send(&mut self, response: Response) -> Step {
        let bytes = response.to_bytes();
        let write = self.socket.write_all(&bytes);
        match tokio::time::timeout(self.server.config.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Error("write_conn_reset")),
            Err(_) => Err(End::Error("write_conn_timed_out")),
        }
    }
}

impl Upload {
    fn of(sd_hash: BlobHash, descriptor: &StreamDescriptor) -> Upload {
        let content: HashSet<BlobHash> = descriptor.content_blobs().map(|(_, h, _)| h).collect();
        Upload {
            sd_hash,
            first_blob: descriptor.first_content_blob(),
            missing: content.clone(),
            content,
        }
    }
}

/// The offered size as a length, if it is 1..=`limit`.
fn checked_size(size: u64, limit: usize) -> Step<usize> {
    match usize::try_from(size) {
        Ok(0) => Err(End::Error("zero_byte_blob")),
        Ok(n) if n <= limit => Ok(n),
        _ => Err(End::Error("blob_too_big")),
    }
}

fn received_sd(ok: bool) -> Response {
    Response::ReceivedSdBlob {
        received_sd_blob: ok,
    }
}

fn send_blob(ok: bool) -> Response {
    Response::SendBlob { send_blob: ok }
}
