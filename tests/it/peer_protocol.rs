//! The LBRY peer protocol end to end: byte-level conversations with `servers.peer`, the `peer`
//! origin store against real and hand-written fake peers, and a two-cache chain over the
//! protocol. Everything runs on 127.0.0.1 with port 0; every network await has a timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{blob, free_port, Cache, Door, Families, Store};
use bytes::Bytes;
use prism_lite::app::Running;
use prism_lite::blob::{verify, BlobHash, MAX_BLOB_SIZE};
use prism_lite::metrics::Metrics;
use prism_lite::protocol::peer::{next_frame, Frame};
use prism_lite::store::{BlobStore, StoreError};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const STEP: Duration = Duration::from_secs(10);
const STREAMS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/streams");
const ALLOWED_KEYS: [&str; 4] = [
    "lbrycrd_address",
    "available_blobs",
    "blob_data_payment_rate",
    "incoming_blob",
];

/// Awaits `f`, failing the test if it takes longer than [`STEP`].
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `cond` until it holds (bounded): for effects that land just after a socket closes.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The peer door of this file's caches, naming a payment address.
fn peer_door() -> Door {
    Door::peer().set("lbrycrd_address", "bTestAddress")
}

/// A cache with a `mem` root behind `door`.
async fn mem_cache(door: Door) -> Running {
    Cache::new().door(door).store(Store::mem()).start().await
}

async fn put(running: &Running, hash: &BlobHash, data: &Bytes) {
    running.store.put(hash, data.clone()).await.expect("put");
}

