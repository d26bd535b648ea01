//! The HTTP front door on a real socket: every status it can answer, protected content,
//! saturation, the metrics endpoint, and graceful shutdown.

use std::sync::Arc;

use crate::common::{
    blob_bytes, fixture_blobs, free_port, http_client, metric, wait_until, Cache, Door, Families,
    Store, TestOrigin, TEST_TIMEOUT,
};
use prism_lite::app;
use prism_lite::blob::BlobHash;
use prism_lite::metrics::Metrics;
use prism_lite::policy::Policy;
use prism_lite::server::http::HttpServer;
use prism_lite::server::BlobService;
use prism_lite::store::BlobStore;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// A server over a caching tree: memory over a disk in `dir` (over nothing).
async fn server_with(dir: &std::path::Path) -> app::Running {
    Cache::new()
        .http()
        .name("edge")
        .tier(Store::mem().named("ram").max_size("32MiB"))
        .origin(
            Store::disk(dir)
                .named("local")
                .sharding(2)
                .max_size("100MB"),
        )
        .start()
        .await
}

#[tokio::test]
async fn get_and_head_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let running = server_with(dir.path()).await;
    let data = blob_bytes(1, 300_000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    let base = format!("http://{}", running.http_addr.unwrap());
    let c = http_client();

    let r = c
        .get(format!("{base}/blob?hash={hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-length"], "300000");
    let via: serde_json::Value =
        serde_json::from_str(r.headers()["via"].to_str().unwrap()).unwrap();
    assert_eq!(via["stacks"].as_array().unwrap().len(), 2, "{via}");
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = c
        .head(format!("{base}/blob?hash={hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let absent = BlobHash::of(b"absent");
    let r = c
        .get(format!("{base}/blob?hash={absent}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .head(format!("{base}/blob?hash={absent}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    for (query, reason) in [
        ("", "missing"),
        ("?hash=abc", "96 hex characters"),
        ("?hash=../../etc/passwd", "96 hex characters"),
        (
            &*format!("?hash={}", hash.to_string().to_uppercase()),
            "lowercase hex",
        ),
    ] {
        let r = c.get(format!("{base}/blob{query}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let body = r.text().await.unwrap();
        assert!(body.contains(reason), "{query}: {body}");
    }
    let r = c
        .post(format!("{base}/blob?hash={hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = c.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    running.stop().await;
}

#[tokio::test]
async fn fixture_blobs_are_served_byte_exact() {
    let blobs = fixture_blobs();
    if blobs.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let running = server_with(dir.path()).await;
    for (hash, data) in &blobs {
        running.store.put(hash, data.clone()).await.unwrap();
    }
    let base = format!("http://{}", running.http_addr.unwrap());
    for (hash, data) in &blobs {
        let got = http_client()
            .get(format!("{base}/blob?hash={hash}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got, data);
        assert_eq!(BlobHash::of(&got), *hash);
    }
    running.stop().await;
}

#[tokio::test]
async fn protected_blobs_need_the_edge_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = blob_bytes(2, 1000);
    let hash = BlobHash::of(&data);
    let list = dir.path().join("protected.txt");
    std::fs::write(&list, format!("# paid content\n{hash}\n")).unwrap();
    let running = Cache::new()
        .door(Door::http().token("s3cret"))
        .protected_list(&list)
        .store(Store::mem())
        .start()
        .await;
    running.store.put(&hash, data.clone()).await.unwrap();
    let base = format!("http://{}/blob?hash={hash}", running.http_addr.unwrap());
    let c = http_client();
    assert_eq!(c.get(&base).send().await.unwrap().status(), 403);
    let wrong = c
        .get(format!("{base}&edge_token=guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let right = c
        .get(format!("{base}&edge_token=s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(right.bytes().await.unwrap(), data);
    running.stop().await;
}

/// An HTTP server over a gated origin, so requests can be held in flight.
async fn gated_server(
    max: usize,
    queued: usize,
) -> (
    Arc<TestOrigin>,
    Arc<Metrics>,
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let origin = TestOrigin::new(true);
    let metrics = Arc::new(Metrics::new());
    let http = Cache::new()
        .door(
            Door::http()
                .set("max_concurrent_requests", max)
                .set("max_queued_requests", queued)
                .set("queue_timeout", "10s")
                .set("shutdown_timeout", "10s"),
        )
        .store(Store::noop())
        .config();
    let service = BlobService::new(
        origin.clone() as Arc<dyn BlobStore>,
        Arc::new(Policy::default()),
        prism_lite::server::budget::InflightBudget::new(
            &http.limits,
            metrics.doors().inflight_bytes.clone(),
        ),
        Arc::clone(&metrics),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let server = HttpServer::new(service, &http.servers.http.unwrap(), None);
    let task = tokio::spawn(server.serve(listener, token.clone()));
    (origin, metrics, addr, token, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_server_answers_503_beyond_the_queue() {
    let (origin, metrics, addr, token, task) = gated_server(2, 1).await;
    let data = blob_bytes(3, 5000);
    let hash = origin.insert(data.clone());
    let url = format!("http://{addr}/blob?hash={hash}");
    // Two requests in flight (held at the origin) and one queued.
    let held: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { http_client().get(url).send().await.unwrap().status() })
        })
        .collect();
    wait_until("two in flight", || origin.get_count() == 2).await;
    wait_until("one queued", || {
        metrics.doors().http_blob_request_queue_size.get() == 1
    })
    .await;
    let rejected = http_client().get(&url).send().await.unwrap();
    assert_eq!(rejected.status(), 503);
    assert_eq!(rejected.headers()["retry-after"], "1");
    origin.open_gate();
    for h in held {
        assert_eq!(timeout(TEST_TIMEOUT, h).await.unwrap().unwrap(), 200);
    }
    assert_eq!(
        metrics
            .doors()
            .requests_rejected_total
            .with_label_values(&["http"])
            .get(),
        1
    );
    token.cancel();
    timeout(TEST_TIMEOUT, task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let (origin, _metrics, addr, token, task) = gated_server(10, 10).await;
    let data = blob_bytes(4, 50_000);
    let hash = origin.insert(data.clone());
    let url = format!("http://{addr}/blob?hash={hash}");
    let in_flight = {
        let url = url.clone();
        tokio::spawn(async move {
            let r = http_client().get(url).send().await.unwrap();
            (r.status(), r.bytes().await.unwrap())
        })
    };
    wait_until("request in flight", || origin.get_count() == 1).await;
    token.cancel();
    // The listener closes promptly: new connections are refused.
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    timeout(TEST_TIMEOUT, refused)
        .await
        .expect("listener closed");
    origin.open_gate();
    let (status, body) = timeout(TEST_TIMEOUT, in_flight).await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, data);
    timeout(TEST_TIMEOUT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_endpoint_is_scraped_and_counters_move() {
    let dir = tempfile::tempdir().unwrap();
    let running = server_with(dir.path()).await;
    let data = blob_bytes(5, 12_345);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    let base = format!("http://{}", running.http_addr.unwrap());
    let metrics_url = format!("http://{}/metrics", running.metrics_addr);
    let c = http_client();
    for _ in 0..3 {
        c.get(format!("{base}/blob?hash={hash}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    c.get(format!("{base}/blob?hash=bad")).send().await.unwrap();
    let r = c.get(&metrics_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert_eq!(
        metric(&text, "reflector_http_blob_download_total", &[]),
        3.0
    );
    assert_eq!(metric(&text, "reflector_blob_download_total", &[]), 3.0);
    assert_eq!(
        metric(&text, "reflector_http_out_bytes", &[]),
        3.0 * 12_345.0
    );
    assert_eq!(
        metric(
            &text,
            "reflector_error_total",
            &[("error_type", "invalid_blob_hash")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "prism_request_duration_seconds_count",
            &[("server", "http"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "prism_request_duration_seconds_count",
            &[("server", "http"), ("status", "400")]
        ),
        1.0
    );
    // The disk tier below the memory tier holds the blob.
    assert_eq!(
        metric(&text, "prism_store_blobs", &[("component", "local")]),
        1.0
    );
    // Every sample line parses as `name{labels} value`.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit_once(' ').unwrap().1;
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    for path in ["healthz", "readyz"] {
        let r = c
            .get(format!("http://{}/{path}", running.metrics_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    running.stop().await;
}

/// One failed request is one error in `reflector_error_total`, however many caching layers it
/// crossed; the per-layer view is `prism_origin_fetch_total{component}`.
#[tokio::test]
async fn an_origin_failure_is_counted_once_per_request() {
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let running = Cache::new()
        .http()
        .name("edge")
        .tier(Store::mem().named("ram"))
        .origin(
            Store::caching(
                Store::mem().named("ram2"),
                Store::http_url(&format!("http://{closed}/")).timeout("5s"),
            )
            .named("local"),
        )
        .start()
        .await;
    let hash = BlobHash::of(b"nowhere");
    let url = format!("http://{}/blob?hash={hash}", running.http_addr.unwrap());
    assert_eq!(http_client().get(&url).send().await.unwrap().status(), 502);
    let text = String::from_utf8(running.metrics.render()).unwrap();
    assert_eq!(
        metric(
            &text,
            "reflector_error_total",
            &[("error_type", "origin_unavailable")]
        ),
        1.0
    );
    for layer in ["edge", "local"] {
        assert_eq!(
            metric(
                &text,
                "prism_origin_fetch_total",
                &[("component", layer), ("result", "error")]
            ),
            1.0,
            "{layer}"
        );
    }
    running.stop().await;
}

/// What a web player on another origin and a CDN in front need: CORS on every answer (hits,
/// misses, errors), a preflight answer, an immutable blob named by its hash (`ETag`, 304 for a
/// client that has it), and errors a cache must not keep.
#[tokio::test]
async fn answers_carry_cors_and_blobs_are_cacheable_by_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = blob_bytes(40, 5000);
    let hash = BlobHash::of(&data);
    let secret = blob_bytes(41, 500);
    let secret_hash = BlobHash::of(&secret);
    let list = dir.path().join("protected.txt");
    std::fs::write(&list, format!("{secret_hash}\n")).unwrap();
    let running = Cache::new()
        .door(Door::http().token("s3cret"))
        .protected_list(&list)
        .store(Store::mem())
        .start()
        .await;
    running.store.put(&hash, data.clone()).await.unwrap();
    running.store.put(&secret_hash, secret).await.unwrap();
    let base = format!("http://{}", running.http_addr.unwrap());
    let c = http_client();
    let etag = format!("\"{hash}\"");

    let hit = c
        .get(format!("{base}/blob?hash={hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(hit.status(), 200);
    let h = hit.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    for name in ["Content-Range", "Content-Length", "Accept-Ranges", "ETag"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(hit.bytes().await.unwrap(), data);

    let again = c
        .get(format!("{base}/blob?hash={hash}"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert_eq!(again.headers()["access-control-allow-origin"], "*");
    assert!(again.bytes().await.unwrap().is_empty());

    // A protected blob is refused, not confirmed, whatever the client claims to hold.
    let claimed = c
        .get(format!("{base}/blob?hash={secret_hash}"))
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(claimed.status(), 403);

    let absent = BlobHash::of(b"absent");
    for (url, status) in [
        (format!("{base}/blob?hash={absent}"), 404),
        (format!("{base}/blob?hash=xyz"), 400),
        (format!("{base}/nowhere"), 404),
    ] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), status, "{url}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{url}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{url}");
    }

    let preflight = c
        .request(reqwest::Method::OPTIONS, format!("{base}/blob?hash={hash}"))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Range"));
    running.stop().await;
}

#[tokio::test]
async fn the_cors_origin_is_configurable_and_checked_at_load() {
    let running = Cache::new()
        .door(Door::http().set("cors_origin", "https://odysee.com"))
        .store(Store::mem())
        .start()
        .await;
    let r = http_client()
        .get(format!(
            "http://{}/blob?hash={}",
            running.http_addr.unwrap(),
            BlobHash::of(b"x")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://odysee.com"
    );
    running.stop().await;

    let err = prism_lite::config::parse::<prism_lite::config::BlobcacheConfig>(
        "servers: {http: {cors_origin: \"a\\u0001b\"}}\nstore: {noop: {}}",
        "t.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cors_origin"), "{err}");
    assert!(err.contains("not a valid header value"), "{err}");
}
