//! The real client address behind a load balancer: PROXY protocol v1 and v2 from a real sender
//! (Debian's haproxy, `send-proxy` / `send-proxy-v2`), believed from trusted peers only; the
//! address it names is what the per-address cap and the access log see.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use prism_lite::blob::BlobHash;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::common::*;

fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One blob in memory, the HTTP and peer doors taking PROXY headers from 127.0.0.1 (haproxy),
/// the HTTP door allowing one connection per client address, a JSON access log.
async fn proxied_cache(dir: &Path) -> (prism_lite::app::Running, BlobHash) {
    let running = Cache::new()
        .door(
            Door::http()
                .set("trusted_proxies", "[127.0.0.1]")
                .set("proxy_protocol", true)
                .set("max_connections_per_ip", 1),
        )
        .door(
            Door::peer()
                .set("trusted_proxies", "[127.0.0.1]")
                .set("proxy_protocol", true),
        )
        .store(Store::mem())
        .section(
            "access_log",
            format!(
                "{{path: {}, format: json}}",
                quoted(dir.join("access.log").to_str().unwrap())
            ),
        )
        .start()
        .await;
    let data = blob_bytes(3, 10_000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data).await.unwrap();
    (running, hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_from_haproxy_name_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let (running, hash) = proxied_cache(dir.path()).await;
    let (v1, v2, peer_v2) = (free_port(), free_port(), free_port());
    let _haproxy = Haproxy::start(
        dir.path(),
        &[
            (v1, running.http_addr.unwrap(), "send-proxy"),
            (v2, running.http_addr.unwrap(), "send-proxy-v2"),
            (peer_v2, running.peer_addr.unwrap(), "send-proxy-v2"),
        ],
    )
    .await;
    let get = |client: &str, port: u16| {
        let url = format!("http://127.0.0.1:{port}/blob?hash={hash}");
        let c = client_from(client);
        async move { c.get(url).send().await.unwrap().status() }
    };
    assert_eq!(get("127.0.0.2", v1).await, 200);
    assert_eq!(get("127.0.0.3", v2).await, 200);
    // The peer door behind haproxy: the real peer protocol through `send-proxy-v2`.
    let peer = Store::peer(SocketAddr::from(([127, 0, 0, 1], peer_v2))).build();
    assert_eq!(peer.get(&hash).await.unwrap().data.len(), 10_000);

    let path = dir.path().join("access.log");
    wait_until("three access log lines", || log_lines(&path).len() >= 3).await;
    let log = log_lines(&path);
    let who: Vec<(&str, &str)> = log
        .iter()
        .map(|l| {
            (
                l["door"].as_str().unwrap(),
                l["remote_addr"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("http", "127.0.0.2"),
            ("http", "127.0.0.3"),
            ("peer", "127.0.0.1")
        ],
        "the peer store connects from 127.0.0.1 too: haproxy names it"
    );
    running.stop().await;
}

/// `max_connections_per_ip` counts the client haproxy names, not haproxy: a second connection
/// of one client is closed while another client still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limits_apply_to_the_address_haproxy_names() {
    let dir = tempfile::tempdir().unwrap();
    let (running, hash) = proxied_cache(dir.path()).await;
    let port = free_port();
    let _haproxy = Haproxy::start(
        dir.path(),
        &[(port, running.http_addr.unwrap(), "send-proxy-v2")],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/blob?hash={hash}");
    // The first client holds its one connection (kept alive in its client's pool once the
    // body is read: a response dropped unread would close it).
    let first = client_from("127.0.0.2");
    let answer = first.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.bytes().await.unwrap();
    // A second connection of the same client is closed.
    let second = client_from("127.0.0.2").get(&url).send().await;
    assert!(second.is_err(), "over the cap: {second:?}");
    // Another client behind the same haproxy is served.
    let other = client_from("127.0.0.3").get(&url).send().await.unwrap();
    assert_eq!(other.status(), 200);
    let m = scrape(running.metrics_addr).await;
    assert!(metric(&m, "prism_requests_rejected_total", &[("server", "http")]) >= 1.0);
    running.stop().await;
}

/// A PROXY header from an untrusted peer is not read: it is just bad HTTP, and the client is
/// who it connects from.
#[tokio::test]
async fn an_untrusted_peer_cannot_send_a_proxy_header() {
    let dir = tempfile::tempdir().unwrap();
    let (running, hash) = proxied_cache(dir.path()).await;
    let http = running.http_addr.unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(http).await.unwrap();
    stream
        .write_all(
            format!(
                "PROXY TCP4 192.0.2.9 127.0.0.1 1234 80\r\nGET /blob?hash={hash} HTTP/1.1\r\n\
                 Host: x\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("an answer", stream.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // The same address speaking plain HTTP is served, as itself.
    let ok = client_from("127.0.0.2")
        .get(format!("http://{http}/blob?hash={hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let path = dir.path().join("access.log");
    wait_until("a line", || !log_lines(&path).is_empty()).await;
    assert_eq!(log_lines(&path)[0]["remote_addr"], "127.0.0.2");
    running.stop().await;
}

#[tokio::test]
async fn proxy_protocol_without_trusted_proxies_and_bad_cidrs_are_refused_at_load() {
    let e = Cache::new()
        .door(Door::peer().set("proxy_protocol", true))
        .store(Store::mem())
        .try_start()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("servers.peer: proxy_protocol: true needs trusted_proxies"),
        "{e}"
    );
    let e = Cache::new()
        .door(Door::http().set("trusted_proxies", "[10.0.0.0/8, 300.1.1.1]"))
        .store(Store::mem())
        .try_start()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("servers.http.trusted_proxies")
            && e.contains("\"300.1.1.1\" is not a CIDR block"),
        "{e}"
    );
}

/// On an HTTP door the client is read per request from a trusted proxy's headers, so the
/// proxy's own connections are not held to `max_connections_per_ip` (they carry many clients);
/// an untrusted address still is.
#[tokio::test]
async fn a_trusted_proxy_s_connections_are_not_capped_per_address() {
    let running = Cache::new()
        .door(
            Door::http()
                .set("trusted_proxies", "[127.0.0.1]")
                .set("max_connections_per_ip", 1),
        )
        .store(Store::mem())
        .start()
        .await;
    let data = blob_bytes(4, 1000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data).await.unwrap();
    let url = format!("http://{}/blob?hash={hash}", running.http_addr.unwrap());
    // Two clients (two pools): two connections from each address, the first kept alive.
    for (from, second_ok) in [("127.0.0.1", true), ("127.0.0.2", false)] {
        let first = client_from(from);
        let answer = first.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.bytes().await.unwrap(); // back in the pool, the connection stays open
        let second = client_from(from).get(&url).send().await;
        assert_eq!(second.is_ok(), second_ok, "{from}: {second:?}");
        drop(first);
    }
    running.stop().await;
}

/// The per-address in-flight budget (`limits.max_inflight_bytes_per_ip`) is charged to the
/// client a trusted proxy's `X-Forwarded-For` names: one forwarded client stalled on a blob is
/// refused a second one, while another client behind the same proxy is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_share_is_the_forwarded_client_s() {
    let running = Cache::new()
        .door(Door::http().set("trusted_proxies", "[127.0.0.1]"))
        .store(Store::mem().max_size("64MiB"))
        .limits("{max_inflight_bytes_per_ip: 3MiB, inflight_wait: 100ms, write_stall_timeout: 60s}")
        .start()
        .await;
    let mut hashes = Vec::new();
    for seed in 0..2 {
        let data = blob_bytes(20 + seed, 2 << 20);
        let hash = BlobHash::of(&data);
        running.store.put(&hash, data).await.unwrap();
        hashes.push(hash);
    }
    let http = running.http_addr.unwrap();
    // A reader behind the proxy that never reads (a tiny receive buffer), with requests
    // pipelined so that, once the kernel's buffers are full, a 2 MiB answer stays charged to
    // 198.51.100.1.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut stalled = within("connect", socket.connect(http)).await.unwrap();
    let request = format!(
        "GET /blob?hash={} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n",
        hashes[0]
    );
    stalled
        .write_all(request.repeat(8).as_bytes())
        .await
        .unwrap();
    let url = format!("http://{http}/blob?hash={}", hashes[1]);
    let proxy = client_from("127.0.0.1");
    let get_for = |client: &'static str| {
        let request = proxy.get(&url).header("x-forwarded-for", client);
        async move { request.send().await.unwrap().status() }
    };
    // Once an answer is stuck, the same client is at its share...
    let deadline = std::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let status = get_for("198.51.100.1").await;
        if status == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refused (last {status})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and another client behind the same proxy is not.
    assert_eq!(get_for("198.51.100.2").await, 200);
    drop(stalled);
    running.stop().await;
}
