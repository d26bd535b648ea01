//! Front doors: each parses and limits requests, asks the root store, and writes answers.
//! They share a [`Shared`] context (the root store, metrics, the live policy) and the few answer
//! helpers below, so the three doors map a store error to the same status and text. What goes on
//! the wire (paths, framing, message shapes) is [`crate::protocol`]'s; how a door answers is here.

use std::sync::Arc;

use ::http::StatusCode;

use crate::blob::BlobHash;
use crate::metrics::{Metrics, DIRECTION_DOWNLOAD};
use crate::policy::Policy;
use crate::protocol::http::{parse_bool, EDGE_TOKEN_PARAM, HASH_PARAM, TRACE_PARAM};
use crate::secret::{ExposeSecret, SecretString};
use crate::store::{BlobStore, StoreError};

pub mod accept;
pub mod admin;
pub mod budget;
pub mod http;
pub mod http3;
pub mod peer;
pub mod per_ip;
pub mod playback;
pub mod reflector;
pub mod slots;
pub mod watched_io;

/// What every front door needs.
#[derive(Clone)]
pub struct Shared {
    /// The root of the store tree (wrapped in the blocklist layer when one is configured).
    pub store: Arc<dyn BlobStore>,
    pub metrics: Arc<Metrics>,
    /// Protected and blocked hashes, swapped atomically on reload.
    pub policy: Arc<Policy>,
    /// Stream playback routes (`/stream/...`), when enabled.
    pub playback: Option<Arc<crate::server::playback::Playback>>,
    /// Blob response bytes held for clients, shared by every door (`limits:`).
    pub budget: Arc<budget::InflightBudget>,
}

/// The answer body for a protected blob requested without the right token.
pub const PROTECTED_MESSAGE: &str = "requested blob is protected; a valid edge_token is required";

impl Shared {
    /// Whether `hash` is protected and `presented` does not unlock it with this front door's
    /// `configured` token. A refusal is counted as a `protected_blob` error.
    pub fn refuses_protected(
        &self,
        hash: &BlobHash,
        configured: Option<&SecretString>,
        presented: Option<&str>,
    ) -> bool {
        let configured = configured.map(|t| t.expose_secret());
        let refused = !self.policy.allows(hash, configured, presented);
        if refused {
            self.metrics.error(DIRECTION_DOWNLOAD, "protected_blob");
        }
        refused
    }
}

impl Shared {
    /// Answers a failed store call on `door`: logs the detail once (it names no secret, see
    /// [`StoreError`]), counts it, and returns the status and the short text a client gets
    /// ([`StoreError::client_message`]). A plain "not found" is neither logged nor counted.
    pub fn store_failure(
        &self,
        door: &'static str,
        hash: &BlobHash,
        err: &StoreError,
    ) -> (StatusCode, String) {
        let status = status_for(err);
        if status != StatusCode::NOT_FOUND {
            tracing::warn!(door, %hash, error = %err, status = status.as_u16(), "blob request failed");
            self.metrics.error(DIRECTION_DOWNLOAD, err.kind());
        }
        (status, one_line(&err.client_message()))
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

/// The query parameters of `/blob` (and of the HTTP/3 routes, which take the hash in the path).
#[derive(Debug, Default)]
pub(crate) struct BlobQuery {
    pub(crate) hash: Option<String>,
    pub(crate) edge_token: Option<String>,
    /// `trace=true` (Go's `strconv.ParseBool` spellings): HTTP/3 only sends `Via` when asked.
    pub(crate) trace: bool,
}

impl BlobQuery {
    pub(crate) fn parse(query: Option<&str>) -> BlobQuery {
        let mut q = BlobQuery::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                HASH_PARAM if q.hash.is_none() => q.hash = Some(v.into_owned()),
                EDGE_TOKEN_PARAM if q.edge_token.is_none() => q.edge_token = Some(v.into_owned()),
                TRACE_PARAM => q.trace = parse_bool(&v),
                _ => {}
            }
        }
        q
    }
}

/// An error text as one line (answers and `incoming_blob.error` must not carry line breaks).
pub(crate) fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
