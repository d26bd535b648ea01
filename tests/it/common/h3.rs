//! A test HTTP/3 client connection: QUIC from a chosen local address with chosen receive
//! windows (small ones make a client whose unread responses stall the server), certificate
//! checks off (test servers are self-signed), the h3 driver running in the background.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prism_lite::quic::{self, Verify};

use super::net::within;

/// An open HTTP/3 connection; dropping it closes the connection.
pub struct H3Conn {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    /// Held so the connection and its endpoint live as long as this value.
    _conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl H3Conn {
    /// Connects from `from` (an IP address) to `addr` with the given per-stream and
    /// per-connection receive windows.
    pub async fn connect(from: &str, addr: SocketAddr, windows: (u32, u32)) -> H3Conn {
        let mut cfg =
            quic::client_config(&Verify::Insecure, &[quic::ALPN_H3], Duration::from_secs(30))
                .unwrap();
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(quinn::VarInt::from_u32(windows.0))
            .receive_window(quinn::VarInt::from_u32(windows.1));
        cfg.transport_config(Arc::new(t));
        let mut endpoint = quic::client_endpoint(format!("{from}:0").parse().unwrap()).unwrap();
        endpoint.set_default_client_config(cfg);
        let conn = within("quic connect", endpoint.connect(addr, "localhost").unwrap())
            .await
            .unwrap();
        let (mut driver, send) = within(
            "h3 setup",
            h3::client::new(h3_quinn::Connection::new(conn.clone())),
        )
        .await
        .unwrap();
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        H3Conn {
            send,
            _conn: conn,
            _endpoint: endpoint,
        }
    }

    /// Sends a GET for `path` (request finished, response not read).
    pub async fn get(
        &self,
        path: &str,
    ) -> h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes> {
        let mut send = self.send.clone();
        let req = http::Request::get(format!("https://localhost{path}"))
            .body(())
            .unwrap();
        let mut stream = within("h3 request", send.send_request(req)).await.unwrap();
        // Not checked: h3 may write a grease frame here, which fails if the server has already
        // refused the stream; the caller sees that in the response.
        let _ = within("h3 finish", stream.finish()).await;
        stream
    }
}
