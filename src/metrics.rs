//! One Prometheus registry for the whole process, passed in (no globals).
//!
//! Names follow reflector.go's `internal/metrics` exactly (namespace `reflector`, same labels,
//! same types, including its two "_total" gauges), so dashboards built for reflector.go work
//! unchanged. What reflector.go lacks is added under the `prism_` prefix.

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
const RETYPED_AS_UNTYPED: [(&str, &str); 8] = [
    ("reflector_http_out_bytes", "counter"),
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

/// Every metric the process exports.
pub struct Metrics {
    pub registry: Registry,

    // --- reflector.go names ---
    pub blob_download_total: IntCounter,
    pub http_blob_download_total: IntCounter,
    pub peer_download_total: IntCounter,
    pub http3_blob_download_total: IntCounter,
    /// `{cache_type, component}`: cache_type = the cache tier's name, component = the
    /// caching store's name.
    pub cache_hit_total: IntCounterVec,
    pub cache_miss_total: IntCounterVec,
    /// A gauge in reflector.go despite the name: origin gets in flight.
    pub cache_origin_requests_total: IntGaugeVec,
    /// A gauge in reflector.go despite the name: requests waiting on an in-flight origin get.
    pub cache_waiting_requests_total: IntGaugeVec,
    pub cache_evict_total: IntCounterVec,
    pub speed_mbps: GaugeVec,
    pub error_total: IntCounterVec,
    pub http_out_bytes: IntCounter,
    pub tcp_out_bytes: IntCounter,
    pub udp_out_bytes: IntCounter,
    /// Blob bytes received by every remote origin store except `s3` (`http`, `upstream`, `peer`,
    /// `http3`), counted on arrival; see [`crate::store::origin`].
    pub upstream_in_bytes: IntCounter,
    /// Blob bytes received by `s3` stores.
    pub s3_in_bytes: IntCounter,
    pub http_blob_request_queue_size: IntGauge,

    // --- prism-lite additions ---
    /// Origin gets completed by caching stores, by result (`ok`, `not_found`, `error`, `corrupt`).
    pub origin_fetch_total: IntCounterVec,
    /// Bytes held by each local store (`{component}`).
    pub store_size_bytes: IntGaugeVec,
    /// Blobs held by each local store (`{component}`).
    pub store_blobs: IntGaugeVec,
    /// Configured capacity of each bounded local store (`{component}`).
    pub store_capacity_bytes: IntGaugeVec,
    /// Size and free space of the filesystem under each disk store (`{component}`), so an
    /// alert can tell "the disk is full" from "the cache is warm".
    pub filesystem_size_bytes: IntGaugeVec,
    pub filesystem_free_bytes: IntGaugeVec,
    /// Store write failures (disk full, I/O error) that were absorbed (`{component}`).
    pub store_write_errors_total: IntCounterVec,
    /// Request latency by front door and status code.
    pub request_duration_seconds: HistogramVec,
    /// Requests turned away because the server was at `max_concurrent_requests` with a full queue.
    pub requests_rejected_total: IntCounterVec,
    /// Process start time, for uptime panels.
    pub start_time_seconds: Gauge,
    /// Open connections on the peer-protocol front door (`servers.peer`).
    pub peer_connections: IntGauge,
    /// Blob response bytes held for clients right now, as the in-flight budget counts them.
    pub inflight_bytes: IntGauge,
    /// QUIC connections whose handshake completed on `servers.http3` (a chained edge should
    /// hold one: this shows whether it is reused).
    pub http3_connections_total: IntCounter,

    // --- the upload door (servers.reflector) ---
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
    /// Disk stores (`{component}`): 1 once the index rebuilt at start covers every file
    /// (capacity is enforced from then on), and the share (0 to 1) of shard directories read.
    pub disk_index_complete: IntGaugeVec,
    pub disk_index_progress_ratio: GaugeVec,

    // --- upstream pools (store::pool) ---
    pub upstream_endpoints: EndpointMetrics,
}

/// Per-endpoint series of the remote stores that talk to a pool of caches (`upstream`,
/// `http3`, `peer`), labelled `{store, endpoint}`. `endpoint` is the endpoint's printable name
/// (no user info, query or token: see `config::pool::url_name`).
pub struct EndpointMetrics {
    /// Requests sent to the endpoint (each failover attempt counts at the endpoint it went to).
    pub requests_total: IntCounterVec,
    /// Requests that failed in a way that counts against the endpoint (connection error,
    /// timeout, 5xx, bad blob).
    pub errors_total: IntCounterVec,
    /// Times the endpoint was ejected (taken out of rotation for a cool-down).
    pub ejections_total: IntCounterVec,
    /// 0 healthy, 1 ejected, 2 probing (one request is testing whether it is back).
    pub state: IntGaugeVec,
}

impl EndpointMetrics {
    fn register(registry: &Registry) -> EndpointMetrics {
        let labels = &["store", "endpoint"];
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help).namespace("prism"), labels)
                .expect("valid");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let state = IntGaugeVec::new(
            Opts::new(
                "upstream_endpoint_state",
                "State of a pool endpoint: 0 healthy, 1 ejected, 2 probing",
            )
            .namespace("prism"),
            labels,
        )
        .expect("valid");
        registry.register(Box::new(state.clone())).expect("unique");
        EndpointMetrics {
            requests_total: counter(
                "upstream_endpoint_requests_total",
                "Requests a remote store sent to one endpoint of its pool",
            ),
            errors_total: counter(
                "upstream_endpoint_errors_total",
                "Requests to one pool endpoint that failed (connection error, timeout, 5xx, bad blob)",
            ),
            ejections_total: counter(
                "upstream_endpoint_ejections_total",
                "Times a pool endpoint was taken out of rotation after consecutive failures",
            ),
            state,
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let ns = "reflector";
        let counter = |name: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(name, help).namespace(ns)).expect("valid");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };

        let counter_vec = |name: &str, sub: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help).namespace(ns).subsystem(sub), labels)
                .expect("valid");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let gauge_vec = |name: &str, sub: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help).namespace(ns).subsystem(sub), labels)
                .expect("valid");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let cache_labels = &["cache_type", "component"];

        let speed_mbps = GaugeVec::new(
            Opts::new(
                "speed_mbps",
                "Speed of blob retrieval from cache or from origin",
            )
            .namespace(ns),
            &["cache_type", "component", "source"],
        )
        .expect("valid");
        registry
            .register(Box::new(speed_mbps.clone()))
            .expect("unique");
        let queue = IntGauge::with_opts(
            Opts::new(
                "http_blob_request_queue_size",
                "Blob requests queue size of the HTTP protocol",
            )
            .namespace(ns),
        )
        .expect("valid");
        registry.register(Box::new(queue.clone())).expect("unique");

        let prism = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help).namespace("prism"), labels)
                .expect("valid");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let prism_gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help).namespace("prism"), &["component"])
                .expect("valid");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request to last response byte handed to the socket, by server and status",
            )
            .namespace("prism")
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["server", "status"],
        )
        .expect("valid");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique");
        let start = Gauge::with_opts(
            Opts::new("start_time_seconds", "Unix time the process started").namespace("prism"),
        )
        .expect("valid");
        registry.register(Box::new(start.clone())).expect("unique");
        start.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );

        let peer_connections = IntGauge::with_opts(
            Opts::new(
                "peer_connections",
                "Open connections on the LBRY peer protocol server",
            )
            .namespace("prism"),
        )
        .expect("valid");
        registry
            .register(Box::new(peer_connections.clone()))
            .expect("unique");
        let inflight_bytes = IntGauge::with_opts(
            Opts::new(
                "inflight_bytes",
                "Blob response bytes held for clients (limits.max_inflight_bytes)",
            )
            .namespace("prism"),
        )
        .expect("valid");
        registry
            .register(Box::new(inflight_bytes.clone()))
            .expect("unique");
        let prism_counter = |name: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(name, help).namespace("prism")).expect("valid");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let reflector_connections = IntGauge::with_opts(
            Opts::new(
                "reflector_connections",
                "Open upload connections on servers.reflector",
            )
            .namespace("prism"),
        )
        .expect("valid");
        registry
            .register(Box::new(reflector_connections.clone()))
            .expect("unique");
        let disk_index_progress_ratio = GaugeVec::new(
            Opts::new(
                "disk_index_progress_ratio",
                "Share of a disk store's shard directories its start-up index rebuild has read",
            )
            .namespace("prism"),
            &["component"],
        )
        .expect("valid");
        registry
            .register(Box::new(disk_index_progress_ratio.clone()))
            .expect("unique");

        let metrics = Metrics {
            disk_index_complete: prism_gauge(
                "disk_index_complete",
                "1 once a disk store's index covers every file on disk (eviction runs from then on)",
            ),
            disk_index_progress_ratio,
            blob_upload_total: counter(
                "blob_upload_total",
                "Total number of blobs uploaded to reflector",
            ),
            sdblob_upload_total: counter(
                "sdblob_upload_total",
                "Total number of SD blobs (and therefore streams) uploaded to reflector",
            ),
            reflector_in_bytes: counter(
                "reflector_in_bytes",
                "Total number of incoming bytes (from users)",
            ),
            reflector_streams_total: prism_counter(
                "reflector_streams_total",
                "Streams whose every blob an upload has stored",
            ),
            reflector_connections,
            peer_connections,
            inflight_bytes,
            http3_connections_total: prism_counter(
                "http3_connections_total",
                "QUIC connections accepted (handshake completed) on servers.http3",
            ),
            blob_download_total: counter(
                "blob_download_total",
                "Total number of blobs downloaded from reflector",
            ),
            http_blob_download_total: counter(
                "http_blob_download_total",
                "Total number of blobs downloaded from reflector through HTTP protocol",
            ),
            peer_download_total: counter(
                "peer_download_total",
                "Total number of blobs downloaded from reflector through tcp protocol",
            ),
            http3_blob_download_total: counter(
                "http3_blob_download_total",
                "Total number of blobs downloaded from reflector through QUIC protocol",
            ),
            cache_hit_total: counter_vec(
                "hit_total",
                "cache",
                "Total number of blobs retrieved from the cache storage",
                cache_labels,
            ),
            cache_miss_total: counter_vec(
                "miss_total",
                "cache",
                "Total number of blobs retrieved from origin rather than cache storage",
                cache_labels,
            ),
            cache_origin_requests_total: gauge_vec(
                "origin_requests_total",
                "cache",
                "How many Get requests are in flight from the cache to the origin",
                cache_labels,
            ),
            cache_waiting_requests_total: gauge_vec(
                "waiting_requests_total",
                "cache",
                "How many cache requests are waiting for an in-flight origin request",
                cache_labels,
            ),
            cache_evict_total: counter_vec(
                "evict_total",
                "cache",
                "Count of blobs evicted from cache",
                cache_labels,
            ),
            speed_mbps,
            error_total: {
                let c = IntCounterVec::new(
                    Opts::new("error_total", "Total number of errors").namespace(ns),
                    &["direction", "error_type"],
                )
                .expect("valid");
                registry.register(Box::new(c.clone())).expect("unique");
                c
            },
            http_out_bytes: counter(
                "http_out_bytes",
                "Total number of bytes streamed out through HTTP",
            ),
            tcp_out_bytes: counter(
                "tcp_out_bytes",
                "Total number of bytes streamed out through TCP",
            ),
            udp_out_bytes: counter(
                "udp_out_bytes",
                "Total number of bytes streamed out through UDP",
            ),
            upstream_in_bytes: counter(
                "upstream_in_bytes",
                "Total number of incoming bytes (from Upstream)",
            ),
            s3_in_bytes: counter("s3_in_bytes", "Total number of incoming bytes (from S3-CF)"),
            http_blob_request_queue_size: queue,
            origin_fetch_total: prism(
                "origin_fetch_total",
                "Origin gets made by caching stores, by result",
                &["component", "result"],
            ),
            store_size_bytes: prism_gauge("store_size_bytes", "Bytes held by a local store"),
            store_blobs: prism_gauge("store_blobs", "Blobs held by a local store"),
            store_capacity_bytes: prism_gauge(
                "store_capacity_bytes",
                "Capacity of a bounded local store (a disk store's drops to what its filesystem holds when it fills)",
            ),
            filesystem_size_bytes: prism_gauge(
                "filesystem_size_bytes",
                "Size of the filesystem holding a disk store",
            ),
            filesystem_free_bytes: prism_gauge(
                "filesystem_free_bytes",
                "Free space (for unprivileged users) on the filesystem holding a disk store",
            ),
            store_write_errors_total: prism(
                "store_write_errors_total",
                "Cache writes that failed (disk full, I/O error) and were absorbed",
                &["component"],
            ),
            request_duration_seconds: latency,
            requests_rejected_total: prism(
                "requests_rejected_total",
                "Requests answered 503 because the server was saturated",
                &["server"],
            ),
            start_time_seconds: start,
            upstream_endpoints: EndpointMetrics::register(&registry),
            registry,
        };
        for error_type in DOWNLOAD_ERROR_TYPES {
            metrics
                .error_total
                .with_label_values(&[DIRECTION_DOWNLOAD, error_type]);
        }
        for error_type in UPLOAD_ERROR_TYPES {
            metrics
                .error_total
                .with_label_values(&[DIRECTION_UPLOAD, error_type]);
        }
        metrics
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
