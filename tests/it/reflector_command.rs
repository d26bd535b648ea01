//! reflector.go's README files as an operator runs them, real processes against a real S3
//! server: `prism-lite reflector` loading its `reflector.yaml` (servers + a `proxied-s3` whose
//! writer is `db_backed -> s3`), fed by the SDK-exact uploader; `prism-lite blobcache` loading
//! its `blobcache.yaml` (`db_backed -> disk` in front of the bucket's HTTP endpoint).

use std::path::Path;

use crate::common::{
    blob, create_bucket, free_port, get_blob, metric, put_object, scrape, sdk_client, wait_until,
    Prism, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY,
};
use crate::reflector_ingest::{fixtures, upload_v2};

const README_REFLECTOR_YAML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/examples/reflector-go-db-backed/reflector.yaml"
);

/// The README's file with only what must change to run here: ports and addresses on
/// 127.0.0.1, the bucket's endpoint, keys and name, the cache directory.
fn readme_reflector_yaml(s3_endpoint: &str, cache: &Path, ports: [u16; 3]) -> String {
    let mut text = std::fs::read_to_string(README_REFLECTOR_YAML).unwrap();
    for (readme, port) in [5569, 5568, 5567].into_iter().zip(ports) {
        text = text.replace(
            &format!("    port: {readme}\n"),
            &format!("    port: {port}\n    address: 127.0.0.1\n"),
        );
    }
    text.replace("https://s3.yourendpoint.tv", s3_endpoint)
        .replace("YOUR_KEY", ACCESS_KEY)
        .replace("YOUR_SECRET", SECRET_KEY)
        .replace("blobs-bucket", BUCKET)
        .replace("/mnt/reflector/cache", &cache.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_reflector_yaml_ingests_an_sdk_upload_into_s3() {
    let Some((_, medium)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(&s3_root).unwrap();
    let s3 = S3Server::start(&s3_root, 0).await;
    create_bucket(&sdk_client(&s3.endpoint())).await;
    let ports = [free_port(), free_port(), free_port()];
    let yaml = readme_reflector_yaml(&s3.endpoint(), &dir.path().join("cache"), ports);
    std::fs::write(dir.path().join("reflector.yaml"), yaml).unwrap();

    let (receiver, metrics) = (free_port(), free_port());
    let conf = dir.path().to_str().unwrap();
    let prism = Prism::start(
        dir.path(),
        &[
            "--conf-dir",
            conf,
            "reflector",
            &format!("--receiver-port={receiver}"),
            "--metrics-port",
            &metrics.to_string(),
            "--metrics-address",
            "127.0.0.1",
        ],
        metrics,
    )
    .await;

    let upload = upload_v2(([127, 0, 0, 1], receiver).into(), &medium, None).await;
    assert!(upload.sent_sd, "sd blob asked for");
    assert_eq!(
        upload.sent.len(),
        medium.blobs.len(),
        "every blob asked for"
    );
    // The writer is db_backed -> s3 (no sharding): every blob is an object named by its hash.
    for (hash, data) in medium.all() {
        let object = s3_root.join(BUCKET).join(hash.to_hex());
        assert_eq!(
            std::fs::read(&object).unwrap_or_else(|e| panic!("{hash} not in S3: {e}")),
            data
        );
    }
    let text = scrape(prism.metrics).await;
    assert_eq!(
        metric(&text, "reflector_blob_upload_total", &[]),
        medium.all().len() as f64
    );
    // The configured servers run too.
    assert!(std::net::TcpStream::connect(("127.0.0.1", ports[0])).is_ok());
    assert!(std::net::TcpStream::connect(("127.0.0.1", ports[2])).is_ok());

    let (code, log) = prism.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    let db_backed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("db_backed"))
        .collect();
    assert_eq!(db_backed.len(), 1, "one line names the ignored keys: {log}");
    assert!(db_backed[0].contains("MySQL connection settings"), "{log}");
    assert!(
        log.contains(&format!(
            "reflector (upload) server listening addr=0.0.0.0:{receiver}"
        )),
        "{log}"
    );
    assert!(!log.contains(SECRET_KEY), "{log}");
    s3.stop().await;
}

const README_BLOBCACHE_YAML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/examples/reflector-go-db-backed/blobcache.yaml"
);

/// The README's blobcache: a disk cache (`db_backed`, no MySQL) in front of the bucket's public
/// HTTP endpoint with `sharding_size: 4`, serving over HTTP what the bucket holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_blobcache_yaml_serves_a_bucket_through_its_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(&s3_root).unwrap();
    let s3 = S3Server::start_public_read(&s3_root).await;
    let sdk = sdk_client(&s3.endpoint());
    create_bucket(&sdk).await;
    let (hash, data) = blob(80, 400_000);
    put_object(&sdk, &hash.sharded_path(4), data.clone()).await;

    let mut text = std::fs::read_to_string(README_BLOBCACHE_YAML).unwrap();
    let ports = [free_port(), free_port(), free_port()];
    for (readme, port) in [5569, 5568, 5567].into_iter().zip(ports) {
        text = text.replace(
            &format!("    port: {readme}\n"),
            &format!("    port: {port}\n    address: 127.0.0.1\n"),
        );
    }
    let cache = dir.path().join("cache");
    let text = text
        .replace(
            "https://s3.yourendpoint.tv/blobs-bucket/",
            &format!("{}/{BUCKET}/", s3.endpoint()),
        )
        .replace("/mnt/blobcache/cache", &cache.display().to_string());
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("blobcache.yaml"), text).unwrap();
    let prism = Prism::blobcache(dir.path(), &conf).await;
    let http = ([127, 0, 0, 1], ports[0]).into();
    let (status, _, body) = get_blob(http, &hash.to_hex()).await;
    assert_eq!((status, &body), (200, &data));
    let on_disk = cache.join(hash.sharded_path(2));
    wait_until("the blob in the disk cache", || on_disk.exists()).await;
    assert_eq!(std::fs::read(&on_disk).unwrap(), data);
    let (missing, _) = blob(81, 10);
    assert_eq!(get_blob(http, &missing.to_hex()).await.0, 404);
    let text = scrape(prism.metrics).await;
    assert_eq!(
        metric(&text, "reflector_http_in_bytes", &[]),
        data.len() as f64
    );
    let (code, log) = prism.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    s3.stop().await;
}
