//! The `http` origin against a scripted HTTP server, directly and through a cache's front door.

use std::time::{Duration, Instant};

use crate::common::*;
use prism_lite::blob::{VerifyError, MAX_BLOB_SIZE};
use prism_lite::store::StoreError;

#[tokio::test]
async fn http_origin_hit_missing_errors_oversized_and_corrupt() {
    let origin = HttpOrigin::start().await;
    let s = Store::http(&origin)
        .named("cdn")
        .sharding(4)
        .timeout("5s")
        .build();
    let (hash, data) = blob(1, 100_000);
    let hex = hash.to_hex();
    let path = format!("/bucket/{}/{hex}", &hex[..4]);
    origin.script.set(&path, 200, data.clone());

    // Hit, at the sharded path with exactly one slash after the endpoint.
    let got = within("get", s.get(&hash)).await.unwrap();
    assert_eq!(got.data, data);
    assert_eq!(&*got.trace.stacks[0].origin_name, "cdn");
    assert!(within("has", s.has(&hash)).await.unwrap());
    let seen = origin.requests.lock().unwrap().clone();
    assert_eq!(seen, vec![format!("GET {path}"), format!("HEAD {path}")]);

    // 404 and 403 are "not here".
    let (missing, _) = blob(2, 10);
    assert!(matches!(
        within("get 404", s.get(&missing)).await,
        Err(StoreError::NotFound)
    ));
    assert!(!within("has 404", s.has(&missing)).await.unwrap());
    let mhex = missing.to_hex();
    origin.script.set(
        &format!("/bucket/{}/{mhex}", &mhex[..4]),
        403,
        "AccessDenied",
    );
    assert!(matches!(
        within("get 403", s.get(&missing)).await,
        Err(StoreError::NotFound)
    ));

    // 500 is an origin error carrying the status as a typed field; the origin's own words
    // are neither in the detail (the log) nor in what a client is told.
    origin.script.set(&path, 500, "backend on fire");
    let err = within("get 500", s.get(&hash)).await.unwrap_err();
    match &err {
        StoreError::OriginStatus { status, .. } => assert_eq!(status.as_u16(), 500),
        other => panic!("expected OriginStatus, got {other}"),
    }
    assert!(!err.to_string().contains("backend on fire"), "{err}");
    assert_eq!(err.client_message(), "cdn: origin unavailable");
    assert!(within("has 500", s.has(&hash)).await.is_err());

    // Oversized body: refused (Content-Length check).
    let big = bytes::Bytes::from(vec![1u8; MAX_BLOB_SIZE + 10]);
    origin.script.set(&path, 200, big);
    let err = within("get oversized", s.get(&hash)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                source: VerifyError::TooLarge(_),
                ..
            }
        ),
        "{err}"
    );

    // Wrong bytes under the name: corrupt.
    let (_, other) = blob(3, 100_000);
    origin.script.set(&path, 200, other);
    let err = within("get corrupt", s.get(&hash)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                source: VerifyError::HashMismatch { .. },
                ..
            }
        ),
        "{err}"
    );

    // Read-only.
    assert!(matches!(
        within("put", s.put(&hash, data)).await,
        Err(StoreError::Refused { .. })
    ));
}

#[tokio::test]
async fn front_door_maps_origin_failures_to_404_502_504() {
    let origin = HttpOrigin::start().await;
    let hanging = HangingOrigin::start().await;
    let cache = Cache::new()
        .http()
        .name("edge")
        .tier(Store::mem().named("ram"))
        .origin(Store::ittt(
            Store::http(&origin).named("cdn").sharding(0).timeout("5s"),
            Store::http_url(&format!("http://{}/", hanging.addr))
                .named("slow")
                .timeout("1s"),
        ))
        .start()
        .await;
    let addr = cache.http_addr.unwrap();

    // Served by the first origin.
    let (hash, data) = blob(5, 50_000);
    origin
        .script
        .set(&format!("/bucket/{hash}"), 200, data.clone());
    let (status, via, body) = get_blob(addr, &hash.to_hex()).await;
    assert_eq!((status, body), (200, data.clone()));
    assert!(via.unwrap().contains("\"cdn\""));
    // reflector.go's names: the ittt hit is `this` (named cdn), the bytes came over HTTP.
    let stores = cache.metrics.stores();
    assert_eq!(stores.ittt_hits_total.with_label_values(&["cdn"]).get(), 1);
    assert_eq!(stores.ittt_hits_total.with_label_values(&["slow"]).get(), 0);
    assert_eq!(stores.http_in_bytes.get(), data.len() as u64);

    // cdn answers 500, ittt falls back to `slow`, which hangs: 504 after its 1s timeout.
    let (h500, _) = blob(6, 10);
    origin.script.set(&format!("/bucket/{h500}"), 500, "boom");
    let start = Instant::now();
    let (status, _, body) = get_blob(addr, &h500.to_hex()).await;
    let took = start.elapsed();
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    let reason = String::from_utf8_lossy(&body);
    assert!(
        reason.contains("slow") && reason.contains("timed out"),
        "{reason}"
    );
    assert_eq!(reason.trim_end().lines().count(), 1, "{reason}");
    cache.stop().await;

    // Without the hanging fallback: a 500 from the origin is a 502; a missing blob is a 404.
    let cache = Cache::new()
        .http()
        .tier(Store::mem())
        .origin(Store::http(&origin).named("cdn"))
        .start()
        .await;
    let addr = cache.http_addr.unwrap();
    let (status, _, body) = get_blob(addr, &h500.to_hex()).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body), "cdn: origin unavailable\n");
    let (absent, _) = blob(7, 10);
    assert_eq!(get_blob(addr, &absent.to_hex()).await.0, 404);
    // The origin recovers: the same blob is served without any restart.
    let (h, d) = blob(8, 1234);
    origin.script.set(&format!("/bucket/{h}"), 500, "down");
    assert_eq!(get_blob(addr, &h.to_hex()).await.0, 502);
    origin.script.set(&format!("/bucket/{h}"), 200, d.clone());
    let (status, _, body) = get_blob(addr, &h.to_hex()).await;
    assert_eq!((status, body), (200, d));
    cache.stop().await;
}

