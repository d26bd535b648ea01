//! Throughput and latency of the two front doors serving the same hot blobs.
//!
//! Starts one in-process cache (a `mem` root holding N 2 MiB blobs, `servers.peer` and
//! `servers.http` on 127.0.0.1), then runs C concurrent keep-alive clients for a fixed time over
//! the peer protocol and then over HTTP/1.1, and prints MB/s and p50/p99 request latency.
//! Clients are raw sockets (no client library overhead), each on its own connection.
//!
//! `cargo run --release --example peer_vs_http [seconds] [clients]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prism_lite::app::{self, RunOptions};
use prism_lite::blob::{verify, BlobHash, MAX_BLOB_SIZE};
use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::server::peer::{next_frame, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BLOBS: usize = 32;

#[derive(Clone, Copy, Debug)]
enum Door {
    Peer,
    Http,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let clients: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let only = args.next(); // "peer" or "http" to measure one door (for profiling)

    let cfg: BlobcacheConfig = config::parse(
        "servers:\n  peer: {address: 127.0.0.1, port: 0}\n  http: {address: 127.0.0.1, port: 0}\n\
         store: {mem: {max_size: 256MiB}}\n",
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
    let mut hashes = Vec::with_capacity(BLOBS);
    for i in 0..BLOBS {
        let data: Vec<u8> = (0..MAX_BLOB_SIZE)
            .map(|j| (j as u64 * 2_654_435_761 + i as u64 * 97) as u8 ^ (j >> 11) as u8)
            .collect();
        let hash = BlobHash::of(&data);
        running.store.put(&hash, Bytes::from(data)).await?;
        hashes.push(hash);
    }
    println!(
        "{BLOBS} blobs x {} MiB in a mem root; {clients} clients; {secs} s per front door",
        MAX_BLOB_SIZE >> 20
    );
    let peer = running.peer_addr.expect("peer server");
    let http = running.http_addr.expect("http server");
    // A short unreported warm-up of both doors first, so neither phase pays alone for first
    // page faults of client buffers and the allocator's growth.
    for (door, addr) in [(Door::Peer, peer), (Door::Http, http)] {
        run(door, addr, &hashes, clients, Duration::from_secs(1), false).await?;
    }
    // Alternate the order (P H H P) so neither door always runs in the warmer slot.
    for (door, addr) in [
        (Door::Peer, peer),
        (Door::Http, http),
        (Door::Http, http),
        (Door::Peer, peer),
    ] {
        let name = format!("{door:?}").to_lowercase();
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        run(
            door,
            addr,
            &hashes,
            clients,
            Duration::from_secs(secs),
            true,
        )
        .await?;
    }
    running.stop().await;
    Ok(())
}

async fn run(
    door: Door,
    addr: SocketAddr,
    hashes: &[BlobHash],
    clients: usize,
    time: Duration,
    report: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + time;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let hashes = hashes.to_vec();
        tasks.push(tokio::spawn(async move {
            client(door, addr, &hashes, c, deadline).await
        }));
    }
    let mut latencies = Vec::new();
    let mut bytes = 0u64;
    for t in tasks {
        let (lat, b) = t.await??;
        latencies.extend(lat);
        bytes += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if !report {
        return Ok(());
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{door:?}: {} requests, {:.0} MB/s, p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        bytes as f64 / 1e6 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

/// One keep-alive connection asking for blobs round-robin until `deadline`.
async fn client(
    door: Door,
    addr: SocketAddr,
    hashes: &[BlobHash],
    offset: usize,
    deadline: Instant,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_BLOB_SIZE + 64 * 1024);
    let mut latencies = Vec::new();
    let mut total = 0u64;
    let mut i = offset;
    while Instant::now() < deadline {
        let hash = hashes[i % hashes.len()];
        i += 1;
        let start = Instant::now();
        let request = match door {
            Door::Peer => format!(
                r#"{{"requested_blobs":["{hash}"],"lbrycrd_address":true,"blob_data_payment_rate":0.0,"requested_blob":"{hash}"}}"#
            ),
            Door::Http => format!("GET /blob?hash={hash} HTTP/1.1\r\nHost: bench\r\n\r\n"),
        };
        stream.write_all(request.as_bytes()).await?;
        let (header_len, body_len) = match door {
            Door::Peer => read_peer_header(&mut stream, &mut buf).await?,
            Door::Http => read_http_header(&mut stream, &mut buf).await?,
        };
        while buf.len() < header_len + body_len {
            if stream.read_buf(&mut buf).await? == 0 {
                anyhow::bail!("{door:?} server closed mid-body");
            }
        }
        latencies.push(start.elapsed());
        if i - offset == 1 {
            verify(&buf[header_len..header_len + body_len], &hash)?; // once per client
        }
        total += body_len as u64;
        buf.drain(..header_len + body_len);
    }
    Ok((latencies, total))
}

async fn read_peer_header(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(usize, usize)> {
    loop {
        match next_frame(buf) {
            Frame::Complete(map, used) => {
                let len = map
                    .get("incoming_blob")
                    .and_then(|b| b.get("length"))
                    .and_then(|l| l.as_u64())
                    .ok_or_else(|| anyhow::anyhow!("no blob in peer answer: {map:?}"))?;
                return Ok((used, len as usize));
            }
            Frame::Incomplete => {}
            other => anyhow::bail!("bad peer answer: {other:?}"),
        }
        if stream.read_buf(buf).await? == 0 {
            anyhow::bail!("peer server closed");
        }
    }
}

async fn read_http_header(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(usize, usize)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "http status: {head}");
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .ok_or_else(|| anyhow::anyhow!("no content-length: {head}"))?;
            return Ok((end + 4, len));
        }
        if stream.read_buf(buf).await? == 0 {
            anyhow::bail!("http server closed");
        }
    }
}
