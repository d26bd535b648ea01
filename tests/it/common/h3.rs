//! The test HTTP/3 client: one QUIC connection with the h3 driver running in the background,
//! certificate checks off (test servers are self-signed). Most tests connect from 127.0.0.1
//! with the project's own client transport settings ([`H3Client::connect`]); the ones about
//! slow or stalled readers choose the local address and small receive windows
//! ([`H3Client::options`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{Buf, Bytes, BytesMut};
use prism_lite::quic::{self, Verify};

use super::net::within;
use super::TEST_TIMEOUT;

/// A request stream whose response the caller reads itself (or never reads).
pub type H3Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// An open HTTP/3 connection; dropping it closes the connection.
pub struct H3Client {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    conn: quinn::Connection,
    /// Held so the endpoint lives as long as the connection.
    _endpoint: quinn::Endpoint,
}

/// How to connect: which ALPNs to offer, from which local address, and with which receive
/// windows.
pub struct H3ClientOptions<'a> {
    alpn: &'a [&'a [u8]],
    local_ip: IpAddr,
    receive_windows: Option<(u32, u32)>,
}

impl<'a> H3ClientOptions<'a> {
    /// Connects from `local_ip` (an IP address, e.g. a second loopback address so the server's
    /// per-address bounds see a different client) instead of 127.0.0.1.
    pub fn local_ip(mut self, local_ip: &str) -> Self {
        self.local_ip = local_ip.parse().expect("local_ip is an IP address");
        self
    }

    /// Receive windows of `stream` bytes per stream and `connection` bytes per connection. Small
    /// ones make a client whose unread responses stall the server: it cannot hand a body to QUIC
    /// beyond what the client has room for. With windows set, the rest of the transport is
    /// quinn's defaults, not the project's client settings.
    pub fn receive_windows(mut self, stream: u32, connection: u32) -> Self {
        self.receive_windows = Some((stream, connection));
        self
    }

    /// Opens the QUIC connection to `addr` and sets up h3 on it, each step under the test
    /// timeout. A handshake the server refuses (e.g. no common ALPN) is an error.
    pub async fn connect(self, addr: SocketAddr) -> anyhow::Result<H3Client> {
        let mut cfg = quic::client_config(&Verify::Insecure, self.alpn, Duration::from_secs(30))?;
        if let Some((stream, connection)) = self.receive_windows {
            let mut t = quinn::TransportConfig::default();
            t.stream_receive_window(quinn::VarInt::from_u32(stream))
                .receive_window(quinn::VarInt::from_u32(connection));
            cfg.transport_config(Arc::new(t));
        }
        let mut endpoint = quic::client_endpoint(SocketAddr::new(self.local_ip, 0))?;
        endpoint.set_default_client_config(cfg);
        let conn = tokio::time::timeout(TEST_TIMEOUT, endpoint.connect(addr, "localhost")?)
            .await
            .context("quic connect timed out")??;
        let (mut driver, send) = tokio::time::timeout(
            TEST_TIMEOUT,
            h3::client::new(h3_quinn::Connection::new(conn.clone())),
        )
        .await
        .context("h3 setup timed out")??;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3Client {
            send,
            conn,
            _endpoint: endpoint,
        })
    }
}

impl H3Client {
    /// Connects to `addr` from 127.0.0.1 offering `alpn`, with the project's client transport
    /// settings.
    pub async fn connect(addr: SocketAddr, alpn: &[&[u8]]) -> anyhow::Result<H3Client> {
        H3Client::options(alpn).connect(addr).await
    }

    /// Options offering `alpn`, from 127.0.0.1, with the project's receive windows, to change
    /// before connecting.
    pub fn options<'a>(alpn: &'a [&'a [u8]]) -> H3ClientOptions<'a> {
        H3ClientOptions {
            alpn,
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            receive_windows: None,
        }
    }

    /// The QUIC connection, for its negotiated ALPN, its statistics or closing it.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// GETs `path`: the response head and the whole body, all under the test timeout.
    pub async fn get(&self, path: &str) -> (http::Response<()>, Bytes) {
        self.request(http::Method::GET, path).await
    }

    /// Sends `method` for `path`: the response head and the whole body, all under the test
    /// timeout.
    pub async fn request(&self, method: http::Method, path: &str) -> (http::Response<()>, Bytes) {
        self.request_with(method, path, &[]).await
    }

    /// [`request`](Self::request) with request `headers`.
    pub async fn request_with(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (http::Response<()>, Bytes) {
        within("h3 request", async {
            let mut stream = self.open_with(method, path, headers).await;
            // A stop with H3_NO_ERROR before our end is no failure (seen once in a suite run
            // beside two busy loops and a fuzzer): see `request_sent`.
            prism_lite::protocol::http3::request_sent(stream.finish().await)
                .expect("finish request");
            let resp = stream.recv_response().await.expect("response head");
            let mut body = BytesMut::new();
            while let Some(mut chunk) = stream.recv_data().await.expect("body") {
                body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            }
            (resp, body.freeze())
        })
        .await
    }

    /// Sends a GET for `path` (request finished, response not read), for tests that read the
    /// response slowly, partly or never.
    pub async fn send_get(&self, path: &str) -> H3Stream {
        let mut stream = within("h3 request", self.open(http::Method::GET, path)).await;
        // Not checked: h3 may write a grease frame here, which fails if the server has already
        // refused the stream; the caller sees that in the response.
        let _ = within("h3 finish", stream.finish()).await;
        stream
    }

    /// Opens a request stream with `method` for `path`; the request side is left open.
    async fn open(&self, method: http::Method, path: &str) -> H3Stream {
        self.open_with(method, path, &[]).await
    }

    async fn open_with(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> H3Stream {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(()).unwrap();
        let mut send = self.send.clone();
        send.send_request(req).await.expect("send request")
    }
}
