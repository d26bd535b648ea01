//! The serving core: the one sequence every door runs for a blob a client names.
//!
//! 1. parse the hash the client sent;
//! 2. check the policy (a protected blob needs the door's token);
//! 3. take one of the door's request slots ([`Door::slot`]);
//! 4. reserve room in the shared in-flight budget ([`InflightBudget`]), before the store is
//!    asked, so a request waiting for room holds no bytes;
//! 5. `get` from the root store, and turn the reservation into a [`Charge`] on the buffer.
//!
//! The answer is [`Served`] or a typed [`Refusal`] that knows its HTTP status, its metric label
//! and the short text a client gets. A refusal is counted and (for store failures) logged once,
//! here, when it is made; a door only translates it to its wire (a status line, a QUIC reset,
//! an `incoming_blob.error`). A new kind of refusal, or a new per-request rule, is written here
//! once for every door.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ::http::StatusCode;

use crate::blob::{BlobHash, InvalidHash};
use crate::config::DoorSettings;
use crate::metrics::{Metrics, DIRECTION_DOWNLOAD};
use crate::policy::Policy;
use crate::secret::ExposeSecret;
use crate::server::accept::Admission;
use crate::server::access_log::{AccessLog, CacheResult, Entry};
use crate::server::budget::{Charge, InflightBudget, Reservation};
use crate::server::door::{Door, DoorKind};
use crate::server::metrics::ServerMetrics;
use crate::store::{Blob, BlobStore, StoreError};

/// The answer body for a protected blob requested without the right token.
pub const PROTECTED_MESSAGE: &str = "requested blob is protected; a valid edge_token is required";

/// What a client asked for.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The hash as the client sent it (not yet parsed).
    pub hash: &'a str,
    /// The `edge_token` the client presented, if any.
    pub token: Option<&'a str>,
    /// Whose share of the in-flight budget the answer takes.
    pub client: IpAddr,
}

/// A blob ready to send, and its in-flight budget charge, which the door drops once it no
/// longer holds the bytes.
pub struct Served {
    pub hash: BlobHash,
    pub blob: Blob,
    pub charge: Charge,
}

impl Served {
    /// Hit or miss, for the access log.
    pub fn cache_result(&self) -> CacheResult {
        match self.blob.from_origin {
            true => CacheResult::Miss,
            false => CacheResult::Hit,
        }
    }
}

/// Why a request gets no blob.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("bad hash: {0}")]
    BadHash(#[source] InvalidHash),
    #[error("protected blob")]
    Protected,
    #[error("blocked blob")]
    Blocked,
    #[error("no request slot")]
    Busy,
    #[error("no room in the in-flight budget")]
    OverBudget,
    #[error(transparent)]
    Store(StoreError),
}

impl Refusal {
    /// The HTTP status (the peer door uses it as its latency label too).
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadHash(_) => StatusCode::BAD_REQUEST,
            Refusal::Protected => StatusCode::FORBIDDEN,
            Refusal::Blocked => StatusCode::NOT_FOUND,
            Refusal::Busy | Refusal::OverBudget => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Store(e) => status_for(e),
        }
    }

    /// The `reflector_error_total{error_type}` this refusal counts as; `None` for an answer that
    /// is not an error (not found) or is counted as a rejected request (busy, over budget).
    pub fn error_type(&self) -> Option<&'static str> {
        match self {
            Refusal::BadHash(_) => Some("invalid_blob_hash"),
            Refusal::Protected => Some("protected_blob"),
            Refusal::Blocked => Some("blocked_blob"),
            Refusal::Busy | Refusal::OverBudget => None,
            Refusal::Store(StoreError::NotFound) => None,
            Refusal::Store(e) => Some(e.kind()),
        }
    }

    /// What the store tree did, for the access log: a miss when no store had the blob, an
    /// error when it failed; `None` when it was not asked.
    pub fn cache_result(&self) -> Option<CacheResult> {
        match self {
            Refusal::Store(StoreError::NotFound) => Some(CacheResult::Miss),
            Refusal::Store(_) => Some(CacheResult::Error),
            _ => None,
        }
    }

    /// Whether the door was too busy: the client may retry shortly (HTTP adds `Retry-After`,
    /// HTTP/3 resets the stream with `H3_REQUEST_REJECTED`).
    pub fn is_busy(&self) -> bool {
        matches!(self, Refusal::Busy | Refusal::OverBudget)
    }

    /// The one-line text a client of `door` gets: short, fixed per kind, no secret and no
    /// internal detail (that goes to the log).
    pub fn message(&self, door: DoorKind) -> String {
        let text = match self {
            Refusal::BadHash(e) => match door {
                DoorKind::Http => format!("bad hash parameter: {e}"),
                DoorKind::Http3 => format!("bad hash in path: {e}"),
                DoorKind::Peer => format!("invalid blob hash: {e}"),
            },
            Refusal::Protected if door == DoorKind::Peer => {
                "requested blob is protected; use the HTTP API with an edge token".into()
            }
            Refusal::Protected => PROTECTED_MESSAGE.into(),
            Refusal::Blocked => "blob not found".into(),
            Refusal::Busy => "server is at its request limit; retry shortly".into(),
            Refusal::OverBudget => "server is sending too much at once; retry shortly".into(),
            Refusal::Store(e) => e.client_message(),
        };
        one_line(&text)
    }
}

