//! Sending requests and matching their answers: the UDP socket, pending rpc ids with timeouts,
//! and the per-source rate limit for incoming requests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::bencode::Value;
use super::metrics::DhtMetrics;
use super::wire::{Body, Datagram, NodeId, Request, RpcId, MAX_DATAGRAM};

/// Requests in flight at once; beyond it new calls fail fast rather than grow the table.
const MAX_PENDING: usize = 4096;
/// Distinct source IPs tracked by the rate limiter.
const MAX_TRACKED_SOURCES: usize = 8192;

/// Why a call got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("remote error {kind}: {message}")]
    Remote { kind: String, message: String },
    #[error("sending failed: {0}")]
    Send(#[from] std::io::Error),
    #[error("too many requests in flight")]
    Busy,
    #[error("request would exceed {MAX_DATAGRAM} bytes")]
    Oversized,
}

impl RpcError {
    fn label(&self) -> &'static str {
        match self {
            RpcError::Timeout(_) => "timeout",
            _ => "error",
        }
    }
}

/// An answer: the responder's node id and its result.
pub type Answer = (NodeId, Value);

struct Pending {
    addr: SocketAddrV4,
    tx: oneshot::Sender<Result<Answer, RpcError>>,
}

pub struct Rpc {
    pub socket: UdpSocket,
    pub own: NodeId,
    timeout: Duration,
    pending: Mutex<HashMap<RpcId, Pending>>,
    limiter: Mutex<RateLimiter>,
    metrics: DhtMetrics,
}

/// Removes a pending entry however the call ends (answer, timeout, or the caller dropped).
struct PendingGuard<'a> {
    rpc: &'a Rpc,
    id: RpcId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.rpc.pending.lock() {
            p.remove(&self.id);
        }
    }
}

impl Rpc {
    pub fn new(
        socket: UdpSocket,
        own: NodeId,
        timeout: Duration,
        per_second: u32,
        metrics: DhtMetrics,
    ) -> Rpc {
        Rpc {
            socket,
            own,
            timeout,
            pending: Mutex::new(HashMap::new()),
            limiter: Mutex::new(RateLimiter::new(per_second)),
            metrics,
        }
    }

    /// Sends `request` to `addr` and waits for the matching answer.
    pub async fn call(&self, addr: SocketAddrV4, request: Request) -> Result<Answer, RpcError> {
        let method = request.method().label();
        let result = self.call_inner(addr, request).await;
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics
            .rpc_out
            .with_label_values(&[method, label])
            .inc();
        result
    }

    async fn call_inner(&self, addr: SocketAddrV4, request: Request) -> Result<Answer, RpcError> {
        let rpc_id = RpcId::random();
        let bytes = Datagram {
            rpc_id,
            node_id: self.own,
            body: Body::Request(Ok(request)),
        }
        .encode();
        if bytes.len() > MAX_DATAGRAM {
            return Err(RpcError::Oversized);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().map_err(|_| RpcError::Busy)?;
            if pending.len() >= MAX_PENDING {
                return Err(RpcError::Busy);
            }
            pending.insert(rpc_id, Pending { addr, tx });
        }
        let _guard = PendingGuard {
            rpc: self,
            id: rpc_id,
        };
        self.socket.send_to(&bytes, SocketAddr::V4(addr)).await?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(RpcError::Timeout(self.timeout)),
        }
    }

    /// Hands an answer to its waiting call. False when nothing waits for it from that address
    /// (late, forged or unsolicited).
    pub fn complete(&self, from: SocketAddrV4, datagram: Datagram) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        match pending.get(&datagram.rpc_id) {
            Some(p) if p.addr == from => {}
            _ => return false,
        }
        let Some(p) = pending.remove(&datagram.rpc_id) else {
            return false;
        };
        let result = match datagram.body {
            Body::Response(v) => Ok((datagram.node_id, v)),
            Body::Error { kind, message } => Err(RpcError::Remote {
                kind: String::from_utf8_lossy(&kind).into_owned(),
                message: String::from_utf8_lossy(&message).into_owned(),
            }),
            Body::Request(_) => return false,
        };
        let _ = p.tx.send(result);
        true
    }

    /// Sends a response or error datagram (best effort: UDP).
    pub async fn reply(&self, to: SocketAddrV4, rpc_id: RpcId, body: Body) {
        let bytes = Datagram {
            rpc_id,
            node_id: self.own,
            body,
        }
        .encode();
        if bytes.len() > MAX_DATAGRAM {
            tracing::debug!(len = bytes.len(), "dht reply too large; not sent");
            return;
        }
        if let Err(e) = self.socket.send_to(&bytes, SocketAddr::V4(to)).await {
            tracing::debug!(%to, error = %e, "dht reply failed");
        }
    }

    /// Whether a request from `ip` fits its rate limit.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        match self.limiter.lock() {
            Ok(mut l) => l.admit(ip, now),
            Err(_) => false,
        }
    }
}

/// A token bucket per source IP, with a bounded number of sources.
struct RateLimiter {
    per_second: f64,
    burst: f64,
    sources: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    fn new(per_second: u32) -> RateLimiter {
        let per_second = f64::from(per_second.max(1));
        RateLimiter {
            per_second,
            burst: per_second * 2.0,
            sources: HashMap::new(),
        }
    }

    fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= MAX_TRACKED_SOURCES && !self.sources.contains_key(&ip) {
            // Forget sources whose bucket has refilled; they start full again anyway.
            let (rate, burst) = (self.per_second, self.burst);
            self.sources.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.sources.len() >= MAX_TRACKED_SOURCES {
                return false;
            }
        }
        let (tokens, at) = self.sources.entry(ip).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_per_source() {
        let mut l = RateLimiter::new(5);
        let now = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let admitted = (0..100).filter(|_| l.admit(a, now)).count();
        assert_eq!(admitted, 10);
        assert!(l.admit(b, now));
        assert!(l.admit(a, now + Duration::from_millis(300)));
    }
}
