//! `limits:`: process-wide bounds that every front door shares.
//!
//! Per-door bounds (connections, request slots) live with each door in [`super::servers`]; this
//! section holds the ones no single door can enforce alone, because a hostile client can spread
//! its load over the HTTP, HTTP/3 and peer doors at once.

use std::time::Duration;

use serde::Deserialize;

use super::units::{duration, ByteSize};

/// `limits:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Blob response bytes held for clients at once, across all doors. A buffer shared by many
    /// responses (a memory-tier blob) counts once. At the budget, new blob responses wait
    /// `inflight_wait`, then get 503 (HTTP), an error (peer) or a reset stream (HTTP/3).
    #[serde(default = "defaults::max_inflight_bytes")]
    pub max_inflight_bytes: ByteSize,
    /// The share of `max_inflight_bytes` one client address may hold, so stalled readers from
    /// one address cannot starve everyone else.
    #[serde(default = "defaults::max_inflight_bytes_per_ip")]
    pub max_inflight_bytes_per_ip: ByteSize,
    /// How long a blob response waits for room in the budget before it is refused.
    #[serde(default = "defaults::inflight_wait", deserialize_with = "duration")]
    pub inflight_wait: Duration,
    /// A response that makes no write progress for this long is dropped (its connection or
    /// stream is closed), so a client that stops reading cannot hold bytes for long.
    #[serde(
        default = "defaults::write_stall_timeout",
        deserialize_with = "duration"
    )]
    pub write_stall_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_inflight_bytes: defaults::max_inflight_bytes(),
            max_inflight_bytes_per_ip: defaults::max_inflight_bytes_per_ip(),
            inflight_wait: defaults::inflight_wait(),
            write_stall_timeout: defaults::write_stall_timeout(),
        }
    }
}

mod defaults {
    use super::ByteSize;
    use std::time::Duration;

    pub fn max_inflight_bytes() -> ByteSize {
        ByteSize(512 << 20)
    }
    pub fn max_inflight_bytes_per_ip() -> ByteSize {
        ByteSize(64 << 20)
    }
    pub fn inflight_wait() -> Duration {
        Duration::from_secs(2)
    }
    pub fn write_stall_timeout() -> Duration {
        Duration::from_secs(30)
    }
}
