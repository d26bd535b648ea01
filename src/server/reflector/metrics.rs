//! The upload door's metrics (`servers.reflector`).
//!
//! A [`Family`]: the door takes it when it is built (see
//! [`crate::metrics`]); errors go to the shared `reflector_error_total{direction="upload"}`.

use prometheus::{IntCounter, IntGauge, Registry};

use crate::metrics::{Family, Registrar};

/// Every upload-door metric, under reflector.go's names where it has one.
pub struct ReflectorMetrics {
    /// reflector.go: every blob an upload stored (sd blobs included).
    pub blob_upload_total: IntCounter,
    /// reflector.go: sd blobs an upload stored.
    pub sdblob_upload_total: IntCounter,
    /// reflector.go's `reflector_reflector_in_bytes`: blob bytes received from uploaders.
    pub reflector_in_bytes: IntCounter,
    /// Streams whose last blob an upload stored (`prism_reflector_streams_total`).
    pub reflector_streams_total: IntCounter,
    /// Open upload connections (`prism_reflector_connections`).
    pub reflector_connections: IntGauge,
}

impl Family for ReflectorMetrics {
    fn register(registry: &Registry) -> ReflectorMetrics {
        let reflector = Registrar::new(registry, "reflector");
        let prism = Registrar::new(registry, "prism");
        ReflectorMetrics {
            blob_upload_total: reflector.counter(
                "blob_upload_total",
                "Total number of blobs uploaded to reflector",
            ),
            sdblob_upload_total: reflector.counter(
                "sdblob_upload_total",
                "Total number of SD blobs (and therefore streams) uploaded to reflector",
            ),
            reflector_in_bytes: reflector.counter(
                "reflector_in_bytes",
                "Total number of incoming bytes (from users)",
            ),
            reflector_streams_total: prism.counter(
                "reflector_streams_total",
                "Streams whose every blob an upload has stored",
            ),
            reflector_connections: prism.gauge(
                "reflector_connections",
                "Open upload connections on servers.reflector",
            ),
        }
    }
}
