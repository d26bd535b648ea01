//! The `s3` store against a real S3-protocol server (s3s + s3s-fs) on 127.0.0.1.

use std::sync::Arc;

use crate::common::*;
use prism_lite::blob::MAX_BLOB_SIZE;
use prism_lite::metrics::Metrics;
use prism_lite::store::StoreError;

#[tokio::test]
async fn s3_operations_sharding_missing_oversized() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path(), 0).await;
    let sdk = sdk_client(&server.endpoint());
    create_bucket(&sdk).await;
    let metrics = Arc::new(Metrics::new());
    let s3 = Store::s3(&server.endpoint())
        .named("origin")
        .sharding(2)
        .timeout("5s")
        .build_with(&metrics);
    assert_eq!(s3.name(), "origin");

    let (hash, data) = blob(1, 300_000);
    assert!(!within("has", s3.has(&hash)).await.unwrap());
    assert!(matches!(
        within("get missing", s3.get(&hash)).await,
        Err(StoreError::NotFound)
    ));
    within("put", s3.put(&hash, data.clone())).await.unwrap();
    assert!(within("has", s3.has(&hash)).await.unwrap());

    // Sharded key: <2 hex>/<hash>, as the http origin layout.
    let hex = hash.to_hex();
    let on_disk = dir.path().join(BUCKET).join(&hex[..2]).join(&hex);
    assert_eq!(
        std::fs::read(&on_disk).expect("object at the sharded key"),
        data
    );

    let got = within("get", s3.get(&hash)).await.unwrap();
    assert_eq!(got.data, data);
    assert_eq!(&*got.trace.stacks[0].origin_name, "origin");
    assert_eq!(metrics.stores().s3_in_bytes.get(), data.len() as u64);

    within("delete", s3.delete(&hash)).await.unwrap();
    assert!(!on_disk.exists());
    assert!(!within("has", s3.has(&hash)).await.unwrap());
    within("delete again", s3.delete(&hash)).await.unwrap();

    // An object larger than any blob is refused before its body is read.
    let big = bytes::Bytes::from(vec![7u8; MAX_BLOB_SIZE + 1]);
    let (big_hash, _) = prism_lite::blob::named(big.clone());
    put_object(&sdk, &big_hash.sharded_path(2), big.clone()).await;
    let err = within("get oversized", s3.get(&big_hash))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { source: prism_lite::blob::VerifyError::TooLarge(n), .. } if *n == MAX_BLOB_SIZE + 1),
        "{err}"
    );
    // And the store itself never writes one.
    let err = within("put oversized", s3.put(&big_hash, big))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");

    // A prefix goes in front of the sharded key.
    let prefixed = Store::s3(&server.endpoint())
        .named("p")
        .sharding(0)
        .timeout("5s")
        .set("prefix", "blobs/")
        .build_with(&metrics);
    let (h2, d2) = blob(2, 1000);
    within("put prefixed", prefixed.put(&h2, d2.clone()))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join(BUCKET).join("blobs").join(h2.to_hex())).unwrap(),
        d2
    );
    server.stop().await;
}

#[tokio::test]
async fn corrupt_s3_object_is_an_error_and_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path(), 0).await;
    let sdk = sdk_client(&server.endpoint());
    create_bucket(&sdk).await;
    let metrics = Arc::new(Metrics::new());
    let (hash, _) = blob(3, 5000);
    let (_, wrong) = blob(4, 5000);
    put_object(&sdk, &hash.sharded_path(0), wrong).await;

    let origin = Store::s3(&server.endpoint())
        .named("origin")
        .sharding(0)
        .timeout("5s");
    let s3 = origin.build_with(&metrics);
    let err = within("get corrupt", s3.get(&hash)).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

    let caching = Store::caching(Store::mem().named("ram"), origin)
        .named("edge")
        .build_with(&metrics);
    for _ in 0..2 {
        let err = within("caching get corrupt", caching.get(&hash))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
    // Not cached: the cache tier does not have it, and the origin was asked both times.
    let text = String::from_utf8(metrics.render()).unwrap();
    assert_eq!(
        metric(&text, "prism_origin_fetch_total", &[("result", "corrupt")]),
        2.0,
        "{text}"
    );
    // The second get was a cache miss again: nothing was stored.
    assert_eq!(
        metric(
            &text,
            "reflector_cache_miss_total",
            &[("component", "edge")]
        ),
        2.0
    );
    assert_eq!(
        metric(&text, "reflector_cache_hit_total", &[("component", "edge")]),
        0.0
    );
    server.stop().await;
}

#[tokio::test]
async fn hanging_s3_is_a_timeout_in_bounded_time() {
    let hanging = HangingOrigin::start().await;
    let s3 = Store::s3(&format!("http://{}", hanging.addr))
        .named("stuck")
        .sharding(0)
        .timeout("1s")
        .build();
    let (hash, _) = blob(9, 10);
    let start = std::time::Instant::now();
    let err = within("get from hanging s3", s3.get(&hash))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let err = within("has on hanging s3", s3.has(&hash))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err}");
}

/// reflector.go's `multiwriter` form (`one:`/`two:`, as its upload writers are written) puts
/// every blob into both stores: here two real S3 servers, as YAML an operator writes it.
#[tokio::test]
async fn multiwriter_one_two_writes_to_both_s3_servers() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        S3Server::start(dir_a.path(), 0).await,
        S3Server::start(dir_b.path(), 0).await,
    );
    for server in [&a, &b] {
        create_bucket(&sdk_client(&server.endpoint())).await;
    }
    let s3 = |name: &str, endpoint: String| {
        format!(
            "s3: {{name: {name}, aws_id: {ACCESS_KEY}, aws_secret: {SECRET_KEY}, region: us-east-1, \
             bucket: {BUCKET}, endpoint: '{endpoint}', sharding_size: 2, timeout: 10s}}"
        )
    };
    let yaml = format!(
        "store:\n  multiwriter:\n    name: replicate\n    one: {{{}}}\n    two: {{{}}}\n",
        s3("primary", a.endpoint()),
        s3("replica", b.endpoint())
    );
    let cfg: prism_lite::config::BlobcacheConfig =
        prism_lite::config::parse(&yaml, "upload.yaml").unwrap();
    let ctx = prism_lite::store::BuildContext {
        metrics: Arc::new(Metrics::new()),
    };
    let store = prism_lite::store::build(&cfg.store, &ctx).unwrap();
    assert_eq!(store.name(), "replicate");

    let (hash, data) = blob(11, 100_000);
    within("put", store.put(&hash, data.clone())).await.unwrap();
    for dir in [&dir_a, &dir_b] {
        let object = dir.path().join(BUCKET).join(hash.sharded_path(2));
        assert_eq!(std::fs::read(&object).expect("object in both"), data);
    }
    // Reads come from `one`.
    let got = within("get", store.get(&hash)).await.unwrap();
    assert_eq!(got.data, data);
    let stores = ctx.metrics.stores();
    assert_eq!(stores.s3_out_bytes.get(), 2 * data.len() as u64);
    assert_eq!(stores.s3_in_bytes.get(), data.len() as u64);
    a.stop().await;
    b.stop().await;
}
