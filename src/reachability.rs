//! "Is my node reachable from outside?": the most asked hosting question, answered plainly as
//! yes, no or unknown, with the reason.
//!
//! The evidence, strongest first:
//! 1. **Peers from outside connected.** A connection to the peer door from a public address
//!    (counted by the door, [`ReachabilityMetrics::note_peer_connection`]) proves the port is
//!    open, whatever the router does.
//! 2. **What others see.** The DHT records an announcer under the address its `store` came from,
//!    and a tracker under the address of its announce, so looking up a stream we announced
//!    tells which address the network hands to clients (matched by our node id in the DHT; by
//!    address and port at a tracker, which lists peers without ids).
//! 3. **What stands in between.** That address is either one of this machine's own (no NAT),
//!    or a router's: then the port reaches us only if the router forwards it (`nat:` mapped it,
//!    and the router's external address is the one seen: otherwise a second NAT, such as an
//!    ISP's carrier-grade NAT, sits in front) or the operator forwarded it by hand, which only
//!    an inbound connection can show.
//!
//! [`judge`] turns the evidence into the verdict (pure, unit tested); [`SelfCheck`] gathers it
//! in a running blobcache (in the background when the status page finds its last verdict older
//! than [`RECHECK`]; the verdict is logged when it is known), and
//! `prism-lite dht peers` gathers it from its own lookup.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounter, IntGauge, Registry};
use serde::Serialize;

use crate::dht::{is_public, Dht, NodeId};
use crate::metrics::{Family, Registrar};
use crate::nat::{Nat, NatStatus, Transport};
use crate::tracker::Trackers;

/// A checked verdict stands this long before the status page asks again.
pub const RECHECK: Duration = Duration::from_secs(600);
/// An `unknown` verdict (nothing announced or listed yet) may be asked again this soon.
pub const RECHECK_UNKNOWN: Duration = Duration::from_secs(5);
/// An inbound peer connection from outside counts as evidence for this long.
pub const INBOUND_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Bound on one check's lookups (DHT and trackers together).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Yes,
    No,
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Unknown => "unknown",
        }
    }

    /// `prism_reachable`'s value.
    fn gauge(self) -> i64 {
        match self {
            Verdict::Yes => 1,
            Verdict::No => 0,
            Verdict::Unknown => -1,
        }
    }
}

/// Where someone lists us: `dht` or `tracker HOST:PORT`, and the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sighting {
    pub source: String,
    pub addr: SocketAddrV4,
}

/// What the router did, as far as this process knows.
#[derive(Debug, Clone)]
pub enum NatKnowledge {
    /// `nat:` is not configured.
    Off,
    /// Configured, but known only to the running blobcache (the `dht peers` command).
    Elsewhere,
    Status(NatStatus),
}

/// Everything [`judge`] weighs.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The peer door's (local) port.
    pub peer_port: u16,
    /// This machine's IPv4 interface addresses.
    pub local_ips: Vec<Ipv4Addr>,
    /// How many of the DHT and trackers were asked, and what they list.
    pub asked: usize,
    pub seen: Vec<Sighting>,
    /// Why nothing could be looked up (nothing announced yet, no DHT and no trackers).
    pub not_asked_because: Option<String>,
    pub nat: NatKnowledge,
    /// Peer door connections from public addresses within [`INBOUND_WINDOW`].
    pub outside_connections: u64,
}

/// The answer, with its reason in one sentence.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub reachable: Verdict,
    pub because: String,
    pub seen: Vec<Sighting>,
    pub checked_unix: u64,
}

impl Report {
    /// `reachable from outside: yes, because ...`.
    pub fn line(&self) -> String {
        format!(
            "reachable from outside: {}, because {}",
            self.reachable.as_str(),
            self.because
        )
    }
}

/// This machine's IPv4 interface addresses.
pub fn local_ipv4s() -> Vec<Ipv4Addr> {
    netdev::get_interfaces()
        .iter()
        .flat_map(|i| i.ipv4.iter().map(|net| net.addr()))
        .collect()
}

