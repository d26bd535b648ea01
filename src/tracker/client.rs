//! Talking to one tracker: resolve it, keep a connection id (renewed after
//! [`wire::CONNECTION_ID_LIFETIME`] or a refusal), and announce a batch of info hashes,
//! turning every request's fate into an [`Outcome`].

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::time::Instant;

use super::link::{Exchanged, Link};
use super::wire::{self, Announce, Answer};

/// What became of one announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tracker took it: when to announce again, and who else it knows.
    Ok {
        interval: Duration,
        peers: Vec<SocketAddrV4>,
    },
    /// No answer, after every retry.
    Timeout,
    /// Answers that are not BEP-15.
    Garbage,
    /// An error answer (unknown info hash on a whitelist, a ban, an expired connection id).
    Refused(String),
    /// The tracker's name did not resolve to an IPv4 address.
    Unresolved,
}

impl Outcome {
    /// The `result` label of `prism_tracker_announces_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Garbage => "garbage",
            Outcome::Refused(_) => "refused",
            Outcome::Unresolved => "unresolved",
        }
    }
}

/// Every `result` label, so the series exist from the start.
pub const RESULTS: [&str; 5] = ["ok", "timeout", "garbage", "refused", "unresolved"];

/// One tracker, as configured (`host:port`).
pub struct TrackerClient {
    pub server: String,
    link: Option<Link>,
    connection: Option<(i64, Instant)>,
    timeout: Duration,
    retries: u32,
}

impl TrackerClient {
    pub fn new(server: String, timeout: Duration, retries: u32) -> TrackerClient {
        TrackerClient {
            server,
            link: None,
            connection: None,
            timeout,
            retries,
        }
    }

    /// Announces each of `announces` (one request each, sent together); the outcomes are in
    /// the same order. `retries` overrides the configured count (0 at shutdown).
    pub async fn announce(&mut self, announces: &[Announce], retries: Option<u32>) -> Vec<Outcome> {
        let retries = retries.unwrap_or(self.retries);
        let all = |o: Outcome| vec![o; announces.len()];
        if !self.open_link().await {
            return all(Outcome::Unresolved);
        }
        let link = self.link.as_ref().expect("opened");
        let connection = match self.connection {
            Some((id, at)) if at.elapsed() < wire::CONNECTION_ID_LIFETIME => id,
            _ => match connect(link, retries).await {
                Ok(id) => {
                    self.connection = Some((id, Instant::now()));
                    id
                }
                Err(outcome) => {
                    if outcome == Outcome::Timeout {
                        // Resolve again next time: the tracker may have moved.
                        self.link = None;
                    }
                    return all(outcome);
                }
            },
        };
        let requests: Vec<(u32, Vec<u8>)> = transaction_ids(announces.len())
            .zip(announces)
            .map(|(tx, a)| (tx, wire::announce_request(connection, tx, a)))
            .collect();
        let exchanged = link.exchange_with(&requests, retries).await;
        let outcomes: Vec<Outcome> = requests
            .iter()
            .map(|(tx, _)| outcome_of(exchanged.answers.get(tx), exchanged.garbage))
            .collect();
        if outcomes.iter().any(|o| matches!(o, Outcome::Refused(_))) {
            // Perhaps our connection id expired early: ask for a new one next time.
            self.connection = None;
        }
        outcomes
    }

    /// Resolves the tracker and opens its socket, unless open; false when that failed.
    async fn open_link(&mut self) -> bool {
        if self.link.is_none() {
            if let Some(addr) = resolve(&self.server).await {
                self.link = Link::open(addr, self.timeout, self.retries).await.ok();
            }
        }
        self.link.is_some()
    }
}

/// Asks for a connection id.
async fn connect(link: &Link, retries: u32) -> Result<i64, Outcome> {
    let tx = fastrand::u32(..);
    let Exchanged { answers, garbage } = link
        .exchange_with(&[(tx, wire::connect_request(tx))], retries)
        .await;
    match answers.get(&tx) {
        Some(Answer::Connected(id)) => Ok(*id),
        other => Err(outcome_of(other, garbage)),
    }
}

fn outcome_of(answer: Option<&Answer>, garbage: bool) -> Outcome {
    match answer {
        Some(Answer::Announced { interval, peers }) => Outcome::Ok {
            interval: *interval,
            peers: peers.clone(),
        },
        Some(Answer::Refused(message)) => Outcome::Refused(message.clone()),
        // A connect answer where an announce answer was due (or the reverse).
        Some(Answer::Connected(_)) => Outcome::Garbage,
        None if garbage => Outcome::Garbage,
        None => Outcome::Timeout,
    }
}

