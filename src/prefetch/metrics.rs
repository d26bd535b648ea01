//! `prism_prefetch_*` metrics, registered into the process's one registry.
//!
//! Registered when a prefetcher is built rather than as an always-present
//! [`Family`](crate::metrics::Family), because only a configured prefetcher needs them;
//! registering on construction keeps the scrape free of always-zero series.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Handles for the prefetch metrics. `channel` is the channel as configured (bounded by the
/// config, so label cardinality is too).
#[derive(Clone)]
pub struct PrefetchMetrics {
    /// `{channel, result}`: complete | failed | incomplete.
    pub streams: IntCounterVec,
    /// `{channel, result}`: fetched | skipped (already cached) | failed.
    pub blobs: IntCounterVec,
    /// `{channel, result}`: fetched | skipped (already cached).
    pub bytes: IntCounterVec,
    /// `{result}`: ok | api_unreachable | cancelled.
    pub runs: IntCounterVec,
    pub budget_exhausted: IntCounter,
    pub run_duration: Histogram,
    pub last_success: Gauge,
}

impl PrefetchMetrics {
    /// Registers the metrics; fails if they are already registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<PrefetchMetrics> {
        let vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(
                Opts::new(name, help)
                    .namespace("prism")
                    .subsystem("prefetch"),
                labels,
            )?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let streams = vec(
            "streams_total",
            "Streams handled by prefetch runs, by channel and result",
            &["channel", "result"],
        )?;
        let blobs = vec(
            "blobs_total",
            "Blobs handled by prefetch runs, by channel and result (skipped = already cached)",
            &["channel", "result"],
        )?;
        let bytes = vec(
            "bytes_total",
            "Bytes fetched or found already cached by prefetch runs",
            &["channel", "result"],
        )?;
        let runs = vec("runs_total", "Prefetch runs by result", &["result"])?;
        let budget_exhausted = IntCounter::with_opts(
            Opts::new(
                "budget_exhausted_total",
                "Runs stopped early by run_byte_budget",
            )
            .namespace("prism")
            .subsystem("prefetch"),
        )?;
        registry.register(Box::new(budget_exhausted.clone()))?;
        let run_duration = Histogram::with_opts(
            HistogramOpts::new("run_duration_seconds", "Duration of prefetch runs")
                .namespace("prism")
                .subsystem("prefetch")
                .buckets(vec![1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0]),
        )?;
        registry.register(Box::new(run_duration.clone()))?;
        let last_success = Gauge::with_opts(
            Opts::new(
                "last_success_timestamp_seconds",
                "Unix time the last successful prefetch run finished",
            )
            .namespace("prism")
            .subsystem("prefetch"),
        )?;
        registry.register(Box::new(last_success.clone()))?;
        Ok(PrefetchMetrics {
            streams,
            blobs,
            bytes,
            runs,
            budget_exhausted,
            run_duration,
            last_success,
        })
    }

    /// Creates a channel's series at zero, so dashboards show the channel (and `rate()` works)
    /// before its first blob.
    pub fn touch_channel(&self, channel: &str) {
        for result in ["complete", "failed", "incomplete"] {
            self.streams.with_label_values(&[channel, result]);
        }
        for result in ["fetched", "skipped", "failed"] {
            self.blobs.with_label_values(&[channel, result]);
        }
        for result in ["fetched", "skipped"] {
            self.bytes.with_label_values(&[channel, result]);
        }
    }
}
