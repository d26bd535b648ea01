//! Load client for the LBRY peer protocol (and, for an apples-to-apples figure, raw HTTP/1.1).
//!
//! C concurrent keep-alive connections each send the SDK's blob request (`requested_blobs` +
//! `requested_blob`) for blobs from a hash list, round-robin, for a fixed time; prints
//! `RESULT req_s=.. mb_s=.. p50_ms=.. p99_ms=.. ok=.. errors=..`. The first body on every
//! connection is verified against its hash (with `--once`, on every 50th connection).
//!
//! ```text
//! cargo run --release --example loadgen_peer -- --addr 127.0.0.1:5567 --hashes hashes.txt \
//!     [--connections 64] [--duration 10] [--http1] [--once [--timeout 60]]
//! ```
//!
//! `--http1` sends `GET /blob?hash=H` instead (the same client loop over the HTTP door).
//! `--once` is a storm: every connection is opened first, then all send one request at the same
//! moment; the run ends when all are answered (or after `--timeout` seconds).

#[path = "clients.rs"]
mod clients;

use std::time::Duration;

use clap::Parser;
use clients::{print_run, run_load, LoadArgs, Raw, RawProto, Span};

/// Peer-protocol (or `--http1`) load client (see the module docs).
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
    /// Send `GET /blob?hash=H` over HTTP/1.1 instead of the peer protocol.
    #[arg(long)]
    http1: bool,
    /// Storm: open every connection, then all send one request at once.
    #[arg(long)]
    once: bool,
    /// With `--once`: give up after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let hashes = cli.load.hash_list()?;
    let addr = cli.load.addr;
    let proto = if cli.http1 {
        RawProto::Http1
    } else {
        RawProto::Peer
    };
    let once = cli.once;
    let span = if once {
        Span::Once {
            timeout: Duration::from_secs_f64(cli.timeout),
        }
    } else {
        Span::For(Duration::from_secs_f64(cli.load.duration))
    };
    // Timed runs verify every connection's first body; a storm verifies every 50th connection's
    // (its only body), so client hashing does not dominate the latencies it measures.
    let run = run_load(cli.load.connections, span, &hashes, |i| {
        Raw::connect(proto, addr, !once || i % 50 == 0)
    })
    .await?;
    print_run(&run);
    Ok(())
}
