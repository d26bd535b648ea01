//! The `prism-lite` binary as an operator runs it: real processes, real ports.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{fixture_blobs, free_port, http_client, TEST_TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_prism-lite");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run prism-lite");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A running blobcache process, killed if the test fails before stopping it.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn start(conf_dir: &Path, cwd: &Path, metrics_port: u16) -> Proc {
        let child = Command::new(BIN)
            .args(["--conf-dir", conf_dir.to_str().unwrap(), "blobcache"])
            .args(["--metrics-port", &metrics_port.to_string()])
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn blobcache");
        Proc(child)
    }

    /// Sends SIGTERM and returns the exit code and everything the process logged.
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + TEST_TIMEOUT;
        let status = loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut log = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut log);
        }
        (status.and_then(|s| s.code()), log)
    }
}

/// Waits (bounded) until `/readyz` answers 200.
async fn wait_ready(metrics_port: u16) {
    let url = format!("http://127.0.0.1:{metrics_port}/readyz");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "blobcache did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn version_and_help() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("blobcache") && out.contains("check-config"),
        "{out}"
    );
}

#[test]
fn check_config_accepts_the_shipped_config() {
    let conf = repo().join("config");
    let (code, out, err) = run(&["--conf-dir", conf.to_str().unwrap(), "check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("is valid"), "{out}");
    assert!(
        out.contains("caching name=edge") && out.contains("disk name=disk"),
        "{out}"
    );
}

/// reflector.go's README examples (blobcache.yaml, reflector.yaml, upload.yaml), unchanged,
/// pass `check-config` for their command, and what they name that does nothing here is said.
#[test]
fn check_config_accepts_reflector_go_readme_files() {
    let conf = repo().join("config/examples/reflector-go-db-backed");
    let conf = conf.to_str().unwrap();
    let (code, out, err) = run(&["--conf-dir", conf, "check-config", "blobcache"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("blobcache.yaml is valid"), "{out}");
    assert!(out.contains("disk name=blobcache"), "{out}");

    let (code, out, err) = run(&["--conf-dir", conf, "check-config", "reflector"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reflector.yaml is valid"), "{out}");
    assert!(out.contains("proxied-s3 name=s3_read_proxy"), "{out}");
    assert!(out.contains("s3 name=primary bucket=blobs-bucket"), "{out}");
    assert!(out.contains("MySQL settings ignored"), "{out}");
    assert!(
        out.contains("upload door on --receiver-port (default 5566)"),
        "{out}"
    );
    assert!(!out.contains("YOUR_SECRET"), "{out}");

    let (code, out, err) = run(&["--conf-dir", conf, "check-config", "upload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("upload.yaml is valid"), "{out}");
    assert!(out.contains("database: accepted and ignored"), "{out}");
    assert!(
        out.contains("proxied-s3 name=proxied-s3 (no reader"),
        "{out}"
    );
    assert!(!out.contains("YOUR_SECRET"), "{out}");

    let (code, _, err) = run(&["--conf-dir", conf, "check-config", "dht"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("allowed: blobcache, reflector, upload"),
        "{err}"
    );
}

#[test]
fn check_config_rejects_bad_files_naming_the_yaml_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("blobcache.yaml"),
        "store:\n  caching:\n    cache: {mem: {max_size: lots}}\n    origin: {noop: {}}\n",
    )
    .unwrap();
    let (code, _, err) = run(&["--conf-dir", dir.path().to_str().unwrap(), "check-config"]);
    assert_eq!(code, 1);
    assert!(err.contains("store.caching.cache.mem.max_size"), "{err}");
    assert!(err.contains("invalid size \"lots\""), "{err}");

    std::fs::write(dir.path().join("blobcache.yaml"), "store: {tape: {}}\n").unwrap();
    let (code, _, err) = run(&["--conf-dir", dir.path().to_str().unwrap(), "check-config"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown variant `tape`") && err.contains("`disk`"),
        "{err}"
    );

    // What start-up refuses about client addresses, check-config refuses too.
    std::fs::write(
        dir.path().join("blobcache.yaml"),
        "servers: {reflector: {proxy_protocol: true}}\nstore: {noop: {}}\n",
    )
    .unwrap();
    let (code, _, err) = run(&["--conf-dir", dir.path().to_str().unwrap(), "check-config"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("servers.reflector: proxy_protocol: true needs trusted_proxies"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["--conf-dir", empty.path().to_str().unwrap(), "check-config"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("blobcache.yaml") && err.contains("cannot read"),
        "{err}"
    );
}

#[tokio::test]
async fn blobcache_process_serves_existing_files_and_stops_on_sigterm() {
    let blobs = fixture_blobs();
    if blobs.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A cache directory as reflector.go leaves it: sharded files, no index.
    for (hash, data) in &blobs {
        let hex = hash.to_string();
        std::fs::create_dir_all(dir.path().join("cache").join(&hex[..2])).unwrap();
        std::fs::write(dir.path().join("cache").join(&hex[..2]).join(&hex), data).unwrap();
    }
    let (http_port, metrics_port) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("blobcache.yaml"),
        format!(
            "servers: {{http: {{port: {http_port}, address: 127.0.0.1}}}}\n\
             store: {{disk: {{mount_point: ./cache, sharding_size: 2, max_size: 1GB}}}}\n"
        ),
    )
    .unwrap();
    let proc = Proc::start(dir.path(), dir.path(), metrics_port);
    wait_ready(metrics_port).await;
    let client = http_client();
    for (hash, data) in &blobs {
        let r = client
            .get(format!("http://127.0.0.1:{http_port}/blob?hash={hash}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap(), data);
    }
    // The index is rebuilt in the background; it reports when it is complete.
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let text = client.get(&metrics_url).send().await.unwrap();
        let text = text.text().await.unwrap();
        if crate::common::metric(&text, "prism_disk_index_complete", &[]) == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "disk index not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, log) = proc.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("disk index complete"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// The README's run command: the shipped config, on a fresh machine, with nothing else running.
#[tokio::test]
async fn shipped_config_starts_and_serves() {
    let cwd = tempfile::tempdir().unwrap();
    let conf = repo().join("config");
    let proc = Proc::start(&conf, cwd.path(), 2112);
    wait_ready(2112).await;
    let client = http_client();
    let absent = prism_lite::blob::BlobHash::of(b"not cached anywhere");
    let r = client
        .head(format!("http://127.0.0.1:5569/blob?hash={absent}"))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 404 || r.status() == 502, "{}", r.status());
    let r = client
        .get("http://127.0.0.1:5569/blob?hash=nothex")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        cwd.path().join("data").is_dir(),
        "disk tier created under ./data"
    );
    let (code, log) = proc.terminate();
    assert_eq!(code, Some(0), "{log}");
}
