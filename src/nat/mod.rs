//! Port mapping on a home router, so a cache behind NAT can be reached by LBRY clients: the
//! peer door's TCP port and the DHT's UDP port are mapped through UPnP IGD ([`upnp`]) or, where
//! that finds nothing, PCP/NAT-PMP ([`pmp`]); the router's external address is learned for
//! announcing; leases are renewed at half their length and removed at shutdown.
//!
//! Mapping is tried once at start, bounded by `nat.timeout` per method, before the DHT binds
//! (so the DHT can announce the external address). A router that is absent or refuses costs a
//! log line and a metric, never the start.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{IntCounterVec, IntGaugeVec, Registry};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::NatConfig;
use crate::metrics::{Family, Registrar};

pub mod pmp;
pub mod upnp;

/// Renewals never come faster than this, whatever lease a router grants.
const MIN_RENEW_INTERVAL: Duration = Duration::from_secs(1);

/// The transport of a mapped port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A local port to forward, and what it is for (in logs and the description on the router).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRequest {
    pub transport: Transport,
    pub port: u16,
    pub purpose: &'static str,
}

/// One mapping the router granted.
#[derive(Debug, Clone, Copy)]
pub struct Granted {
    pub external_port: u16,
    /// The lease the router granted (UPnP routers grant what was asked).
    pub lease: Duration,
}

/// A router reached through one mapping protocol.
#[async_trait]
pub trait Gateway: Send + Sync {
    /// `upnp` or `natpmp`.
    fn method(&self) -> &'static str;
    /// The router's address, for the status.
    fn address(&self) -> IpAddr;
    /// Maps (or renews) `request` for `lease`.
    async fn map(&mut self, request: &PortRequest, lease: Duration) -> anyhow::Result<Granted>;
    /// Removes the mapping of `request`.
    async fn unmap(&mut self, request: &PortRequest) -> anyhow::Result<()>;
    /// The router's external address.
    async fn external_ip(&mut self) -> anyhow::Result<IpAddr>;
}

/// What port mapping achieved, for logs, status and announcing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NatStatus {
    /// `upnp` or `natpmp`, once a router mapped a port.
    pub method: Option<&'static str>,
    pub gateway: Option<IpAddr>,
    pub external_ip: Option<IpAddr>,
    pub mappings: Vec<MappingStatus>,
    /// Why nothing is mapped, or the last renewal's failure.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MappingStatus {
    pub request: PortRequest,
    pub external_port: u16,
    pub lease_seconds: u64,
}

impl NatStatus {
    /// The external TCP port of a mapped request of this purpose.
    pub fn external_port(&self, transport: Transport, port: u16) -> Option<u16> {
        self.mappings
            .iter()
            .find(|m| m.request.transport == transport && m.request.port == port)
            .map(|m| m.external_port)
    }

    /// The external address, when it is IPv4 (the DHT's formats are IPv4-only).
    pub fn external_ipv4(&self) -> Option<Ipv4Addr> {
        match self.external_ip {
            Some(IpAddr::V4(ip)) if !ip.is_unspecified() => Some(ip),
            _ => None,
        }
    }
}

/// `prism_nat_*`.
pub struct NatMetrics {
    /// 1 while the router holds a mapping of that transport's port.
    pub mapped: IntGaugeVec,
    /// Map, renew and unmap calls by outcome.
    pub operations: IntCounterVec,
}

impl Family for NatMetrics {
    fn register(registry: &Registry) -> NatMetrics {
        let nat = Registrar::new(registry, "prism").subsystem("nat");
        NatMetrics {
            mapped: nat.gauge_vec(
                "mapped",
                "1 while the router forwards this transport's port to us",
                &["transport", "method"],
            ),
            operations: nat.counter_vec(
                "operations_total",
                "Port mapping requests to the router, by operation and result",
                &["method", "operation", "result"],
            ),
        }
    }
}

impl NatMetrics {
    fn count(&self, method: &str, operation: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.operations
            .with_label_values(&[method, operation, result])
            .inc();
    }
}

/// Port mapping while the process runs.
pub struct Nat {
    status: Arc<Mutex<NatStatus>>,
}

