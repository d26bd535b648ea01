//! The HTTP/3 front door and the `http3` store on real UDP sockets: routes and statuses, both
//! ALPNs, many requests multiplexed on one connection, a two-cache chain that survives the
//! upstream restarting, TLS verification modes, and garbage datagrams.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::common::{
    blob_bytes, fixture_blobs, metric, quoted, wait_until, Cache, Door, Families, H3Client, Store,
    TEST_TIMEOUT,
};
use bytes::Bytes;
use prism_lite::app;
use prism_lite::blob::BlobHash;
use prism_lite::metrics::Metrics;
use prism_lite::quic;
use prism_lite::store::StoreError;
use tokio::time::timeout;

/// A cache serving a `mem` store over HTTP/3 (any port; another with `.door()`).
pub(crate) fn mem_server() -> Cache {
    Cache::new()
        .http3()
        .store(Store::mem().named("ram").max_size("256MiB"))
}

/// An edge cache (HTTP/3 door, memory tier) whose origin is the `http3` store `origin` pointed
/// at `upstream` (certificate checks off: the upstream's certificate is self-signed).
async fn edge_over_http3(
    ram: &str,
    origin: &str,
    upstream: SocketAddr,
    timeout: &str,
) -> app::Running {
    Cache::new()
        .http3()
        .name("edge")
        .tier(Store::mem().named(ram).max_size("64MiB"))
        .origin(
            Store::http3(upstream)
                .named(origin)
                .timeout(timeout)
                .set("insecure_skip_verify", true),
        )
        .start()
        .await
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("json body")
}

async fn scrape(running: &app::Running) -> String {
    let url = format!("http://{}/metrics", running.metrics_addr);
    timeout(TEST_TIMEOUT, async {
        reqwest::get(url).await.unwrap().text().await.unwrap()
    })
    .await
    .expect("metrics scrape timed out")
}

