//! Load client for `servers.http3`: C concurrent QUIC connections, each fetching blobs from a
//! hash list round-robin (`GET /get/HASH`, one request stream at a time) for a fixed time;
//! prints `RESULT req_s=.. mb_s=.. p50_ms=.. p99_ms=.. ok=.. errors=..`.
//!
//! ```text
//! cargo run --release --example loadgen_h3 -- --addr 127.0.0.1:5568 --hashes hashes.txt \
//!     [--connections 64] [--duration 10]
//! ```

#[path = "clients.rs"]
mod clients;

use std::time::Duration;

use clap::Parser;
use clients::{print_run, run_load, LoadArgs, Span, H3};

/// HTTP/3 load client (see the module docs).
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let hashes = cli.load.hash_list()?;
    let addr = cli.load.addr;
    let span = Span::For(Duration::from_secs_f64(cli.load.duration));
    let run = run_load(cli.load.connections, span, &hashes, |_| H3::connect(addr)).await?;
    print_run(&run);
    Ok(())
}