/// The HTTP status for a store error: what an operator and a client can act on.
pub fn status_for(err: &StoreError) -> StatusCode {
    match err {
        StoreError::NotFound => StatusCode::NOT_FOUND,
        StoreError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        StoreError::Corrupt { .. }
        | StoreError::Unavailable { .. }
        | StoreError::OriginStatus { .. } => StatusCode::BAD_GATEWAY,
        StoreError::Io { .. } | StoreError::Refused { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error text as one line (answers and `incoming_blob.error` must not carry line breaks).
pub fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The root store with the rules every door applies before and after asking it.
pub struct BlobService {
    store: Arc<dyn BlobStore>,
    policy: Arc<Policy>,
    budget: Arc<InflightBudget>,
    metrics: Arc<Metrics>,
    door_metrics: Arc<ServerMetrics>,
    /// Set at start when `access_log:` is configured.
    access_log: OnceLock<Arc<AccessLog>>,
    /// Bytes served per stream ([`crate::store::served`]).
    streams: Arc<crate::store::served::ServedStreams>,
}

impl BlobService {
    pub fn new(
        store: Arc<dyn BlobStore>,
        policy: Arc<Policy>,
        budget: Arc<InflightBudget>,
        metrics: Arc<Metrics>,
    ) -> Arc<BlobService> {
        Arc::new(BlobService {
            store,
            policy,
            budget,
            door_metrics: metrics.family(),
            streams: metrics.family(),
            metrics,
            access_log: OnceLock::new(),
        })
    }

    /// A door's live settings and request slots, with its metric series present (at zero)
    /// from the start, so `rate()` panels work before the first refusal.
    pub fn open_door(&self, kind: DoorKind, settings: DoorSettings) -> Arc<Door> {
        self.door_metrics
            .requests_rejected_total
            .with_label_values(&[kind.name()]);
        let queue_gauge = match kind {
            DoorKind::Http => Some(self.door_metrics.http_blob_request_queue_size.clone()),
            DoorKind::Http3 => Some(self.door_metrics.http3_blob_request_queue_size.clone()),
            DoorKind::Peer => None,
        };
        Door::new(kind, settings, queue_gauge)
    }

    /// The connection caps of `door` as it was started, its refusals counted as rejected
    /// requests of that door.
    pub fn admission(&self, door: &Door) -> Admission {
        let name = door.kind().name();
        let refused = self
            .door_metrics
            .requests_rejected_total
            .with_label_values(&[name]);
        Admission::new(&door.settings().listen, refused, name)
    }

    /// The root store (playback plans and readahead read through it).
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    pub fn budget(&self) -> &Arc<InflightBudget> {
        &self.budget
    }

    /// The process's metrics (`reflector_error_total`, the registry).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The download doors' metrics.
    pub fn door_metrics(&self) -> &ServerMetrics {
        &self.door_metrics
    }

    /// The blob `ask` names, through every step of the module docs.
    pub async fn fetch(&self, door: &Door, ask: Ask<'_>) -> Result<Served, Refusal> {
        let hash = self.admit(door, ask.hash, ask.token)?;
        self.fetch_admitted(door, hash, ask.client).await
    }

    /// Whether the store tree has the blob `ask` names (a `HEAD`, `/has/`): the same checks
    /// and slot as [`fetch`](Self::fetch), no budget (no bytes are sent).
    pub async fn presence(&self, door: &Door, ask: Ask<'_>) -> Result<bool, Refusal> {
        let hash = self.admit(door, ask.hash, ask.token)?;
        let _slot = self.slot(door).await?;
        self.store
            .has(&hash)
            .await
            .map_err(|e| self.refuse(door, Some(&hash), Refusal::Store(e)))
    }

    /// Steps 1 and 2: the parsed hash, if `presented` may have it on `door`.
    pub fn admit(
        &self,
        door: &Door,
        text: &str,
        presented: Option<&str>,
    ) -> Result<BlobHash, Refusal> {
        let hash = self.parse(door, text)?;
        self.check(door, &hash, presented).map(|()| hash)
    }

    /// [`admit`](Self::admit) with the blocklist checked too, for an answer that confirms a
    /// blob without fetching it (a 304): a blocked blob is refused, not confirmed.
    pub fn admit_listed(
        &self,
        door: &Door,
        text: &str,
        presented: Option<&str>,
    ) -> Result<BlobHash, Refusal> {
        let hash = self.parse(door, text)?;
        self.check_listed(door, &hash, presented).map(|()| hash)
    }

    /// Step 1: the hash a client wrote, or its refusal.
    fn parse(&self, door: &Door, text: &str) -> Result<BlobHash, Refusal> {
        BlobHash::parse(text).map_err(|e| self.refuse(door, None, Refusal::BadHash(e)))
    }

    /// Step 2 alone, for a hash the door already holds (playback's content blobs).
    pub fn check(
        &self,
        door: &Door,
        hash: &BlobHash,
        presented: Option<&str>,
    ) -> Result<(), Refusal> {
        if !self.policy.is_protected(hash) {
            return Ok(()); // the common case: no token to look at
        }
        let settings = door.settings();
        let configured = settings.edge_token.as_ref().map(|t| t.expose_secret());
        match self.policy.allows(hash, configured, presented) {
            true => Ok(()),
            false => Err(self.refuse(door, Some(hash), Refusal::Protected)),
        }
    }

    /// Step 2 with the blocklist too, for routes that name a blob the store tree is not asked
    /// for directly (playback checks a stream's blobs before it starts).
    pub fn check_listed(
        &self,
        door: &Door,
        hash: &BlobHash,
        presented: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.policy.is_blocked(hash) {
            return Err(self.refuse(door, Some(hash), Refusal::Blocked));
        }
        self.check(door, hash, presented)
    }

    /// Steps 3 to 5 for a hash that passed [`admit`](Self::admit).
    pub async fn fetch_admitted(
        &self,
        door: &Door,
        hash: BlobHash,
        client: IpAddr,
    ) -> Result<Served, Refusal> {
        let (blob, reservation) = self.fetch_reserved(door, hash, client).await?;
        Ok(Served {
            charge: reservation.charge(&blob.data),
            hash,
            blob,
        })
    }

    /// Steps 3 to 5, leaving the reservation unspent: for a caller that sends a buffer made
    /// from the blob rather than the blob (playback sends plaintext), and charges that.
    pub async fn fetch_reserved(
        &self,
        door: &Door,
        hash: BlobHash,
        client: IpAddr,
    ) -> Result<(Blob, Reservation), Refusal> {
        let _slot = self.slot(door).await?;
        let Some(reservation) = self.budget.reserve(client).await else {
            return Err(self.refuse(door, Some(&hash), Refusal::OverBudget));
        };
        match self.store.get(&hash).await {
            Ok(blob) => {
                self.streams.served(&hash, blob.data.len());
                Ok((blob, reservation))
            }
            Err(e) => Err(self.refuse(door, Some(&hash), Refusal::Store(e))),
        }
    }

    /// Step 3: one of `door`'s request slots, or [`Refusal::Busy`].
    pub async fn slot(&self, door: &Door) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        match door.slot().await {
            Some(slot) => Ok(slot),
            None => Err(self.refuse(door, None, Refusal::Busy)),
        }
    }

    /// Counts a blob `door` delivered (`len` bytes), under reflector.go's names.
    pub fn delivered(&self, door: DoorKind, len: usize) {
        let m = &self.door_metrics;
        m.blob_download_total.inc();
        let (downloads, out_bytes) = match door {
            DoorKind::Http => (&m.http_blob_download_total, &m.http_out_bytes),
            DoorKind::Http3 => (&m.http3_blob_download_total, &m.udp_out_bytes),
            DoorKind::Peer => (&m.peer_download_total, &m.tcp_out_bytes),
        };
        downloads.inc();
        out_bytes.inc_by(len as u64);
    }

    /// Has every door write its requests to `log` (once, at start).
    pub fn log_to(&self, log: Arc<AccessLog>) {
        let _ = self.access_log.set(log);
    }

    /// Writes a request to the access log, when there is one (`entry` is not even built
    /// otherwise).
    pub fn log(&self, entry: impl FnOnce() -> Entry) {
        if let Some(log) = self.access_log.get() {
            log.record(entry());
        }
    }

    /// Records how long a request on `door` took, by the status it was answered with.
    pub fn observe(&self, door: DoorKind, status: StatusCode, start: Instant) {
        self.door_metrics
            .request_duration_seconds
            .with_label_values(&[door.name(), status.as_str()])
            .observe(start.elapsed().as_secs_f64());
    }

    /// Counts `refusal` (and logs a store failure with its detail, which names no secret: see
    /// [`StoreError`]) once, where it is made.
    fn refuse(&self, door: &Door, hash: Option<&BlobHash>, refusal: Refusal) -> Refusal {
        let door = door.kind();
        if refusal.is_busy() {
            self.door_metrics
                .requests_rejected_total
                .with_label_values(&[door.name()])
                .inc();
        } else if let Some(error_type) = refusal.error_type() {
            self.metrics.error(DIRECTION_DOWNLOAD, error_type);
        }
        if let (Refusal::Store(e), Some(hash)) = (&refusal, hash) {
            if !matches!(e, StoreError::NotFound) {
                let status = refusal.status().as_u16();
                tracing::warn!(door = door.name(), %hash, error = %e, status, "blob request failed");
            }
        }
        refusal
    }
}
