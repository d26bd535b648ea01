//! `prism-lite reflector` with reflector.go's flag command line (its older README's private
//! blobcache), as real processes in front of an in-process prism-lite "regional".

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use prism_lite::blob::BlobHash;

use crate::common::{
    blob, free_port, get_blob, metric, scrape, wait_until, Cache, Door, Prism, Store,
};
use crate::peer_protocol::{sdk_request, Client};

/// A regional serving `blobs` over HTTP, the peer protocol and HTTP/3.
async fn regional(blobs: &[(BlobHash, Bytes)]) -> prism_lite::app::Running {
    let running = Cache::new()
        .http()
        .door(Door::peer())
        .door(Door::http3())
        .store(Store::mem().named("regional"))
        .start()
        .await;
    for (hash, data) in blobs {
        running.store.put(hash, data.clone()).await.unwrap();
    }
    running
}

/// The doors' ports of one flag-run process, and the flags naming them.
struct Ports {
    http: u16,
    metrics: u16,
    flags: Vec<String>,
}

fn ports() -> Ports {
    let (http, http3, tcp, metrics) = (free_port(), free_port(), free_port(), free_port());
    Ports {
        http,
        metrics,
        flags: vec![
            format!("--http-peer-port={http}"),
            format!("--http3-peer-port={http3}"),
            format!("--tcp-peer-port={tcp}"),
            format!("--metrics-port={metrics}"),
            "--metrics-address=127.0.0.1".into(),
        ],
    }
}

/// The `store tree built` log line with its indented tree.
fn logged_tree(log: &str) -> String {
    let start = log.find("store tree built").expect("tree logged");
    let rest = &log[start..];
    let end = rest[1..].find("\n20").map_or(rest.len(), |i| i + 1);
    rest[..end].to_string()
}

fn sharded(dir: &Path, hash: &BlobHash) -> std::path::PathBuf {
    dir.join(hash.sharded_path(2))
}

/// The README's command line as written, with local ports and paths: serves verified blobs over
/// HTTP and to an SDK peer client, fills the disk cache under PATH, runs no upload door; its
/// `--print-config` file, run as `blobcache`, builds the same tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_command_line_runs_a_private_blobcache_and_prints_its_file() {
    let (hash, data) = blob(70, 300_000);
    let regional = regional(&[(hash, data.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let upstream = regional.http_addr.unwrap();
    let p = ports();
    let mut args: Vec<String> = [
        "reflector",
        "--conf=none",
        "--disable-uploads=true",
        "--use-db=false",
        &format!("--upstream-reflector={upstream}"),
        "--upstream-protocol=http",
        "--request-queue-size=200",
        &format!("--disk-cache=2GB:{}/:localdb", storage.display()),
    ]
    .map(String::from)
    .to_vec();
    args.extend(p.flags.clone());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let prism = Prism::start(dir.path(), &argv, p.metrics).await;

    let http = ([127, 0, 0, 1], p.http).into();
    let (status, _, body) = get_blob(http, &hash.to_hex()).await;
    assert_eq!((status, &body), (200, &data));
    let tcp_port: u16 = args
        .iter()
        .find_map(|a| a.strip_prefix("--tcp-peer-port="))
        .unwrap()
        .parse()
        .unwrap();
    let mut peer = Client::new(([127, 0, 0, 1], tcp_port).into()).await;
    peer.send(sdk_request(&hash.to_hex()).as_bytes()).await;
    let (_, bytes) = peer.response().await;
    assert_eq!(BlobHash::of(&bytes), hash, "peer client got the blob");
    wait_until("blob in the disk cache", || {
        sharded(&storage, &hash).exists()
    })
    .await;
    assert_eq!(std::fs::read(sharded(&storage, &hash)).unwrap(), data);

    let (code, log) = prism.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains("reflector (upload) server listening"),
        "{log}"
    );
    assert!(log.contains("--disk-cache manager localdb"), "{log}");
    let flag_tree = logged_tree(&log);
    assert!(flag_tree.contains("disk name=disk"), "{flag_tree}");
    assert!(flag_tree.contains("max_size=2.0 GiB"), "{flag_tree}");

    // The same flags with --print-config: a blobcache.yaml that builds the same tree.
    let mut print = argv.clone();
    print.push("--print-config");
    let out = Command::new(env!("CARGO_BIN_EXE_prism-lite"))
        .args(&print)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("blobcache.yaml"), &out.stdout).unwrap();
    let file_run = Prism::blobcache(dir.path(), &conf).await;
    let (status, _, body) = get_blob(http, &hash.to_hex()).await;
    assert_eq!((status, &body), (200, &data), "served from the disk cache");
    let (code, log) = file_run.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    let file_tree = logged_tree(&log);
    let strip = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&flag_tree), strip(&file_tree));
    assert_eq!(
        flag_tree.lines().next().unwrap().split("tree=").nth(1),
        file_tree.lines().next().unwrap().split("tree=").nth(1)
    );
    regional.stop().await;
}

