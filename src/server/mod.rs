//! Front doors: each parses and limits requests, asks the root store, and writes answers.
//! They share a [`Shared`] context (the root store, metrics, the protected list).

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::protected::ProtectedList;
use crate::store::BlobStore;

pub mod admin;
pub mod http;
pub mod http3;

/// What every front door needs.
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<dyn BlobStore>,
    pub metrics: Arc<Metrics>,
    pub protected: Arc<ProtectedList>,
}
