//! Writes valid blob files (each named by the SHA-384 of its bytes) for the load benchmark.
//!
//! ```text
//! gen_blobs big   COUNT SEED DIR            # COUNT x 2 MiB pseudo-random blobs, flat in DIR
//! gen_blobs small COUNT SEED DIR SHARDING   # COUNT x 1-4 KiB blobs in the disk store layout
//! ```
//!
//! Prints one hash per line (in generation order). Work is spread over all cores with rayon;
//! an existing file with the right name is left as it is, so a second run is quick.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use prism_lite::blob::{BlobHash, MAX_BLOB_SIZE};
use rayon::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gen_blobs big|small COUNT SEED DIR [SHARDING]";
    let kind = args.first().context(usage)?.as_str();
    let count: u64 = args.get(1).context(usage)?.parse()?;
    let seed: u64 = args.get(2).context(usage)?.parse()?;
    let dir = PathBuf::from(args.get(3).context(usage)?);
    let sharding: usize = args.get(4).map_or(Ok(0), |s| s.parse())?;
    let len_of = |i: u64| match kind {
        "big" => MAX_BLOB_SIZE,
        _ => 1024 + (i as usize * 7919) % 3072,
    };
    std::fs::create_dir_all(&dir)?;
    let hashes: Vec<BlobHash> = (0..count)
        .into_par_iter()
        .map(|i| {
            let data = pseudo_random(seed.wrapping_mul(1_000_003).wrapping_add(i), len_of(i));
            let hash = BlobHash::of(&data);
            let path = dir.join(hash.sharded_path(sharding));
            write_if_missing(&path, &data)?;
            Ok(hash)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for h in hashes {
        writeln!(out, "{h}")?;
    }
    Ok(())
}

fn write_if_missing(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == data.len() as u64) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data).with_context(|| path.display().to_string())
}

/// Deterministic incompressible-looking bytes (xorshift64).
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}
