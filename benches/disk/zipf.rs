//! Eviction quality of the disk tier: the same Zipf trace replayed through the policy the disk
//! tier used before (a moka cache, LRU, weighed in bytes, settled after each insert) and through
//! the compact index's sampled LRU, at several capacities. Prints object and byte hit ratios.
//! Also prints the index's heap bytes a blob at a few sizes.
//!
//! ```text
//! cargo run --release --example disk_zipf -- [--keys 200000] [--requests 3000000] \
//!     [--exponents 0.8,1.0] [--capacities 1,5,10,20]
//! ```
//!
//! Blob sizes are drawn once per key: 90% full 2 MiB blobs, 10% between 1 KiB and 2 MiB (the
//! last blob of a stream). Same seed, same trace for both policies.

use clap::Parser;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use prism_lite::blob::{BlobHash, MAX_BLOB_SIZE};
use prism_lite::store::disk::index::BlobIndex;

#[derive(Parser)]
struct Args {
    /// Distinct blobs in the trace.
    #[arg(long, default_value_t = 200_000)]
    keys: usize,
    /// Requests replayed.
    #[arg(long, default_value_t = 3_000_000)]
    requests: usize,
    /// Zipf exponents to try.
    #[arg(long, value_delimiter = ',', default_value = "0.8,1.0")]
    exponents: Vec<f64>,
    /// Capacities, in percent of all blobs' bytes.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,20")]
    capacities: Vec<f64>,
    /// Index sizes to report heap bytes a blob for.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    index_sizes: Vec<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Hits and bytes served from the cache.
#[derive(Default)]
struct Ratios {
    hits: u64,
    requests: u64,
    hit_bytes: u64,
    bytes: u64,
}

impl Ratios {
    fn record(&mut self, hit: bool, size: u32) {
        self.requests += 1;
        self.bytes += u64::from(size);
        if hit {
            self.hits += 1;
            self.hit_bytes += u64::from(size);
        }
    }

    fn show(&self) -> String {
        format!(
            "{:6.2}% ({:6.2}% of bytes)",
            100.0 * self.hits as f64 / self.requests as f64,
            100.0 * self.hit_bytes as f64 / self.bytes as f64
        )
    }
}

fn main() {
    let args = Args::parse();
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let hashes: Vec<BlobHash> = (0..args.keys as u64)
        .map(|i| BlobHash::of(&i.to_le_bytes()))
        .collect();
    let sizes: Vec<u32> = (0..args.keys)
        .map(|_| {
            if rng.u8(..10) == 0 {
                rng.u32(1024..MAX_BLOB_SIZE as u32)
            } else {
                MAX_BLOB_SIZE as u32
            }
        })
        .collect();
    let total: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
    println!(
        "{} blobs ({:.0} GiB), {} requests; hit ratio (object, bytes)",
        args.keys,
        total as f64 / (1u64 << 30) as f64,
        args.requests
    );
    println!("| zipf s | capacity | before: moka LRU | now: sampled LRU index |");
    println!("|---|---|---|---|");
    for &s in &args.exponents {
        let zipf = Zipf::new(args.keys, s);
        // Key ranks are shuffled so popularity is not correlated with the hash.
        let mut order: Vec<usize> = (0..args.keys).collect();
        rng.shuffle(&mut order);
        let trace: Vec<usize> = (0..args.requests)
            .map(|_| order[zipf.sample(&mut rng)])
            .collect();
        for &pct in &args.capacities {
            let capacity = (total as f64 * pct / 100.0) as u64;
            let before = replay_moka(&trace, &hashes, &sizes, capacity);
            let now = replay_index(&trace, &hashes, &sizes, capacity);
            println!("| {s} | {pct}% | {} | {} |", before.show(), now.show());
        }
    }
    for &n in &args.index_sizes {
        let index = BlobIndex::new();
        for i in 0..n as u64 {
            index.insert(&BlobHash::of(&i.to_le_bytes()), 2_000_000);
        }
        println!(
            "index of {n} blobs: {:.1} heap bytes a blob",
            index.heap_bytes() as f64 / n as f64
        );
    }
}

/// The disk tier's policy before: moka, LRU, weighed in bytes, pending work run after each
/// insert (as its `settle` did).
fn replay_moka(trace: &[usize], hashes: &[BlobHash], sizes: &[u32], capacity: u64) -> Ratios {
    let cache: Cache<BlobHash, u32> = Cache::builder()
        .max_capacity(capacity)
        .eviction_policy(EvictionPolicy::lru())
        .weigher(|_, size: &u32| *size)
        .build();
    let mut ratios = Ratios::default();
    for &k in trace {
        let hit = cache.get(&hashes[k]).is_some();
        ratios.record(hit, sizes[k]);
        if !hit {
            cache.insert(hashes[k], sizes[k]);
            cache.run_pending_tasks();
        }
    }
    ratios
}

/// The disk tier's policy now: the compact index, evicting sampled-LRU victims after each insert.
fn replay_index(trace: &[usize], hashes: &[BlobHash], sizes: &[u32], capacity: u64) -> Ratios {
    let index = BlobIndex::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut ratios = Ratios::default();
    for &k in trace {
        let hit = index.touch(&hashes[k]).is_some();
        ratios.record(hit, sizes[k]);
        if !hit {
            index.insert(&hashes[k], sizes[k]);
            while index.used_bytes() > capacity {
                let Some(victim) = index.sample_oldest(&mut rng) else {
                    break;
                };
                index.remove_if_unused(&victim);
            }
        }
    }
    ratios
}

/// Zipf-distributed ranks in `0..n` (rank r has weight 1/(r+1)^s), by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|r| {
                acc += 1.0 / ((r + 1) as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}