impl Nat {
    /// Finds a router (UPnP first, then PCP/NAT-PMP, as `config` allows), maps `requests`, and
    /// keeps the mappings renewed until `shutdown`, then removes them (on `tasks`, so a clean
    /// stop waits for the removal).
    pub async fn start(
        config: &NatConfig,
        requests: Vec<PortRequest>,
        metrics: Arc<NatMetrics>,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Nat {
        let status = Arc::new(Mutex::new(NatStatus::default()));
        let mut errors = Vec::new();
        for mut gateway in gateways(config, &mut errors).await {
            let method = gateway.method();
            let mapped = map_all(gateway.as_mut(), &requests, config, &metrics).await;
            if mapped.is_empty() {
                errors.push(format!("{method}: the router mapped no port"));
                continue;
            }
            let external_ip = match gateway.external_ip().await {
                Ok(ip) => Some(ip),
                Err(e) => {
                    tracing::warn!(method, error = %e, "nat: the router did not say its external address");
                    None
                }
            };
            *lock(&status) = NatStatus {
                method: Some(method),
                gateway: Some(gateway.address()),
                external_ip,
                mappings: mapped.clone(),
                error: None,
            };
            tracing::info!(method, gateway = %gateway.address(), external_ip = ?external_ip,
                mappings = ?mapped.iter().map(|m| (m.request.purpose, m.external_port)).collect::<Vec<_>>(),
                "nat: ports mapped on the router");
            let keeper = Keeper {
                gateway,
                mapped,
                lease: config.lease,
                status: Arc::clone(&status),
                metrics,
            };
            tasks.spawn(keeper.run(shutdown.clone()));
            return Nat { status };
        }
        let error = if errors.is_empty() {
            "no mapping method is enabled".to_string()
        } else {
            errors.join("; ")
        };
        tracing::warn!(%error, "nat: no port is mapped; the cache may be unreachable from outside");
        lock(&status).error = Some(error);
        Nat { status }
    }

    /// A snapshot of the mapping state.
    pub fn status(&self) -> NatStatus {
        lock(&self.status).clone()
    }
}

fn lock(status: &Mutex<NatStatus>) -> std::sync::MutexGuard<'_, NatStatus> {
    status
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The routers found, in the order they are tried; what failed is added to `errors`.
async fn gateways(config: &NatConfig, errors: &mut Vec<String>) -> Vec<Box<dyn Gateway>> {
    let mut found: Vec<Box<dyn Gateway>> = Vec::new();
    if config.upnp {
        match tokio::time::timeout(config.timeout, upnp::Upnp::discover(config)).await {
            Ok(Ok(gateway)) => found.push(Box::new(gateway)),
            Ok(Err(e)) => errors.push(format!("upnp: {e:#}")),
            Err(_) => errors.push(format!(
                "upnp: no router answered within {:?}",
                config.timeout
            )),
        }
    }
    if config.natpmp {
        match pmp::Pmp::new(config) {
            Ok(gateway) => found.push(Box::new(gateway)),
            Err(e) => errors.push(format!("natpmp: {e:#}")),
        }
    }
    found
}

/// Maps every request it can within `config.timeout` each; returns what was granted.
async fn map_all(
    gateway: &mut dyn Gateway,
    requests: &[PortRequest],
    config: &NatConfig,
    metrics: &NatMetrics,
) -> Vec<MappingStatus> {
    let method = gateway.method();
    let mut mapped = Vec::new();
    for request in requests {
        let attempt = tokio::time::timeout(config.timeout, gateway.map(request, config.lease));
        let outcome = match attempt.await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("no answer within {:?}", config.timeout)),
        };
        metrics.count(method, "map", outcome.is_ok());
        match outcome {
            Ok(granted) => {
                metrics
                    .mapped
                    .with_label_values(&[request.transport.label(), method])
                    .set(1);
                mapped.push(MappingStatus {
                    request: *request,
                    external_port: granted.external_port,
                    lease_seconds: granted.lease.as_secs(),
                });
            }
            Err(e) => tracing::warn!(method, purpose = request.purpose, port = request.port,
                error = %e, "nat: the router refused a mapping"),
        }
    }
    mapped
}

/// Renews the mappings at half their lease; removes them at shutdown.
struct Keeper {
    gateway: Box<dyn Gateway>,
    mapped: Vec<MappingStatus>,
    lease: Duration,
    status: Arc<Mutex<NatStatus>>,
    metrics: Arc<NatMetrics>,
}

impl Keeper {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let shortest = self.mapped.iter().map(|m| m.lease_seconds).min();
            let half = Duration::from_secs(shortest.unwrap_or(self.lease.as_secs())) / 2;
            let renew_at = Instant::now() + half.max(MIN_RENEW_INTERVAL);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(renew_at.into()) => self.renew().await,
            }
        }
        self.remove().await;
    }

    async fn renew(&mut self) {
        let method = self.gateway.method();
        let mut failures = Vec::new();
        for mapping in &mut self.mapped {
            let request = mapping.request;
            let outcome = self.gateway.map(&request, self.lease).await;
            self.metrics.count(method, "renew", outcome.is_ok());
            match outcome {
                Ok(granted) => {
                    if granted.external_port != mapping.external_port {
                        tracing::warn!(purpose = request.purpose, old = mapping.external_port,
                            new = granted.external_port,
                            "nat: the router moved our external port; announcements keep the old one until restart");
                    }
                    mapping.external_port = granted.external_port;
                    mapping.lease_seconds = granted.lease.as_secs();
                }
                Err(e) => {
                    tracing::warn!(method, purpose = request.purpose, error = %e, "nat: renewing a mapping failed; retrying at the next renewal");
                    failures.push(format!("renewing {} failed: {e:#}", request.purpose));
                }
            }
        }
        let mut status = lock(&self.status);
        status.mappings = self.mapped.clone();
        status.error = (!failures.is_empty()).then(|| failures.join("; "));
    }

    async fn remove(&mut self) {
        let method = self.gateway.method();
        for mapping in &self.mapped {
            let request = mapping.request;
            // Bounded: a router gone at shutdown must not hold the process.
            let outcome =
                tokio::time::timeout(Duration::from_secs(3), self.gateway.unmap(&request)).await;
            let ok = matches!(outcome, Ok(Ok(())));
            self.metrics.count(method, "unmap", ok);
            self.metrics
                .mapped
                .with_label_values(&[request.transport.label(), method])
                .set(0);
            if !ok {
                tracing::warn!(
                    method,
                    purpose = request.purpose,
                    "nat: removing a mapping failed; it lapses with its lease"
                );
            }
        }
        lock(&self.status).mappings.clear();
        tracing::info!(method, "nat: mappings removed");
    }
}
