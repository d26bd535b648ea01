//! `prism_tracker_*` metrics, present from the first scrape (registered by `app`).

use prometheus::{IntCounterVec, IntGauge, Registry};

use crate::metrics::{Family, Registrar};

pub struct TrackerMetrics {
    /// Announces to trackers, by result ([`super::client::RESULTS`]).
    pub announces: IntCounterVec,
    /// Streams on the tracker announce list.
    pub streams: IntGauge,
}

impl Family for TrackerMetrics {
    fn register(registry: &Registry) -> TrackerMetrics {
        let prism = Registrar::new(registry, "prism");
        let announces = prism.counter_vec(
            "tracker_announces_total",
            "Announces of streams to UDP trackers, by result",
            &["result"],
        );
        for result in super::client::RESULTS {
            announces.with_label_values(&[result]);
        }
        TrackerMetrics {
            announces,
            streams: prism.gauge(
                "tracker_announced_streams",
                "Streams announced to the UDP trackers",
            ),
        }
    }
}
