//! The HTTP/3 flood for `benches/hostile/flood.py`: from 127.0.0.2, `--conns` QUIC connections
//! with tiny receive windows, each opening `--streams` requests for `--path` and never reading
//! them, so the server's sends stall. Prints `opened N connections, M streams` once they are
//! all open, then holds them until its standard input closes (flood.py closes it when the
//! flood is over), or `--max-secs` at the latest, so it always stops by itself.
//!
//! ```text
//! cargo run --release --example flood_h3 -- --addr 127.0.0.1:5568 --path /get/HASH \
//!     [--conns 40] [--streams 32] [--max-secs 120]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
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

/// Everything one connection holds open: dropping it closes the connection.
type Held = Vec<Box<dyn Send>>;

async fn stalled_connection(cli: &Cli) -> anyhow::Result<Held> {
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
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut held: Held = vec![Box::new(endpoint), Box::new(conn)];
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
        match tokio::time::timeout(Duration::from_secs(10), stalled_connection(&cli)).await {
            Ok(Ok(h)) => held.push(h),
            _ => refused += 1,
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
    drop(held);
    Ok(())
}
