//! `servers:`: the front doors (HTTP, HTTP/3, LBRY peer) and their limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::{duration, ByteSize};
use crate::secret::SecretString;

/// `servers:`: which front doors run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServersConfig {
    #[serde(default)]
    pub http: Option<HttpServerConfig>,
    #[serde(default)]
    pub http3: Option<Http3ServerConfig>,
    #[serde(default)]
    pub peer: Option<PeerServerConfig>,
    /// Stream uploads from LBRY publishers (reflector protocol, TCP 5566).
    #[serde(default)]
    pub reflector: Option<super::reflector::ReflectorServerConfig>,
}

/// `servers.peer`: the LBRY peer protocol (what the LBRY SDK and reflector.go peers speak).
///
/// The limits exist because the protocol has no framing: a request is "done" only when it parses
/// as JSON, so without a size cap and deadlines a client could hold memory and a slot forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerServerConfig {
    #[serde(default = "defaults::peer_port")]
    pub port: u16,
    /// Bind address; omitted = all interfaces.
    #[serde(default)]
    pub address: Option<String>,
    /// Largest pending request in bytes; a bigger one closes the connection. The SDK's standard
    /// request is about 300 bytes (the SDK server itself allows 1,200).
    #[serde(default = "defaults::peer_max_request_size")]
    pub max_request_size: ByteSize,
    /// How long a connection may sit between requests (and how long one request may take to
    /// arrive) before it is closed.
    #[serde(default = "defaults::peer_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// How long writing one response (header + blob) may take before the connection is closed.
    #[serde(
        default = "defaults::peer_write_timeout",
        deserialize_with = "duration"
    )]
    pub write_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's accept backlog.
    #[serde(default = "defaults::peer_max_connections")]
    pub max_connections: usize,
    /// Connections one client address may have open at once; more are closed at once.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Most hashes answered per `requested_blobs` (availability) request; the rest are not
    /// listed as available. Each may cost an origin request.
    #[serde(default = "defaults::peer_max_requested_blobs")]
    pub max_requested_blobs: usize,
    /// The payment address reported for `lbrycrd_address: true` (payments are not used).
    #[serde(default)]
    pub lbrycrd_address: String,
}

/// `servers.http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    #[serde(default = "defaults::http_port")]
    pub port: u16,
    /// Bind address; omitted = all interfaces.
    #[serde(default)]
    pub address: Option<String>,
    /// In-flight store calls at once; more requests wait in a bounded queue.
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// How many requests may wait for a slot before new ones get 503. Default: same as
    /// `max_concurrent_requests`.
    #[serde(default)]
    pub max_queued_requests: Option<usize>,
    /// How long a queued request waits for a slot before it gets 503.
    #[serde(default = "defaults::queue_timeout", deserialize_with = "duration")]
    pub queue_timeout: Duration,
    /// Token that unlocks protected blobs (`?edge_token=`). A secret: printed as `***`.
    #[serde(default)]
    pub edge_token: Option<SecretString>,
    /// Open connections at once; further ones wait in the kernel's accept backlog.
    #[serde(default = "defaults::http_max_connections")]
    pub max_connections: usize,
    /// Connections one client address may have open at once; more are closed at once.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// A client must send a request's headers within this time; this also bounds how long a
    /// keep-alive connection may sit idle between requests.
    #[serde(
        default = "defaults::http_header_read_timeout",
        deserialize_with = "duration"
    )]
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(default = "defaults::shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
}

/// `servers.http3`: reflector.go's HTTP/3 blob API over QUIC (UDP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http3ServerConfig {
    #[serde(default = "defaults::http3_port")]
    pub port: u16,
    /// Bind address; omitted = all interfaces.
    #[serde(default)]
    pub address: Option<String>,
    /// In-flight store calls at once; further requests wait for a slot.
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Token that unlocks protected blobs (`?edge_token=`). A secret: printed as `***`.
    #[serde(default)]
    pub edge_token: Option<SecretString>,
    /// PEM certificate chain. Omitted (with `key_file`) = a self-signed certificate generated at
    /// start, as reflector.go does.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A connection with no traffic for this long is closed.
    #[serde(
        default = "defaults::http3_idle_timeout",
        deserialize_with = "duration"
    )]
    pub idle_timeout: Duration,
    /// A client must complete the QUIC/TLS handshake within this time.
    #[serde(
        default = "defaults::http3_handshake_timeout",
        deserialize_with = "duration"
    )]
    pub handshake_timeout: Duration,
    /// Most QUIC connections served at once; more are refused.
    #[serde(default = "defaults::http3_max_connections")]
    pub max_connections: usize,
    /// QUIC connections one client address may have open at once; more are refused.
    #[serde(default = "defaults::http3_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Most concurrent request streams one connection may open.
    #[serde(default = "defaults::http3_max_streams")]
    pub max_streams_per_connection: u32,
    /// Unacknowledged response bytes one connection may have in flight (the QUIC send window).
    /// The HTTP/3 stack copies response bytes into its send buffer, so this is what one
    /// connection (a stalled one included) can make the server hold: memory is bounded by
    /// `max_connections` x this. A chained edge behind a long link needs bandwidth x RTT.
    #[serde(default = "defaults::http3_send_window")]
    pub send_window: ByteSize,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(default = "defaults::shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
}

mod defaults {
    use crate::config::units::ByteSize;
    use std::time::Duration;

    pub fn http_port() -> u16 {
        5569
    }
    pub fn http3_port() -> u16 {
        5568
    }
    pub fn http3_idle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn http3_handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn http3_max_connections() -> usize {
        4096
    }
    pub fn http3_max_streams() -> u32 {
        128
    }
    pub fn http3_send_window() -> ByteSize {
        ByteSize(256 * 1024)
    }
    pub fn http_max_connections() -> usize {
        8192
    }
    /// Enough for a large NAT (a carrier-grade NAT puts many users behind one address).
    pub fn max_connections_per_ip() -> usize {
        256
    }
    /// A QUIC connection multiplexes many requests, so fewer are needed per address.
    pub fn http3_max_connections_per_ip() -> usize {
        64
    }
    pub fn http_header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn peer_max_requested_blobs() -> usize {
        64
    }
    pub fn max_concurrent_requests() -> usize {
        200
    }
    pub fn queue_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn shutdown_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn peer_port() -> u16 {
        5567
    }
    pub fn peer_max_request_size() -> ByteSize {
        ByteSize(4 * 1024)
    }
    pub fn peer_idle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn peer_write_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn peer_max_connections() -> usize {
        1024
    }
}
