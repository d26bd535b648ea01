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
//!
//! Which address is "the client" is decided here too (see [`crate::config::clients`]): on a door
//! with `proxy_protocol: true`, a connection from a trusted proxy must start with a PROXY
//! header ([`proxy_protocol`](super::proxy_protocol)), read on a task of its own (bounded in
//! time and bytes, holding its global slot meanwhile) so a slow proxy never holds up the accept
//! loop; the address it names is then the one the per-address cap counts and the door sees. A
//! trusted proxy's own connections (no PROXY header named a client, or the door reads the
//! client from HTTP headers) carry many clients, so they count under the global cap only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::IntCounter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Listen, Proxies};
use crate::server::per_ip::{IpSlot, PerIpLimit};
use crate::server::proxy_protocol;

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
    /// Who may say who the client is.
    proxies: Proxies,
}

/// A connection's place under the global and the per-address cap (none for a trusted proxy's
/// own connection); dropping it frees both.
pub struct ConnectionSlot {
    _global: OwnedSemaphorePermit,
    _per_ip: Option<IpSlot>,
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
            proxies: listen.proxies.clone(),
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

    /// The per-address place for a connection already holding a global slot (a trusted
    /// proxy's own connections need none).
    fn place(&self, global: OwnedSemaphorePermit, ip: IpAddr) -> Option<ConnectionSlot> {
        if self.proxies.trusts(ip) {
            return Some(ConnectionSlot {
                _global: global,
                _per_ip: None,
            });
        }
        match self.per_ip.try_acquire(ip) {
            Some(per_ip) => Some(ConnectionSlot {
                _global: global,
                _per_ip: Some(per_ip),
            }),
            None => {
                self.turn_away(ip, "max_connections_per_ip");
                None
            }
        }
    }

    /// A connection from a trusted proxy on a `proxy_protocol` door: its PROXY header read,
    /// then placed under the cap of the client it names. `None` (the connection closed) when
    /// the header is missing, malformed or late, or the client is at its cap.
    async fn proxied(
        self: Arc<Self>,
        mut stream: TcpStream,
        proxy: SocketAddr,
        global: OwnedSemaphorePermit,
    ) -> Option<Accepted> {
        let peer = match proxy_protocol::read_client(&mut stream).await {
            Ok(client) => client.unwrap_or(proxy),
            Err(e) => {
                // Only a trusted proxy gets here: a misconfigured one, worth a warning.
                tracing::warn!(door = self.door, %proxy, error = %e, "PROXY header refused; connection closed");
                return None;
            }
        };
        let slot = self.place(global, peer.ip())?;
        Some(Accepted { stream, peer, slot })
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

/// Binds a TCP door's listening socket where `listen` says; `section` names it in errors
/// (and in the refusal of a `proxy_protocol` no peer is trusted to send).
pub async fn bind_tcp(section: &str, listen: &Listen) -> anyhow::Result<TcpListener> {
    if let Some(problem) = listen.proxies.problem(section) {
        anyhow::bail!(problem);
    }
    let bind = listen.bind_text();
    TcpListener::bind(&bind)
        .await
        .with_context(|| format!("binding {section} on {bind}"))
}

/// The accept loop of a TCP door, under its [`Admission`].
pub struct Acceptor {
    listener: TcpListener,
    admission: Arc<Admission>,
    /// Connections whose PROXY header is being read.
    handshakes: JoinSet<Option<Accepted>>,
}

/// An accepted connection; dropping `slot` frees its place under both caps.
pub struct Accepted {
    pub stream: TcpStream,
    /// The client: the connection's peer, or the address its trusted proxy's PROXY header named.
    pub peer: SocketAddr,
    pub slot: ConnectionSlot,
}

impl Acceptor {
    pub fn new(listener: TcpListener, admission: Admission) -> Acceptor {
        Acceptor {
            listener,
            admission: Arc::new(admission),
            handshakes: JoinSet::new(),
        }
    }

    /// The next connection, or `None` once `shutdown` is cancelled.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Accepted> {
        loop {
            let incoming = tokio::select! {
                Some(joined) = self.handshakes.join_next() => match joined {
                    Ok(Some(accepted)) => return Some(accepted),
                    _ => continue,
                },
                incoming = accept(&self.listener, &self.admission, shutdown) => incoming?,
            };
            let (stream, peer, global) = incoming;
            let _ = stream.set_nodelay(true);
            let admission = Arc::clone(&self.admission);
            if admission.proxies.proxy_protocol && admission.proxies.trusts(peer.ip()) {
                self.handshakes
                    .spawn(admission.proxied(stream, peer, global));
            } else if let Some(slot) = admission.place(global, peer.ip()) {
                return Some(Accepted { stream, peer, slot });
            } // else over its address's cap: dropping the stream closes it.
        }
    }

    /// Closes the listening socket (no new connections) and waits, at most `deadline`, until
    /// every accepted connection has released its slot. Returns whether all did.
    pub async fn close_and_drain(self, deadline: Duration) -> bool {
        let Acceptor {
            listener,
            admission,
            handshakes,
        } = self;
        drop(listener);
        // Connections still giving their PROXY header were never handed to the door: close
        // them (and free their slots) rather than wait for them.
        drop(handshakes);
        admission.drain(deadline).await
    }
}

/// The next connection off `listener`, with its global slot under `admission`.
async fn accept(
    listener: &TcpListener,
    admission: &Admission,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let global = admission.room(shutdown).await?;
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => return None,
        };
        match accepted {
            Ok((stream, peer)) => return Some((stream, peer, global)),
            Err(e) => {
                tracing::warn!(door = admission.door, error = %e, "accept failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
}