#[tokio::test]
async fn hanging_origin_is_a_timeout_in_bounded_time() {
    let hanging = HangingOrigin::start().await;
    let s = Store::http_url(&format!("http://{}/", hanging.addr))
        .named("slow")
        .timeout("1s")
        .build();
    let (hash, _) = blob(9, 10);
    let start = Instant::now();
    let err = within("get hanging", s.get(&hash)).await.unwrap_err();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = within("has hanging", s.has(&hash)).await.unwrap_err();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err}");
}

/// A raw server that answers every request with a chunked 200 body of `total` bytes (no
/// Content-Length), to exercise the cap applied while reading.
async fn chunked_server(total: usize) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < total {
                    let head = format!("{:x}\r\n", chunk.len());
                    if socket.write_all(head.as_bytes()).await.is_err()
                        || socket.write_all(&chunk).await.is_err()
                        || socket.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                    sent += chunk.len();
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn chunked_body_is_capped_while_reading() {
    let (addr, task) = chunked_server(8 * 1024 * 1024).await;
    let s = Store::http_url(&format!("http://{addr}/"))
        .named("chunky")
        .timeout("5s")
        .build();
    let (hash, _) = blob(10, 10);
    let err = within("get chunked", s.get(&hash)).await.unwrap_err();
    match err {
        StoreError::Corrupt {
            source: VerifyError::TooLarge(n),
            ..
        } => assert!(n > MAX_BLOB_SIZE && n <= MAX_BLOB_SIZE + 64 * 1024, "{n}"),
        other => panic!("expected TooLarge, got {other}"),
    }
    task.abort();
}

#[tokio::test]
async fn upstream_maps_statuses_verifies_and_hints_at_edge_token() {
    let origin = HttpOrigin::start().await;
    let s = Store::upstream(&origin.addr.to_string())
        .named("up")
        .timeout("5s")
        .build();
    let (hash, data) = blob(11, 4096);
    // The scripted server routes by path only; every upstream call is `/blob?hash=...`.
    origin.script.set("/blob", 404, "");
    assert!(!within("has 404", s.has(&hash)).await.unwrap());
    assert!(matches!(
        within("get 404", s.get(&hash)).await,
        Err(StoreError::NotFound)
    ));
    origin.script.set("/blob", 403, "protected");
    let err = within("get 403", s.get(&hash)).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::OriginStatus { status, .. } if status.as_u16() == 403),
        "{err}"
    );
    assert_eq!(
        err.client_message(),
        "up: origin refused (check edge_token)"
    );
    assert!(
        err.to_string().contains("edge_token"),
        "the log says what to fix: {err}"
    );
    let (_, wrong) = blob(12, 4096);
    origin.script.set("/blob", 200, wrong);
    let err = within("get corrupt", s.get(&hash)).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    origin.script.set("/blob", 200, data.clone());
    let got = within("get", s.get(&hash)).await.unwrap();
    assert_eq!(got.data, data);
    // No Via from the upstream: the trace is just our hop.
    assert_eq!(got.trace.stacks.len(), 1);
    origin.script.set("/blob", 204, "");
    assert!(within("has 204", s.has(&hash)).await.unwrap());
    let seen = origin.requests.lock().unwrap().clone();
    assert!(seen.iter().all(|r| r.ends_with(" /blob")), "{seen:?}");
}
