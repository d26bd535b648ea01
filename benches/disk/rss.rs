//! Memory while 2,000 responses hold disk-tier blobs at once: a disk hit is a map of the page
//! cache, so private memory (`RssAnon`) does not grow by a blob per download.
//!
//! ```text
//! cargo run --release --example disk_rss -- [--blobs 200] [--downloads 2000] [--dir /var/tmp]
//! ```
//!
//! Writes `--blobs` distinct 2 MiB blobs to a disk store in a temporary directory under `--dir`
//! (a real filesystem), then gets `--downloads` of them concurrently (round robin) and holds
//! every answer, as responses in flight do. Prints `RssAnon`, `RssFile` and the proportional
//! file-backed share (`Pss_File`, which counts a page mapped twice once) before and while held,
//! next to what a copy per download would take.

use std::sync::Arc;

use clap::Parser;
use prism_lite::blob::{BlobHash, MAX_BLOB_SIZE};
use prism_lite::config::{BlobcacheConfig, StoreConfig};
use prism_lite::metrics::Metrics;
use prism_lite::store::disk::DiskStore;
use prism_lite::store::{BlobStore, BuildContext};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    blobs: usize,
    #[arg(long, default_value_t = 2000)]
    downloads: usize,
    #[arg(long, default_value = "/var/tmp")]
    dir: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir_in(&args.dir)?;
    let yaml = format!(
        "store: {{disk: {{mount_point: {}, sharding_size: 2, max_size: 100GB}}}}",
        dir.path().display()
    );
    let cfg: BlobcacheConfig = prism_lite::config::parse(&yaml, "bench.yaml")?;
    let StoreConfig::Disk(disk) = cfg.store else {
        anyhow::bail!("not a disk store")
    };
    let ctx = BuildContext {
        metrics: Arc::new(Metrics::new()),
    };
    let store = Arc::new(DiskStore::open(&disk, &ctx)?);
    store.wait_indexed(None);
    let mut hashes = Vec::new();
    for i in 0..args.blobs as u64 {
        let data: Vec<u8> = (0..MAX_BLOB_SIZE)
            .map(|j| (j as u64).wrapping_mul(i + 1).to_le_bytes()[j % 8])
            .collect();
        let hash = BlobHash::of(&data);
        store.put(&hash, data.into()).await?;
        hashes.push(hash);
    }
    let before = Memory::now()?;
    let gets = (0..args.downloads).map(|i| {
        let store = Arc::clone(&store);
        let hash = hashes[i % hashes.len()];
        async move { store.get(&hash).await.map(|b| b.data) }
    });
    let held: Vec<_> = futures_util::future::join_all(gets)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let during = Memory::now()?;
    let held_bytes: usize = held.iter().map(|b| b.len()).sum();
    println!(
        "{} downloads of {} distinct 2 MiB disk blobs held at once ({} MiB of answers)",
        args.downloads,
        args.blobs,
        held_bytes >> 20
    );
    println!("before: {before}");
    println!("held:   {during}");
    println!(
        "RssAnon grew by {} MiB (a copy per download would be {} MiB)",
        (during.anon_kib - before.anon_kib) / 1024,
        held_bytes >> 20
    );
    drop(held);
    Ok(())
}

struct Memory {
    anon_kib: i64,
    file_kib: i64,
    pss_file_kib: i64,
}

impl Memory {
    fn now() -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
        let field = |text: &str, name: &str| -> i64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(-1)
        };
        Ok(Memory {
            anon_kib: field(&status, "RssAnon:"),
            file_kib: field(&status, "RssFile:"),
            pss_file_kib: field(&rollup, "Pss_File:"),
        })
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RssAnon {} MiB, RssFile {} MiB, Pss_File {} MiB",
            self.anon_kib / 1024,
            self.file_kib / 1024,
            self.pss_file_kib / 1024
        )
    }
}
