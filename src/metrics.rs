//! One Prometheus registry for the whole process, passed in (no globals).
//!
//! Names follow reflector.go's `internal/metrics` exactly (namespace `reflector`, same labels,
//! same types, including its two "_total" gauges), so dashboards built for reflector.go work
//! unchanged. What reflector.go lacks is added under the `prism_` prefix.
//!
//! # Who defines what
//!
//! This module holds only what every part of the process shares: the [`Registry`],
//! `reflector_error_total` ([`Metrics::error`], with the [`DOWNLOAD_ERROR_TYPES`] and
//! [`UPLOAD_ERROR_TYPES`] series present at zero from the start), `prism_start_time_seconds`,
//! [`Metrics::render`] and [`GaugeGuard`]. Every other metric is defined by the module that
//! counts it, as a [`Family`]: a struct of handles with a `register` function, written with a
//! [`Registrar`] (the namespace and the register-or-panic step written once):
//!
//! - [`crate::store::metrics`]: the cache tiers, origins, local stores and pools
//!   (`reflector_cache_*`, `reflector_speed_mbps`, `*_in_bytes`, `prism_store_*`, ...);
//! - [`crate::server::metrics`]: the download doors (`reflector_*_download_total`,
//!   `*_out_bytes`, `prism_request_duration_seconds`, `prism_inflight_bytes`, ...);
//! - [`crate::server::reflector::metrics`]: the upload door (`reflector_*upload_total`,
//!   `prism_reflector_*`).
//!
//! [`Metrics::family`] registers a family the first time it is asked for and hands out the
//! same `Arc` after that (a table keyed by the family's type), so a family is registered once
//! per registry however many stores or doors use it, and this module needs to know nothing of
//! the families: it imports neither `store` nor `server`. Owners take their `Arc` once, at
//! construction; the table is not on any request's path. [`crate::app`] asks for every family
//! at start, so `/metrics` shows them all from the first scrape, whichever doors and stores are
//! configured.
//!
//! The DHT, prefetch and playback metrics ([`crate::dht::metrics`],
//! [`crate::prefetch::metrics`], [`crate::server::playback::metrics`]) are registered by their
//! owners when those are built instead, because only a configured DHT node, prefetcher or
//! playback door needs them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// reflector.go names that break Prometheus' naming rules: byte counters without the `_total`
/// suffix, and two gauges with it. Dashboards query them by these exact names, while
/// `promtool check metrics` rejects a counter without `_total` and a gauge with it. They are
/// exposed as `# TYPE untyped`: the names stay, PromQL (`rate()`, plain reads) does not look at
/// the declared type, and the lint passes. (The prometheus crate's text encoder cannot encode
/// untyped families, so they are typed inside and retyped when rendered.)
const RETYPED_AS_UNTYPED: [(&str, &str); 12] = [
    ("reflector_http_out_bytes", "counter"),
    ("reflector_http_in_bytes", "counter"),
    ("reflector_tcp_in_bytes", "counter"),
    ("reflector_udp_in_bytes", "counter"),
    ("reflector_s3_out_bytes", "counter"),
    ("reflector_reflector_in_bytes", "counter"),
    ("reflector_tcp_out_bytes", "counter"),
    ("reflector_udp_out_bytes", "counter"),
    ("reflector_upstream_in_bytes", "counter"),
    ("reflector_s3_in_bytes", "counter"),
    ("reflector_cache_origin_requests_total", "gauge"),
    ("reflector_cache_waiting_requests_total", "gauge"),
];

/// `reflector_error_total{direction}` values.
pub const DIRECTION_DOWNLOAD: &str = "download";

/// `reflector_error_total{direction}` for the upload door (`servers.reflector`).
pub const DIRECTION_UPLOAD: &str = "upload";

/// `reflector_error_total{error_type}` values the upload door produces (reflector.go's names
/// where it has one), present at zero from the start.
pub const UPLOAD_ERROR_TYPES: [&str; 16] = [
    "not_allowed",
    "too_many_connections",
    "protocol_version",
    "invalid_request",
    "json_syntax",
    "request_too_large",
    "invalid_blob_hash",
    "blob_too_big",
    "zero_byte_blob",
    "hash_mismatch",
    "invalid_sd_blob",
    "blocked_blob",
    "unexpected_eof",
    "io_timeout",
    "read_conn_reset",
    "write_conn_timed_out",
];

/// `reflector_error_total{error_type}` values the download path produces; their series exist
/// (at zero) from the start so dashboards and alerts see zero rather than "no data".
pub const DOWNLOAD_ERROR_TYPES: [&str; 10] = [
    "invalid_blob_hash",
    "protected_blob",
    "blocked_blob",
    "hash_mismatch",
    "blob_too_big",
    "zero_byte_blob",
    "deadline_exceeded",
    "origin_unavailable",
    "io_error",
    "refused",
];

