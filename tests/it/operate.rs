//! Operating prism-lite: blocklist, live reload, operator commands, and the deploy files
//! (checked with the real tools: promtool, systemd-analyze).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::common::{
    blob_bytes, free_port, http_client, metric, quoted, scrape, wait_until, Cache, Door, Store,
    TEST_TIMEOUT,
};
use prism_lite::blob::BlobHash;

const BIN: &str = env!("CARGO_BIN_EXE_prism-lite");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A cache on a disk tier in `dir/cache`, its HTTP door locked with `tok`; started with
/// [`Cache::start_in`]`(dir)`, so a reload re-reads `dir/blobcache.yaml`.
fn disk_cache(dir: &Path) -> Cache {
    Cache::new().door(Door::http().token("tok")).store(
        Store::disk(dir.join("cache"))
            .named("local")
            .sharding(2)
            .max_size("100MB"),
    )
}

async fn status(url: &str) -> u16 {
    http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn blocklisted_blobs_are_refused_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let (bad, good) = (blob_bytes(1, 4000), blob_bytes(2, 4000));
    let (bad_hash, good_hash) = (BlobHash::of(&bad), BlobHash::of(&good));
    // Cached before the blocklist exists.
    let running = disk_cache(dir.path()).start_in(dir.path()).await;
    running.store.put(&bad_hash, bad).await.unwrap();
    running.store.put(&good_hash, good.clone()).await.unwrap();
    running.stop().await;

    std::fs::write(dir.path().join("blocked.txt"), format!("{bad_hash}\n")).unwrap();
    let blocking = disk_cache(dir.path()).blocklist_file(dir.path().join("blocked.txt"));
    let running = blocking.start_in(dir.path()).await;
    let base = format!("http://{}/blob?hash=", running.http_addr.unwrap());
    assert_eq!(status(&format!("{base}{bad_hash}")).await, 404);
    let head = http_client()
        .head(format!("{base}{bad_hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    assert_eq!(status(&format!("{base}{good_hash}")).await, 200);
    // Purged from the disk, and cannot be written back.
    let file = dir
        .path()
        .join("cache")
        .join(&bad_hash.to_string()[..2])
        .join(bad_hash.to_string());
    wait_until("blocked file purged", || !file.exists()).await;
    assert!(running
        .store
        .put(&bad_hash, blob_bytes(1, 4000))
        .await
        .is_err());
    let text = String::from_utf8(running.metrics.render()).unwrap();
    assert!(
        metric(
            &text,
            "reflector_error_total",
            &[("error_type", "blocked_blob")]
        ) >= 2.0
    );
    running.stop().await;

    // --disable-blocklist: the list is ignored.
    let running = blocking.disable_blocklist().start_in(dir.path()).await;
    running
        .store
        .put(&bad_hash, blob_bytes(1, 4000))
        .await
        .unwrap();
    let base = format!("http://{}/blob?hash=", running.http_addr.unwrap());
    assert_eq!(status(&format!("{base}{bad_hash}")).await, 200);
    running.stop().await;
}

/// Serves `body()` at `/list` on 127.0.0.1.
async fn list_server(body: Arc<std::sync::Mutex<String>>) -> std::net::SocketAddr {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let text = body.lock().unwrap().clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(text)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocklist_url_is_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (blob_bytes(3, 3000), blob_bytes(4, 3000));
    let (ha, hb) = (BlobHash::of(&a), BlobHash::of(&b));
    let body = Arc::new(std::sync::Mutex::new(format!("[\"{ha}\"]")));
    let addr = list_server(Arc::clone(&body)).await;
    let running = disk_cache(dir.path())
        .section(
            "blocklist",
            format!(
                "{{url: {}, refresh_interval: 50ms}}",
                quoted(format!("http://{addr}/list"))
            ),
        )
        .start_in(dir.path())
        .await;
    assert!(running.policy.is_blocked(&ha) && !running.policy.is_blocked(&hb));
    *body.lock().unwrap() = format!("[\"{ha}\", \"{hb}\"]");
    let policy = Arc::clone(&running.policy);
    wait_until("refresh picked up b", || policy.is_blocked(&hb)).await;
    // A broken list keeps what is blocked now.
    *body.lock().unwrap() = "[\"not a hash\"]".into();
    let before = policy.blocked_count();
    running.reload().await.unwrap();
    assert_eq!(policy.blocked_count(), before);
    assert!(policy.is_blocked(&ha) && policy.is_blocked(&hb));
    running.stop().await;
}

#[tokio::test]
async fn reload_applies_protected_list_and_rejects_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = blob_bytes(5, 2000);
    let hash = BlobHash::of(&data);
    let list = dir.path().join("protected.txt");
    std::fs::write(&list, "").unwrap();
    let conf = disk_cache(dir.path()).protected_list(&list);
    let running = conf.start_in(dir.path()).await;
    running.store.put(&hash, data).await.unwrap();
    let url = format!("http://{}/blob?hash={hash}", running.http_addr.unwrap());
    assert_eq!(status(&url).await, 200);

    // The operator protects the blob and reloads.
    std::fs::write(&list, format!("{hash}\n")).unwrap();
    let report = running.reload().await.unwrap();
    assert!(report.needs_restart.is_empty(), "{report:?}");
    assert!(
        report
            .applied
            .iter()
            .any(|a| a.contains("protected_list (1 hashes)")),
        "{report:?}"
    );
    assert_eq!(status(&url).await, 403);
    assert_eq!(status(&format!("{url}&edge_token=tok")).await, 200);

    // A broken file is rejected; the running config stays.
    std::fs::write(dir.path().join("blobcache.yaml"), "store: {tape: {}}\n").unwrap();
    let err = running.reload().await.unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown variant `tape`"),
        "{err:#}"
    );
    std::fs::write(&list, "garbage\n").unwrap();
    conf.write_to(dir.path());
    let err = running.reload().await.unwrap_err();
    assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    assert_eq!(
        status(&url).await,
        403,
        "still protected after rejected reloads"
    );

    // Live limits and token apply; a port change is reported as needing a restart.
    std::fs::write(&list, format!("{hash}\n")).unwrap();
    conf.door(Door::http().port(1).token("newtok"))
        .write_to(dir.path());
    let report = running.reload().await.unwrap();
    assert_eq!(report.needs_restart, ["servers.http.port"], "{report:?}");
    assert_eq!(status(&format!("{url}&edge_token=tok")).await, 403);
    assert_eq!(status(&format!("{url}&edge_token=newtok")).await, 200);
    running.stop().await;
}

