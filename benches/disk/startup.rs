//! Start-up of `prism-lite blobcache` over a lone disk store of many blobs: time to the first
//! served hit, time until the index is complete, and peak RSS. Driven by `benches/disk/run.sh`.
//!
//! ```text
//! disk_startup --bin target/release/prism-lite --store DIR --probe HASH [--runs 3] [--cold]
//! ```
//!
//! Each run starts the binary with a fresh config (HTTP and metrics on free 127.0.0.1 ports),
//! then polls: `GET /blob?hash=PROBE` until it answers 200 (first hit), and `/metrics` until
//! `prism_disk_index_complete{component="disk"}` is 1 (a binary without that gauge rebuilds
//! before serving: its index is complete at the first hit). Peak RSS is `VmHWM` once the index is
//! complete. `--cold` drops the page cache before each run (root only:
//! `sync; echo 3 > /proc/sys/vm/drop_caches`). Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The prism-lite binary.
    #[arg(long)]
    bin: PathBuf,
    /// The disk store's directory (sharding_size 2).
    #[arg(long)]
    store: PathBuf,
    /// A blob known to be in the store.
    #[arg(long)]
    probe: String,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Drop the page cache before each run.
    #[arg(long)]
    cold: bool,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

struct Run {
    first_hit: Duration,
    index_complete: Duration,
    peak_rss_mib: f64,
    blobs: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        if args.cold {
            drop_page_cache()?;
        }
        let run = one_run(&args).with_context(|| format!("run {i}"))?;
        println!(
            "run {i}: first hit {:.2} s, index complete {:.2} s, peak RSS {:.0} MiB, {} blobs indexed",
            run.first_hit.as_secs_f64(),
            run.index_complete.as_secs_f64(),
            run.peak_rss_mib,
            run.blobs
        );
        runs.push(run);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median: first hit {:.2} s, index complete {:.2} s, peak RSS {:.0} MiB ({} runs{})",
        median(runs.iter().map(|r| r.first_hit.as_secs_f64()).collect()),
        median(
            runs.iter()
                .map(|r| r.index_complete.as_secs_f64())
                .collect()
        ),
        median(runs.iter().map(|r| r.peak_rss_mib).collect()),
        runs.len(),
        if args.cold {
            ", cold page cache"
        } else {
            ", warm page cache"
        }
    );
    Ok(())
}

fn one_run(args: &Args) -> anyhow::Result<Run> {
    let conf = tempfile::tempdir()?;
    let http = free_port()?;
    let metrics = free_port()?;
    std::fs::write(
        conf.path().join("blobcache.yaml"),
        format!(
            "servers:\n  http: {{address: 127.0.0.1, port: {http}}}\nstore:\n  disk: {{name: disk, mount_point: {}, sharding_size: 2, max_size: 100TB}}\n",
            args.store.display()
        ),
    )?;
    let log = std::fs::File::create(conf.path().join("log"))?;
    let started = Instant::now();
    let child = Command::new(&args.bin)
        .arg("blobcache")
        .arg("--conf-dir")
        .arg(conf.path())
        .args(["--metrics-port", &metrics.to_string()])
        .args(["--metrics-address", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting prism-lite")?;
    let mut child = KillOnDrop(child);
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], metrics));
    let deadline = started + Duration::from_secs(args.timeout);
    let blob_path = format!("/blob?hash={}", args.probe);

    let first_hit = loop {
        if let Ok((200, _)) = http_get(http_addr, &blob_path) {
            break started.elapsed();
        }
        check_alive(&mut child.0, deadline)?;
        std::thread::sleep(Duration::from_millis(2));
    };
    let gauge = "prism_disk_index_complete{component=\"disk\"}";
    let index_complete = loop {
        if let Ok((200, text)) = http_get(metrics_addr, "/metrics") {
            match metric(&text, gauge) {
                Some(v) if v >= 1.0 => break started.elapsed(),
                Some(_) => {}
                // An older binary without the gauge indexes everything before it serves.
                None => break first_hit,
            }
        }
        check_alive(&mut child.0, deadline)?;
        std::thread::sleep(Duration::from_millis(20));
    };
    let (_, text) = http_get(metrics_addr, "/metrics")?;
    let blobs = metric(&text, "prism_store_blobs{component=\"disk\"}").unwrap_or(0.0) as u64;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id()))?;
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM")?;
    Ok(Run {
        first_hit,
        index_complete,
        peak_rss_mib: peak_kib / 1024.0,
        blobs,
    })
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn check_alive(child: &mut Child, deadline: Instant) -> anyhow::Result<()> {
    if let Some(status) = child.try_wait()? {
        bail!("prism-lite exited: {status}");
    }
    if Instant::now() > deadline {
        bail!("timed out");
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A minimal HTTP/1.1 GET: status code and body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

fn drop_page_cache() -> anyhow::Result<()> {
    let synced = Command::new("sync").status()?;
    anyhow::ensure!(synced.success(), "sync failed");
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .context("dropping the page cache needs root (echo 3 > /proc/sys/vm/drop_caches)")
}
