//! One tracker's UDP socket and the request/answer exchange over it: a batch of requests is
//! sent at once, answers are matched by transaction id, and what is still unanswered is sent
//! again with a doubled wait (BEP-15's retransmission, shortened: `timeout`, then 2x, 4x ...,
//! `retries` times). Datagrams that match nothing (late answers to an earlier attempt, or
//! garbage) are dropped; garbage is remembered so the caller can tell "down" from "broken".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::wire::{self, Answer};

/// A connected UDP socket to one tracker.
pub struct Link {
    socket: UdpSocket,
    timeout: Duration,
    retries: u32,
}

/// What a batch got back.
#[derive(Default)]
pub struct Exchanged {
    /// Answers by transaction id; requests missing here went unanswered.
    pub answers: HashMap<u32, Answer>,
    /// A datagram that was not a BEP-15 answer arrived (the tracker is broken, not down).
    pub garbage: bool,
}

impl Link {
    /// A socket on an ephemeral port of every IPv4 interface, connected to `tracker` (so only
    /// its datagrams are read).
    pub async fn open(
        tracker: SocketAddr,
        timeout: Duration,
        retries: u32,
    ) -> std::io::Result<Link> {
        let socket = UdpSocket::bind("0.0.0.0:0").await?;
        socket.connect(tracker).await?;
        Ok(Link {
            socket,
            timeout,
            retries,
        })
    }

    /// The longest one [`Link::exchange`] can take.
    pub fn worst_case(&self) -> Duration {
        self.timeout * ((1u32 << (self.retries.min(16) + 1)) - 1)
    }

    /// Sends `requests` (transaction id, datagram) and collects their answers.
    pub async fn exchange(&self, requests: &[(u32, Vec<u8>)]) -> Exchanged {
        self.exchange_with(requests, self.retries).await
    }

    /// [`Link::exchange`] with `retries` retries (0 at shutdown, when time is short).
    pub async fn exchange_with(&self, requests: &[(u32, Vec<u8>)], retries: u32) -> Exchanged {
        let mut out = Exchanged::default();
        let mut wait = self.timeout;
        for _ in 0..=retries.min(16) {
            for (tx, datagram) in requests {
                if !out.answers.contains_key(tx) {
                    // A send error (no route, refused) shows as no answer.
                    let _ = self.socket.send(datagram).await;
                }
            }
            self.collect(requests, Instant::now() + wait, &mut out)
                .await;
            if out.answers.len() == requests.len() {
                break;
            }
            wait *= 2;
        }
        out
    }

    /// Reads answers until every request has one or `deadline`.
    async fn collect(&self, requests: &[(u32, Vec<u8>)], deadline: Instant, out: &mut Exchanged) {
        let mut buf = vec![0u8; wire::MAX_ANSWER];
        while out.answers.len() < requests.len() {
            let received = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await;
            let len = match received {
                Err(_) => return,
                // ICMP port unreachable and the like: keep waiting for the deadline.
                Ok(Err(_)) => continue,
                Ok(Ok(len)) => len,
            };
            let datagram = &buf[..len];
            let tx = wire::transaction_of(datagram);
            let wanted = tx.filter(|tx| requests.iter().any(|(t, _)| t == tx));
            match (wanted, wire::parse_answer(datagram)) {
                (Some(tx), Some(answer)) => {
                    out.answers.insert(tx, answer);
                }
                (_, None) => out.garbage = true,
                // A well-formed answer to an earlier attempt.
                (None, Some(_)) => {}
            }
        }
    }
}
