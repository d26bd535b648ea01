//! The stores' metrics: cache tiers, origins, local stores and upstream pools.
//!
//! A [`Family`]: stores take `ctx.metrics.family::<StoreMetrics>()`
//! when they are built (see [`crate::metrics`]) and resolve their labelled series then.

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Registry};

use crate::metrics::{Family, Registrar};

/// Every store metric, under reflector.go's names where it has one.
pub struct StoreMetrics {
    // --- reflector.go names ---
    /// `{cache_type, component}`: cache_type = the cache tier's name, component = the
    /// caching store's name.
    pub cache_hit_total: IntCounterVec,
    pub cache_miss_total: IntCounterVec,
    /// A gauge in reflector.go despite the name: origin gets in flight.
    pub cache_origin_requests_total: IntGaugeVec,
    /// A gauge in reflector.go despite the name: requests waiting on an in-flight origin get.
    pub cache_waiting_requests_total: IntGaugeVec,
    pub cache_evict_total: IntCounterVec,
    /// `{cache_type, component, source}`: the last get's speed from the cache or the origin.
    pub speed_mbps: GaugeVec,
    /// `{origin}`: blobs an `ittt` served, labelled by the name of the store (`this` or
    /// `that`) that had it.
    pub ittt_hits_total: IntCounterVec,
    /// Blob bytes received by remote origin stores, counted on arrival (see
    /// [`crate::store::origin`]), one counter per protocol as in reflector.go: `upstream`
    /// stores, `http` stores, `peer` stores (TCP), `http3` stores (UDP) and `s3` stores.
    pub upstream_in_bytes: IntCounter,
    pub http_in_bytes: IntCounter,
    pub tcp_in_bytes: IntCounter,
    pub udp_in_bytes: IntCounter,
    pub s3_in_bytes: IntCounter,
    /// Blob bytes `s3` stores put into their bucket.
    pub s3_out_bytes: IntCounter,

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
    /// Disk stores (`{component}`): 1 once the index rebuilt at start covers every file
    /// (capacity is enforced from then on), and the share (0 to 1) of shard directories read.
    pub disk_index_complete: IntGaugeVec,
    pub disk_index_progress_ratio: GaugeVec,

    /// The upstream pools' per-endpoint series ([`crate::store::pool`]).
    pub upstream_endpoints: EndpointMetrics,
}

impl Family for StoreMetrics {
    fn register(registry: &Registry) -> StoreMetrics {
        let reflector = Registrar::new(registry, "reflector");
        let cache = reflector.subsystem("cache");
        let cache_labels = &["cache_type", "component"];
        let prism = Registrar::new(registry, "prism");
        let local = |name: &str, help: &str| prism.gauge_vec(name, help, &["component"]);
        StoreMetrics {
            cache_hit_total: cache.counter_vec(
                "hit_total",
                "Total number of blobs retrieved from the cache storage",
                cache_labels,
            ),
            cache_miss_total: cache.counter_vec(
                "miss_total",
                "Total number of blobs retrieved from origin rather than cache storage",
                cache_labels,
            ),
            cache_origin_requests_total: cache.gauge_vec(
                "origin_requests_total",
                "How many Get requests are in flight from the cache to the origin",
                cache_labels,
            ),
            cache_waiting_requests_total: cache.gauge_vec(
                "waiting_requests_total",
                "How many cache requests are waiting for an in-flight origin request",
                cache_labels,
            ),
            cache_evict_total: cache.counter_vec(
                "evict_total",
                "Count of blobs evicted from cache",
                cache_labels,
            ),
            speed_mbps: reflector.float_gauge_vec(
                "speed_mbps",
                "Speed of blob retrieval from cache or from origin",
                &["cache_type", "component", "source"],
            ),
            ittt_hits_total: reflector.subsystem("ittt").counter_vec(
                "hits_total",
                "Total number of blobs retrieved from the this/that storage",
                &["origin"],
            ),
            upstream_in_bytes: reflector.counter(
                "upstream_in_bytes",
                "Total number of incoming bytes (from Upstream)",
            ),
            http_in_bytes: reflector.counter(
                "http_in_bytes",
                "Total number of bytes downloaded through HTTP",
            ),
            tcp_in_bytes: reflector
                .counter("tcp_in_bytes", "Total number of bytes downloaded through TCP"),
            udp_in_bytes: reflector
                .counter("udp_in_bytes", "Total number of bytes downloaded through UDP"),
            s3_in_bytes: reflector
                .counter("s3_in_bytes", "Total number of incoming bytes (from S3-CF)"),
            s3_out_bytes: reflector
                .counter("s3_out_bytes", "Total number of outgoing bytes (to S3)"),
            origin_fetch_total: prism.counter_vec(
                "origin_fetch_total",
                "Origin gets made by caching stores, by result",
                &["component", "result"],
            ),
            store_size_bytes: local("store_size_bytes", "Bytes held by a local store"),
            store_blobs: local("store_blobs", "Blobs held by a local store"),
            store_capacity_bytes: local(
                "store_capacity_bytes",
                "Capacity of a bounded local store (a disk store's drops to what its filesystem holds when it fills)",
            ),
            filesystem_size_bytes: local(
                "filesystem_size_bytes",
                "Size of the filesystem holding a disk store",
            ),
            filesystem_free_bytes: local(
                "filesystem_free_bytes",
                "Free space (for unprivileged users) on the filesystem holding a disk store",
            ),
            store_write_errors_total: prism.counter_vec(
                "store_write_errors_total",
                "Cache writes that failed (disk full, I/O error) and were absorbed",
                &["component"],
            ),
            disk_index_complete: local(
                "disk_index_complete",
                "1 once a disk store's index covers every file on disk (eviction runs from then on)",
            ),
            disk_index_progress_ratio: prism.float_gauge_vec(
                "disk_index_progress_ratio",
                "Share of a disk store's shard directories its start-up index rebuild has read",
                &["component"],
            ),
            upstream_endpoints: EndpointMetrics::register(prism),
        }
    }
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
    fn register(prism: Registrar<'_>) -> EndpointMetrics {
        let labels = &["store", "endpoint"];
        EndpointMetrics {
            requests_total: prism.counter_vec(
                "upstream_endpoint_requests_total",
                "Requests a remote store sent to one endpoint of its pool",
                labels,
            ),
            errors_total: prism.counter_vec(
                "upstream_endpoint_errors_total",
                "Requests to one pool endpoint that failed (connection error, timeout, 5xx, bad blob)",
                labels,
            ),
            ejections_total: prism.counter_vec(
                "upstream_endpoint_ejections_total",
                "Times a pool endpoint was taken out of rotation after consecutive failures",
                labels,
            ),
            state: prism.gauge_vec(
                "upstream_endpoint_state",
                "State of a pool endpoint: 0 healthy, 1 ejected, 2 probing",
                labels,
            ),
        }
    }
}
