//! `http3`: another cache's `servers.http3` (reflector.go or prism-lite) as an origin.
//!
//! One QUIC connection per upstream, reused by every request (each request is one HTTP/3
//! stream on it), because a handshake per miss costs a round trip or two on the long links a
//! regional cache sits behind. reflector.go's client dials a new connection per blob; we do not.
//! The connection is re-dialled when it is found closed (idle timeout, upstream restart), and
//! a request that fails because its reused connection died underneath it is retried once on a
//! fresh one, so an upstream restart costs the caller nothing.
//!
//! `get` asks `/get/{hash}?trace=true`, reads at most 2 MiB, verifies the SHA-384 and extends
//! the upstream's `Via` trace; `has` asks `/has/{hash}` (200 = yes, 404 = no). The store is
//! read-only, as in reflector.go. (The API: [`crate::protocol::http3`].)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{header, Request, StatusCode};

use crate::blob::{BlobHash, MAX_BLOB_SIZE};
use crate::config::{Endpoint, Http3StoreConfig};
use crate::protocol::http3::{get_path, has_path};
use crate::quic::{self, Verify};
use crate::store::body::CappedBuffer;
use crate::store::origin::Origin;
use crate::store::reconnect::{retry_once_if_dead, Failure, Reuse};
use crate::store::remote::Remote;
use crate::store::{Blob, BuildContext, StoreError, StoreResult};

/// Idle timeout of the upstream connection (kept alive by pings at a third of it).
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a non-blob answer (`/has/`, an error text) read back.
const MAX_SMALL_BODY: usize = 64 * 1024;

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// The live connection to the upstream.
#[derive(Clone)]
struct Upstream {
    quic: quinn::Connection,
    send: SendRequest,
}

pub struct Http3Store {
    origin: Origin,
    /// `host:port` as configured.
    address: String,
    /// The TLS server name (the host part of `address`).
    server_name: String,
    client_config: quinn::ClientConfig,
    /// The client endpoint (one UDP socket) and the current connection. Created on first use,
    /// because binding needs the runtime and the tree is built before serving starts.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    endpoint: Option<quinn::Endpoint>,
    upstream: Option<Upstream>,
}