#[tokio::test]
async fn sighup_reloads_a_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let hash = BlobHash::of(b"anything");
    let list = dir.path().join("protected.txt");
    std::fs::write(&list, "").unwrap();
    let (http_port, metrics_port) = (free_port(), free_port());
    Cache::new()
        .door(Door::http().port(http_port))
        .protected_list(&list)
        .store(Store::mem())
        .write_to(dir.path());
    let mut child = Command::new(BIN)
        .args(["--conf-dir", dir.path().to_str().unwrap(), "blobcache"])
        .args(["--metrics-port", &metrics_port.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{http_port}/blob?hash={hash}");
    wait_for_status(&format!("http://127.0.0.1:{metrics_port}/readyz"), 200).await;
    assert_eq!(status(&url).await, 404, "absent, not protected");
    std::fs::write(&list, format!("{hash}\n")).unwrap();
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    wait_for_status(&url, 403).await;
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `url` until it answers `want` (bounded by TEST_TIMEOUT).
async fn wait_for_status(url: &str, want: u16) {
    let c = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + TEST_TIMEOUT;
    loop {
        if let Ok(r) = c.get(url).send().await {
            if r.status().as_u16() == want {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never answered {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn getblob_fetches_through_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let data = blob_bytes(6, 7000);
    let hash = BlobHash::of(&data);
    {
        let running = disk_cache(dir.path()).start_in(dir.path()).await;
        running.store.put(&hash, data.clone()).await.unwrap();
        running.stop().await;
    }
    let out = dir.path().join("blob.out");
    let conf = dir.path().to_str().unwrap();
    let r = Command::new(BIN)
        .args([
            "--conf-dir",
            conf,
            "getblob",
            &hash.to_string(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let r = Command::new(BIN)
        .args(["--conf-dir", conf, "getblob", &hash.to_string()])
        .output()
        .unwrap();
    assert_eq!(r.stdout, data, "to stdout");
    let missing = BlobHash::of(b"missing").to_string();
    let r = Command::new(BIN)
        .args(["--conf-dir", conf, "getblob", &missing])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("blob not found"));
    let r = Command::new(BIN)
        .args(["--conf-dir", conf, "getblob", "xyz"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("bad hash"));
}

#[tokio::test]
async fn check_integrity_removes_corrupt_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<_> = (0..5).map(|i| blob_bytes(10 + i, 5000)).collect();
    {
        let running = disk_cache(dir.path()).start_in(dir.path()).await;
        for b in &blobs {
            running
                .store
                .put(&BlobHash::of(b), b.clone())
                .await
                .unwrap();
        }
        running.stop().await;
    }
    // Bit rot in one file: same size, one byte flipped.
    let victim = BlobHash::of(&blobs[2]).to_string();
    let path = dir.path().join("cache").join(&victim[..2]).join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    let r = Command::new(BIN)
        .args([
            "--conf-dir",
            dir.path().to_str().unwrap(),
            "check-integrity",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    // Corruption found (and removed) is exit status 2, so cron jobs and alerts notice.
    assert_eq!(
        r.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(out.contains("5 blobs checked"), "{out}");
    assert!(out.contains(&format!("removed {victim}")), "{out}");
    assert!(out.contains("1 corrupt blobs removed"), "{out}");
    assert!(!path.exists());
    for (i, b) in blobs.iter().enumerate() {
        let h = BlobHash::of(b).to_string();
        assert_eq!(
            dir.path().join("cache").join(&h[..2]).join(&h).exists(),
            i != 2
        );
    }
    // The damage is gone: a second run finds nothing and succeeds.
    let again = Command::new(BIN)
        .args([
            "--conf-dir",
            dir.path().to_str().unwrap(),
            "check-integrity",
        ])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("4 blobs checked"));
}

fn promtool() -> &'static str {
    assert!(
        Command::new("promtool").arg("--version").output().is_ok(),
        "promtool not found: run the suite with tests/run.sh, which installs it"
    );
    "promtool"
}

#[tokio::test]
async fn metrics_pass_promtool_and_dashboard_queries_use_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped config's shape: memory over disk over an origin, plus a prefetcher (its API
    // is a closed port: the run fails, which is fine, its metrics are what we need) and an
    // upstream pool behind the origin (never asked; its per-endpoint series exist from start).
    let closed_port = free_port();
    let closed = format!("http://127.0.0.1:{closed_port}");
    let running = Cache::new()
        .http()
        .section(
            "prefetch",
            format!(
                "{{api: {}, channels: [\"@x:1\"], retries: 0}}",
                quoted(&closed)
            ),
        )
        .name("edge")
        .tier(Store::mem().named("ram"))
        .origin(
            Store::caching(
                Store::disk(dir.path().join("cache")).named("disk"),
                Store::ittt(
                    Store::noop(),
                    Store::upstreams(&[closed.clone(), format!("http://127.0.0.2:{closed_port}")])
                        .named("regionals"),
                ),
            )
            .named("local"),
        )
        .start_in(dir.path())
        .await;
    let data = blob_bytes(20, 1000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data).await.unwrap();
    let base = format!("http://{}/blob?hash=", running.http_addr.unwrap());
    status(&format!("{base}{hash}")).await;
    status(&format!("{base}bad")).await;
    let text = scrape(running.metrics_addr).await;
    running.stop().await;

    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics: {report}");

    // Every metric a dashboard or alert query names is one the process exports.
    let exported: std::collections::HashSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboards/prism-lite.json")).unwrap(),
    )
    .unwrap();
    let mut queries: Vec<String> = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            queries.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    queries.push(
        dashboard["templating"]["list"][0]["query"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        queries.push(rule["expr"].as_str().unwrap().to_string());
    }
    assert!(queries.len() >= 10);
    for q in &queries {
        for name in metric_names(q) {
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum");
            assert!(
                name == "up" || exported.contains(base),
                "query uses {name}, which the process does not export: {q}"
            );
        }
    }
}

/// `/metrics` right after start lists the families and series in `metrics_at_start.txt`
/// (values left out): every family with its HELP and TYPE lines, and every series created at
/// zero. The upload door and the other download doors are not configured: their families are
/// there anyway. A change here changes what dashboards and alerts see; make it on purpose.
#[tokio::test]
async fn metrics_at_start_are_the_listed_families_and_series() {
    let dir = tempfile::tempdir().unwrap();
    let running = Cache::new()
        .http()
        .name("edge")
        .tier(Store::mem().named("ram"))
        .origin(
            Store::caching(
                Store::disk(dir.path().join("cache")).named("disk"),
                Store::upstreams(&["http://127.0.0.1:9", "http://127.0.0.2:9"]).named("regionals"),
            )
            .named("local"),
        )
        .start()
        .await;
    let text = scrape(running.metrics_addr).await;
    running.stop().await;
    let shape: Vec<&str> = text
        .lines()
        .map(|l| match l.starts_with('#') {
            true => l,
            false => l.rsplit_once(' ').map_or(l, |(series, _value)| series),
        })
        .collect();
    let expected: Vec<&str> = include_str!("metrics_at_start.txt").lines().collect();
    assert_eq!(shape, expected, "/metrics at start:\n{}", shape.join("\n"));
}

/// Metric names in a PromQL expression (identifiers starting with our prefixes).
fn metric_names(query: &str) -> Vec<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("reflector_") || w.starts_with("prism_") || *w == "up")
        .map(String::from)
        .collect()
}

#[test]
fn alert_rules_pass_promtool() {
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(repo().join("deploy/prometheus/alerts.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let cfg = Command::new(promtool())
        .args(["check", "config", "--syntax-only"])
        .arg(repo().join("deploy/prometheus/prometheus.yml"))
        .output()
        .unwrap();
    // The scrape config references alerts.yml by its in-container path; syntax is what we check.
    assert!(
        cfg.status.success(),
        "{}{}",
        String::from_utf8_lossy(&cfg.stdout),
        String::from_utf8_lossy(&cfg.stderr)
    );
}

#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: systemd-analyze not available on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/prism-lite.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/prism-lite --conf-dir /etc/prism-lite blobcache")
    );
    for directive in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
        "ExecReload=",
    ] {
        assert!(unit.contains(directive), "unit lacks {directive}");
    }
    // Verify against the binary we just built (systemd checks the executable exists).
    let path = dir.path().join("prism-lite.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/prism-lite", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !msg.contains("prism-lite.service:"),
        "{msg}"
    );
}

#[tokio::test]
async fn reload_applies_prefetch_channels_live() {
    let dir = tempfile::tempdir().unwrap();
    // The API is a closed port: runs fail fast; what matters here is the configuration.
    let api = format!("http://127.0.0.1:{}", free_port());
    let prefetch = |channels: &str, api: &str| {
        disk_cache(dir.path()).section(
            "prefetch",
            format!(
                "{{api: {}, channels: [{channels}], retries: 0, interval: 1h}}",
                quoted(api)
            ),
        )
    };
    let running = prefetch("\"@first:1\"", &api).start_in(dir.path()).await;

    prefetch("\"@first:1\", \"@second:2\"", &api).write_to(dir.path());
    let report = running.reload().await.unwrap();
    assert!(
        report
            .applied
            .iter()
            .any(|a| a.starts_with("prefetch channels")),
        "{report:?}"
    );
    assert!(report.needs_restart.is_empty(), "{report:?}");
    let text = String::from_utf8(running.metrics.render()).unwrap();
    assert!(
        text.contains("channel=\"@second:2\""),
        "new channel's series exist"
    );

    prefetch("\"@first:1\"", "http://127.0.0.1:9").write_to(dir.path());
    let report = running.reload().await.unwrap();
    assert_eq!(report.needs_restart, ["prefetch.api"], "{report:?}");

    disk_cache(dir.path()).write_to(dir.path());
    let report = running.reload().await.unwrap();
    assert_eq!(
        report.needs_restart,
        ["prefetch (added or removed)"],
        "{report:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn blocklisted_blobs_are_refused_on_every_front_door() {
    let dir = tempfile::tempdir().unwrap();
    let (bad, good) = (blob_bytes(30, 6000), blob_bytes(31, 6000));
    let (bad_hash, good_hash) = (BlobHash::of(&bad), BlobHash::of(&good));
    let list = dir.path().join("blocked.txt");
    std::fs::write(&list, "").unwrap();
    let running = Cache::new()
        .http()
        .peer()
        .http3()
        .blocklist_file(&list)
        .store(Store::mem())
        .start_in(dir.path())
        .await;
    running.store.put(&bad_hash, bad.clone()).await.unwrap();
    running.store.put(&good_hash, good.clone()).await.unwrap();
    // Block it while running: a reload installs the list and purges the blob.
    std::fs::write(&list, format!("{bad_hash}\n")).unwrap();
    running.reload().await.unwrap();

    // Real protocol clients: our own `peer` and `http3` origin stores.
    let metrics = Arc::new(prism_lite::metrics::Metrics::new());
    let peer = Store::peer(running.peer_addr.unwrap())
        .timeout("10s")
        .build_with(&metrics);
    let h3 = Store::http3(running.http3_addr.unwrap())
        .timeout("10s")
        .set("insecure_skip_verify", true)
        .build_with(&metrics);
    let http = format!("http://{}/blob?hash=", running.http_addr.unwrap());
    assert_eq!(status(&format!("{http}{bad_hash}")).await, 404, "http");
    assert_eq!(status(&format!("{http}{good_hash}")).await, 200, "http");
    for (door, client) in [("peer", &peer), ("http3", &h3)] {
        let refused = tokio::time::timeout(TEST_TIMEOUT, client.get(&bad_hash))
            .await
            .unwrap();
        assert!(
            refused.unwrap_err().is_not_found(),
            "{door} served a blocked blob"
        );
        assert!(
            !client.has(&bad_hash).await.unwrap(),
            "{door} lists a blocked blob"
        );
        let served = tokio::time::timeout(TEST_TIMEOUT, client.get(&good_hash))
            .await
            .unwrap();
        assert_eq!(served.unwrap().data, good, "{door} still serves the rest");
    }
    // It was deleted, not merely hidden: unblocking does not bring it back.
    std::fs::write(&list, "").unwrap();
    running.reload().await.unwrap();
    assert!(!running.policy.is_blocked(&bad_hash));
    assert!(running
        .store
        .get(&bad_hash)
        .await
        .unwrap_err()
        .is_not_found());
    running.stop().await;
}