/// `--upstream-protocol tcp` and `http3` fetch from the regional's peer and HTTP/3 doors;
/// `--mem-cache` and `--optional-disk-cache` add the tiers they name; `--use-db` is said to
/// mean nothing here; `-v store,server` raises those components to debug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_http3_upstreams_and_the_extra_tiers() {
    let (hash, data) = blob(71, 250_000);
    let regional = regional(&[(hash, data.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    for (protocol, upstream, counter) in [
        ("tcp", regional.peer_addr.unwrap(), "reflector_tcp_in_bytes"),
        (
            "http3",
            regional.http3_addr.unwrap(),
            "reflector_udp_in_bytes",
        ),
    ] {
        let (disk, optional) = (
            dir.path().join(protocol),
            dir.path().join(format!("{protocol}-ssd")),
        );
        let p = ports();
        let mut args = vec![
            "reflector".to_string(),
            format!("--upstream-reflector={upstream}"),
            format!("--upstream-protocol={protocol}"),
            "--disable-uploads".into(),
            format!("--disk-cache=1GB:{}:lru", disk.display()),
            format!("--optional-disk-cache=64MB:{}:lfuda", optional.display()),
            "--mem-cache=10".into(),
            "--use-db".into(),
            "-v".into(),
            "store,server".into(),
        ];
        args.extend(p.flags.clone());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let prism = Prism::start(dir.path(), &argv, p.metrics).await;
        let (status, _, body) = get_blob(([127, 0, 0, 1], p.http).into(), &hash.to_hex()).await;
        assert_eq!((status, &body), (200, &data), "{protocol}");
        wait_until("both disk tiers filled", || {
            sharded(&disk, &hash).exists() && sharded(&optional, &hash).exists()
        })
        .await;
        let text = scrape(prism.metrics).await;
        assert_eq!(metric(&text, counter, &[]), data.len() as f64, "{protocol}");
        let (code, log) = prism.terminate().await;
        assert_eq!(code, Some(0), "{log}");
        assert!(
            log.contains("--use-db=true: prism-lite keeps no database"),
            "{log}"
        );
        if protocol == "http3" {
            // The HTTP/3 store logs its connection at debug.
            assert!(
                log.contains("DEBUG prism_lite::store::http3"),
                "-v store: {log}"
            );
        }
        assert!(!log.contains("DEBUG prism_lite::dht"), "{log}");
        let tree = logged_tree(&log);
        for tier in [
            "caching name=mem-cache",
            "mem name=mem max_size=20.0 MiB",
            "caching name=optional-disk-cache",
            "caching name=disk-cache",
        ] {
            assert!(tree.contains(tier), "{tier}: {tree}");
        }
    }
    regional.stop().await;
}

/// Every bad value: exit non-zero, one line naming the flag and what is allowed, no secret.
#[test]
fn bad_flag_values_are_one_line_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    // A PATH that is a file: check-config's mount_point rule, naming the flag.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let not_a_dir = format!("--disk-cache=1GB:{}:lru", file.display());
    for (arg, says) in [
        (not_a_dir.as_str(), "not a directory"),
        ("--disk-cache=2GB", "expected SIZE:PATH:MANAGER"),
        ("--disk-cache=2GB:relative/x:lru", "must be absolute"),
        ("--disk-cache=2GB:/x:fifo", "allowed: localdb, lfuda"),
        ("--disk-cache=lots:/x:lru", "not a size"),
        ("--optional-disk-cache=0GB:/x:lru", "more than 0"),
        (
            "--upstream-protocol=ftp",
            "possible values: tcp, http3, http",
        ),
        ("--tcp-peer-port=70000", "0..=65535"),
        ("--metrics-port=65536", "0..=65535"),
        ("--mem-cache=lots", "invalid digit"),
        ("--request-queue-size=0", "1..=100000"),
        ("--use-db=maybe", "true"),
        ("--upstream-reflector=http://host/", "HOST or HOST:PORT"),
        (
            "--origin-endpoint=ftp://user:hunter2@cdn/",
            "not an http:// or https:// URL",
        ),
        (
            "--origin-endpoint-fallback=http://cdn/",
            "needs --origin-endpoint",
        ),
        ("--conf=/nonexistent/config.json", "cannot read"),
        ("--verbose=everything", "possible values: all, dht"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_prism-lite"))
            .args(["reflector", arg, "--print-config"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{arg} accepted");
        let flag = arg.split('=').next().unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{arg}: {err}");
        assert!(err.contains(flag) && err.contains(says), "{arg}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// `--conf config.json`: its S3 keys make an `s3` store (secrets printed as `***`), the keys
/// that mean nothing here are ignored.
#[test]
fn conf_json_maps_its_bucket_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("config.json");
    std::fs::write(
        &json,
        r#"{"aws_id":"AKID","aws_secret":"hunter2","bucket_region":"eu-west-1","bucket_name":"blobs",
            "s3_endpoint":"http://127.0.0.1:9","db_conn":"user:pw@tcp(db)/r","slack_hook_url":""}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prism-lite"))
        .args([
            "reflector",
            &format!("--conf={}", json.display()),
            "--print-config",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for part in [
        "s3:",
        "name: conf-s3",
        "bucket: blobs",
        "region: eu-west-1",
        "aws_secret: '***'",
        "reflector:",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(
        !text.contains("hunter2") && !text.contains("AKID"),
        "{text}"
    );
}
