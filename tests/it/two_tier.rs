//! A two-tier chain on 127.0.0.1: edge (caching: mem <- upstream) -> regional (caching: disk <- s3)
//! -> an in-process S3 server. Once with both caches in this process, once with the regional
//! cache as a real `prism-lite` process. Plus the origin going away and coming back.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use prism_lite::blob::BlobHash;

/// The regional: a disk tier over the S3 bucket.
fn regional(disk: &Path, s3_endpoint: &str) -> Cache {
    Cache::new()
        .http()
        .name("regional")
        .tier(
            Store::disk(disk)
                .named("regional_disk")
                .sharding(2)
                .max_size("100MB"),
        )
        .origin(
            Store::s3(s3_endpoint)
                .named("bucket_origin")
                .sharding(2)
                .timeout("2s"),
        )
}

/// The edge: a memory tier over the regional's HTTP door.
fn edge(regional: SocketAddr) -> Cache {
    Cache::new()
        .http()
        .name("edge")
        .tier(Store::mem().named("edge_mem").max_size("64MiB"))
        .origin(
            Store::upstream(&format!("http://{regional}"))
                .named("to_regional")
                .timeout("5s"),
        )
}

/// Puts `n` blobs in the bucket at the sharded keys the regional cache uses.
async fn seed_bucket(endpoint: &str, n: u8) -> Vec<(BlobHash, bytes::Bytes)> {
    let sdk = sdk_client(endpoint);
    create_bucket(&sdk).await;
    let mut blobs = Vec::new();
    for i in 0..n {
        let (h, d) = blob(100 + u64::from(i), 200_000 + usize::from(i) * 1000);
        put_object(&sdk, &h.sharded_path(2), d.clone()).await;
        blobs.push((h, d));
    }
    blobs
}

/// First get misses both tiers, second hits the edge only; bytes, Via and both `/metrics` agree.
async fn check_chain(
    edge_http: SocketAddr,
    edge_metrics: SocketAddr,
    regional_metrics: SocketAddr,
    hash: &BlobHash,
    data: &bytes::Bytes,
) {
    let (status, via, body) = get_blob(edge_http, &hash.to_hex()).await;
    assert_eq!(status, 200);
    assert_eq!(&body, data);
    let via = via.expect("Via header");
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&via).unwrap()["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["origin_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["bucket_origin", "regional", "to_regional", "edge"],
        "{via}"
    );

    let e = scrape(edge_metrics).await;
    let r = scrape(regional_metrics).await;
    let hit = "reflector_cache_hit_total";
    let miss = "reflector_cache_miss_total";
    assert_eq!(metric(&e, miss, &[("component", "edge")]), 1.0);
    assert_eq!(metric(&e, hit, &[("component", "edge")]), 0.0);
    assert_eq!(metric(&r, miss, &[("component", "regional")]), 1.0);
    assert_eq!(metric(&r, hit, &[("component", "regional")]), 0.0);
    assert_eq!(metric(&r, "reflector_http_blob_download_total", &[]), 1.0);
    assert_eq!(
        metric(&e, "reflector_upstream_in_bytes", &[]),
        data.len() as f64
    );
    assert_eq!(metric(&r, "reflector_s3_in_bytes", &[]), data.len() as f64);

    // Second get: the edge answers alone.
    let (status, via, body) = get_blob(edge_http, &hash.to_hex()).await;
    assert_eq!((status, &body), (200, data));
    let via = via.unwrap();
    assert!(
        via.contains("\"edge_mem\"") && !via.contains("to_regional"),
        "{via}"
    );
    let e = scrape(edge_metrics).await;
    let r = scrape(regional_metrics).await;
    assert_eq!(metric(&e, hit, &[("component", "edge")]), 1.0);
    assert_eq!(metric(&e, miss, &[("component", "edge")]), 1.0);
    assert_eq!(metric(&r, "reflector_http_blob_download_total", &[]), 1.0);
    assert_eq!(metric(&r, hit, &[("component", "regional")]), 0.0);
    assert_eq!(metric(&r, miss, &[("component", "regional")]), 1.0);
}

#[tokio::test]
async fn two_tier_chain_in_process_survives_origin_outage() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(&s3_root).unwrap();
    let s3 = S3Server::start(&s3_root, 0).await;
    let s3_addr = s3.addr;
    let blobs = seed_bucket(&s3.endpoint(), 3).await;

    let regional = regional(&dir.path().join("regional"), &s3.endpoint())
        .start()
        .await;
    let edge = edge(regional.http_addr.unwrap()).start().await;
    let edge_http = edge.http_addr.unwrap();
    let regional_http = regional.http_addr.unwrap();
    check_chain(
        edge_http,
        edge.metrics_addr,
        regional.metrics_addr,
        &blobs[0].0,
        &blobs[0].1,
    )
    .await;
    // Blob 1 is fetched once so the regional disk holds it.
    assert_eq!(get_blob(edge_http, &blobs[1].0.to_hex()).await.0, 200);

    // The origin goes away.
    s3.stop().await;
    // Cached blobs are still served, at both tiers.
    let (status, _, body) = get_blob(edge_http, &blobs[0].0.to_hex()).await;
    assert_eq!((status, body), (200, blobs[0].1.clone()));
    let (status, _, body) = get_blob(regional_http, &blobs[1].0.to_hex()).await;
    assert_eq!((status, body), (200, blobs[1].1.clone()));
    // A miss is an origin error (502), not a 404, and comes back within the 2s S3 timeout.
    let start = Instant::now();
    let (status, _, body) = get_blob(edge_http, &blobs[2].0.to_hex()).await;
    let took = start.elapsed();
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let reason = String::from_utf8_lossy(&body);
    assert!(reason.contains("origin unavailable"), "{reason}");
    let (status, _, _) = get_blob(regional_http, &blobs[2].0.to_hex()).await;
    assert_eq!(status, 502);

    // The origin comes back on the same port: misses fill again, no restart needed.
    let s3 = S3Server::start(&s3_root, s3_addr.port()).await;
    let (status, _, body) = get_blob(edge_http, &blobs[2].0.to_hex()).await;
    assert_eq!((status, body), (200, blobs[2].1.clone()));

    edge.stop().await;
    regional.stop().await;
    s3.stop().await;
}

#[tokio::test]
async fn two_tier_chain_with_regional_as_a_real_process() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(&s3_root).unwrap();
    let s3 = S3Server::start(&s3_root, 0).await;
    let blobs = seed_bucket(&s3.endpoint(), 1).await;

    let regional = regional(&dir.path().join("regional"), &s3.endpoint())
        .spawn(dir.path().join("conf"))
        .await;

    let edge = edge(regional.http).start().await;
    check_chain(
        edge.http_addr.unwrap(),
        edge.metrics_addr,
        regional.metrics,
        &blobs[0].0,
        &blobs[0].1,
    )
    .await;
    edge.stop().await;
    regional.kill().await;
    s3.stop().await;
}
