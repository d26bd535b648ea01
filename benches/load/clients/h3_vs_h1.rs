//! HTTP/1.1 vs HTTP/3 throughput and latency on loopback, against one in-process cache.
//!
//! 32 x 2 MiB blobs in a `mem` root, served by `servers.http` and `servers.http3` at once;
//! C=8 clients fetch blobs round-robin for ~5 s over each protocol (HTTP/1.1: one keep-alive
//! connection per client; HTTP/3: one QUIC connection per client). Prints MB/s, p50 and p99.
//!
//! `cargo run --release --example h3_vs_h1 [seconds] [clients]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[path = "clients.rs"]
mod clients;

use anyhow::Context;
use bytes::Bytes;
use clients::{run_load, Fetch, Run, Span, H3};
use prism_lite::app::{self, RunOptions};
use prism_lite::blob::{BlobHash, MAX_BLOB_SIZE};
use prism_lite::config::{self, BlobcacheConfig};

const BLOBS: u64 = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let cfg: BlobcacheConfig = config::parse(
        "servers:\n  http: {port: 0, address: 127.0.0.1, max_concurrent_requests: 64}\n  \
         http3: {port: 0, address: 127.0.0.1, max_concurrent_requests: 64}\n\
         store: {mem: {name: ram, max_size: 256MiB}}\n",
        "bench.yaml",
    )?;
    let running = app::start(
        cfg,
        RunOptions {
            conf_dir: ".".into(),
            metrics_addr: "127.0.0.1:0".parse()?,
            disable_blocklist: false,
        },
    )
    .await?;
    let mut hashes = Vec::new();
    for seed in 0..BLOBS {
        let data = pseudo_random(seed, MAX_BLOB_SIZE);
        let hash = BlobHash::of(&data);
        running.store.put(&hash, data).await?;
        hashes.push(hash);
    }
    let hashes = Arc::new(hashes);
    let duration = Duration::from_secs(secs);
    println!(
        "{BLOBS} x 2 MiB blobs, {clients} concurrent clients, {secs} s per protocol, loopback"
    );

    let http = running.http_addr.context("http not started")?;
    let h1 = run_load(clients, Span::For(duration), &hashes, move |_| async move {
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .http1_only()
            .build()?;
        Ok(H1(c, http))
    })
    .await?;
    anyhow::ensure!(h1.errors == 0, "HTTP/1.1: {:?}", h1.first_error);
    report("HTTP/1.1", &h1, duration);

    let h3_addr = running.http3_addr.context("http3 not started")?;
    let h3 = run_load(clients, Span::For(duration), &hashes, move |_| {
        H3::connect(h3_addr)
    })
    .await?;
    anyhow::ensure!(h3.errors == 0, "HTTP/3: {:?}", h3.first_error);
    report("HTTP/3  ", &h3, duration);

    running.stop().await;
    Ok(())
}

struct H1(reqwest::Client, SocketAddr);

impl Fetch for H1 {
    async fn fetch(&mut self, hash: BlobHash) -> anyhow::Result<usize> {
        let r = self
            .0
            .get(format!("http://{}/blob?hash={hash}", self.1))
            .send()
            .await?
            .error_for_status()?;
        Ok(r.bytes().await?.len())
    }
}

fn report(label: &str, run: &Run, duration: Duration) {
    let pct = |p: f64| run.percentile(p);
    println!(
        "{label}: {:>8.1} MB/s  {:>6} requests  p50 {:>7.2} ms  p99 {:>7.2} ms",
        run.bytes as f64 / 1e6 / duration.as_secs_f64(),
        run.latencies.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

/// Deterministic incompressible-looking bytes.
fn pseudo_random(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}
