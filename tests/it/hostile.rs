//! Hostile clients (issue #13): stalled readers on every door, an idle-connection flood from one
//! address, availability-check storms, stalled stream viewers ([`stream`]). Attackers bind
//! 127.0.0.2, the bystander 127.0.0.3, so the per-address bounds see two different clients.

mod stream;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prism_lite::blob::BlobHash;
use prism_lite::quic::{self, Verify};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{blob_bytes, client_from, free_port, metric, H3Client, H3Stream, TEST_TIMEOUT};
use crate::common::{scrape, within, Cache, Door, HttpOrigin, Store};

const BIN: &str = env!("CARGO_BIN_EXE_prism-lite");
const ATTACKER: &str = "127.0.0.2";
const BYSTANDER: &str = "127.0.0.3";
const MIB: u64 = 1 << 20;

/// A TCP connection from `from` with a tiny receive buffer (so a client that never reads stops
/// the server's writes soon, instead of the kernel swallowing the blob).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    within("connect", socket.connect(to)).await.unwrap()
}

/// Resident memory of process `pid` in bytes.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Process `pid`'s RSS, sampled every 10 ms from [`PeakRss::track`] until [`PeakRss::growth`].
struct PeakRss {
    baseline: u64,
    peak: Arc<AtomicU64>,
    sampling: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn track(pid: u32) -> PeakRss {
        let baseline = rss_of(pid);
        let peak = Arc::new(AtomicU64::new(baseline));
        let sampling = tokio::spawn({
            let peak = Arc::clone(&peak);
            async move {
                loop {
                    peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        PeakRss {
            baseline,
            peak,
            sampling,
        }
    }

    /// Stops sampling; how far the peak rose above the start, printed with `what` for the log.
    fn growth(self, what: &str) -> u64 {
        self.sampling.abort();
        let grown = self
            .peak
            .load(Ordering::Relaxed)
            .saturating_sub(self.baseline);
        eprintln!(
            "{what}: rss baseline {} MiB, peak growth {} MiB",
            self.baseline / MIB,
            grown / MIB
        );
        grown
    }
}

struct Server {
    child: Child,
    http: SocketAddr,
    peer: SocketAddr,
    http3: SocketAddr,
    metrics: SocketAddr,
    /// What `_dir/blobcache.yaml` holds.
    config: Cache,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real prism-lite process serving `blobs` from a disk store (every read is a fresh buffer:
/// the costly case for stalled readers) with the given `limits:` section.
async fn server_process(blobs: &[Bytes], limits: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for b in blobs {
        std::fs::write(data.join(BlobHash::of(b).to_string()), b).unwrap();
    }
    let config = Cache::new()
        .http()
        .peer()
        .http3()
        .store(Store::disk(&data).max_size("1GiB"))
        .limits(limits)
        .fixed_ports();
    config.write_to(dir.path());
    let metrics = free_port();
    let child = Command::new(BIN)
        .args(["--conf-dir", dir.path().to_str().unwrap(), "blobcache"])
        .args(["--metrics-port", &metrics.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        http: config.addr("http"),
        peer: config.addr("peer"),
        http3: config.addr("http3"),
        metrics: format!("127.0.0.1:{metrics}").parse().unwrap(),
        config,
        _dir: dir,
    };
    let ready = format!("http://{}/readyz", server.metrics);
    let c = client_from(BYSTANDER);
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        if let Ok(r) = c.get(&ready).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

/// An HTTP/3 client whose windows are tiny and which never reads `path` (on `streams` streams):
/// the server's sends stall. Held, the streams stay open; dropped (streams first, then the
/// connection), they go away.
type StalledH3 = (Vec<H3Stream>, H3Client);

async fn stalled_h3_streams(addr: SocketAddr, path: &str, streams: usize) -> StalledH3 {
    let h3 = H3Client::options(&[quic::ALPN_H3])
        .local_ip(ATTACKER)
        .receive_windows(16 * 1024, 64 * 1024)
        .connect(addr)
        .await
        .unwrap();
    let mut held = Vec::with_capacity(streams);
    for _ in 0..streams {
        held.push(h3.send_get(path).await);
    }
    (held, h3)
}

/// Stalled readers on all three doors at once, from one address: the server's memory stays
/// near the in-flight budget (without it, these requests pin ~600 MiB), another address is
/// served meanwhile, and once the stall timeout passes nothing is held any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_stay_within_the_budget_while_another_address_is_served() {
    // Distinct blobs: a disk hit is a shared map of the file, counted once however many
    // responses hold it, so stalled readers of one blob would pin (and count) only 2 MiB.
    let blobs: Vec<_> = (0..16)
        .map(|i| blob_bytes(13 + i, 2 * MIB as usize))
        .collect();
    let hashes: Vec<BlobHash> = blobs.iter().map(|b| BlobHash::of(b)).collect();
    let (blob, hash) = (blobs[0].clone(), hashes[0]);
    let server = server_process(
        &blobs,
        "{max_inflight_bytes: 24MiB, max_inflight_bytes_per_ip: 12MiB, inflight_wait: 200ms, write_stall_timeout: 3s}",
    )
    .await;
    let pid = server.child.id();
    let bystander = client_from(BYSTANDER);
    let url = format!("http://{}/blob?hash={hash}", server.http);
    let warm = within("warm-up", bystander.get(&url).send()).await.unwrap();
    assert_eq!(warm.bytes().await.unwrap(), blob);
    let rss = PeakRss::track(pid);

    let (mut held_tcp, held_h3) = attack(&server, &hashes, 150, 100, 2, 32).await;
    // The budget turned some of them away...
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let m = scrape(server.metrics).await;
        let inflight = metric(&m, "prism_inflight_bytes", &[]);
        assert!(inflight <= (24 * MIB) as f64, "budget exceeded: {inflight}");
        if metric(&m, "prism_requests_rejected_total", &[("server", "http")]) > 0.0
            && metric(&m, "prism_requests_rejected_total", &[("server", "peer")]) > 0.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "no request was refused:\n{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while another address is served.
    let started = Instant::now();
    let resp = within("bystander during the flood", bystander.get(&url).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), blob);
    let bystander_took = started.elapsed();

    held_tcp.clear();
    drop(held_h3);
    wait_for_inflight(&server, |b| b == 0.0, "the flood's responses to end").await;
    eprintln!("stalled readers: bystander {bystander_took:?}");
    let grown = rss.growth("stalled readers");
    // Budget (24 MiB) + QUIC send buffers (2 connections x 4 MiB) + allocator slack. Without
    // the budget the same flood pins hundreds of MiB.
    assert!(grown < 160 * MIB, "rss grew {} MiB", grown / MIB);

    // A few stalled readers, all admitted: their responses are dropped after
    // write_stall_timeout although the clients keep their connections open.
    let held = attack(&server, &hashes[..1], 2, 2, 1, 2).await;
    wait_for_inflight(&server, |b| b > 0.0, "stalled responses").await;
    wait_for_inflight(&server, |b| b == 0.0, "stalled responses to be dropped").await;
    drop(held);
}

/// From the attacker address: `http` and `peer` connections that each send three requests for
/// one of `hashes` (in turn) and never read (the kernel swallows about two blobs; the third stalls in the
/// server), and `h3_conns` QUIC connections with `h3_streams` unread requests each.
async fn attack(
    server: &Server,
    hashes: &[BlobHash],
    http: usize,
    peer: usize,
    h3_conns: usize,
    h3_streams: usize,
) -> (Vec<TcpStream>, Vec<StalledH3>) {
    let mut held_tcp = Vec::new();
    for i in 0..http {
        let hash = &hashes[i % hashes.len()];
        let get = format!("GET /blob?hash={hash} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(3);
        let mut s = connect_from(ATTACKER, server.http).await;
        s.write_all(get.as_bytes()).await.unwrap();
        held_tcp.push(s);
    }
    for i in 0..peer {
        let hash = &hashes[i % hashes.len()];
        let ask = format!(r#"{{"requested_blob":"{hash}"}}"#).repeat(3);
        let mut s = connect_from(ATTACKER, server.peer).await;
        s.write_all(ask.as_bytes()).await.unwrap();
        held_tcp.push(s);
    }
    let mut held_h3 = Vec::new();
    for i in 0..h3_conns {
        let hash = &hashes[i % hashes.len()];
        held_h3.push(stalled_h3_streams(server.http3, &format!("/get/{hash}"), h3_streams).await);
    }
    (held_tcp, held_h3)
}

/// Polls the server's `prism_inflight_bytes` until `done` holds (bounded).
async fn wait_for_inflight(server: &Server, done: impl Fn(f64) -> bool, what: &str) {
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let m = scrape(server.metrics).await;
        if done(metric(&m, "prism_inflight_bytes", &[])) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One address holding every connection it may open, idle, on the HTTP and peer doors: another
/// address is still answered at once (its cap is below the global one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_from_one_address_does_not_lock_out_another() {
    let running = Cache::new()
        .door(
            Door::http()
                .set("max_connections", 64)
                .set("max_connections_per_ip", 16),
        )
        .door(
            Door::peer()
                .set("max_connections", 64)
                .set("max_connections_per_ip", 16),
        )
        .store(Store::mem())
        .start()
        .await;
    let data = blob_bytes(14, 5000);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    let http = SocketAddr::from(([127, 0, 0, 1], running.http_addr.unwrap().port()));
    let peer = SocketAddr::from(([127, 0, 0, 1], running.peer_addr.unwrap().port()));

    // Twice the global cap from one address, sending nothing.
    let mut idle = Vec::new();
    for _ in 0..128 {
        idle.push(connect_from(ATTACKER, http).await);
        idle.push(connect_from(ATTACKER, peer).await);
    }
    let started = Instant::now();
    let resp = client_from(BYSTANDER)
        .get(format!("http://{http}/blob?hash={hash}"))
        .send()
        .await
        .expect("bystander answered");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), data);
    let mut s = connect_from(BYSTANDER, peer).await;
    s.write_all(format!(r#"{{"requested_blobs":["{hash}"]}}"#).as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 256];
    let n = within("peer answer", s.read(&mut answer)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).contains(&hash.to_string()),
        "peer answer lists the blob"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bystander took {:?}",
        started.elapsed()
    );
    let m = scrape(running.metrics_addr).await;
    assert!(metric(&m, "prism_requests_rejected_total", &[("server", "http")]) >= 1.0);
    drop(idle);
    running.stop().await;
}

/// HEAD goes through single-flight and the negative cache like GET: a storm for one unknown
/// hash makes at most 2 origin requests, a repeat none; the peer door answers a flood of
/// availability requests with at most `max_requested_blobs` origin checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_checks_do_not_amplify_onto_the_origin() {
    let origin = HttpOrigin::start().await;
    let running = Cache::new()
        .http()
        .door(
            Door::peer()
                .set("max_requested_blobs", 64)
                .set("max_request_size", "16KiB"),
        )
        .tier(Store::mem())
        .origin(&origin)
        .start()
        .await;
    let unknown = BlobHash::of(b"nobody has this");
    let url = format!("http://{}/blob?hash={unknown}", running.http_addr.unwrap());
    let client = client_from(BYSTANDER);
    let storm: Vec<_> = (0..150).map(|_| client.head(&url).send()).collect();
    for r in futures_util::future::join_all(storm).await {
        assert_eq!(r.unwrap().status(), 404);
    }
    let after_storm = origin.requests.lock().unwrap().len();
    assert!(
        (1..=2).contains(&after_storm),
        "{after_storm} origin requests"
    );
    for _ in 0..20 {
        assert_eq!(client.head(&url).send().await.unwrap().status(), 404);
    }
    assert_eq!(
        origin.requests.lock().unwrap().len(),
        after_storm,
        "repeats are negatively cached"
    );

    // 100 distinct unknown hashes, asked 20 times on one connection.
    let hashes: Vec<String> = (0..100u32)
        .map(|i| BlobHash::of(&i.to_be_bytes()).to_string())
        .collect();
    let ask = format!(r#"{{"requested_blobs":["{}"]}}"#, hashes.join("\",\""));
    let mut s = connect_from(BYSTANDER, running.peer_addr.unwrap()).await;
    for _ in 0..20 {
        s.write_all(ask.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 1024];
        let n = within("peer answer", s.read(&mut answer)).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).contains(r#""available_blobs":[]"#));
    }
    let checks = origin.requests.lock().unwrap().len() - after_storm;
    assert_eq!(
        checks, 64,
        "first 64 hashes checked once each, then remembered"
    );
    running.stop().await;
}

/// A QUIC connection from `from` to `to` (handshake only), or the error that ended it.
async fn quic_connect_from(from: &str, to: SocketAddr) -> Result<quinn::Connection, String> {
    let cfg = quic::client_config(&Verify::Insecure, &[quic::ALPN_H3], Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    let mut endpoint =
        quinn::Endpoint::client(format!("{from}:0").parse().unwrap()).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(cfg);
    let connecting = endpoint
        .connect(to, "localhost")
        .map_err(|e| e.to_string())?;
    within("quic handshake", connecting)
        .await
        .map_err(|e| e.to_string())
}

/// One address at its QUIC connection cap is refused further connections at the handshake,
/// while another address still connects and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_connections_are_capped_per_address() {
    let running = Cache::new()
        .door(Door::http3().set("max_connections_per_ip", 2))
        .store(Store::mem())
        .start()
        .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], running.http3_addr.unwrap().port()));
    let mut held = Vec::new();
    for i in 0..2 {
        let conn = quic_connect_from(ATTACKER, addr).await;
        held.push(conn.unwrap_or_else(|e| panic!("connection {i} under the cap: {e}")));
    }
    let refused = quic_connect_from(ATTACKER, addr).await;
    assert!(refused.is_err(), "a third connection from one address");
    let m = scrape(running.metrics_addr).await;
    assert!(metric(&m, "prism_requests_rejected_total", &[("server", "http3")]) >= 1.0);

    let other = quic_connect_from(BYSTANDER, addr).await;
    assert!(other.is_ok(), "another address connects: {other:?}");
    // A connection closed frees its place under the cap.
    held.pop().unwrap().close(0u32.into(), b"done");
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        if quic_connect_from(ATTACKER, addr).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
}

/// `limits:` applies on SIGHUP: an address at its share of the budget is refused, and admitted
/// once a reload raises the share (no restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_limits_to_the_running_budget() {
    let blobs: Vec<_> = (0..2)
        .map(|i| blob_bytes(40 + i, 2 * MIB as usize))
        .collect();
    let hashes: Vec<BlobHash> = blobs.iter().map(|b| BlobHash::of(b)).collect();
    let server = server_process(
        &blobs,
        "{max_inflight_bytes_per_ip: 3MiB, inflight_wait: 100ms, write_stall_timeout: 60s}",
    )
    .await;
    // A stalled reader from the attacker's address holds one blob of its 3 MiB share...
    let held = attack(&server, &hashes[..1], 1, 0, 0, 0).await;
    let attacker = client_from(ATTACKER);
    let url = format!("http://{}/blob?hash={}", server.http, hashes[1]);
    // ...so, once its third response is stuck, another blob for that address gets 503.
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let status = within("a second blob", attacker.get(&url).send())
            .await
            .unwrap()
            .status();
        if status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "never refused (last {status})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    server
        .config
        .clone()
        .limits(
            "{max_inflight_bytes_per_ip: 64MiB, inflight_wait: 100ms, write_stall_timeout: 60s}",
        )
        .write_to(server._dir.path());
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let resp = within("after the reload", attacker.get(&url).send())
            .await
            .unwrap();
        if resp.status() == 200 {
            assert_eq!(resp.bytes().await.unwrap(), blobs[1]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the raised share never applied (last {})",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
}