#[tokio::test]
async fn routes_statuses_protected_and_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let protected = blob_bytes(7, 10_000);
    let protected_hash = BlobHash::of(&protected);
    let list = dir.path().join("protected.txt");
    std::fs::write(&list, format!("{protected_hash}\n")).unwrap();
    let running = mem_server()
        .door(Door::http3().token("secret"))
        .protected_list(&list)
        .start()
        .await;
    let data = blob_bytes(1, 300_000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    running
        .store
        .put(&protected_hash, protected.clone())
        .await
        .unwrap();
    let fixtures = fixture_blobs();
    for (h, d) in &fixtures {
        running.store.put(h, d.clone()).await.unwrap();
    }
    let absent = BlobHash::of(b"not stored anywhere");
    let c = H3Client::connect(running.http3_addr.unwrap(), &[quic::ALPN_REFLECTOR])
        .await
        .unwrap();

    let (r, body) = c.get(&format!("/get/{hash}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-length"], "300000");
    assert!(r.headers().get("via").is_none(), "Via only when asked");
    assert_eq!(body, data);

    let (r, body) = c.get(&format!("/get/{hash}?trace=true")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, data);
    let via: serde_json::Value =
        serde_json::from_str(r.headers()["via"].to_str().unwrap()).unwrap();
    assert_eq!(via["stacks"][0]["origin_name"], "ram", "{via}");

    let (r, body) = c.get(&format!("/has/{hash}")).await;
    assert_eq!(r.status(), 200);
    let v = json(&body);
    assert_eq!(v["is_available"], true);
    assert!(v["lbrycrd_address"].as_str().is_some_and(|a| !a.is_empty()));

    let (r, body) = c.get(&format!("/has/{absent}")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(&body)["is_available"], false);

    let (r, _) = c.get(&format!("/get/{absent}")).await;
    assert_eq!(r.status(), 404);

    for bad in [
        "/get/abc",
        "/has/abc",
        &format!("/get/{}", hash.to_hex().to_uppercase()),
    ] {
        let (r, body) = c.get(bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert!(String::from_utf8_lossy(&body).contains("bad hash"), "{bad}");
    }
    let (r, _) = c.get("/blob").await;
    assert_eq!(r.status(), 404);

    let (r, _) = c.get(&format!("/get/{protected_hash}")).await;
    assert_eq!(r.status(), 403);
    let (r, _) = c
        .get(&format!("/get/{protected_hash}?edge_token=wrong"))
        .await;
    assert_eq!(r.status(), 403);
    let (r, body) = c
        .get(&format!("/get/{protected_hash}?edge_token=secret"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, protected);

    for (h, d) in &fixtures {
        let (r, body) = c.get(&format!("/get/{h}")).await;
        assert_eq!(r.status(), 200, "{h}");
        assert_eq!(BlobHash::of(&body), *h);
        assert_eq!(body.len(), d.len());
    }

    let text = scrape(&running).await;
    let served = 3.0 + fixtures.len() as f64;
    assert_eq!(
        metric(&text, "reflector_http3_blob_download_total", &[]),
        served
    );
    assert_eq!(metric(&text, "reflector_blob_download_total", &[]), served);
    let bytes = 2.0 * 300_000.0
        + protected.len() as f64
        + fixtures.iter().map(|(_, d)| d.len() as f64).sum::<f64>();
    assert_eq!(metric(&text, "reflector_udp_out_bytes", &[]), bytes);
    assert!(
        metric(
            &text,
            "prism_request_duration_seconds_count",
            &[("server", "http3"), ("status", "400")]
        ) >= 3.0
    );
    assert!(
        metric(
            &text,
            "prism_request_duration_seconds_count",
            &[("server", "http3"), ("status", "403")]
        ) >= 2.0
    );
    c.connection().close(0u32.into(), b"done");
    timeout(TEST_TIMEOUT, running.stop()).await.unwrap();
}

#[tokio::test]
async fn http3_store_gets_has_and_verifies() {
    let upstream = mem_server().start().await;
    let data = blob_bytes(2, 2 * 1024 * 1024);
    let hash = BlobHash::of(&data);
    upstream.store.put(&hash, data.clone()).await.unwrap();
    let fixtures = fixture_blobs();
    for (h, d) in &fixtures {
        upstream.store.put(h, d.clone()).await.unwrap();
    }
    let metrics = Arc::new(Metrics::new());
    let store = Store::http3(upstream.http3_addr.unwrap())
        .named("up")
        .timeout("10s")
        .set("insecure_skip_verify", true)
        .build_with(&metrics);

    let blob = timeout(TEST_TIMEOUT, store.get(&hash))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blob.data, data);
    let names: Vec<&str> = blob.trace.stacks.iter().map(|s| &*s.origin_name).collect();
    assert_eq!(names, ["ram", "up"], "upstream trace read and extended");
    assert!(timeout(TEST_TIMEOUT, store.has(&hash))
        .await
        .unwrap()
        .unwrap());
    let absent = BlobHash::of(b"absent");
    assert!(!timeout(TEST_TIMEOUT, store.has(&absent))
        .await
        .unwrap()
        .unwrap());
    assert!(matches!(
        timeout(TEST_TIMEOUT, store.get(&absent)).await.unwrap(),
        Err(StoreError::NotFound)
    ));
    for (h, d) in &fixtures {
        let b = timeout(TEST_TIMEOUT, store.get(h)).await.unwrap().unwrap();
        assert_eq!(b.data, *d);
    }
    assert!(matches!(
        store.put(&hash, data.clone()).await,
        Err(StoreError::Refused { .. })
    ));
    timeout(TEST_TIMEOUT, upstream.stop()).await.unwrap();
}

#[tokio::test]
async fn sixty_four_concurrent_requests_on_one_connection() {
    let running = mem_server().start().await;
    let mut blobs = Vec::new();
    for seed in 0..64u64 {
        let data = blob_bytes(100 + seed, 50_000 + seed as usize * 1000);
        let hash = BlobHash::of(&data);
        running.store.put(&hash, data).await.unwrap();
        blobs.push(hash);
    }
    let addr = running.http3_addr.unwrap();

    // A plain h3 client: 64 streams at once on its one connection.
    let c = Arc::new(H3Client::connect(addr, &[quic::ALPN_H3]).await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for hash in blobs.clone() {
        let c = Arc::clone(&c);
        tasks.spawn(async move {
            let (r, body) = c.get(&format!("/get/{hash}")).await;
            (hash, r.status(), body)
        });
    }
    let mut ok = 0;
    while let Some(done) = timeout(TEST_TIMEOUT, tasks.join_next()).await.unwrap() {
        let (hash, status, body) = done.unwrap();
        assert_eq!(status, 200);
        assert_eq!(BlobHash::of(&body), hash);
        ok += 1;
    }
    assert_eq!(ok, 64);

    // The store: 64 concurrent gets share one upstream connection.
    let metrics = Arc::new(Metrics::new());
    let store = Store::http3(addr)
        .set("insecure_skip_verify", true)
        .build_with(&metrics);
    let mut tasks = tokio::task::JoinSet::new();
    for hash in blobs.clone() {
        let store = Arc::clone(&store);
        tasks.spawn(async move { (hash, store.get(&hash).await) });
    }
    while let Some(done) = timeout(TEST_TIMEOUT, tasks.join_next()).await.unwrap() {
        let (hash, got) = done.unwrap();
        assert_eq!(BlobHash::of(&got.unwrap().data), hash);
    }
    assert_eq!(
        running.metrics.doors().http3_connections_total.get(),
        2,
        "one connection for the test client, one shared by the store's 64 gets"
    );
    let text = scrape(&running).await;
    assert_eq!(
        metric(&text, "reflector_http3_blob_download_total", &[]),
        128.0
    );
    timeout(TEST_TIMEOUT, running.stop()).await.unwrap();
}

#[tokio::test]
async fn both_alpns_are_served() {
    let running = mem_server().start().await;
    let data = blob_bytes(3, 5000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    for alpn in [quic::ALPN_H3, quic::ALPN_REFLECTOR] {
        let c = H3Client::connect(running.http3_addr.unwrap(), &[alpn])
            .await
            .unwrap();
        let negotiated = c
            .connection()
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol);
        assert_eq!(negotiated.as_deref(), Some(alpn));
        let (r, body) = c.get(&format!("/get/{hash}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(body, data);
    }
    // A client offering neither is refused at the handshake.
    let refused = H3Client::connect(running.http3_addr.unwrap(), &[b"h2"]).await;
    assert!(refused.is_err());
    timeout(TEST_TIMEOUT, running.stop()).await.unwrap();
}

/// Starts a cache on a fixed UDP port, retrying while the previous instance's socket is still
/// being released (bounded by the test timeout).
async fn restart_on(port: u16) -> app::Running {
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        match mem_server()
            .door(Door::http3().port(port))
            .try_start()
            .await
        {
            Ok(r) => return r,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "could not rebind udp port {port}: {e:#}"
                );
                tokio::task::yield_now().await;
            }
        }
    }
}

#[tokio::test]
async fn chain_reconnects_after_upstream_restart() {
    let b = mem_server().start().await;
    let b_addr = b.http3_addr.unwrap();
    let first = blob_bytes(10, 1_000_000);
    let first_hash = BlobHash::of(&first);
    b.store.put(&first_hash, first.clone()).await.unwrap();
    let a = edge_over_http3("a-ram", "b", b_addr, "2s").await;
    let client = H3Client::connect(a.http3_addr.unwrap(), &[quic::ALPN_H3])
        .await
        .unwrap();

    let (r, body) = client.get(&format!("/get/{first_hash}?trace=true")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, first);
    let via = r.headers()["via"].to_str().unwrap().to_string();
    assert!(
        via.contains("\"b\"") && via.contains("\"ram\""),
        "B's trace extended by A: {via}"
    );

    // B goes away and comes back on the same port with new content.
    timeout(TEST_TIMEOUT, b.stop()).await.unwrap();
    let second = blob_bytes(11, 2 * 1024 * 1024);
    let second_hash = BlobHash::of(&second);
    let b = restart_on(b_addr.port()).await;
    b.store.put(&second_hash, second.clone()).await.unwrap();

    // A's origin connection died with B; its next miss must dial again and fill.
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    let body = loop {
        let (r, body) = client.get(&format!("/get/{second_hash}")).await;
        if r.status() == 200 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never reconnected to B: last status {}",
            r.status()
        );
    };
    assert_eq!(body, second);
    // Served from A's cache now, and the first blob was cached before B restarted.
    assert!(a.store.has(&second_hash).await.unwrap());
    let (r, body) = client.get(&format!("/get/{first_hash}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, first);
    timeout(TEST_TIMEOUT, a.stop()).await.unwrap();
    timeout(TEST_TIMEOUT, b.stop()).await.unwrap();
}

#[tokio::test]
async fn tls_verification_modes() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = quic::self_signed_pem(&[]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert_pem).unwrap();
    std::fs::write(&key_path, key_pem).unwrap();
    let running = mem_server()
        .door(
            Door::http3()
                .set("cert_file", quoted(cert_path.to_str().unwrap()))
                .set("key_file", quoted(key_path.to_str().unwrap())),
        )
        .start()
        .await;
    let data = blob_bytes(4, 40_000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    let addr = running.http3_addr.unwrap();
    let metrics = Arc::new(Metrics::new());

    let ca_file = quoted(cert_path.to_str().unwrap());
    let pinned = Store::http3(addr)
        .timeout("5s")
        .set("ca_file", &ca_file)
        .build_with(&metrics);
    let got = timeout(TEST_TIMEOUT, pinned.get(&hash))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data, data);

    // Default: verify against the web PKI roots, which do not include our certificate.
    let strict = Store::http3(addr).timeout("5s").build_with(&metrics);
    let err = timeout(TEST_TIMEOUT, strict.get(&hash))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable { .. }),
        "untrusted certificate must fail: {err}"
    );

    let both = Store::http3(addr)
        .set("ca_file", &ca_file)
        .set("insecure_skip_verify", true)
        .try_build_with(&metrics);
    assert!(both.is_err());
    timeout(TEST_TIMEOUT, running.stop()).await.unwrap();
}

