//! Micro-benchmarks of the core: hashing, the disk tier, and a hit through a store tree.
//!
//!     cargo bench --bench core
//!
//! Blobs are 2 MiB (a full content blob) unless the name says otherwise.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prism_lite::blob::{verify, BlobHash, MAX_BLOB_SIZE};
use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::metrics::Metrics;
use prism_lite::store::{self, BlobStore, BuildContext};

fn blob(seed: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

fn build(yaml: &str) -> Arc<dyn BlobStore> {
    let cfg: BlobcacheConfig = config::parse(yaml, "bench.yaml").expect("bench config");
    let ctx = BuildContext {
        metrics: Arc::new(Metrics::new()),
    };
    store::build(&cfg.store, &ctx).expect("bench store")
}

fn bench_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    for len in [16 * 1024, MAX_BLOB_SIZE] {
        let data = blob(1, len);
        let hash = BlobHash::of(&data);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &data, |b, d| {
            b.iter(|| verify(d, &hash).expect("valid"))
        });
    }
    group.finish();
}

fn bench_disk(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = build(&format!(
        "store: {{disk: {{mount_point: {}, sharding_size: 2, max_size: 4GB}}}}",
        dir.path().display()
    ));
    let data = blob(2, MAX_BLOB_SIZE);
    let hash = BlobHash::of(&data);
    rt.block_on(disk.put(&hash, data.clone())).expect("put");

    let mut group = c.benchmark_group("disk");
    group.throughput(Throughput::Bytes(MAX_BLOB_SIZE as u64));
    group.bench_function("get_2MiB", |b| {
        b.iter(|| rt.block_on(disk.get(&hash)).expect("get"))
    });
    // Each put is a new blob (fsync + rename); delete afterwards keeps the directory small.
    let mut seed = 10u8;
    group.sample_size(20);
    group.bench_function("put_2MiB_fsync", |b| {
        b.iter_batched(
            || {
                seed = seed.wrapping_add(1);
                let d = blob(seed, MAX_BLOB_SIZE);
                (BlobHash::of(&d), d)
            },
            |(h, d)| {
                rt.block_on(async {
                    disk.put(&h, d).await.expect("put");
                    disk.delete(&h).await.expect("delete");
                })
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn bench_tree_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    // The shipped config's shape: memory over disk over an origin.
    let tree = build(&format!(
        "store: {{caching: {{name: edge, cache: {{mem: {{max_size: 256MiB}}}}, origin: \
         {{caching: {{name: local, cache: {{disk: {{mount_point: {}, max_size: 1GB}}}}, origin: {{noop: {{}}}}}}}}}}}}",
        dir.path().display()
    ));
    let data = blob(3, MAX_BLOB_SIZE);
    let hash = BlobHash::of(&data);
    rt.block_on(tree.put(&hash, data)).expect("put");
    let mut group = c.benchmark_group("tree");
    group.throughput(Throughput::Bytes(MAX_BLOB_SIZE as u64));
    group.bench_function("mem_hit_2MiB", |b| {
        b.iter(|| rt.block_on(tree.get(&hash)).expect("hit"))
    });
    group.finish();
}

criterion_group!(benches, bench_verify, bench_disk, bench_tree_hit);
criterion_main!(benches);