/// The verdict and its reason.
pub fn judge(e: &Evidence) -> (Verdict, String) {
    if e.outside_connections > 0 {
        return (
            Verdict::Yes,
            format!(
                "{} peer connection(s) from outside this network reached the peer door (port {}), the last within 24 h",
                e.outside_connections, e.peer_port
            ),
        );
    }
    if let Some(why) = &e.not_asked_because {
        return (Verdict::Unknown, why.clone());
    }
    let Some(seen) = e
        .seen
        .iter()
        .find(|s| is_public(*s.addr.ip()))
        .or(e.seen.first())
    else {
        return (
            Verdict::Unknown,
            format!(
                "none of the {} DHT/tracker lookup(s) lists this cache yet (announcing takes a minute; try again)",
                e.asked
            ),
        );
    };
    let (ip, port) = (*seen.addr.ip(), seen.addr.port());
    let at = format!("the {} lists this cache at {}", seen.source, seen.addr);
    if !is_public(ip) {
        return (
            Verdict::No,
            format!("{at}, an address only this network can reach; set dht.announce_address to the public address, or turn on nat:"),
        );
    }
    if e.local_ips.contains(&ip) {
        return (
            Verdict::Yes,
            format!("{at}, an address of this machine itself (no NAT in between)"),
        );
    }
    let here = e
        .local_ips
        .iter()
        .find(|ip| !ip.is_loopback())
        .map_or(String::new(), |ip| format!(" (this machine is {ip})"));
    behind_nat(e, &at, &here, ip, port)
}

/// The seen address belongs to a router: reachable only if the router forwards the port.
fn behind_nat(e: &Evidence, at: &str, here: &str, ip: Ipv4Addr, port: u16) -> (Verdict, String) {
    let forward = format!("forward TCP {port} to port {} of this machine", e.peer_port);
    let status = match &e.nat {
        NatKnowledge::Off => {
            return (
                Verdict::Unknown,
                format!("{at}: a router's address{here}, and nat: is off; unless the router has a rule to {forward}, clients cannot reach it (a peer connecting from outside proves it: the status page counts them)"),
            )
        }
        NatKnowledge::Elsewhere => {
            return (
                Verdict::Unknown,
                format!("{at}: a router's address{here}; whether the router forwards the port is on the running blobcache's status page (nat:)"),
            )
        }
        NatKnowledge::Status(status) => status,
    };
    let mapped = status.external_port(Transport::Tcp, e.peer_port);
    let method = status.method.unwrap_or("the router");
    match (mapped, status.external_ipv4()) {
        (Some(external), Some(router_ip)) if external == port && router_ip == ip => (
            Verdict::Yes,
            format!("{at}, and the router ({method}) forwards TCP {port} there to this machine's port {}", e.peer_port),
        ),
        (Some(_), Some(router_ip)) if !is_public(router_ip) => (
            Verdict::No,
            format!("{at}, but the router's own external address is {router_ip}: a second NAT (carrier-grade, at the ISP) is in front and forwards nothing; ask the ISP for a public address"),
        ),
        (Some(external), Some(router_ip)) => (
            Verdict::No,
            format!("{at}, but the router ({method}) forwards TCP {external} on {router_ip}: another NAT is in between"),
        ),
        _ => (
            Verdict::No,
            format!(
                "{at}: a router's address{here}, and the router mapped nothing ({}); {forward} by hand",
                status.error.as_deref().unwrap_or("no mapping")
            ),
        ),
    }
}

/// `prism_reachable` and the peer door's connections from outside.
pub struct ReachabilityMetrics {
    /// The last verdict: 1 yes, 0 no, -1 unknown.
    reachable: IntGauge,
    outside_connections: IntCounter,
    /// Unix seconds of the last connection from outside (0: none).
    last_outside: AtomicU64,
}

impl Family for ReachabilityMetrics {
    fn register(registry: &Registry) -> ReachabilityMetrics {
        let prism = Registrar::new(registry, "prism");
        let reachable = prism.gauge(
            "reachable",
            "Whether clients outside this network can reach the peer door: 1 yes, 0 no, -1 unknown (the status page says why)",
        );
        reachable.set(-1);
        ReachabilityMetrics {
            reachable,
            outside_connections: prism.counter(
                "peer_connections_from_outside_total",
                "Connections to the peer door from public addresses (proof that the port is reachable)",
            ),
            last_outside: AtomicU64::new(0),
        }
    }
}

