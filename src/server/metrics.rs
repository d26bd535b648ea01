//! The download doors' metrics (`servers.http`, `servers.http3`, `servers.peer` and the
//! playback routes on them).
//!
//! A [`Family`]: [`BlobService`](crate::server::BlobService) takes it when it is built and the
//! doors read it through [`BlobService::door_metrics`](crate::server::BlobService::door_metrics)
//! (see [`crate::metrics`]).

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metrics::{Family, Registrar};

/// Every download-door metric, under reflector.go's names where it has one.
pub struct ServerMetrics {
    // --- reflector.go names ---
    pub blob_download_total: IntCounter,
    pub http_blob_download_total: IntCounter,
    pub peer_download_total: IntCounter,
    pub http3_blob_download_total: IntCounter,
    pub http_out_bytes: IntCounter,
    pub tcp_out_bytes: IntCounter,
    pub udp_out_bytes: IntCounter,
    pub http_blob_request_queue_size: IntGauge,
    pub http3_blob_request_queue_size: IntGauge,

    // --- prism-lite additions ---
    /// Request latency by front door and status code.
    pub request_duration_seconds: HistogramVec,
    /// Requests turned away because the server was at `max_concurrent_requests` with a full queue.
    pub requests_rejected_total: IntCounterVec,
    /// Open connections on the peer-protocol front door (`servers.peer`).
    pub peer_connections: IntGauge,
    /// Blob response bytes held for clients right now, as the in-flight budget counts them.
    pub inflight_bytes: IntGauge,
    /// QUIC connections whose handshake completed on `servers.http3` (a chained edge should
    /// hold one: this shows whether it is reused).
    pub http3_connections_total: IntCounter,
}

/// `prism_request_duration_seconds`' buckets: from a memory hit to a slow origin.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Family for ServerMetrics {
    fn register(registry: &Registry) -> ServerMetrics {
        let reflector = Registrar::new(registry, "reflector");
        let prism = Registrar::new(registry, "prism");
        ServerMetrics {
            blob_download_total: reflector.counter(
                "blob_download_total",
                "Total number of blobs downloaded from reflector",
            ),
            http_blob_download_total: reflector.counter(
                "http_blob_download_total",
                "Total number of blobs downloaded from reflector through HTTP protocol",
            ),
            peer_download_total: reflector.counter(
                "peer_download_total",
                "Total number of blobs downloaded from reflector through tcp protocol",
            ),
            http3_blob_download_total: reflector.counter(
                "http3_blob_download_total",
                "Total number of blobs downloaded from reflector through QUIC protocol",
            ),
            http_out_bytes: reflector.counter(
                "http_out_bytes",
                "Total number of bytes streamed out through HTTP",
            ),
            tcp_out_bytes: reflector.counter(
                "tcp_out_bytes",
                "Total number of bytes streamed out through TCP",
            ),
            udp_out_bytes: reflector.counter(
                "udp_out_bytes",
                "Total number of bytes streamed out through UDP",
            ),
            http_blob_request_queue_size: reflector.gauge(
                "http_blob_request_queue_size",
                "Blob requests queue size of the HTTP protocol",
            ),
            http3_blob_request_queue_size: reflector.gauge(
                "http3_blob_request_queue_size",
                "Blob requests of https queue size",
            ),
            request_duration_seconds: prism.histogram_vec(
                "request_duration_seconds",
                "Time from request to last response byte handed to the socket, by server and status",
                LATENCY_BUCKETS.to_vec(),
                &["server", "status"],
            ),
            requests_rejected_total: prism.counter_vec(
                "requests_rejected_total",
                "Requests answered 503 because the server was saturated",
                &["server"],
            ),
            peer_connections: prism.gauge(
                "peer_connections",
                "Open connections on the LBRY peer protocol server",
            ),
            inflight_bytes: prism.gauge(
                "inflight_bytes",
                "Blob response bytes held for clients (limits.max_inflight_bytes)",
            ),
            http3_connections_total: prism.counter(
                "http3_connections_total",
                "QUIC connections accepted (handshake completed) on servers.http3",
            ),
        }
    }
}
