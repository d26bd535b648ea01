//! Front doors: each parses and limits requests, asks the root store, and writes answers.
//! They share a [`Shared`] context (the root store, metrics, the live policy).

use std::sync::Arc;

use crate::blob::BlobHash;
use crate::metrics::{Metrics, DIRECTION_DOWNLOAD};
use crate::policy::Policy;
use crate::store::BlobStore;

pub mod accept;
pub mod admin;
pub mod http;
pub mod http3;
pub mod peer;

/// What every front door needs.
#[derive(Clone)]
pub struct Shared {
    /// The root of the store tree (wrapped in the blocklist layer when one is configured).
    pub store: Arc<dyn BlobStore>,
    pub metrics: Arc<Metrics>,
    /// Protected and blocked hashes, swapped atomically on reload.
    pub policy: Arc<Policy>,
    /// Stream playback routes (`/stream/...`), when enabled.
    pub playback: Option<Arc<crate::playback::Playback>>,
}

/// The answer body for a protected blob requested without the right token.
pub const PROTECTED_MESSAGE: &str = "requested blob is protected; a valid edge_token is required";

impl Shared {
    /// Whether `hash` is protected and `presented` does not unlock it with this front door's
    /// `configured` token. A refusal is counted as a `protected_blob` error.
    pub fn refuses_protected(
        &self,
        hash: &BlobHash,
        configured: Option<&str>,
        presented: Option<&str>,
    ) -> bool {
        let refused = !self.policy.allows(hash, configured, presented);
        if refused {
            self.metrics.error(DIRECTION_DOWNLOAD, "protected_blob");
        }
        refused
    }
}
