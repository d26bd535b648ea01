//! The HTTP/3 flood for `benches/hostile/flood.py`: from 127.0.0.2, `--conns` QUIC connections
//! with tiny receive windows, each opening `--streams` requests for `--path` and never reading
//! them, so the server's sends stall. Prints `opened N connections, M streams` once they are
//! all open, then holds them until its standard input closes (flood.py closes it when the
//! flood is over), or `--max-secs` at the latest, so it always stops by itself. It then closes
//! every connection and waits (bounded) for the closes to be sent, so the server frees them at
//! once rather than at its idle timeout.
//!
//! ```text
//! cargo run --release --example flood_h3 -- --addr 127.0.0.1:5568 --path /get/HASH \
//!     [--conns 40] [--streams 32] [--max-secs 120]
//! ```

#[path = "../load/clients/clients.rs"]
mod clients;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use clients::{QuicConn, H3_NO_ERROR};
use prism_lite::quic::{self, Verify};
use tokio::io::AsyncReadExt;

#[derive(Parser)]
struct Cli {
    /// The server's HTTP/3 address.
    #[arg(long)]
    addr: SocketAddr,
    /// The request path (e.g. `/get/HASH` or `/stream/SD_HASH`).
    #[arg(long)]
    path: String,
    #[arg(long, default_value_t = 40)]
    conns: usize,
    #[arg(long, default_value_t = 32)]
    streams: usize,
    /// The attacker's address.
    #[arg(long, default_value = "127.0.0.2")]
    from: std::net::IpAddr,
    #[arg(long, default_value_t = 120)]
    max_secs: u64,
}

/// How long one connection may take to open, and then to open its streams.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// One flooding connection: the QUIC connection, and its h3 handles and unread streams.
struct Stalled {
    quic: QuicConn,
    held: Vec<Box<dyn Send>>,
}

impl Stalled {
    async fn close(self) {
        self.quic.close(H3_NO_ERROR).await;
        drop(self.held);
    }
}

async fn stalled_connection(cli: &Cli) -> anyhow::Result<Stalled> {
    let quic = tokio::time::timeout(OPEN_TIMEOUT, connect(cli)).await??;
    let opened = tokio::time::timeout(OPEN_TIMEOUT, open_streams(cli, &quic.conn))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("streams not opened in {OPEN_TIMEOUT:?}")));
    match opened {
        Ok(held) => Ok(Stalled { quic, held }),
        Err(e) => {
            quic.close(H3_NO_ERROR).await;
            Err(e)
        }
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<QuicConn> {
    let mut cfg =
        quic::client_config(&Verify::Insecure, &[quic::ALPN_H3], Duration::from_secs(60))?;
    // Tiny windows: the server can send only a little before it must wait for this client.
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(quinn::VarInt::from_u32(16 * 1024))
        .receive_window(quinn::VarInt::from_u32(64 * 1024));
    cfg.transport_config(Arc::new(t));
    let mut endpoint = quinn::Endpoint::client(SocketAddr::new(cli.from, 0))?;
    endpoint.set_default_client_config(cfg);
    let conn = endpoint.connect(cli.addr, "localhost")?.await?;
    Ok(QuicConn { endpoint, conn })
}

/// `--streams` requests on `conn`, never read; the returned handles keep them open.
async fn open_streams(cli: &Cli, conn: &quinn::Connection) -> anyhow::Result<Vec<Box<dyn Send>>> {
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut held: Vec<Box<dyn Send>> = Vec::new();
    for _ in 0..cli.streams {
        let mut send = send.clone();
        let req = http::Request::get(format!("https://localhost{}", cli.path)).body(())?;
        let mut stream = send.send_request(req).await?;
        let _ = stream.finish().await;
        held.push(Box::new(stream));
    }
    held.push(Box::new(send));
    Ok(held)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..cli.conns {
        match stalled_connection(&cli).await {
            Ok(h) => held.push(h),
            Err(_) => refused += 1,
        }
    }
    println!(
        "opened {} connections, {} streams ({refused} refused)",
        held.len(),
        held.len() * cli.streams
    );
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let until_closed = async {
        while let Ok(n) = stdin.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(cli.max_secs), until_closed).await;
    let mut closing = tokio::task::JoinSet::new();
    for h in held {
        closing.spawn(h.close());
    }
    while closing.join_next().await.is_some() {}
    Ok(())
}
