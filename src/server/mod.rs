//! Front doors: each parses and limits requests, asks the root store, and writes answers.
//! They share a [`Shared`] context (the root store, metrics, the live policy) and the few answer
//! helpers below, so the three doors map a store error to the same status and text. What goes on
//! the wire (paths, framing, message shapes) is [`crate::protocol`]'s; how a door answers is here.

use std::sync::Arc;

use ::http::StatusCode;

use crate::blob::BlobHash;
use crate::metrics::{Metrics, DIRECTION_DOWNLOAD};
use crate::policy::Policy;
use crate::secret::{ExposeSecret, SecretString};
use crate::store::{BlobStore, StoreError};

pub(crate) use self::answer::{one_line, BlobQuery};
pub use self::answer::{status_for, PROTECTED_MESSAGE};

pub mod accept;
pub mod admin;
pub mod answer;
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
