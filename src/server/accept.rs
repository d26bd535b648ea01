//! Accepting TCP connections for the TCP front doors, with a cap on how many are open.
//!
//! Past the cap, new connections wait in the kernel's accept backlog rather than costing us
//! memory. Transient accept errors (EMFILE, ENFILE, ECONNABORTED) back off briefly instead of
//! spinning. Accepted sockets get `TCP_NODELAY`: responses are written whole, so Nagle's
//! algorithm would only add latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long to pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
    /// The front door's name, for logs.
    door: &'static str,
}

/// An accepted connection; dropping `slot` frees its place under the cap.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub slot: OwnedSemaphorePermit,
}

impl Acceptor {
    pub fn new(listener: TcpListener, max_connections: usize, door: &'static str) -> Acceptor {
        let max = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Acceptor {
            listener,
            slots: Arc::new(Semaphore::new(max)),
            max,
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
                    let _ = stream.set_nodelay(true);
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
