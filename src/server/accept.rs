//! Accepting TCP connections for the TCP front doors, with a cap on how many are open in total
//! and per client address.
//!
//! Past the global cap, new connections wait in the kernel's accept backlog rather than costing
//! us memory. The per-address cap ([`PerIpLimit`]) sits below it, so one address holding all of
//! its connections idle still leaves slots for everyone else: its extra connections are
//! accepted and closed at once (they cost a moment, not a slot). Transient accept errors
//! (EMFILE, ENFILE, ECONNABORTED) back off briefly instead of spinning. Accepted sockets get
//! `TCP_NODELAY`: responses are written whole, so Nagle's algorithm would only add latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::server::per_ip::{IpSlot, PerIpLimit};

/// How long to pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
    per_ip: Arc<PerIpLimit>,
    /// Counts connections closed at once for being over the per-address cap.
    refused: IntCounter,
    /// The front door's name, for logs.
    door: &'static str,
}

/// An accepted connection; dropping `slot` frees its place under both caps.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub slot: ConnectionSlot,
}

/// A connection's place under the global and the per-address cap.
pub struct ConnectionSlot {
    _global: OwnedSemaphorePermit,
    _per_ip: IpSlot,
}

impl Acceptor {
    /// At most `max_connections` open, at most `max_per_ip` of them from one address;
    /// `refused` counts connections closed for being over the per-address cap.
    pub fn new(
        listener: TcpListener,
        max_connections: usize,
        max_per_ip: usize,
        refused: IntCounter,
        door: &'static str,
    ) -> Acceptor {
        let max = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Acceptor {
            listener,
            slots: Arc::new(Semaphore::new(max)),
            max,
            per_ip: PerIpLimit::new(max_per_ip),
            refused,
            door,
        }
    }

    /// The next connection, or `None` once `shutdown` is cancelled.
    pub async fn next(&self, shutdown: &CancellationToken) -> Option<Accepted> {
        loop {
            let slot = tokio::select! {
                slot = Arc::clone(&self.slots).acquire_owned() => slot.ok()?,
                _ = shutdown.cancelled() => return None,
            };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.cancelled() => return None,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Some(per_ip) = self.per_ip.try_acquire(peer.ip()) else {
                        self.refused.inc();
                        tracing::debug!(door = self.door, %peer, "connection closed: too many from this address");
                        continue; // dropping the stream closes it, dropping `slot` frees it
                    };
                    let _ = stream.set_nodelay(true);
                    let slot = ConnectionSlot {
                        _global: slot,
                        _per_ip: per_ip,
                    };
                    return Some(Accepted { stream, peer, slot });
                }
                Err(e) => {
                    tracing::warn!(door = self.door, error = %e, "accept failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = shutdown.cancelled() => return None,
                    }
                }
            }
        }
    }

    /// Closes the listening socket (no new connections) and waits, at most `deadline`, until
    /// every accepted connection has released its slot. Returns whether all did.
    pub async fn close_and_drain(self, deadline: Duration) -> bool {
        drop(self.listener);
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        tokio::time::timeout(deadline, self.slots.acquire_many(all))
            .await
            .is_ok()
    }
}
