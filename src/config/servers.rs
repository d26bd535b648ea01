//! `servers:`: the front doors (HTTP, HTTP/3, LBRY peer, reflector upload) and their limits.
//!
//! Each section is read as reflector.go spells it (flat keys, `deny_unknown_fields`, so a typo
//! is an error), then resolved once into the shapes the doors use: [`Listen`] (where and how
//! many connections, how long to drain: every door has one) and [`DoorSettings`] (what a
//! reload may change on a serving door: its token and request limits). No door reads a default
//! or an `Option` of these keys itself.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use ipnet::IpNet;

use super::clients::{networks, Proxies};
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
    /// Peers (CIDR blocks or addresses: load balancers, CDN nodes) whose word on the client
    /// address is believed: their PROXY header (with `proxy_protocol`). Anyone else's are ignored.
    #[serde(default, deserialize_with = "networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Connections from `trusted_proxies` start with a PROXY protocol v1/v2 header naming the
    /// client (haproxy's `send-proxy`, AWS NLB, ...); the client is then who limits and the
    /// access log see.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Most hashes answered per `requested_blobs` (availability) request; the rest are not
    /// listed as available. Each may cost an origin request.
    #[serde(default = "defaults::peer_max_requested_blobs")]
    pub max_requested_blobs: usize,
    /// The payment address reported for `lbrycrd_address: true` (payments are not used).
    #[serde(default)]
    pub lbrycrd_address: String,
    /// Blob requests served at once; more wait in a bounded queue (as on every door).
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// How many requests may wait for a slot before new ones are refused. Default: same as
    /// `max_concurrent_requests`.
    #[serde(default)]
    pub max_queued_requests: Option<usize>,
    /// How long a queued request waits for a slot before it is refused.
    #[serde(default = "defaults::queue_timeout", deserialize_with = "duration")]
    pub queue_timeout: Duration,
    /// How long answers being written may take to finish on shutdown.
    #[serde(default = "defaults::shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// Accepted because reflector.go's loader reads `edge_token` for every server; peers cannot
    /// present a token, so it unlocks nothing here (start-up says so once).
    #[serde(default)]
    pub edge_token: Option<SecretString>,
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
    /// Peers (CIDR blocks or addresses: load balancers, CDN nodes) whose word on the client
    /// address is believed: their `Forwarded` / `X-Forwarded-For` headers (HTTP doors), and their PROXY
    /// header with `proxy_protocol`. Anyone else's are ignored.
    #[serde(default, deserialize_with = "networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Connections from `trusted_proxies` start with a PROXY protocol v1/v2 header naming the
    /// client (haproxy's `send-proxy`, AWS NLB, ...); the client is then who limits and the
    /// access log see.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// A client must send a request's headers within this time; this also bounds how long a
    /// keep-alive connection may sit idle between requests.
    #[serde(
        default = "defaults::http_header_read_timeout",
        deserialize_with = "duration"
    )]
    pub header_read_timeout: Duration,
    /// `Access-Control-Allow-Origin` on every answer (player-server sends `*`), so a web
    /// player on another origin can read them.
    #[serde(default = "defaults::cors_origin", deserialize_with = "header_value")]
    pub cors_origin: String,
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
    /// In-flight store calls at once; more requests wait in a bounded queue.
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// How many requests may wait for a slot before new ones are refused (the stream is reset
    /// with `H3_REQUEST_REJECTED`). Default: same as `max_concurrent_requests`.
    #[serde(default)]
    pub max_queued_requests: Option<usize>,
    /// How long a queued request waits for a slot before it is refused.
    #[serde(default = "defaults::queue_timeout", deserialize_with = "duration")]
    pub queue_timeout: Duration,
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
    /// Peers whose `Forwarded` / `X-Forwarded-For` headers are believed (QUIC has no PROXY
    /// protocol); anyone else's are ignored.
    #[serde(default, deserialize_with = "networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Most concurrent request streams one connection may open.
    #[serde(default = "defaults::http3_max_streams")]
    pub max_streams_per_connection: u32,
    /// Unacknowledged response bytes one connection may have in flight (the QUIC send window).
    /// The HTTP/3 stack copies response bytes into its send buffer, so this is what one
    /// connection (a stalled one included) can make the server hold: memory is bounded by
    /// `max_connections` x this. A chained edge behind a long link needs bandwidth x RTT.
    #[serde(default = "defaults::http3_send_window")]
    pub send_window: ByteSize,
    /// `Access-Control-Allow-Origin` on every answer, as on `servers.http`.
    #[serde(default = "defaults::cors_origin", deserialize_with = "header_value")]
    pub cors_origin: String,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(default = "defaults::shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
}

/// A string that can be an HTTP header value (visible ASCII), refused at load otherwise.
fn header_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = String::deserialize(d)?;
    match !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        true => Ok(value),
        false => Err(serde::de::Error::custom(format!(
            "{value:?} is not a valid header value (visible ASCII, e.g. \"*\" or \"https://odysee.com\")"
        ))),
    }
}