/// The process's registry, the metrics everyone shares, and the families registered so far.
pub struct Metrics {
    pub registry: Registry,
    /// `reflector_error_total{direction, error_type}`: count with [`Metrics::error`].
    pub error_total: IntCounterVec,
    /// Process start time, for uptime panels (`prism_start_time_seconds`).
    pub start_time_seconds: Gauge,
    /// The [`Family`]s registered in `registry`, by type (each an `Arc<F>`).
    families: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

/// A group of metrics one module defines and counts (see the module docs).
pub trait Family: Send + Sync + 'static {
    /// Registers the group's metrics in `registry` (panicking if a name is taken: that is a
    /// programming error, and [`Metrics::family`] calls this once per registry).
    fn register(registry: &Registry) -> Self;
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reflector = Registrar::new(&registry, "reflector");
        let error_total = reflector.counter_vec(
            "error_total",
            "Total number of errors",
            &["direction", "error_type"],
        );
        for error_type in DOWNLOAD_ERROR_TYPES {
            error_total.with_label_values(&[DIRECTION_DOWNLOAD, error_type]);
        }
        for error_type in UPLOAD_ERROR_TYPES {
            error_total.with_label_values(&[DIRECTION_UPLOAD, error_type]);
        }
        let start_time_seconds = Registrar::new(&registry, "prism")
            .float_gauge("start_time_seconds", "Unix time the process started");
        start_time_seconds.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
        Metrics {
            registry,
            error_total,
            start_time_seconds,
            families: Mutex::new(HashMap::new()),
        }
    }

    /// The family `F`, registered in this registry on the first call; every call returns the
    /// same handles.
    pub fn family<F: Family>(&self) -> Arc<F> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let entry = families
            .entry(TypeId::of::<F>())
            .or_insert_with(|| Arc::new(F::register(&self.registry)));
        Arc::clone(entry)
            .downcast::<F>()
            .expect("the table holds an F under F's TypeId")
    }

    /// Counts an error in `reflector_error_total`.
    pub fn error(&self, direction: &str, error_type: &str) {
        self.error_total
            .with_label_values(&[direction, error_type])
            .inc();
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> Vec<u8> {
        let families = self.registry.gather();
        let mut text = String::with_capacity(16 * 1024);
        if TextEncoder::new()
            .encode_utf8(&families, &mut text)
            .is_err()
        {
            text.clear();
        }
        for (name, declared) in RETYPED_AS_UNTYPED {
            text = text.replacen(
                &format!("# TYPE {name} {declared}\n"),
                &format!("# TYPE {name} untyped\n"),
                1,
            );
        }
        text.into_bytes()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Makes and registers metrics under one namespace (and subsystem), so a [`Family`] states
/// only names, help texts and labels. A name already taken in the registry panics.
#[derive(Clone, Copy)]
pub struct Registrar<'a> {
    registry: &'a Registry,
    namespace: &'static str,
    subsystem: &'static str,
}

impl<'a> Registrar<'a> {
    pub fn new(registry: &'a Registry, namespace: &'static str) -> Registrar<'a> {
        Registrar {
            registry,
            namespace,
            subsystem: "",
        }
    }

    /// The same registrar with names prefixed by `subsystem` too (`reflector_cache_hit_total`).
    pub fn subsystem(self, subsystem: &'static str) -> Registrar<'a> {
        Registrar { subsystem, ..self }
    }

    fn opts(&self, name: &str, help: &str) -> Opts {
        Opts::new(name, help)
            .namespace(self.namespace)
            .subsystem(self.subsystem)
    }

    /// Registers `collector` and hands it back.
    pub fn register<C: Collector + Clone + 'static>(&self, collector: C) -> C {
        self.registry
            .register(Box::new(collector.clone()))
            .expect("metric names are unique");
        collector
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(self.opts(name, help)).expect("valid metric"))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(self.opts(name, help), labels).expect("valid metric"))
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(self.opts(name, help)).expect("valid metric"))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(self.opts(name, help), labels).expect("valid metric"))
    }

    /// A gauge holding a float (a time, a ratio, a speed).
    pub fn float_gauge(&self, name: &str, help: &str) -> Gauge {
        self.register(Gauge::with_opts(self.opts(name, help)).expect("valid metric"))
    }

    pub fn float_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.register(GaugeVec::new(self.opts(name, help), labels).expect("valid metric"))
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help)
            .namespace(self.namespace)
            .subsystem(self.subsystem)
            .buckets(buckets);
        self.register(HistogramVec::new(opts, labels).expect("valid metric"))
    }
}

/// Increments a gauge for as long as it lives (so cancelled futures do not leak counts).
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(gauge: &IntGauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe {
        hits: IntCounter,
    }

    impl Family for Probe {
        fn register(registry: &Registry) -> Probe {
            Probe {
                hits: Registrar::new(registry, "prism")
                    .subsystem("probe")
                    .counter("hits_total", "Probe hits"),
            }
        }
    }

    #[test]
    fn a_family_is_registered_once_and_shared() {
        let metrics = Metrics::new();
        let first = metrics.family::<Probe>();
        let second = metrics.family::<Probe>(); // a second register would panic on the name
        assert!(Arc::ptr_eq(&first, &second));
        first.hits.inc();
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("# TYPE prism_probe_hits_total counter\n"),
            "{text}"
        );
        assert!(text.contains("prism_probe_hits_total 1\n"), "{text}");
        // Another registry has its own.
        assert_eq!(Metrics::new().family::<Probe>().hits.get(), 0);
    }
}
