//! Front doors: each parses and limits requests, asks the root store, and writes answers.
//! They share a [`Shared`] context (the root store, metrics, the live policy).

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::store::BlobStore;

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
}
