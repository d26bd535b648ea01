//! `prism_dht_*` metrics, registered in the process registry.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::wire::Method;

#[derive(Clone)]
pub struct DhtMetrics {
    /// Requests received, by method.
    pub rpc_in: IntCounterVec,
    /// Requests sent, by method and result (`ok`, `timeout`, `error`).
    pub rpc_out: IntCounterVec,
    /// Announcements of our blobs, by result (`ok`: at least one node stored it; `failed`).
    pub announcements: IntCounterVec,
    /// Datagrams dropped unread, by reason (`malformed`, `oversized`, `rate_limited`,
    /// `unexpected_response`, `bad_source`).
    pub dropped: IntCounterVec,
    /// Requests refused with an error reply, by reason (`bad_token`, `bad_arguments`,
    /// `store_full`, `address_full`, `bad_address`).
    pub refused: IntCounterVec,
    pub routing_contacts: IntGauge,
    pub stored_announcements: IntGauge,
    pub announced_blobs: IntGauge,
}

impl DhtMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<DhtMetrics> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<_> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let m = DhtMetrics {
            rpc_in: counter(
                "prism_dht_rpc_in_total",
                "DHT requests received, by method",
                &["method"],
            )?,
            rpc_out: counter(
                "prism_dht_rpc_out_total",
                "DHT requests sent, by method and result",
                &["method", "result"],
            )?,
            announcements: counter(
                "prism_dht_announcements_total",
                "Announcements of our blobs to the DHT, by result",
                &["result"],
            )?,
            dropped: counter(
                "prism_dht_dropped_datagrams_total",
                "DHT datagrams dropped without an answer, by reason",
                &["reason"],
            )?,
            refused: counter(
                "prism_dht_refused_requests_total",
                "DHT requests answered with an error, by reason",
                &["reason"],
            )?,
            routing_contacts: gauge(
                "prism_dht_routing_table_contacts",
                "Contacts in the DHT routing table",
            )?,
            stored_announcements: gauge(
                "prism_dht_stored_announcements",
                "Other nodes' announcements held",
            )?,
            announced_blobs: gauge("prism_dht_announced_blobs", "Blobs this node announces")?,
        };
        // Series exist at zero from the start, so alerts see 0 rather than "no data".
        for method in Method::ALL {
            m.rpc_in.with_label_values(&[method.label()]);
            for result in ["ok", "timeout", "error"] {
                m.rpc_out.with_label_values(&[method.label(), result]);
            }
        }
        for r in ["ok", "failed"] {
            m.announcements.with_label_values(&[r]);
        }
        for r in [
            "malformed",
            "oversized",
            "rate_limited",
            "unexpected_response",
            "bad_source",
        ] {
            m.dropped.with_label_values(&[r]);
        }
        for r in [
            "bad_token",
            "bad_arguments",
            "store_full",
            "address_full",
            "bad_address",
        ] {
            m.refused.with_label_values(&[r]);
        }
        Ok(m)
    }

    pub fn dropped(&self, reason: &str) {
        self.dropped.with_label_values(&[reason]).inc();
    }
}
