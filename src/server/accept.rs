//! Connection admission for every door, TCP and QUIC alike: a cap on how many connections are
//! open in total and per client address ([`Admission`]), and the TCP accept loop built on it
//! ([`Acceptor`]).
//!
//! The per-address cap ([`PerIpLimit`]) sits below the global one, so one address holding all
//! of its connections idle still leaves slots for everyone else. Over TCP, past the global cap
//! new connections wait in the kernel's accept backlog rather than costing us memory, and a
//! connection over its address's cap is accepted and closed at once (it costs a moment, not a
//! slot). Over QUIC a connection attempt cannot wait, so past either cap it is refused at the
//! handshake. Transient accept errors (EMFILE, ENFILE, ECONNABORTED) back off briefly instead
//! of spinning. Accepted TCP sockets get `TCP_NODELAY`: responses are written whole, so Nagle's
//! algorithm would only add latency.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::IntCounter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Listen;
use crate::server::per_ip::{IpSlot, PerIpLimit};

/// How long to pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A door's connection caps.
pub struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
    per_ip: Arc<PerIpLimit>,
    /// Counts connections turned away for being over a cap.
    refused: IntCounter,
    /// The door's name, for logs.
    door: &'static str,
}

/// A connection's place under the global and the per-address cap; dropping it frees both.
pub struct ConnectionSlot {
    _global: OwnedSemaphorePermit,
    _per_ip: IpSlot,
}

impl Admission {
    /// The caps `listen` names; `refused` counts connections turned away.
    pub fn new(listen: &Listen, refused: IntCounter, door: &'static str) -> Admission {
        let max = listen.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Admission {
            slots: Arc::new(Semaphore::new(max)),
            max,
            per_ip: PerIpLimit::new(listen.max_connections_per_ip),
            refused,
            door,
        }
    }

    /// Waits for room under the global cap (TCP: meanwhile the kernel holds the connection);
    /// `None` once `shutdown` is cancelled.
    async fn room(&self, shutdown: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            slot = Arc::clone(&self.slots).acquire_owned() => slot.ok(),
            _ = shutdown.cancelled() => None,
        }
    }

    /// A slot for a connection from `ip` right now (QUIC: an attempt cannot wait), or `None`
    /// (counted) when either cap is reached.
    pub fn try_admit(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let Ok(global) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.turn_away(ip, "max_connections");
            return None;
        };
        self.place(global, ip)
    }

    /// The per-address place for a connection already holding a global slot.
    fn place(&self, global: OwnedSemaphorePermit, ip: IpAddr) -> Option<ConnectionSlot> {
        match self.per_ip.try_acquire(ip) {
            Some(per_ip) => Some(ConnectionSlot {
                _global: global,
                _per_ip: per_ip,
            }),
            None => {
                self.turn_away(ip, "max_connections_per_ip");
                None
            }
        }
    }

    fn turn_away(&self, ip: IpAddr, cap: &'static str) {
        self.refused.inc();
        tracing::debug!(door = self.door, %ip, cap, "connection turned away: at its cap");
    }

    /// Waits, at most `deadline`, until every admitted connection has released its slot.
    /// Returns whether all did.
    pub async fn drain(&self, deadline: Duration) -> bool {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        tokio::time::timeout(deadline, self.slots.acquire_many(all))
            .await
            .is_ok()
    }
}

/// Binds a TCP door's listening socket where `listen` says; `section` names it in errors.
pub async fn bind_tcp(section: &str, listen: &Listen) -> anyhow::Result<TcpListener> {
    let bind = listen.bind_text();
    TcpListener::bind(&bind)
        .await
        .with_context(|| format!("binding {section} on {bind}"))
}

/// The accept loop of a TCP door, under its [`Admission`].
pub struct Acceptor {
    listener: TcpListener,
    admission: Admission,
}

/// An accepted connection; dropping `slot` frees its place under both caps.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub slot: ConnectionSlot,
}

impl Acceptor {
    pub fn new(listener: TcpListener, admission: Admission) -> Acceptor {
        Acceptor {
            listener,
            admission,
        }
    }

    /// The next connection, or `None` once `shutdown` is cancelled.
    pub async fn next(&self, shutdown: &CancellationToken) -> Option<Accepted> {
        loop {
            let global = self.admission.room(shutdown).await?;
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.cancelled() => return None,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Over its address's cap: dropping the stream closes it.
                    let Some(slot) = self.admission.place(global, peer.ip()) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    return Some(Accepted { stream, peer, slot });
                }
                Err(e) => {
                    tracing::warn!(door = self.admission.door, error = %e, "accept failed; backing off");
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
        self.admission.drain(deadline).await
    }
}