#[tokio::test]
async fn garbage_datagrams_do_not_hurt_the_server() {
    let running = mem_server().start().await;
    let data = blob_bytes(5, 20_000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    let addr = running.http3_addr.unwrap();

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..200u64 {
        let len = [1usize, 7, 40, 600, 1200, 1350, 1500][i as usize % 7];
        let mut junk = blob_bytes(i, len).to_vec();
        if i % 3 == 0 {
            // Looks like a QUIC v1 long-header Initial, with nonsense after.
            junk[0] = 0xc0;
            if len > 5 {
                junk[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
        }
        timeout(TEST_TIMEOUT, sock.send_to(&junk, addr))
            .await
            .unwrap()
            .unwrap();
    }
    let c = H3Client::connect(addr, &[quic::ALPN_REFLECTOR])
        .await
        .unwrap();
    let (r, body) = c.get(&format!("/get/{hash}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, data);
    let (r, _) = c.get("/get/not-a-hash").await;
    assert_eq!(r.status(), 400);
    timeout(TEST_TIMEOUT, running.stop()).await.unwrap();
}

#[tokio::test]
async fn stream_playback_over_http3() {
    let running = mem_server().start().await;
    for (h, d) in fixture_blobs() {
        running.store.put(&h, d).await.unwrap();
    }
    let dir = crate::playback::Fixture::load("medium");
    let c = H3Client::connect(running.http3_addr.unwrap(), &[quic::ALPN_REFLECTOR])
        .await
        .unwrap();
    let (r, body) = c.get(&format!("/stream/{}", dir.sd_hash)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.headers()["content-length"], "5000000");
    assert!(body == dir.source, "decoded stream equals source.bin");
    let (r, _) = c.get(&format!("/stream/{}", dir.content(0))).await;
    assert_eq!(r.status(), 422);
    let (r, _) = c.get("/stream/nothex").await;
    assert_eq!(r.status(), 400);
    running.stop().await;
}

/// GETs `hash` through `client` and returns the body after checking it is that blob.
async fn get_verified(client: &H3Client, hash: &BlobHash) -> Bytes {
    let (r, body) = client.get(&format!("/get/{hash}")).await;
    assert_eq!(r.status(), 200, "GET {hash}");
    assert_eq!(BlobHash::of(&body), *hash, "bytes of {hash}");
    body
}

/// The tuned store-to-door chain: an edge cache pulls from a regional cache over HTTP/3. Every
/// miss arrives with the right bytes, all of them (sequential and concurrent) over ONE QUIC
/// connection, the server's packets grow past Ethernet's size on loopback, and after the regional restarts on
/// the same port the edge reconnects once and goes on reusing that connection.
#[tokio::test]
async fn tuned_chain_reuses_one_connection_and_survives_a_regional_restart() {
    let regional = mem_server().start().await;
    let regional_addr = regional.http3_addr.unwrap();
    let mut blobs = Vec::new();
    for seed in 0..8u64 {
        let data = blob_bytes(200 + seed, 2 * 1024 * 1024 - seed as usize);
        let hash = BlobHash::of(&data);
        regional.store.put(&hash, data).await.unwrap();
        blobs.push(hash);
    }
    let edge = edge_over_http3("edge-ram", "regional", regional_addr, "10s").await;
    let client = Arc::new(
        H3Client::connect(edge.http3_addr.unwrap(), &[quic::ALPN_H3])
            .await
            .unwrap(),
    );

    // Four misses one after another, then four at once: one upstream connection for all.
    for hash in &blobs[..4] {
        get_verified(&client, hash).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for &hash in &blobs[4..] {
        let client = Arc::clone(&client);
        tasks.spawn(async move { get_verified(&client, &hash).await.len() });
    }
    while let Some(done) = timeout(TEST_TIMEOUT, tasks.join_next()).await.unwrap() {
        assert!(done.unwrap() > 0);
    }
    for hash in &blobs {
        assert!(edge.store.has(hash).await.unwrap(), "edge cached {hash}");
    }
    assert_eq!(
        regional.metrics.doors().http3_connections_total.get(),
        1,
        "eight misses reused the edge's one connection to the regional"
    );
    // The edge's MTU discovery on loopback (64 KiB MTU) goes well past Ethernet's 1,452-byte
    // payloads: what the client received averages more than that per datagram. (Clients do not
    // probe: they only send requests.)
    let conn = client.connection().clone();
    wait_until(
        "the edge's packets grow past 1452 bytes on loopback",
        || {
            let rx = conn.stats().udp_rx;
            rx.bytes > 1452 * rx.datagrams.max(1)
        },
    )
    .await;

    // The regional restarts on the same port with a new blob.
    timeout(TEST_TIMEOUT, regional.stop()).await.unwrap();
    let regional = restart_on(regional_addr.port()).await;
    let fresh = blob_bytes(300, 2 * 1024 * 1024);
    let fresh_hash = BlobHash::of(&fresh);
    regional
        .store
        .put(&fresh_hash, fresh.clone())
        .await
        .unwrap();
    let mut more = Vec::new();
    for seed in 0..3u64 {
        let data = blob_bytes(310 + seed, 1_000_000);
        let hash = BlobHash::of(&data);
        regional.store.put(&hash, data).await.unwrap();
        more.push(hash);
    }

    // The edge's old connection died with the regional: the next miss dials again.
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let (r, body) = client.get(&format!("/get/{fresh_hash}")).await;
        if r.status() == 200 {
            assert_eq!(body, fresh);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edge never reconnected: last status {}",
            r.status()
        );
    }
    for hash in &more {
        get_verified(&client, hash).await;
    }
    assert_eq!(
        regional.metrics.doors().http3_connections_total.get(),
        1,
        "after the restart the edge dialled once and reused that connection"
    );
    // What was cached before the restart is still served by the edge itself.
    get_verified(&client, &blobs[0]).await;
    timeout(TEST_TIMEOUT, edge.stop()).await.unwrap();
    timeout(TEST_TIMEOUT, regional.stop()).await.unwrap();
}

/// A deliberately faulty HTTP/3 upstream on a real UDP socket, for the store's retry path
/// (a connection that dies under a request is a race with a real server; here it is exact). It
/// serves `/get/HASH` from `blobs`, but closes the whole QUIC connection, without answering, on
/// every request whose number (counted from 1 across all connections) is in `kill`.
struct FaultyUpstream {
    addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    endpoint: quinn::Endpoint,
}

impl FaultyUpstream {
    fn start(blobs: Vec<(BlobHash, Bytes)>, kill: &'static [usize]) -> FaultyUpstream {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (chain, key) = quic::self_signed(&[]).unwrap();
        let config: prism_lite::config::Http3ServerConfig = serde_yaml::from_str("{}").unwrap();
        let identity = quic::ServerIdentity {
            chain,
            key,
            self_signed: true,
        };
        let server = quic::server_config(&config, identity).unwrap();
        let endpoint = quic::server_endpoint(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let blobs: Arc<std::collections::HashMap<BlobHash, Bytes>> =
            Arc::new(blobs.into_iter().collect());
        let (ep, conns, reqs) = (endpoint.clone(), connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let Ok(conn) = incoming.await else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let (reqs, blobs) = (reqs.clone(), blobs.clone());
                tokio::spawn(async move {
                    let Ok(mut h3) = h3::server::builder()
                        .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
                        .await
                    else {
                        return;
                    };
                    while let Ok(Some(resolver)) = h3.accept().await {
                        let Ok((req, mut stream)) = resolver.resolve_request().await else {
                            return;
                        };
                        let n = reqs.fetch_add(1, Ordering::SeqCst) + 1;
                        if kill.contains(&n) {
                            conn.close(0x102u32.into(), b"killed by the test");
                            return;
                        }
                        let hash = req.uri().path().trim_start_matches("/get/");
                        let body = BlobHash::parse(hash)
                            .ok()
                            .and_then(|h| blobs.get(&h).cloned());
                        let mut head = http::Response::new(());
                        match &body {
                            Some(b) => {
                                head.headers_mut()
                                    .insert(http::header::CONTENT_LENGTH, b.len().into());
                            }
                            None => *head.status_mut() = http::StatusCode::NOT_FOUND,
                        }
                        if stream.send_response(head).await.is_err() {
                            return;
                        }
                        if let Some(b) = body {
                            if stream.send_data(b).await.is_err() {
                                return;
                            }
                        }
                        let _ = stream.finish().await;
                    }
                });
            }
        });
        FaultyUpstream {
            addr: endpoint.local_addr().unwrap(),
            connections,
            requests,
            endpoint,
        }
    }

    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.connections.load(Ordering::SeqCst),
            self.requests.load(Ordering::SeqCst),
        )
    }
}

/// The `http3` store retries a request exactly once, on a fresh connection, when its reused
/// connection dies under it; a request whose fresh connection dies fails (no second retry);
/// and the next request dials again.
#[tokio::test]
async fn http3_store_retries_once_when_its_reused_connection_dies() {
    let blobs: Vec<(BlobHash, Bytes)> = (0..4u64)
        .map(|seed| {
            let data = blob_bytes(400 + seed, 300_000);
            (BlobHash::of(&data), data)
        })
        .collect();
    // Request 2 kills the first connection; requests 4 and 5 kill the second and third.
    let upstream = FaultyUpstream::start(blobs.clone(), &[2, 4, 5]);
    let metrics = Arc::new(Metrics::new());
    let store = Store::http3(upstream.addr)
        .named("up")
        .timeout("10s")
        .set("insecure_skip_verify", true)
        .build_with(&metrics);
    let get = |i: usize| {
        let store = Arc::clone(&store);
        let hash = blobs[i].0;
        async move { timeout(TEST_TIMEOUT, store.get(&hash)).await.unwrap() }
    };

    assert_eq!(get(0).await.unwrap().data, blobs[0].1);
    assert_eq!(upstream.counts(), (1, 1));
    // The reused connection dies under request 2: retried once on a new connection.
    assert_eq!(get(1).await.unwrap().data, blobs[1].1);
    assert_eq!(upstream.counts(), (2, 3), "one retry on one new connection");
    // Request 4 dies on the reused connection, its retry (5) dies on the fresh one: an error,
    // and no third attempt.
    assert!(matches!(get(2).await, Err(StoreError::Unavailable { .. })));
    assert_eq!(upstream.counts(), (3, 5), "exactly one retry");
    // The next request dials a working connection.
    assert_eq!(get(2).await.unwrap().data, blobs[2].1);
    assert_eq!(get(3).await.unwrap().data, blobs[3].1);
    assert_eq!(upstream.counts(), (4, 7));
    upstream.endpoint.close(0u32.into(), b"done");
}

/// The HTTP/3 door carries the same CORS and cache rules as HTTP: CORS on hits and errors, a
/// preflight answered rather than refused as a method, hits cacheable by their hash (ETag, 304).
#[tokio::test]
async fn answers_carry_cors_and_a_preflight_is_answered() {
    let running = mem_server().door(Door::http3()).start().await;
    let data = blob_bytes(42, 4000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    let c = H3Client::connect(running.http3_addr.unwrap(), &[quic::ALPN_H3])
        .await
        .unwrap();

    let (r, body) = c.get(&format!("/get/{hash}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.headers()["etag"], format!("\"{hash}\""));
    assert_eq!(body, data);
    // A client holding the blob gets a 304, with the same cache headers and no body.
    let etag = format!("\"{hash}\"");
    let (r, body) = c
        .request_with(
            http::Method::GET,
            &format!("/get/{hash}"),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(body.is_empty());
    let (r, _) = c.get("/get/xyz").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["cache-control"], "no-store");

    let (r, body) = c
        .request(http::Method::OPTIONS, &format!("/get/{hash}"))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    assert!(body.is_empty());
    running.stop().await;
}
