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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clients::{arg, read_hashes, run_load, Span, H3};

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
    let span = Span::For(Duration::from_secs_f64(duration));
    let run = run_load(connections, span, &hashes, |_| H3::connect(addr)).await?;
    if let Some(e) = &run.first_error {
        eprintln!("first error: {e}");
    }
    println!("{}", run.result_line());
    Ok(())
}
