//! HTTP/1.1 vs HTTP/3 throughput and latency on loopback, against one in-process cache.
//!
//! 32 x 2 MiB blobs in a `mem` root, served by `servers.http` and `servers.http3` at once;
//! C=8 clients fetch blobs round-robin for ~5 s over each protocol (HTTP/1.1: one keep-alive
//! connection per client; HTTP/3: one QUIC connection per client). Prints MB/s, p50 and p99.
//!
//! `cargo run --release --example h3_vs_h1 [seconds] [clients]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Buf, Bytes};
use prism_lite::app::{self, RunOptions};
use prism_lite::blob::{BlobHash, MAX_BLOB_SIZE};
use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::quic::{self, Verify};

const BLOBS: u64 = 32;

#[derive(Default)]
struct Run {
    bytes: u64,
    latencies: Vec<Duration>,
}

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
    let h1 = measure(clients, duration, &hashes, move |_| async move {
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .http1_only()
            .build()?;
        Ok(H1(c, http))
    })
    .await?;
    report("HTTP/1.1", &h1, duration);

    let h3_addr = running.http3_addr.context("http3 not started")?;
    let h3 = measure(clients, duration, &hashes, move |_| async move {
        H3::connect(h3_addr).await
    })
    .await?;
    report("HTTP/3  ", &h3, duration);

    running.stop().await;
    Ok(())
}

/// A client that can fetch one blob and return its length.
trait Fetch: Send + 'static {
    fn fetch(
        &mut self,
        hash: BlobHash,
    ) -> impl std::future::Future<Output = anyhow::Result<usize>> + Send;
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

struct H3 {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    _endpoint: quinn::Endpoint,
}

impl H3 {
    async fn connect(addr: SocketAddr) -> anyhow::Result<H3> {
        let cfg =
            quic::client_config(&Verify::Insecure, &[quic::ALPN_H3], Duration::from_secs(30))?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(cfg);
        let conn = endpoint.connect(addr, "localhost")?.await?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3 {
            send,
            _endpoint: endpoint,
        })
    }
}

impl Fetch for H3 {
    async fn fetch(&mut self, hash: BlobHash) -> anyhow::Result<usize> {
        let req = http::Request::get(format!("https://localhost/get/{hash}")).body(())?;
        let mut stream = self.send.send_request(req).await?;
        stream.finish().await?;
        let resp = stream.recv_response().await?;
        anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
        let mut n = 0;
        while let Some(chunk) = stream.recv_data().await? {
            n += chunk.remaining();
        }
        Ok(n)
    }
}

async fn measure<F, Fut, C>(
    clients: usize,
    duration: Duration,
    hashes: &Arc<Vec<BlobHash>>,
    make: F,
) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<C>>,
    C: Fetch,
{
    let mut tasks = tokio::task::JoinSet::new();
    let deadline = Instant::now() + duration;
    for i in 0..clients {
        let mut client = make(i).await?;
        let hashes = Arc::clone(hashes);
        tasks.spawn(async move {
            let mut run = Run::default();
            let mut next = i;
            while Instant::now() < deadline {
                let start = Instant::now();
                let n = client.fetch(hashes[next % hashes.len()]).await?;
                run.latencies.push(start.elapsed());
                run.bytes += n as u64;
                next += clients;
            }
            anyhow::Ok(run)
        });
    }
    let mut total = Run::default();
    while let Some(done) = tasks.join_next().await {
        let run = done??;
        total.bytes += run.bytes;
        total.latencies.extend(run.latencies);
    }
    Ok(total)
}

fn report(label: &str, run: &Run, duration: Duration) {
    let mut l = run.latencies.clone();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{label}: {:>8.1} MB/s  {:>6} requests  p50 {:>7.2} ms  p99 {:>7.2} ms",
        run.bytes as f64 / 1e6 / duration.as_secs_f64(),
        l.len(),
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