impl ReachabilityMetrics {
    /// The peer door accepted a connection from `ip` (after PROXY protocol / trusted hops).
    pub fn note_peer_connection(&self, ip: std::net::IpAddr) {
        let public = match ip {
            std::net::IpAddr::V4(v4) => is_public(v4),
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or((v6.segments()[0] & 0xe000) == 0x2000, is_public),
        };
        if public {
            self.outside_connections.inc();
            self.last_outside.store(unix_now(), Ordering::Relaxed);
        }
    }

    /// Connections from outside since start, when the last was within [`INBOUND_WINDOW`]
    /// (0 otherwise: old proof says little about today's router).
    fn recent_outside(&self) -> u64 {
        let last = self.last_outside.load(Ordering::Relaxed);
        if last == 0 || unix_now().saturating_sub(last) > INBOUND_WINDOW.as_secs() {
            return 0;
        }
        self.outside_connections.get()
    }
}

/// The running blobcache's self-check, asked by the status page.
pub struct SelfCheck {
    pub dht: Option<Dht>,
    pub trackers: Option<Trackers>,
    pub nat: Option<Arc<Nat>>,
    pub peer_port: Option<u16>,
    pub metrics: Arc<ReachabilityMetrics>,
    last: Mutex<Option<(Instant, Report)>>,
    running: AtomicBool,
}

impl SelfCheck {
    pub fn new(
        dht: Option<Dht>,
        trackers: Option<Trackers>,
        nat: Option<Arc<Nat>>,
        peer_port: Option<u16>,
        metrics: Arc<ReachabilityMetrics>,
    ) -> SelfCheck {
        SelfCheck {
            dht,
            trackers,
            nat,
            peer_port,
            metrics,
            last: Mutex::new(None),
            running: AtomicBool::new(false),
        }
    }

    /// The last verdict (none before the first check ends); when it is stale, a check starts
    /// in the background (one at a time), so a page load never waits on the network.
    pub fn current(self: &Arc<Self>) -> Option<Report> {
        let last = self.lock_last().clone();
        let stale = last.as_ref().is_none_or(|(at, report)| {
            let gap = match report.reachable {
                Verdict::Unknown => RECHECK_UNKNOWN,
                _ => RECHECK,
            };
            at.elapsed() >= gap
        });
        if stale && !self.running.swap(true, Ordering::AcqRel) {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let report = this.check().await;
                this.metrics.reachable.set(report.reachable.gauge());
                if report.reachable != Verdict::Unknown {
                    tracing::info!(target: "prism_lite::reachability", "{}", report.line());
                }
                *this.lock_last() = Some((Instant::now(), report));
                this.running.store(false, Ordering::Release);
            });
        }
        last.map(|(_, report)| report)
    }

    /// Keeps the verdict (and `prism_reachable`) current without a page load: asks every
    /// minute; [`SelfCheck::current`] only checks when the last verdict is stale.
    pub async fn run(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.current();
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Report)>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn check(&self) -> Report {
        let Some(peer_port) = self.peer_port else {
            return report(
                Verdict::No,
                "there is no peer door (servers.peer) for LBRY clients to reach".into(),
                Vec::new(),
            );
        };
        let nat = match &self.nat {
            Some(nat) => NatKnowledge::Status(nat.status()),
            None => NatKnowledge::Off,
        };
        let mut evidence = Evidence {
            peer_port,
            local_ips: local_ipv4s(),
            asked: 0,
            seen: Vec::new(),
            not_asked_because: None,
            nat,
            outside_connections: self.metrics.recent_outside(),
        };
        if evidence.outside_connections == 0 {
            let looked = tokio::time::timeout(CHECK_TIMEOUT, self.look_up(&mut evidence)).await;
            if looked.is_err() {
                evidence.not_asked_because = Some(format!(
                    "the DHT and tracker lookups took longer than {CHECK_TIMEOUT:?}"
                ));
            }
        }
        let (verdict, because) = judge(&evidence);
        report(verdict, because, evidence.seen)
    }

    /// Looks up a stream we announced in the DHT and at the trackers, noting where we appear.
    async fn look_up(&self, evidence: &mut Evidence) {
        if self.dht.is_none() && self.trackers.is_none() {
            evidence.not_asked_because =
                Some("neither dht: nor trackers: is on, so no client can find this cache".into());
            return;
        }
        if let Some(dht) = &self.dht {
            if let Some(hash) = dht.last_stored() {
                evidence.asked += 1;
                let ours = dht.node_id();
                evidence.seen.extend(
                    dht.find_peers(hash)
                        .await
                        .into_iter()
                        .filter(|p| p.id == ours)
                        .map(|p| Sighting {
                            source: "DHT".into(),
                            addr: p.addr,
                        }),
                );
            }
        }
        if let Some(trackers) = &self.trackers {
            let known = known_addresses(evidence);
            for (server, peers) in trackers.look_up_announced().await {
                evidence.asked += 1;
                evidence.seen.extend(tracker_sightings(
                    &server,
                    &peers,
                    evidence.peer_port,
                    &known,
                ));
            }
        }
        if evidence.asked == 0 {
            evidence.not_asked_because = Some(
                "nothing has been announced yet (a stream is announced once it is served, prefetched or uploaded)"
                    .into(),
            );
        }
    }
}