impl Http3Store {
    /// The store for one `endpoint` of `config` (a pool has one per endpoint: see
    /// [`crate::store::pool`]).
    pub fn new(
        config: &Http3StoreConfig,
        endpoint: &Endpoint,
        ctx: &BuildContext,
    ) -> anyhow::Result<Http3Store> {
        let server_name = host_of(&endpoint.address)?;
        let verify = Verify::for_store(config)?;
        let client_config = quic::client_config(
            &verify,
            &[quic::ALPN_REFLECTOR, quic::ALPN_H3],
            CLIENT_IDLE_TIMEOUT,
        )?;
        Ok(Http3Store {
            origin: Origin::new(
                config.name(),
                config.timeout,
                &ctx.store_metrics().udp_in_bytes,
            ),
            address: endpoint.address.clone(),
            server_name,
            client_config,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    fn unavailable(&self, message: impl Into<String>) -> StoreError {
        self.origin.unavailable(message)
    }

    /// The current connection, dialling a new one if there is none or it has closed. Concurrent
    /// callers wait on the lock, so a reconnect storm is one handshake. Says whether the
    /// connection was dialled by this call ([`Reuse::Fresh`]) or already there.
    async fn connection(&self) -> StoreResult<(Upstream, Reuse)> {
        let mut state = self.state.lock().await;
        if let Some(up) = &state.upstream {
            if up.quic.close_reason().is_none() {
                return Ok((up.clone(), Reuse::Reused));
            }
            tracing::debug!(
                store = self.origin.name(),
                "http3 upstream connection closed; reconnecting"
            );
            state.upstream = None;
        }
        let addr = self.resolve().await?;
        let endpoint = match &state.endpoint {
            Some(e) if same_family(e, addr) => e.clone(),
            _ => {
                let bind: SocketAddr = if addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let mut e = quic::client_endpoint(bind).map_err(|e| {
                    self.unavailable(format!("binding a udp socket for {}: {e}", self.address))
                })?;
                e.set_default_client_config(self.client_config.clone());
                state.endpoint = Some(e.clone());
                e
            }
        };
        let conn = endpoint
            .connect(addr, &self.server_name)
            .map_err(|e| self.unavailable(format!("connecting to {}: {e}", self.address)))?
            .await
            .map_err(|e| self.unavailable(format!("connecting to {}: {e}", self.address)))?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(|e| self.unavailable(format!("starting http/3 with {}: {e}", self.address)))?;
        // The driver processes the connection's control stream; it ends with the connection.
        let name = self.origin.name().to_owned();
        tokio::spawn(async move {
            let err = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            if !err.is_h3_no_error() {
                tracing::debug!(store = %name, error = %err, "http3 upstream connection ended");
            }
        });
        tracing::debug!(store = self.origin.name(), %addr, "http3 upstream connected");
        let up = Upstream { quic: conn, send };
        state.upstream = Some(up.clone());
        Ok((up, Reuse::Fresh))
    }

    /// Forgets `dead` (unless another caller already replaced it).
    async fn forget(&self, dead: &Upstream) {
        let mut state = self.state.lock().await;
        if let Some(up) = &state.upstream {
            if up.quic.stable_id() == dead.quic.stable_id() {
                state.upstream = None;
            }
        }
    }

    async fn resolve(&self) -> StoreResult<SocketAddr> {
        tokio::net::lookup_host(&self.address)
            .await
            .map_err(|e| self.unavailable(format!("resolving {}: {e}", self.address)))?
            .next()
            .ok_or_else(|| self.unavailable(format!("{} resolves to no address", self.address)))
    }

    /// One request on the shared connection, retried once on a fresh connection if the shared
    /// one turned out to be dead (see [`retry_once_if_dead`]). The whole exchange is bounded by
    /// `timeout`.
    async fn request(&self, path: &str, limit: usize) -> StoreResult<(http::Response<()>, Bytes)> {
        self.origin
            .bounded(async {
                let first = self.connection().await?;
                retry_once_if_dead(
                    self.origin.name(),
                    first,
                    || async { Ok(self.connection().await?.0) },
                    |up| self.attempt_or_forget(up, path, limit),
                )
                .await
            })
            .await
    }

    /// [`Http3Store::attempt`], forgetting the connection when it died, so the next request
    /// (or the retry) dials a new one.
    async fn attempt_or_forget(
        &self,
        up: Upstream,
        path: &str,
        limit: usize,
    ) -> Result<(http::Response<()>, Bytes), Failure> {
        let result = self.attempt(&up, path, limit).await;
        if matches!(&result, Err(f) if f.connection_died) {
            self.forget(&up).await;
        }
        result
    }

    async fn attempt(
        &self,
        up: &Upstream,
        path: &str,
        limit: usize,
    ) -> Result<(http::Response<()>, Bytes), Failure> {
        let fail = |what: &str, e: h3::error::StreamError| Failure {
            connection_died: up.quic.close_reason().is_some()
                || matches!(
                    e,
                    h3::error::StreamError::ConnectionError { .. }
                        | h3::error::StreamError::RemoteClosing { .. }
                ),
            error: self.unavailable(format!("{what} {}{path}: {e}", self.address)),
        };
        let req = Request::get(format!("https://{}{path}", self.address))
            .body(())
            .map_err(|e| {
                Failure::from(self.unavailable(format!("building request for {path}: {e}")))
            })?;
        let mut send = up.send.clone();
        let mut stream = send
            .send_request(req)
            .await
            .map_err(|e| fail("sending request to", e))?;
        crate::protocol::http3::request_sent(stream.finish().await)
            .map_err(|e| fail("sending request to", e))?;
        let resp = stream
            .recv_response()
            .await
            .map_err(|e| fail("reading response from", e))?;
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = declared.filter(|n| *n > limit) {
            stream.stop_sending(h3::error::Code::H3_REQUEST_CANCELLED);
            return Err(self.origin.too_large(n).into());
        }
        let mut body = CappedBuffer::new(limit, declared);
        while let Some(mut chunk) = stream
            .recv_data()
            .await
            .map_err(|e| fail("reading body from", e))?
        {
            while chunk.has_remaining() {
                let part = chunk.chunk();
                let n = part.len();
                if let Err(total) = body.push(part) {
                    stream.stop_sending(h3::error::Code::H3_REQUEST_CANCELLED);
                    return Err(self.origin.too_large(total).into());
                }
                chunk.advance(n);
            }
        }
        Ok((resp, body.freeze()))
    }
}

fn same_family(endpoint: &quinn::Endpoint, addr: SocketAddr) -> bool {
    endpoint
        .local_addr()
        .map(|l| l.is_ipv4() == addr.is_ipv4())
        .unwrap_or(false)
}

/// The host part of `host:port` / `[v6]:port`, for TLS server name checks.
fn host_of(address: &str) -> anyhow::Result<String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("http3 store address {address:?} must be host:port"))?;
    port.parse::<u16>()
        .map_err(|_| anyhow::anyhow!("http3 store address {address:?} has a bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        anyhow::bail!("http3 store address {address:?} has no host");
    }
    Ok(host.to_string())
}

impl Remote for Http3Store {
    fn origin(&self) -> &Origin {
        &self.origin
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        let (resp, _) = self.request(&has_path(hash), MAX_SMALL_BODY).await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.origin.bad_status(s)),
        }
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let (resp, body) = self.request(&get_path(hash, true), MAX_BLOB_SIZE).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(StoreError::NotFound),
            s => return Err(self.origin.bad_status(s)),
        }
        let upstream = resp
            .headers()
            .get(header::VIA)
            .and_then(|v| v.to_str().ok());
        self.origin.verified_blob(hash, body, start, upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_splits_addresses() {
        assert_eq!(host_of("cache.example:5568").unwrap(), "cache.example");
        assert_eq!(host_of("127.0.0.1:5568").unwrap(), "127.0.0.1");
        assert_eq!(host_of("[::1]:5568").unwrap(), "::1");
        assert!(host_of("nohost").is_err());
        assert!(host_of(":5568").is_err());
        assert!(host_of("h:port").is_err());
    }
}
