//! What quinn alone can carry on this path: the ceiling for the HTTP/3 door.
//!
//! The same QUIC endpoints, TLS provider and transport settings as `servers.http3` and
//! `loadgen_h3` (all from `prism_lite::quic`), with no HTTP/3, no cache and no store between
//! them. `serve` answers every bidirectional stream with one 2 MiB body held in memory (the
//! same `Bytes` each time, as a memory-tier hit is); `fetch` drives C connections, each opening
//! one stream at a time, reading the body to its end and checking its length. The `RESULT` line
//! is the one the other load clients print, so `benches/load/run.sh` reads it the same way.
//!
//! ```text
//! cargo run --release --example quic_ceiling -- serve --addr 127.0.0.1:18104
//! cargo run --release --example quic_ceiling -- fetch --addr 127.0.0.1:18104 \
//!     [--connections 64] [--duration 10]
//! ```

#[path = "clients.rs"]
mod clients;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use clients::{print_run, quic_connect, run_load, Fetch, QuicConn, Span};
use prism_lite::blob::{BlobHash, MAX_BLOB_SIZE};
use prism_lite::config::Http3ServerConfig;
use prism_lite::quic;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Answer every stream with a 2 MiB body until killed.
    Serve {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// C connections fetching bodies for a fixed time; prints `RESULT ...`.
    Fetch {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Serve { addr } => serve(addr).await,
        Mode::Fetch {
            addr,
            connections,
            duration,
        } => {
            // run_load hands each client a hash; the body is the same whatever it asks.
            let hashes = Arc::new(vec![BlobHash::of(b"quic ceiling")]);
            let span = Span::For(Duration::from_secs_f64(duration));
            let run = run_load(connections, span, &hashes, |_| RawQuic::connect(addr)).await?;
            print_run(&run);
            Ok(())
        }
    }
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    // The door's defaults (send window, stream limits, idle timeout), as `servers.http3: {}`.
    let cfg: Http3ServerConfig = serde_yaml::from_str("{}")?;
    let config = quic::server_config(&cfg, quic::server_identity(&cfg)?)?;
    let endpoint = quic::server_endpoint(config, addr)?;
    let body = Bytes::from(vec![0x5a; MAX_BLOB_SIZE]);
    println!("serving on {}", endpoint.local_addr()?);
    while let Some(incoming) = endpoint.accept().await {
        let body = body.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let body = body.clone();
                tokio::spawn(async move {
                    // The request is one byte; its content does not matter.
                    if recv.read_to_end(16).await.is_ok() && send.write_chunk(body).await.is_ok() {
                        let _ = send.finish();
                    }
                });
            }
        });
    }
    Ok(())
}

/// One QUIC connection with the load client's settings; one stream per fetch.
struct RawQuic(QuicConn);

impl RawQuic {
    async fn connect(addr: SocketAddr) -> anyhow::Result<RawQuic> {
        Ok(RawQuic(quic_connect(addr).await?))
    }
}

impl Fetch for RawQuic {
    async fn fetch(&mut self, _hash: BlobHash) -> anyhow::Result<usize> {
        let (mut send, mut recv) = self.0.conn.open_bi().await?;
        send.write_all(b"?").await?;
        send.finish()?;
        let mut n = 0;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
            n += chunk.bytes.len();
        }
        anyhow::ensure!(
            n == MAX_BLOB_SIZE,
            "{n} body bytes, expected {MAX_BLOB_SIZE}"
        );
        Ok(n)
    }

    async fn close(self) {
        self.0.close(0).await;
    }
}
