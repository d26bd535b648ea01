//! The access log (`access_log:`): nginx's combined line and the JSON line on every door, with
//! the real client address and no secret; reopened on SIGHUP by a real process.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use prism_lite::blob::BlobHash;

use crate::common::*;

/// The lines written so far (none while the file does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the log at `path` has `n` lines, and returns them.
async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    wait_until(&format!("{n} lines in {}", path.display()), || {
        lines(path).len() >= n
    })
    .await;
    lines(path)
}

fn log_section(path: &Path, format: &str) -> String {
    format!(
        "{{path: {}, format: {format}}}",
        quoted(path.to_str().unwrap())
    )
}

/// A cache over an HTTP origin holding one blob, its HTTP door trusting 127.0.0.1's
/// forwarding headers, its peer door on too.
async fn cache_logging(
    dir: &Path,
    format: &str,
) -> (prism_lite::app::Running, HttpOrigin, BlobHash) {
    let origin = HttpOrigin::start().await;
    let data = blob_bytes(7, 50_000);
    let hash = BlobHash::of(&data);
    origin
        .script
        .set(&format!("/bucket/{}", hash.to_hex()), 200, data);
    let running = Cache::new()
        .door(Door::http().set("trusted_proxies", "[127.0.0.1/32]"))
        .peer()
        .http3()
        .tier(Store::mem())
        .origin(Store::http(&origin))
        .section("access_log", log_section(&dir.join("access.log"), format))
        .start()
        .await;
    (running, origin, hash)
}

#[tokio::test]
async fn combined_lines_are_nginx_s_with_the_real_client_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _origin, hash) = cache_logging(dir.path(), "combined").await;
    let base = format!("http://{}", running.http_addr.unwrap());
    let url = format!("{base}/blob?hash={hash}&edge_token=s3cret&Signature=sig");

    // An untrusted client's forwarding headers are ignored.
    let r = client_from("127.0.0.2")
        .get(&url)
        .header("x-forwarded-for", "203.0.113.66")
        .header("forwarded", "for=203.0.113.67")
        .header("referer", "https://odysee.com/@x")
        .header("user-agent", "test \"agent\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A trusted proxy's are believed: the rightmost hop that is not a trusted proxy.
    let r = client_from("127.0.0.1")
        .get(format!("{base}/blob?hash={hash}"))
        .header("x-forwarded-for", "198.51.100.1, 127.0.0.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client_from("127.0.0.1")
        .head(format!("{base}/nothing-here"))
        .header("forwarded", "for=\"[2001:db8::7]:443\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let log = wait_lines(&dir.path().join("access.log"), 3).await;
    let line = regex::Regex::new(
        r#"^(\S+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$"#,
    )
    .unwrap();
    let fields: Vec<Vec<String>> = log
        .iter()
        .map(|l| {
            let c = line
                .captures(l)
                .unwrap_or_else(|| panic!("not a combined line: {l}"));
            (1..=6).map(|i| c[i].to_string()).collect()
        })
        .collect();
    assert_eq!(
        fields[0],
        [
            "127.0.0.2",
            &format!("GET /blob?hash={hash}&edge_token=***&Signature=*** HTTP/1.1"),
            "200",
            "50000",
            "https://odysee.com/@x",
            "test \\x22agent\\x22"
        ]
    );
    assert_eq!(fields[1][0], "127.0.0.3");
    assert_eq!(fields[1][5], "-", "no user agent: -");
    assert_eq!(
        fields[2][..4],
        ["2001:db8::7", "HEAD /nothing-here HTTP/1.1", "404", "0"]
    );
    let text = log.join("\n");
    assert!(!text.contains("s3cret") && !text.contains("=sig"), "{text}");
    running.stop().await;
}

#[tokio::test]
async fn json_lines_add_door_duration_and_cache_result() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _origin, hash) = cache_logging(dir.path(), "json").await;
    let url = format!("http://{}/blob?hash={hash}", running.http_addr.unwrap());
    let c = client_from("127.0.0.2");
    for _ in 0..2 {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }
    let missing = BlobHash::of(b"nowhere");
    let url = format!("http://{}/blob?hash={missing}", running.http_addr.unwrap());
    assert_eq!(c.get(&url).send().await.unwrap().status(), 404);
    // One line per blob on the peer door.
    let peer = Store::peer(running.peer_addr.unwrap()).build();
    assert_eq!(peer.get(&hash).await.unwrap().data.len(), 50_000);
    // And one per request on the HTTP/3 door.
    let h3 = H3Client::options(&[prism_lite::quic::ALPN_H3])
        .local_ip("127.0.0.3")
        .connect(running.http3_addr.unwrap())
        .await
        .unwrap();
    let (head, body) = h3.get(&format!("/get/{hash}?edge_token=t0ken")).await;
    assert_eq!((head.status().as_u16(), body.len()), (200, 50_000));

    let log = wait_lines(&dir.path().join("access.log"), 5).await;
    let json: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let cache: Vec<&str> = json.iter().map(|j| j["cache"].as_str().unwrap()).collect();
    assert_eq!(cache, ["miss", "hit", "miss", "hit", "hit"]);
    assert_eq!(json[0]["remote_addr"], "127.0.0.2");
    assert_eq!(
        json[0]["request"],
        format!("GET /blob?hash={hash} HTTP/1.1")
    );
    assert_eq!(json[0]["status"], 200);
    assert_eq!(json[0]["body_bytes_sent"], 50_000);
    assert_eq!(json[0]["door"], "http");
    assert!(json[0]["duration_seconds"].as_f64().unwrap() > 0.0);
    assert!(json[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(json[2]["status"], 404);
    assert_eq!(json[3]["door"], "peer");
    assert_eq!(json[3]["remote_addr"], "127.0.0.1");
    assert_eq!(
        json[3]["request"],
        format!("requested_blob {hash} lbry-peer")
    );
    assert_eq!(json[3]["body_bytes_sent"], 50_000);
    assert_eq!(json[4]["door"], "http3");
    assert_eq!(json[4]["remote_addr"], "127.0.0.3");
    assert_eq!(
        json[4]["request"],
        format!("GET /get/{hash}?edge_token=*** HTTP/3.0")
    );
    assert_eq!(json[4]["body_bytes_sent"], 50_000);
    let m = scrape(running.metrics_addr).await;
    assert_eq!(metric(&m, "prism_access_log_dropped_total", &[]), 0.0);
    running.stop().await;
}

/// logrotate's way: move the file away, send SIGHUP; the next line goes to a new file at the
/// configured path, and nothing is lost from the old one.
#[tokio::test]
async fn the_log_is_reopened_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cache = Cache::new()
        .http()
        .store(Store::mem())
        .section("access_log", log_section(&log, "combined"));
    let process = cache.spawn(dir.path()).await;
    let url = format!("http://{}/blob?hash={}", process.http, BlobHash::of(b"x"));
    let c = http_client();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 404);
    wait_lines(&log, 1).await;
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &process.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // Requests until one lands in the new file (the reopen happens once the signal is
    // handled); the old file keeps what was written before.
    let deadline = std::time::Instant::now() + TEST_TIMEOUT;
    while lines(&log).is_empty() {
        assert!(std::time::Instant::now() < deadline, "never reopened");
        assert_eq!(c.get(&url).send().await.unwrap().status(), 404);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!lines(&rotated).is_empty());
    assert!(
        lines(&log)[0].contains("\"GET /blob?hash="),
        "{:?}",
        lines(&log)
    );
    process.kill().await;
}