/// Addresses that can only be ours: where the DHT lists our node id, this machine's own, the
/// router's external one.
fn known_addresses(e: &Evidence) -> Vec<Ipv4Addr> {
    let mut known: Vec<Ipv4Addr> = e.seen.iter().map(|s| *s.addr.ip()).collect();
    known.extend(&e.local_ips);
    if let NatKnowledge::Status(status) = &e.nat {
        known.extend(status.external_ipv4());
    }
    known
}

/// A tracker's peers that are us: our announced port at an address that is ours.
pub fn tracker_sightings(
    server: &str,
    peers: &[SocketAddrV4],
    port: u16,
    known: &[Ipv4Addr],
) -> Vec<Sighting> {
    peers
        .iter()
        .filter(|p| p.port() == port && known.contains(p.ip()))
        .map(|p| Sighting {
            source: format!("tracker {server}"),
            addr: *p,
        })
        .collect()
}

fn report(reachable: Verdict, because: String, seen: Vec<Sighting>) -> Report {
    Report {
        reachable,
        because,
        seen,
        checked_unix: unix_now(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A DHT key from a blob hash (both 48 bytes).
pub fn key_of(hash: &crate::blob::BlobHash) -> NodeId {
    NodeId::from_slice(hash.as_bytes()).expect("blob hashes and node ids are both 48 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::{MappingStatus, PortRequest};

    /// Public addresses (documentation ranges count as private, as in the SDK's DHT).
    const ROUTER: Ipv4Addr = Ipv4Addr::new(81, 2, 69, 142);
    const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);

    fn evidence(seen: &[(&str, Ipv4Addr, u16)], nat: NatKnowledge) -> Evidence {
        Evidence {
            peer_port: 5567,
            local_ips: vec![Ipv4Addr::LOCALHOST, LAN],
            asked: 2,
            seen: seen
                .iter()
                .map(|(source, ip, port)| Sighting {
                    source: source.to_string(),
                    addr: SocketAddrV4::new(*ip, *port),
                })
                .collect(),
            not_asked_because: None,
            nat,
            outside_connections: 0,
        }
    }

    fn mapped(external_ip: Ipv4Addr, external_port: u16) -> NatKnowledge {
        NatKnowledge::Status(NatStatus {
            method: Some("upnp"),
            gateway: Some("192.168.1.1".parse().unwrap()),
            external_ip: Some(external_ip.into()),
            mappings: vec![MappingStatus {
                request: PortRequest {
                    transport: Transport::Tcp,
                    port: 5567,
                    purpose: "peer",
                },
                external_port,
                lease_seconds: 3600,
            }],
            error: None,
        })
    }

    #[test]
    fn a_connection_from_outside_is_proof() {
        let mut e = evidence(&[], NatKnowledge::Off);
        e.outside_connections = 3;
        let (verdict, because) = judge(&e);
        assert_eq!(verdict, Verdict::Yes);
        assert!(
            because.contains("3 peer connection(s) from outside"),
            "{because}"
        );
    }

    #[test]
    fn nothing_listed_is_unknown() {
        let (verdict, because) = judge(&evidence(&[], NatKnowledge::Off));
        assert_eq!(verdict, Verdict::Unknown);
        assert!(because.contains("none of the 2"), "{because}");
        let mut e = evidence(&[], NatKnowledge::Off);
        e.not_asked_because = Some("nothing has been announced yet".into());
        assert_eq!(
            judge(&e),
            (Verdict::Unknown, "nothing has been announced yet".into())
        );
    }

    #[test]
    fn a_public_address_of_this_machine_is_reachable() {
        let mut e = evidence(
            &[("DHT", Ipv4Addr::new(81, 2, 69, 160), 5567)],
            NatKnowledge::Off,
        );
        e.local_ips.push(Ipv4Addr::new(81, 2, 69, 160));
        let (verdict, because) = judge(&e);
        assert_eq!(verdict, Verdict::Yes);
        assert!(
            because.contains("an address of this machine itself"),
            "{because}"
        );
    }

    #[test]
    fn a_private_sighting_is_not_reachable_from_outside() {
        let (verdict, because) = judge(&evidence(
            &[("DHT", Ipv4Addr::LOCALHOST, 5567)],
            NatKnowledge::Off,
        ));
        assert_eq!(verdict, Verdict::No);
        assert!(
            because.contains("127.0.0.1:5567, an address only this network can reach"),
            "{because}"
        );
    }

    #[test]
    fn behind_a_router_that_forwards_the_port() {
        let e = evidence(&[("DHT", ROUTER, 5567)], mapped(ROUTER, 5567));
        let (verdict, because) = judge(&e);
        assert_eq!(verdict, Verdict::Yes, "{because}");
        assert!(
            because.contains("the router (upnp) forwards TCP 5567"),
            "{because}"
        );
    }

    #[test]
    fn behind_a_router_that_mapped_nothing() {
        let mut status = match mapped(ROUTER, 5567) {
            NatKnowledge::Status(s) => s,
            _ => unreachable!(),
        };
        status.mappings.clear();
        status.error = Some("upnp: no gateway answered".into());
        let (verdict, because) = judge(&evidence(
            &[("DHT", ROUTER, 5567)],
            NatKnowledge::Status(status),
        ));
        assert_eq!(verdict, Verdict::No);
        assert!(
            because.contains("mapped nothing (upnp: no gateway answered)"),
            "{because}"
        );
        assert!(
            because.contains("(this machine is 192.168.1.20)"),
            "{because}"
        );
    }

    #[test]
    fn carrier_grade_nat_in_front_of_the_router() {
        let cgnat = Ipv4Addr::new(100, 72, 0, 9);
        let (verdict, because) = judge(&evidence(&[("DHT", ROUTER, 5567)], mapped(cgnat, 5567)));
        assert_eq!(verdict, Verdict::No);
        assert!(because.contains("a second NAT (carrier-grade"), "{because}");
    }

    #[test]
    fn without_nat_mapping_a_router_address_is_unknown() {
        let (verdict, because) = judge(&evidence(&[("DHT", ROUTER, 5567)], NatKnowledge::Off));
        assert_eq!(verdict, Verdict::Unknown);
        assert!(
            because.contains("forward TCP 5567 to port 5567"),
            "{because}"
        );
    }

    #[test]
    fn tracker_peers_count_only_at_our_addresses_and_port() {
        let peers = [
            SocketAddrV4::new(ROUTER, 5567),
            SocketAddrV4::new(Ipv4Addr::new(8, 8, 8, 8), 5567),
            SocketAddrV4::new(ROUTER, 4444),
        ];
        let seen = tracker_sightings("t:6969", &peers, 5567, &[ROUTER]);
        assert_eq!(
            seen,
            vec![Sighting {
                source: "tracker t:6969".into(),
                addr: peers[0]
            }]
        );
    }

    #[test]
    fn inbound_from_public_addresses_only() {
        let registry = Registry::new();
        let m = ReachabilityMetrics::register(&registry);
        m.note_peer_connection("127.0.0.2".parse().unwrap());
        m.note_peer_connection("192.168.1.9".parse().unwrap());
        assert_eq!(m.recent_outside(), 0);
        m.note_peer_connection("8.8.4.4".parse().unwrap());
        m.note_peer_connection("2a00:1450::1".parse().unwrap());
        assert_eq!(m.recent_outside(), 2);
    }
}
