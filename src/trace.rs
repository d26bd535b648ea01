//! The `Via` trace: which stores served a blob and how long each took.
//!
//! reflector.go sends this as JSON in the HTTP `Via` header (`{"stacks":[{"timing":NANOS,
//! "origin_name":NAME,"host_name":HOST},...]}`, innermost store first), and an `upstream` store
//! reads the next tier's trace and extends it, so one response shows every tier it crossed.
//! We keep exactly that shape so mixed chains of reflector.go and prism-lite caches read each
//! other's traces.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One hop: a store that took part in answering, and how long its part took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStack {
    /// Nanoseconds, as Go's `time.Duration` marshals.
    pub timing: u64,
    pub origin_name: Arc<str>,
    pub host_name: Arc<str>,
}

/// The list of hops, innermost (the store that had the bytes) first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobTrace {
    #[serde(default)]
    pub stacks: Vec<BlobStack>,
}

/// Longest `Via` header we parse from an upstream; anything longer is ignored, not trusted.
pub const MAX_TRACE_HEADER: usize = 8 * 1024;

impl BlobTrace {
    /// Appends a hop for `store_name` on this host.
    pub fn stack(mut self, timing: Duration, store_name: &str) -> BlobTrace {
        self.stacks.push(BlobStack {
            timing: u64::try_from(timing.as_nanos()).unwrap_or(u64::MAX),
            origin_name: Arc::from(store_name),
            host_name: host_name(),
        });
        self
    }

    /// The JSON text for the `Via` header.
    pub fn to_header(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"stacks\":[]}"))
    }

    /// Parses an upstream's `Via` header; a missing, oversized or malformed header is an empty
    /// trace (the blob itself is verified separately, the trace is only diagnostics).
    pub fn from_header(value: Option<&str>) -> BlobTrace {
        match value {
            Some(text) if text.len() <= MAX_TRACE_HEADER => {
                serde_json::from_str(text).unwrap_or_default()
            }
            _ => BlobTrace::default(),
        }
    }
}

/// This machine's host name, looked up once.
pub fn host_name() -> Arc<str> {
    static HOST: OnceLock<Arc<str>> = OnceLock::new();
    HOST.get_or_init(|| {
        let name = gethostname::gethostname();
        Arc::from(name.to_string_lossy().as_ref())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_in_reflector_shape() {
        let t = BlobTrace::default()
            .stack(Duration::from_nanos(1500), "disk")
            .stack(Duration::from_micros(3), "caching");
        let text = t.to_header();
        assert!(text
            .starts_with("{\"stacks\":[{\"timing\":1500,\"origin_name\":\"disk\",\"host_name\":"));
        assert_eq!(BlobTrace::from_header(Some(&text)), t);
    }

    #[test]
    fn bad_headers_are_empty_traces() {
        assert_eq!(BlobTrace::from_header(None), BlobTrace::default());
        assert_eq!(BlobTrace::from_header(Some("{nope")), BlobTrace::default());
        let huge = format!(
            "{{\"stacks\":[],\"x\":\"{}\"}}",
            "a".repeat(MAX_TRACE_HEADER)
        );
        assert_eq!(BlobTrace::from_header(Some(&huge)), BlobTrace::default());
    }
}