pub(crate) fn sdk_request(hash: &str) -> String {
    format!(
        r#"{{"requested_blobs":["{hash}"],"lbrycrd_address":true,"blob_data_payment_rate":0.0,"requested_blob":"{hash}"}}"#
    )
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

/// A client connection that keeps bytes that arrived after one response for the next.
pub(crate) struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub(crate) async fn new(addr: SocketAddr) -> Client {
        Client {
            stream: connect(addr).await,
            buf: Vec::new(),
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        within("write", self.stream.write_all(bytes))
            .await
            .expect("write");
    }

    /// Reads one response header and, if it announces a blob, exactly `length` bytes.
    pub(crate) async fn response(&mut self) -> (Map<String, Value>, Vec<u8>) {
        let header = loop {
            match next_frame(&self.buf) {
                Frame::Complete(map, used) => {
                    self.buf.drain(..used);
                    break map;
                }
                Frame::Incomplete => {}
                other => panic!(
                    "bad response {other:?}: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
            let n = within("read header", self.stream.read_buf(&mut self.buf))
                .await
                .expect("read");
            assert!(n > 0, "server closed before a full response header");
        };
        for key in header.keys() {
            assert!(ALLOWED_KEYS.contains(&key.as_str()), "unexpected key {key}");
        }
        let length = header
            .get("incoming_blob")
            .and_then(|b| b.get("length"))
            .and_then(Value::as_u64)
            .map(|l| l as usize);
        let mut data = Vec::new();
        if let Some(length) = length {
            while self.buf.len() < length {
                let n = within("read blob", self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("read");
                assert!(n > 0, "server closed mid-blob");
            }
            data = self.buf.drain(..length).collect();
        }
        (header, data)
    }

    /// Asserts the server closes the connection (EOF or reset) without answering.
    async fn expect_closed(&mut self) {
        let mut sink = [0u8; 1024];
        match within("close", self.stream.read(&mut sink)).await {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!(
                "expected close, got {n} bytes: {:?}",
                String::from_utf8_lossy(&sink[..n])
            ),
        }
    }
}

fn error_count(m: &Metrics, kind: &str) -> u64 {
    m.error_total.with_label_values(&["download", kind]).get()
}

#[tokio::test]
async fn sdk_request_gets_header_and_exact_verified_bytes() {
    let running = mem_cache(peer_door()).await;
    let (hash, data) = blob(1, 300_001);
    put(&running, &hash, &data).await;
    let mut c = Client::new(running.peer_addr.unwrap()).await;
    c.send(sdk_request(&hash.to_string()).as_bytes()).await;
    let (header, got) = c.response().await;
    assert_eq!(header.len(), 4, "{header:?}");
    assert_eq!(header["lbrycrd_address"], "bTestAddress");
    assert_eq!(
        header["available_blobs"],
        serde_json::json!([hash.to_string()])
    );
    assert_eq!(header["blob_data_payment_rate"], "RATE_ACCEPTED");
    assert_eq!(
        header["incoming_blob"],
        serde_json::json!({"blob_hash": hash.to_string(), "length": data.len()})
    );
    assert_eq!(got.len(), data.len());
    verify(&got, &hash).expect("blob verifies");
    // Exactly N bytes: the next response starts right after them.
    c.send(br#"{"blob_data_payment_rate":1.5}"#).await;
    let (header, _) = c.response().await;
    assert_eq!(header.len(), 1);
    assert_eq!(header["blob_data_payment_rate"], "RATE_ACCEPTED");
    assert!(c.buf.is_empty(), "stray bytes after the response");

    let m = running.metrics.doors();
    assert_eq!(m.peer_download_total.get(), 1);
    assert_eq!(m.blob_download_total.get(), 1);
    assert_eq!(m.tcp_out_bytes.get(), data.len() as u64);
    assert_eq!(m.peer_connections.get(), 1);
    let observed = m
        .request_duration_seconds
        .with_label_values(&["peer", "200"])
        .get_sample_count();
    assert_eq!(observed, 2);
    running.stop().await;
}

#[tokio::test]
async fn request_delivered_one_byte_per_write() {
    let running = mem_cache(peer_door()).await;
    let (hash, data) = blob(2, 4096);
    put(&running, &hash, &data).await;
    let mut c = Client::new(running.peer_addr.unwrap()).await;
    for byte in sdk_request(&hash.to_string()).as_bytes() {
        c.send(std::slice::from_ref(byte)).await;
    }
    let (header, got) = c.response().await;
    assert_eq!(header["incoming_blob"]["length"], 4096);
    assert_eq!(got, data);
    running.stop().await;
}

#[tokio::test]
async fn two_requests_in_one_write_are_answered_in_order() {
    let running = mem_cache(peer_door()).await;
    let (h1, d1) = blob(3, 1000);
    let (h2, d2) = blob(4, 2000);
    put(&running, &h1, &d1).await;
    put(&running, &h2, &d2).await;
    let mut c = Client::new(running.peer_addr.unwrap()).await;
    let both = format!(
        "{} \n{}",
        sdk_request(&h1.to_string()),
        sdk_request(&h2.to_string())
    );
    c.send(both.as_bytes()).await;
    let (a, got1) = c.response().await;
    let (b, got2) = c.response().await;
    assert_eq!(a["incoming_blob"]["blob_hash"], h1.to_string());
    assert_eq!(b["incoming_blob"]["blob_hash"], h2.to_string());
    assert_eq!((got1, got2), (d1.to_vec(), d2.to_vec()));
    running.stop().await;
}

#[tokio::test]
async fn availability_only_and_rate_only_requests() {
    let running = mem_cache(peer_door()).await;
    let (hash, data) = blob(5, 100);
    let (absent, _) = blob(6, 100);
    put(&running, &hash, &data).await;
    let mut c = Client::new(running.peer_addr.unwrap()).await;

    let ask = format!(r#"{{"requested_blobs":["{hash}","{absent}","not-a-hash","{hash}"]}}"#);
    c.send(ask.as_bytes()).await;
    let (header, bytes) = c.response().await;
    assert_eq!(header.len(), 1, "{header:?}");
    assert_eq!(
        header["available_blobs"],
        serde_json::json!([hash.to_string()])
    );
    assert!(bytes.is_empty());

    for (rate, want) in [
        ("0.0", "RATE_ACCEPTED"),
        ("0.5", "RATE_ACCEPTED"),
        ("-1", "RATE_TOO_LOW"),
        ("-0.001", "RATE_TOO_LOW"),
        ("null", "RATE_UNSET"),
    ] {
        c.send(format!(r#"{{"blob_data_payment_rate":{rate}}}"#).as_bytes())
            .await;
        let (header, _) = c.response().await;
        assert_eq!(header.len(), 1, "{rate}: {header:?}");
        assert_eq!(header["blob_data_payment_rate"], want, "rate {rate}");
    }

    c.send(br#"{"lbrycrd_address":true}"#).await;
    let (header, _) = c.response().await;
    assert_eq!(header.len(), 1);
    assert_eq!(header["lbrycrd_address"], "bTestAddress");
    running.stop().await;
}

#[tokio::test]
async fn missing_invalid_and_protected_blobs_get_errors_and_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (hash, data) = blob(7, 5000);
    let (secret, secret_data) = blob(8, 5000);
    let (absent, _) = blob(9, 10);
    let list = dir.path().join("protected.txt");
    std::fs::write(&list, format!("# test\n{secret}\n")).unwrap();
    let running = Cache::new()
        .peer()
        .protected_list(&list)
        .store(Store::mem())
        .start()
        .await;
    put(&running, &hash, &data).await;
    put(&running, &secret, &secret_data).await;
    let mut c = Client::new(running.peer_addr.unwrap()).await;

    c.send(sdk_request(&absent.to_string()).as_bytes()).await;
    let (header, bytes) = c.response().await;
    assert_eq!(header["available_blobs"], serde_json::json!([]));
    assert!(header["incoming_blob"]["error"].is_string(), "{header:?}");
    assert!(header["incoming_blob"].get("length").is_none());
    assert!(bytes.is_empty());

    c.send(sdk_request("../../etc/passwd").as_bytes()).await;
    let (header, _) = c.response().await;
    let error = header["incoming_blob"]["error"].as_str().unwrap();
    assert!(error.contains("invalid blob hash"), "{error}");

    c.send(sdk_request(&secret.to_string()).as_bytes()).await;
    let (header, bytes) = c.response().await;
    assert_eq!(header["available_blobs"], serde_json::json!([]));
    let error = header["incoming_blob"]["error"].as_str().unwrap();
    assert!(error.contains("protected"), "{error}");
    assert!(bytes.is_empty());

    // The connection is still in step and usable.
    c.send(sdk_request(&hash.to_string()).as_bytes()).await;
    let (_, got) = c.response().await;
    assert_eq!(got, data);
    assert_eq!(error_count(&running.metrics, "invalid_blob_hash"), 1);
    assert_eq!(error_count(&running.metrics, "protected_blob"), 1);
    assert_eq!(running.metrics.doors().peer_download_total.get(), 1);
    running.stop().await;
}

#[tokio::test]
async fn oversized_invalid_and_garbage_requests_close_only_that_connection() {
    let running = mem_cache(peer_door().set("max_request_size", 1024)).await;
    let addr = running.peer_addr.unwrap();
    let (hash, data) = blob(10, 777);
    put(&running, &hash, &data).await;
    let m = Arc::clone(&running.metrics);

    let mut big = Client::new(addr).await;
    let mut req = String::from(r#"{"requested_blobs":[""#);
    req.push_str(&"a".repeat(2000));
    big.send(req.as_bytes()).await;
    big.expect_closed().await;
    eventually("request_too_large counted", || {
        error_count(&m, "request_too_large") == 1
    })
    .await;

    let mut garbage = Client::new(addr).await;
    garbage.send(b"GET /blob HTTP/1.1\r\n\r\n").await;
    garbage.expect_closed().await;
    eventually("invalid_peer_request counted", || {
        error_count(&m, "invalid_peer_request") == 1
    })
    .await;

    let mut bad_json = Client::new(addr).await;
    bad_json.send(br#"{"requested_blob" "x"}"#).await;
    bad_json.expect_closed().await;
    eventually("invalid_peer_json counted", || {
        error_count(&m, "invalid_peer_json") == 1
    })
    .await;

    let mut empty = Client::new(addr).await;
    empty.send(b"{}").await;
    empty.expect_closed().await;

    // The server still serves new connections.
    let mut good = Client::new(addr).await;
    good.send(sdk_request(&hash.to_string()).as_bytes()).await;
    let (_, got) = good.response().await;
    assert_eq!(got, data);
    running.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let running = mem_cache(peer_door()).await;
    let (hash, data) = blob(14, 100);
    put(&running, &hash, &data).await;
    let mut c = Client::new(running.peer_addr.unwrap()).await;
    c.send(sdk_request(&hash.to_string()).as_bytes()).await;
    let (_, got) = c.response().await;
    assert_eq!(got, data);
    within("stop with an idle client connected", running.stop()).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let running = mem_cache(peer_door().set("idle_timeout", "300ms")).await;
    let mut c = Client::new(running.peer_addr.unwrap()).await;
    c.send(b"{\"requested_blobs\":").await; // half a request, then silence
    c.expect_closed().await;
    running.stop().await;
}

#[tokio::test]
async fn stalled_reader_times_out_and_others_are_served() {
    let running = mem_cache(peer_door().set("write_timeout", "1s")).await;
    let addr = running.peer_addr.unwrap();
    let (hash, data) = blob(11, MAX_BLOB_SIZE);
    put(&running, &hash, &data).await;

    // A client with a tiny receive window asks for 8 x 2 MiB (more than any socket buffers
    // hold) and never reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = within("connect stalled", socket.connect(addr))
        .await
        .expect("connect");
    let pipelined = sdk_request(&hash.to_string()).repeat(8);
    within("stalled write", stalled.write_all(pipelined.as_bytes()))
        .await
        .unwrap();

    // Served while the other client is stuck.
    let mut other = Client::new(addr).await;
    other.send(sdk_request(&hash.to_string()).as_bytes()).await;
    let (_, got) = other.response().await;
    assert_eq!(got.len(), data.len());

    let m = Arc::clone(&running.metrics);
    eventually("write_timeout counted", || {
        error_count(&m, "write_timeout") == 1
    })
    .await;

    // The stalled connection was closed before everything was sent.
    let mut received = 0usize;
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        match within("drain stalled", stalled.read(&mut sink)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
    }
    assert!(
        received < 8 * MAX_BLOB_SIZE,
        "stalled client got all {received} bytes"
    );

    // And the server is still healthy afterwards.
    other.send(sdk_request(&hash.to_string()).as_bytes()).await;
    let (_, got) = other.response().await;
    verify(&got, &hash).unwrap();
    eventually("stalled connection released", || {
        m.doors().peer_connections.get() == 1
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn fixture_streams_download_blob_by_blob() {
    let root = Path::new(STREAMS_DIR);
    if !root.is_dir() {
        println!("skipping: ../shared/fixtures not found (looked in {STREAMS_DIR})");
        return;
    }
    let disk = tempfile::tempdir().unwrap();
    let running = Cache::new()
        .peer()
        .store(Store::disk(disk.path()).max_size("1GB"))
        .start()
        .await;
    let mut hashes = Vec::new();
    for stream in std::fs::read_dir(root).unwrap() {
        let dir = stream.unwrap().path().join("blobs");
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let hash = BlobHash::parse(path.file_name().unwrap().to_str().unwrap()).unwrap();
            let data = Bytes::from(std::fs::read(&path).unwrap());
            put(&running, &hash, &data).await;
            hashes.push((hash, data));
        }
    }
    assert!(hashes.len() >= 2, "fixtures hold blobs");
    let mut c = Client::new(running.peer_addr.unwrap()).await;
    for (hash, data) in &hashes {
        c.send(sdk_request(&hash.to_string()).as_bytes()).await;
        let (header, got) = c.response().await;
        assert_eq!(
            header["available_blobs"],
            serde_json::json!([hash.to_string()])
        );
        verify(&got, hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
        assert_eq!(&got[..], &data[..]);
    }
    assert_eq!(
        running.metrics.doors().peer_download_total.get(),
        hashes.len() as u64
    );
    running.stop().await;
}

#[tokio::test]
async fn chain_of_two_caches_over_the_peer_protocol() {
    let b = mem_cache(peer_door()).await;
    let (hash, data) = blob(12, MAX_BLOB_SIZE - 17);
    put(&b, &hash, &data).await;
    let a = Cache::new()
        .peer()
        .http()
        .tier(Store::mem())
        .origin(Store::peer(b.peer_addr.unwrap()).timeout("5s"))
        .start()
        .await;

    let mut c = Client::new(a.peer_addr.unwrap()).await;
    c.send(sdk_request(&hash.to_string()).as_bytes()).await;
    let (header, got) = c.response().await;
    // `available_blobs` asks A's tree, which asks B: listed before the fill.
    assert_eq!(
        header["available_blobs"],
        serde_json::json!([hash.to_string()])
    );
    verify(&got, &hash).unwrap();
    assert_eq!(b.metrics.doors().peer_download_total.get(), 1);
    assert_eq!(a.metrics.stores().tcp_in_bytes.get(), data.len() as u64);

    // Second get: a hit on A; B is not asked for the blob again.
    c.send(sdk_request(&hash.to_string()).as_bytes()).await;
    let (_, again) = c.response().await;
    assert_eq!(again, got);
    assert_eq!(b.metrics.doors().peer_download_total.get(), 1);
    assert_eq!(a.metrics.doors().peer_download_total.get(), 2);

    // Through A's HTTP front door too, still from A's cache.
    let mut http = connect(a.http_addr.unwrap()).await;
    let req = format!("GET /blob?hash={hash} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    within("http write", http.write_all(req.as_bytes()))
        .await
        .unwrap();
    let mut resp = Vec::new();
    within("http read", http.read_to_end(&mut resp))
        .await
        .unwrap();
    assert!(resp.starts_with(b"HTTP/1.1 200"), "{:?}", &resp[..40]);
    assert!(resp.ends_with(&data[data.len() - 64..]));
    assert_eq!(b.metrics.doors().peer_download_total.get(), 1);

    // A blob neither has: an error answer through the chain, connection still usable.
    let (absent, _) = blob(13, 10);
    c.send(sdk_request(&absent.to_string()).as_bytes()).await;
    let (header, bytes) = c.response().await;
    assert!(header["incoming_blob"]["error"].is_string());
    assert!(bytes.is_empty());
    a.stop().await;
    b.stop().await;
}

// ---- the `peer` store against real and fake peers ----

fn peer_store(addr: SocketAddr, timeout: &str) -> (Arc<dyn BlobStore>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let store = Store::peer(addr)
        .named("up")
        .timeout(timeout)
        .build_with(&metrics);
    (store, metrics)
}

/// A hand-written peer: for every request on every connection, sends `chunks` as separate
/// writes. Returns its address and a counter of accepted connections.
async fn fake_peer(chunks: Vec<Vec<u8>>) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            conn.set_nodelay(true).unwrap();
            let chunks = chunks.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while let Frame::Complete(_, used) = next_frame(&buf) {
                        buf.drain(..used);
                        for chunk in &chunks {
                            if conn.write_all(chunk).await.is_err() {
                                return;
                            }
                            tokio::task::yield_now().await;
                        }
                    }
                    match conn.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn answer(hash: &BlobHash, length: usize) -> Vec<u8> {
    format!(
        r#"{{"lbrycrd_address":"x","available_blobs":["{hash}"],"blob_data_payment_rate":"RATE_ACCEPTED","incoming_blob":{{"blob_hash":"{hash}","length":{length}}}}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn peer_store_gets_has_and_not_found_from_a_real_peer() {
    let b = mem_cache(peer_door()).await;
    let (hash, data) = blob(20, 70_000);
    let (absent, _) = blob(21, 10);
    put(&b, &hash, &data).await;
    let (store, metrics) = peer_store(b.peer_addr.unwrap(), "5s");
    assert!(within("has", store.has(&hash)).await.unwrap());
    assert!(!within("has absent", store.has(&absent)).await.unwrap());
    let got = within("get", store.get(&hash)).await.unwrap();
    assert_eq!(got.data, data);
    assert!(matches!(
        within("get absent", store.get(&absent)).await,
        Err(StoreError::NotFound)
    ));
    let got = within("get again", store.get(&hash)).await.unwrap();
    assert_eq!(got.data, data);
    // Five exchanges over one pooled connection.
    assert_eq!(b.metrics.doors().peer_connections.get(), 1);
    assert_eq!(metrics.stores().tcp_in_bytes.get(), 2 * data.len() as u64);
    assert!(matches!(
        store.put(&hash, data.clone()).await,
        Err(StoreError::Refused { .. })
    ));
    assert!(matches!(
        store.delete(&hash).await,
        Err(StoreError::Refused { .. })
    ));
    b.stop().await;
}

#[tokio::test]
async fn peer_store_copes_with_split_and_joined_reads() {
    let (hash, data) = blob(22, 10_000);
    let mut whole = answer(&hash, data.len());
    whole.extend_from_slice(&data);
    // Header and bytes in one write.
    let (addr, _) = fake_peer(vec![whole.clone()]).await;
    let (store, _) = peer_store(addr, "5s");
    assert_eq!(within("joined", store.get(&hash)).await.unwrap().data, data);
    // Everything in 7-byte writes, so the header splits mid-token and shares a read with
    // the first blob bytes.
    let (addr, accepted) = fake_peer(whole.chunks(7).map(<[u8]>::to_vec).collect()).await;
    let (store, _) = peer_store(addr, "5s");
    for _ in 0..3 {
        assert_eq!(within("split", store.get(&hash)).await.unwrap().data, data);
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn peer_store_rejects_corrupt_and_oversized_blobs() {
    let (hash, _) = blob(23, 100);
    let mut wrong = answer(&hash, 5);
    wrong.extend_from_slice(b"wrong");
    let (addr, accepted) = fake_peer(vec![wrong]).await;
    let (store, _) = peer_store(addr, "5s");
    for _ in 0..2 {
        match within("corrupt", store.get(&hash)).await {
            Err(StoreError::Corrupt { .. }) => {}
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // A connection that delivered a bad blob is not reused.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A length over 2 MiB is refused before any byte is read.
    let (addr, _) = fake_peer(vec![answer(&hash, MAX_BLOB_SIZE + 1)]).await;
    let (store, _) = peer_store(addr, "5s");
    match within("too big", store.get(&hash)).await {
        Err(e @ StoreError::Corrupt { .. }) => assert_eq!(e.kind(), "blob_too_big"),
        other => panic!("expected Corrupt(TooLarge), got {other:?}"),
    }
}

#[tokio::test]
async fn peer_store_not_found_from_an_sdk_style_peer() {
    // The SDK server leaves a blob it lacks out of the answer (no incoming_blob at all).
    let (hash, _) = blob(24, 100);
    let (addr, _) = fake_peer(vec![
        br#"{"lbrycrd_address":"x","available_blobs":[],"blob_data_payment_rate":"RATE_ACCEPTED"}"#
            .to_vec(),
    ])
    .await;
    let (store, _) = peer_store(addr, "5s");
    assert!(matches!(
        within("sdk not found", store.get(&hash)).await,
        Err(StoreError::NotFound)
    ));
    assert!(!within("sdk has", store.has(&hash)).await.unwrap());
}

#[tokio::test]
async fn peer_store_timeouts_and_unreachable_peers() {
    let (hash, _) = blob(25, 100);
    // Accepts, reads, never answers.
    let (addr, _) = fake_peer(vec![]).await;
    let (store, _) = peer_store(addr, "300ms");
    match within("silent peer", store.get(&hash)).await {
        Err(StoreError::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    // Nobody listening.
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (store, _) = peer_store(closed, "5s");
    match within("refused", store.get(&hash)).await {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A peer that answers with something that is not a peer response.
    let (addr, _) = fake_peer(vec![br#"{"unexpected":1}"#.to_vec()]).await;
    let (store, _) = peer_store(addr, "5s");
    match within("bad keys", store.get(&hash)).await {
        Err(StoreError::Unavailable { message, .. }) => {
            assert!(message.contains("unexpected"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