/// Where a door listens and how many connections it holds: the part of every `servers.*`
/// section that is fixed at start (a reload reports a change to it as needing a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Bind address (a host name or an IP); all interfaces when the section names none.
    pub address: String,
    pub port: u16,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one client address may hold at once (below `max_connections`, so one
    /// address idling on all of its connections leaves room for everyone else).
    pub max_connections_per_ip: usize,
    /// How long in-flight work may take to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// Who may say who the client is (`trusted_proxies`, `proxy_protocol`).
    pub proxies: Proxies,
}

impl Listen {
    /// The address every door binds when its section names none.
    pub const ALL_INTERFACES: &'static str = "0.0.0.0";

    fn new(
        address: &Option<String>,
        port: u16,
        max_connections: usize,
        max_connections_per_ip: usize,
        shutdown_timeout: Duration,
        proxies: Proxies,
    ) -> Listen {
        Listen {
            address: address
                .clone()
                .unwrap_or_else(|| Listen::ALL_INTERFACES.to_owned()),
            port,
            max_connections: max_connections.max(1),
            max_connections_per_ip: max_connections_per_ip.max(1),
            shutdown_timeout,
            proxies,
        }
    }

    /// `address:port`, for binding and for messages.
    pub fn bind_text(&self) -> String {
        match self.address.contains(':') && !self.address.starts_with('[') {
            true => format!("[{}]:{}", self.address, self.port),
            false => format!("{}:{}", self.address, self.port),
        }
    }
}

/// How many blob requests a door serves at once, and how a request waits for its turn: the
/// same rule on every serving door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    /// Store calls in flight at once (at least one).
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; past that a request is refused at once.
    pub max_queued: usize,
    /// How long a queued request waits before it is refused.
    pub queue_timeout: Duration,
}

impl RequestLimits {
    fn new(
        max_concurrent: usize,
        max_queued: Option<usize>,
        queue_timeout: Duration,
    ) -> RequestLimits {
        RequestLimits {
            max_concurrent: max_concurrent.max(1),
            max_queued: max_queued.unwrap_or(max_concurrent),
            queue_timeout,
        }
    }
}

/// A serving door's resolved settings. A reload swaps the whole value in; the door applies
/// `edge_token` and `requests` at once and `listen.shutdown_timeout` at its next drain (the
/// rest of `listen` needs a restart).
#[derive(Debug, Clone)]
pub struct DoorSettings {
    pub listen: Listen,
    /// The token that unlocks protected blobs on this door (`None`: nothing unlocks them).
    pub edge_token: Option<SecretString>,
    pub requests: RequestLimits,
}

/// `settings()` for a serving door's section, which has the keys every serving door has
/// (`address`, `port`, connection caps, `shutdown_timeout`, request limits); `$token` says
/// which token unlocks protected blobs on it.
macro_rules! door_settings {
    ($section:ty, $token:expr, $proxy_protocol:expr) => {
        impl $section {
            /// The section resolved once into what the door uses.
            pub fn settings(&self) -> DoorSettings {
                let token: fn(&$section) -> Option<SecretString> = $token;
                let proxy_protocol: fn(&$section) -> bool = $proxy_protocol;
                DoorSettings {
                    listen: Listen::new(
                        &self.address,
                        self.port,
                        self.max_connections,
                        self.max_connections_per_ip,
                        self.shutdown_timeout,
                        Proxies {
                            trusted: self.trusted_proxies.clone(),
                            proxy_protocol: proxy_protocol(self),
                        },
                    ),
                    edge_token: token(self),
                    requests: RequestLimits::new(
                        self.max_concurrent_requests,
                        self.max_queued_requests,
                        self.queue_timeout,
                    ),
                }
            }
        }
    };
}

door_settings!(HttpServerConfig, |c| c.edge_token.clone(), |c| c
    .proxy_protocol);
// QUIC carries no PROXY header: HTTP/3 learns the client from forwarding headers only.
door_settings!(Http3ServerConfig, |c| c.edge_token.clone(), |_| false);
// Peers cannot present a token, so none is configured: protected blobs are never served there.
door_settings!(PeerServerConfig, |_| None, |c| c.proxy_protocol);

impl super::reflector::ReflectorServerConfig {
    pub fn listen(&self) -> Listen {
        Listen::new(
            &self.address,
            self.port,
            self.max_connections,
            self.max_connections_per_ip,
            self.shutdown_timeout,
            self.proxies(),
        )
    }
}

/// Every default of the `servers:` sections (the reflector door's too), in one place.
pub(super) mod defaults {
    use crate::config::units::ByteSize;
    use std::time::Duration;

    pub fn cors_origin() -> String {
        "*".into()
    }
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
    pub fn reflector_port() -> u16 {
        5566
    }
    pub fn reflector_max_connections() -> usize {
        64
    }
    /// Uploads are few and long; an address needs only a handful.
    pub fn reflector_max_connections_per_ip() -> usize {
        4
    }
    /// A descriptor lists ~170 bytes per content blob: 1 MiB describes a ~12 GB stream.
    pub fn reflector_max_sd_blob_size() -> ByteSize {
        ByteSize(1024 * 1024)
    }
    pub fn reflector_idle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn reflector_blob_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn reflector_write_timeout() -> Duration {
        Duration::from_secs(10)
    }
}