/// `n` distinct random transaction ids.
fn transaction_ids(n: usize) -> impl Iterator<Item = u32> {
    let start = fastrand::u32(..);
    (0..n as u32).map(move |i| start.wrapping_add(i))
}

/// The first IPv4 address of `host:port` (BEP-15 as LBRY uses it is IPv4-only).
async fn resolve(server: &str) -> Option<SocketAddr> {
    match tokio::net::lookup_host(server).await {
        Ok(mut addrs) => addrs.find(SocketAddr::is_ipv4),
        Err(e) => {
            tracing::debug!(tracker = server, error = %e, "tracker: cannot resolve");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use aquatic_udp_protocol as bep15;
    use tokio::net::UdpSocket;

    use super::*;

    /// A tracker (the crate's server half) that ignores the first copy of every request, so
    /// only retransmissions are answered, counts connects, and refuses info hashes starting
    /// with 0xee.
    async fn fussy_tracker() -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connects);
        tokio::spawn(async move {
            let seen = Mutex::new(HashSet::new());
            let mut buf = [0u8; 1024];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let request =
                    bep15::Request::parse_bytes(&buf[..len], 1).expect("a BEP-15 request");
                let tx = match &request {
                    bep15::Request::Connect(c) => c.transaction_id,
                    bep15::Request::Announce(a) => a.transaction_id,
                    bep15::Request::Scrape(s) => s.transaction_id,
                };
                if seen.lock().unwrap().insert(tx.0.get()) {
                    continue; // the first copy is "lost"
                }
                let response: bep15::Response = match request {
                    bep15::Request::Connect(_) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        bep15::ConnectResponse {
                            transaction_id: tx,
                            connection_id: bep15::ConnectionId::new(77),
                        }
                        .into()
                    }
                    bep15::Request::Announce(a) if a.info_hash.0[0] == 0xee => {
                        bep15::ErrorResponse {
                            transaction_id: tx,
                            message: "not allowed".into(),
                        }
                        .into()
                    }
                    bep15::Request::Announce(a) => {
                        assert_eq!(a.connection_id.0.get(), 77, "the connection id is used");
                        bep15::AnnounceResponse {
                            fixed: bep15::AnnounceResponseFixedData {
                                transaction_id: tx,
                                announce_interval: bep15::AnnounceInterval::new(1800),
                                leechers: bep15::NumberOfPeers::new(0),
                                seeders: bep15::NumberOfPeers::new(1),
                            },
                            peers: vec![bep15::ResponsePeer::<bep15::Ipv4AddrBytes> {
                                ip_address: Ipv4Addr::LOCALHOST.into(),
                                port: a.port,
                            }],
                        }
                        .into()
                    }
                    bep15::Request::Scrape(_) => continue,
                };
                let mut out = Vec::new();
                response.write_bytes(&mut out).unwrap();
                let _ = socket.send_to(&out, from).await;
            }
        });
        (addr, connects)
    }

    fn announce(first: u8) -> Announce {
        Announce {
            info_hash: [first; 20],
            peer_id: *b"-PL0001-abcdefghijkl",
            port: 3333,
            ip: Ipv4Addr::UNSPECIFIED,
            stopped: false,
        }
    }

    #[tokio::test]
    async fn retransmits_reuses_the_connection_id_and_reconnects_after_a_refusal() {
        let (addr, connects) = fussy_tracker().await;
        let mut client = TrackerClient::new(addr.to_string(), Duration::from_millis(100), 2);
        let batch = [announce(1), announce(2), announce(3)];
        let outcomes = client.announce(&batch, None).await;
        let ok = Outcome::Ok {
            interval: Duration::from_secs(1800),
            peers: vec!["127.0.0.1:3333".parse().unwrap()],
        };
        assert_eq!(
            outcomes,
            vec![ok.clone(); 3],
            "answered on the retransmission"
        );
        assert_eq!(connects.load(Ordering::SeqCst), 1);

        let outcomes = client.announce(&[announce(4)], None).await;
        assert_eq!(outcomes, vec![ok.clone()]);
        assert_eq!(
            connects.load(Ordering::SeqCst),
            1,
            "the connection id is reused"
        );

        let outcomes = client.announce(&[announce(0xee)], None).await;
        assert_eq!(outcomes, vec![Outcome::Refused("not allowed".into())]);
        client.announce(&[announce(5)], None).await;
        assert_eq!(
            connects.load(Ordering::SeqCst),
            2,
            "a refusal renews the connection id"
        );

        // Without retries nothing is answered: the first copy is always dropped.
        let outcomes = client.announce(&[announce(6)], Some(0)).await;
        assert_eq!(outcomes, vec![Outcome::Timeout]);
    }
}
