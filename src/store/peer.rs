//! `peer`: another LBRY peer (an SDK node, reflector.go or prism-lite `servers.peer`) as a
//! read-only origin.
//!
//! One exchange = one request on a TCP connection, answered by one JSON object and (for a blob)
//! exactly `length` raw bytes. The response has no framing either, so the JSON header and the
//! first blob bytes can arrive in one read, or the header can be split anywhere; both are handled
//! by parsing the buffered bytes with [`next_frame`] and treating what follows as blob bytes.
//!
//! - Connections are reused through a small idle pool; a connection that saw anything unexpected
//!   (a protocol error, a timeout, bytes beyond `length`) is dropped, never returned, because
//!   with no framing there is no way to resynchronise.
//! - We send the SDK's full request (availability + rate + blob), not just `requested_blob`: the
//!   SDK server answers a missing blob by *not mentioning it*, and with only `requested_blob` it
//!   would send nothing at all and we would wait for the timeout.
//! - `length` is checked against [`MAX_BLOB_SIZE`] before any byte is buffered, and the bytes
//!   are SHA-384-verified here (a mismatch is [`StoreError::Corrupt`]), so a bad peer cannot make
//!   us buffer more than 2 MiB or pass on a wrong byte.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::blob::{check_size, verify, BlobHash, MAX_BLOB_SIZE};
use crate::config::PeerStoreConfig;
use crate::metrics::Metrics;
use crate::server::peer::{next_frame, Frame};
use crate::store::{Blob, BlobStore, BuildContext, StoreError, StoreResult};

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;
/// Exchanges (and so connections) open at once; more callers wait (within their timeout).
const MAX_IN_FLIGHT: usize = 32;
/// Largest response header accepted. One hash asked about => a few hundred bytes in practice.
const MAX_HEADER: usize = 16 * 1024;

pub struct PeerStore {
    name: Arc<str>,
    address: String,
    timeout: Duration,
    idle: Mutex<Vec<TcpStream>>,
    in_flight: Semaphore,
    metrics: Arc<Metrics>,
}

/// Where a connection came from: a pooled one may have been closed by the peer while idle, which
/// is worth one retry on a fresh connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Pooled,
    Fresh,
}

/// The outcome of one exchange, before it is turned into a store result.
enum Failure {
    /// The peer closed or reset before answering anything (stale pooled connection?).
    ClosedBeforeAnswer(String),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

impl PeerStore {
    pub fn new(config: &PeerStoreConfig, ctx: &BuildContext) -> PeerStore {
        PeerStore {
            name: Arc::from(config.name.as_deref().unwrap_or("peer")),
            address: config.address.clone(),
            timeout: config.timeout,
            idle: Mutex::new(Vec::new()),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            metrics: Arc::clone(&ctx.metrics),
        }
    }

    fn unavailable(&self, message: impl Into<String>) -> StoreError {
        StoreError::unavailable(&self.name, message)
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

    /// Runs `exchange` on a pooled connection (retrying once on a fresh one if the pooled one
    /// turns out to be dead), all within the store's timeout.
    async fn with_connection(&self, ask: Ask) -> StoreResult<Answer> {
        let request = ask.request();
        let started = Instant::now();
        let work = async {
            let _slot = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| self.unavailable("peer store is closed"))?;
            let mut attempt = match self.take_idle() {
                Some(conn) => (conn, Origin::Pooled),
                None => (self.connect().await?, Origin::Fresh),
            };
            loop {
                let (mut conn, origin) = attempt;
                let result = async {
                    conn.write_all(&request).await.map_err(|e| {
                        Failure::ClosedBeforeAnswer(format!("sending request: {e}"))
                    })?;
                    match ask {
                        Ask::Download(hash) => self
                            .download(&mut conn, BytesMut::new(), hash)
                            .await
                            .map(|(blob, reusable)| (Answer::Blob(blob), reusable)),
                        Ask::Has(hash) => self
                            .availability(&mut conn, BytesMut::new(), hash)
                            .await
                            .map(|(has, reusable)| (Answer::Has(has), reusable)),
                    }
                }
                .await;
                match result {
                    Ok((value, reusable)) => {
                        if reusable {
                            self.put_idle(conn);
                        }
                        return Ok(value);
                    }
                    Err(Failure::ClosedBeforeAnswer(why)) if origin == Origin::Pooled => {
                        tracing::debug!(store = %self.name, reason = %why, "pooled peer connection was dead; reconnecting");
                        attempt = (self.connect().await?, Origin::Fresh);
                    }
                    Err(Failure::ClosedBeforeAnswer(why)) => {
                        return Err(self.unavailable(format!("peer {}: {why}", self.address)))
                    }
                    Err(Failure::Store(e)) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout {
                store: Arc::clone(&self.name),
                after: started.elapsed(),
            }),
        }
    }
}

/// What one exchange asks the peer.
#[derive(Clone, Copy)]
enum Ask {
    Download(BlobHash),
    Has(BlobHash),
}

/// What one exchange learned.
enum Answer {
    Blob(StoreResult<Bytes>),
    Has(bool),
}

impl Ask {
    fn request(&self) -> Vec<u8> {
        match self {
            // The SDK's standard download request.
            Ask::Download(hash) => format!(
                r#"{{"requested_blobs":["{hash}"],"lbrycrd_address":true,"blob_data_payment_rate":0.0,"requested_blob":"{hash}"}}"#
            ),
            Ask::Has(hash) => format!(r#"{{"requested_blobs":["{hash}"],"lbrycrd_address":true}}"#),
        }
        .into_bytes()
    }
}

/// Reads one response header; returns it and any bytes that followed it in the same reads.
async fn read_header(
    conn: &mut TcpStream,
    mut buf: BytesMut,
    store: &str,
) -> Result<(Map<String, Value>, BytesMut), Failure> {
    loop {
        match next_frame(&buf) {
            Frame::Complete(map, used) => {
                let rest = buf.split_off(used);
                return Ok((map, rest));
            }
            Frame::NotAnObject => {
                return Err(
                    StoreError::unavailable(store, "peer answered with non-JSON bytes").into(),
                )
            }
            Frame::Invalid(e) => {
                return Err(StoreError::unavailable(
                    store,
                    format!("peer answered invalid JSON: {e}"),
                )
                .into())
            }
            Frame::Incomplete if buf.len() > MAX_HEADER => {
                return Err(StoreError::unavailable(
                    store,
                    format!("peer response header exceeds {MAX_HEADER} bytes"),
                )
                .into())
            }
            Frame::Incomplete => {}
        }
        let room = MAX_HEADER + 1 - buf.len();
        buf.reserve(room.min(4096));
        let n = conn
            .read_buf(&mut (&mut buf).limit(room))
            .await
            .map_err(|e| Failure::ClosedBeforeAnswer(format!("reading response: {e}")))?;
        if n == 0 {
            let msg = "peer closed the connection before answering".to_string();
            return Err(if buf.is_empty() {
                Failure::ClosedBeforeAnswer(msg)
            } else {
                StoreError::unavailable(store, format!("{msg} completely")).into()
            });
        }
    }
}

/// Checks that a response only uses the keys the protocol allows (as the SDK client does).
fn check_keys(map: &Map<String, Value>, store: &str) -> Result<(), Failure> {
    const ALLOWED: [&str; 4] = [
        "lbrycrd_address",
        "available_blobs",
        "blob_data_payment_rate",
        "incoming_blob",
    ];
    match map.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        Some(k) => Err(StoreError::unavailable(
            store,
            format!("peer response has unexpected key {k:?}"),
        )
        .into()),
        None => Ok(()),
    }
}

fn lists(map: &Map<String, Value>, hash: &BlobHash) -> bool {
    let want = hash.to_string();
    map.get("available_blobs")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(want.as_str())))
}

