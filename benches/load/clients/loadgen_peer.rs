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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clients::{arg, read_hashes, run_load, Raw, RawProto, Span};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = arg(&args, "--addr")
        .context("--addr HOST:PORT is required")?
        .parse()?;
    let hashes = Arc::new(read_hashes(
        &arg(&args, "--hashes").context("--hashes FILE is required")?,
    )?);
    let connections: usize = arg(&args, "--connections").map_or(Ok(64), |v| v.parse())?;
    let duration: f64 = arg(&args, "--duration").map_or(Ok(10.0), |v| v.parse())?;
    let timeout: f64 = arg(&args, "--timeout").map_or(Ok(60.0), |v| v.parse())?;
    let proto = if args.iter().any(|a| a == "--http1") {
        RawProto::Http1
    } else {
        RawProto::Peer
    };
    let once = args.iter().any(|a| a == "--once");
    let span = if once {
        Span::Once {
            timeout: Duration::from_secs_f64(timeout),
        }
    } else {
        Span::For(Duration::from_secs_f64(duration))
    };
    // Timed runs verify every connection's first body; a storm verifies every 50th connection's
    // (its only body), so client hashing does not dominate the latencies it measures.
    let run = run_load(connections, span, &hashes, |i| {
        Raw::connect(proto, addr, !once || i % 50 == 0)
    })
    .await?;
    if let Some(e) = &run.first_error {
        eprintln!("first error: {e}");
    }
    println!("{}", run.result_line());
    Ok(())
}
