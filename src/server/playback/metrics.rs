//! `prism_stream_*` metrics, registered into the process's one registry.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Handles for the playback metrics.
#[derive(Clone)]
pub struct PlaybackMetrics {
    /// GET responses that started sending a stream (200 or 206).
    pub started: IntCounter,
    /// Plaintext bytes handed to clients by the playback routes.
    pub bytes_served: IntCounter,
    /// GET responses answered with 206 (a satisfiable `Range`).
    pub range_requests: IntCounter,
    /// Blobs a response found already fetched by its readahead when it got to them.
    pub readahead_hits: IntCounter,
    /// Readahead fetches started.
    pub readahead_started: IntCounter,
    /// Readahead fetches skipped because `max_readahead` were already in flight.
    pub readahead_skipped: IntCounter,
    /// `{reason}`: responses cut mid-way (a content blob missing, corrupt, undecryptable, ...).
    pub cut: IntCounterVec,
    /// `{result}`: player-server route resolutions (`cached`, `resolved`, `not_found`,
    /// `api_error`).
    pub resolve: IntCounterVec,
}

/// Every `reason` of `prism_stream_cut_total`, created at zero so alerts see 0, not "no data".
pub const CUT_REASONS: [&str; 7] = [
    "blob_missing",
    "origin_error",
    "corrupt_blob",
    "decrypt_failed",
    "layout_mismatch",
    "busy",
    "internal",
];

impl PlaybackMetrics {
    /// Registers the metrics; fails if they are already registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<PlaybackMetrics> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::with_opts(
                Opts::new(name, help).namespace("prism").subsystem("stream"),
            )?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let vec = |name: &str, help: &str, label: &str| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(
                Opts::new(name, help).namespace("prism").subsystem("stream"),
                &[label],
            )?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let m = PlaybackMetrics {
            started: counter(
                "started_total",
                "Stream responses that started sending (200 or 206)",
            )?,
            bytes_served: counter(
                "bytes_served_total",
                "Plaintext bytes sent by /stream and the player-server routes",
            )?,
            range_requests: counter("range_requests_total", "Stream requests answered with 206")?,
            readahead_hits: counter(
                "readahead_hits_total",
                "Blobs a stream response found already fetched by its readahead",
            )?,
            readahead_started: counter(
                "readahead_started_total",
                "Readahead blob fetches started",
            )?,
            readahead_skipped: counter(
                "readahead_skipped_total",
                "Readahead blob fetches skipped because max_readahead were in flight",
            )?,
            cut: vec(
                "cut_total",
                "Stream responses cut mid-way, by reason",
                "reason",
            )?,
            resolve: vec(
                "resolve_total",
                "Claim resolutions for the player-server routes, by result",
                "result",
            )?,
        };
        for reason in CUT_REASONS {
            m.cut.with_label_values(&[reason]);
        }
        for result in ["cached", "resolved", "not_found", "api_error"] {
            m.resolve.with_label_values(&[result]);
        }
        Ok(m)
    }
}
