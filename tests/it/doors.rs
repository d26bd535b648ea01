//! What every serving door shares since they call one serving core: the same request-slot rule
//! (slots, a bounded queue, then a refusal counted as rejected) and a drain bounded by the
//! door's own `shutdown_timeout`. The HTTP door's side is in `http_server.rs`; here the peer and
//! HTTP/3 doors, each over a gated origin so requests can be held in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prism_lite::config::BlobcacheConfig;
use prism_lite::metrics::Metrics;
use prism_lite::policy::Policy;
use prism_lite::protocol::peer::{next_frame, Frame};
use prism_lite::server::budget::InflightBudget;
use prism_lite::server::http3::Http3Server;
use prism_lite::server::peer::PeerServer;
use prism_lite::server::BlobService;
use prism_lite::store::BlobStore;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{
    blob_bytes, wait_until, Cache, Door, Families, H3Client, Store, TestOrigin, TEST_TIMEOUT,
};

/// One blob request slot and no queue: a second request while the first is held is refused.
fn one_slot(door: Door) -> BlobcacheConfig {
    one_slot_queued(door, 0)
}

/// One blob request slot and a queue of `queued`.
fn one_slot_queued(door: Door, queued: usize) -> BlobcacheConfig {
    Cache::new()
        .door(
            door.set("max_concurrent_requests", 1)
                .set("max_queued_requests", queued)
                .set("shutdown_timeout", "1s"),
        )
        .store(Store::noop())
        .config()
}

/// The serving core over `origin`, as app.rs builds it.
fn service(origin: &Arc<TestOrigin>, config: &BlobcacheConfig) -> (Arc<BlobService>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let service = BlobService::new(
        Arc::clone(origin) as Arc<dyn BlobStore>,
        Arc::new(Policy::default()),
        InflightBudget::new(&config.limits, metrics.doors().inflight_bytes.clone()),
        Arc::clone(&metrics),
    );
    (service, metrics)
}

struct Served {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn peer_door(origin: &Arc<TestOrigin>) -> Served {
    let config = one_slot(Door::peer());
    let peer = config.servers.peer.clone().unwrap();
    let (service, metrics) = service(origin, &config);
    let listener = PeerServer::bind(&peer).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(PeerServer::new(service, &peer).serve(listener, stop.clone()));
    Served {
        addr,
        metrics,
        stop,
        task,
    }
}

/// Sends a request for `hash` alone on a new connection.
async fn ask_peer(addr: SocketAddr, hash: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!(r#"{{"requested_blob":"{hash}"}}"#);
    s.write_all(request.as_bytes()).await.unwrap();
    s
}

/// The answer's JSON header and the bytes that follow it (all of them until the blob's length).
async fn peer_answer(s: &mut TcpStream) -> (Map<String, Value>, Vec<u8>) {
    let mut buf = Vec::new();
    tokio::time::timeout(TEST_TIMEOUT, async {
        loop {
            if let Frame::Complete(header, used) = next_frame(&buf) {
                let length = header["incoming_blob"]["length"].as_u64().unwrap_or(0) as usize;
                if buf.len() - used >= length {
                    return (header, buf[used..used + length].to_vec());
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the answer was complete");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("peer answer in time")
}

fn rejected(metrics: &Metrics, door: &str) -> u64 {
    metrics
        .doors()
        .requests_rejected_total
        .with_label_values(&[door])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_door_refuses_past_its_slots_and_queue_then_serves_again() {
    let origin = TestOrigin::new(true);
    let data = blob_bytes(31, 70_000);
    let hash = origin.insert(data.clone()).to_string();
    let door = peer_door(&origin).await;

    let mut held = ask_peer(door.addr, &hash).await;
    wait_until("the first request at the origin", || {
        origin.get_count() == 1
    })
    .await;
    let mut refused = ask_peer(door.addr, &hash).await;
    let (header, bytes) = peer_answer(&mut refused).await;
    let error = header["incoming_blob"]["error"].as_str().unwrap();
    assert!(error.contains("request limit"), "{error}");
    assert!(bytes.is_empty());
    assert_eq!(rejected(&door.metrics, "peer"), 1);

    origin.open_gate();
    let (header, bytes) = peer_answer(&mut held).await;
    assert_eq!(header["incoming_blob"]["length"], data.len());
    assert_eq!(bytes, data);
    // The refused connection stays usable, and the slot is free again.
    refused
        .write_all(format!(r#"{{"requested_blob":"{hash}"}}"#).as_bytes())
        .await
        .unwrap();
    let (_, bytes) = peer_answer(&mut refused).await;
    assert_eq!(bytes, data);
    door.stop.cancel();
    tokio::time::timeout(TEST_TIMEOUT, door.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_door_drains_within_its_shutdown_timeout() {
    let origin = TestOrigin::new(true);
    let hash = origin.insert(blob_bytes(32, 1000)).to_string();
    let door = peer_door(&origin).await;
    let _held = ask_peer(door.addr, &hash).await;
    wait_until("the request at the origin", || origin.get_count() == 1).await;

    let stopped = Instant::now();
    door.stop.cancel();
    tokio::time::timeout(TEST_TIMEOUT, door.task)
        .await
        .expect("the door stops")
        .unwrap();
    // shutdown_timeout is 1 s; the drain was a fixed 10 s before every door honoured it.
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "stopped before its drain: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "drain took {took:?}");
    origin.open_gate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http3_door_rejects_past_its_slots_and_queue_then_serves_again() {
    let origin = TestOrigin::new(true);
    let data = blob_bytes(33, 90_000);
    let hash = origin.insert(data.clone());
    let config = one_slot_queued(Door::http3(), 1);
    let http3 = config.servers.http3.clone().unwrap();
    let (service, metrics) = service(&origin, &config);
    let endpoint = Http3Server::bind(&http3).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(Http3Server::new(service, &http3, None).serve(endpoint, stop.clone()));

    let client = H3Client::connect(addr, &[prism_lite::quic::ALPN_H3])
        .await
        .unwrap();
    let path = format!("/get/{hash}");
    let mut held = client.send_get(&path).await;
    wait_until("the first request at the origin", || {
        origin.get_count() == 1
    })
    .await;
    // The second waits in the queue (reflector.go's gauge shows it), the third is refused.
    let mut queued = client.send_get(&path).await;
    let queue_size = || metrics.doors().http3_blob_request_queue_size.get();
    wait_until("one request queued", || queue_size() == 1).await;
    let mut refused = client.send_get(&path).await;
    let answer = tokio::time::timeout(TEST_TIMEOUT, refused.recv_response())
        .await
        .expect("an answer in time");
    assert!(
        answer.is_err(),
        "a refused request gets no response: {answer:?}"
    );
    assert_eq!(rejected(&metrics, "http3"), 1);

    origin.open_gate();
    let head = tokio::time::timeout(TEST_TIMEOUT, held.recv_response())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.status(), 200);
    let head = tokio::time::timeout(TEST_TIMEOUT, queued.recv_response())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.status(), 200, "the queued request got the freed slot");
    assert_eq!(queue_size(), 0);
    let (head, body) = client.get(&path).await;
    assert_eq!(head.status(), 200);
    assert_eq!(body, data);
    drop((held, queued, client));
    stop.cancel();
    tokio::time::timeout(TEST_TIMEOUT, task)
        .await
        .unwrap()
        .unwrap();
}