impl PeerStore {
    /// One download exchange on `conn`. Returns the verified bytes (or NotFound) and whether the
    /// connection is still in a known state.
    async fn download(
        &self,
        conn: &mut TcpStream,
        buf: BytesMut,
        hash: BlobHash,
    ) -> Result<(StoreResult<Bytes>, bool), Failure> {
        let store = &*self.name;
        let (header, mut rest) = read_header(conn, buf, store).await?;
        check_keys(&header, store)?;
        let incoming = match header.get("incoming_blob") {
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(self
                    .unavailable("peer sent a malformed incoming_blob")
                    .into());
            }
            // The SDK server leaves a blob it does not have out of the answer entirely.
            None if !lists(&header, &hash) => return Ok((Err(StoreError::NotFound), true)),
            None => {
                return Err(self
                    .unavailable("peer listed the blob but did not send it")
                    .into())
            }
        };
        if let Some(error) = incoming.get("error") {
            tracing::debug!(store, %hash, %error, "peer does not have the blob");
            return Ok((Err(StoreError::NotFound), rest.is_empty()));
        }
        if incoming.get("blob_hash").and_then(Value::as_str) != Some(hash.to_string().as_str()) {
            return Err(self
                .unavailable("peer announced a different blob than requested")
                .into());
        }
        let length = incoming
            .get("length")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.unavailable("peer sent no valid blob length"))?;
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if let Err(source) = check_size(length) {
            // Refuse before buffering anything.
            return Err(StoreError::Corrupt {
                store: Arc::clone(&self.name),
                source,
            }
            .into());
        }
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
        let data = data.freeze();
        self.metrics.peer_in_bytes.inc_by(data.len() as u64);
        if let Err(source) = verify(&data, &hash) {
            return Ok((
                Err(StoreError::Corrupt {
                    store: Arc::clone(&self.name),
                    source,
                }),
                false,
            ));
        }
        Ok((Ok(data), reusable))
    }

    async fn availability(
        &self,
        conn: &mut TcpStream,
        buf: BytesMut,
        hash: BlobHash,
    ) -> Result<(bool, bool), Failure> {
        let (header, rest) = read_header(conn, buf, &self.name).await?;
        check_keys(&header, &self.name)?;
        if !header.contains_key("available_blobs") {
            return Err(self
                .unavailable("peer answered without available_blobs")
                .into());
        }
        Ok((lists(&header, &hash), rest.is_empty()))
    }
}

#[async_trait]
impl BlobStore for PeerStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        match self.with_connection(Ask::Has(*hash)).await? {
            Answer::Has(has) => Ok(has),
            Answer::Blob(_) => Err(self.unavailable("internal: blob answer to a has request")),
        }
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let data = match self.with_connection(Ask::Download(*hash)).await? {
            Answer::Blob(blob) => blob?,
            Answer::Has(_) => return Err(self.unavailable("internal: has answer to a get request")),
        };
        debug_assert!(data.len() <= MAX_BLOB_SIZE);
        Ok(Blob::verified(data, start.elapsed(), &self.name))
    }

    async fn put(&self, _hash: &BlobHash, _data: Bytes) -> StoreResult<()> {
        Err(StoreError::Refused {
            store: Arc::clone(&self.name),
            message: "a peer origin is read-only".into(),
        })
    }

    async fn delete(&self, _hash: &BlobHash) -> StoreResult<()> {
        Err(StoreError::Refused {
            store: Arc::clone(&self.name),
            message: "a peer origin is read-only".into(),
        })
    }
}
