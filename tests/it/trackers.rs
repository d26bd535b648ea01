//! Announcing to BEP-15 UDP trackers: against a real tracker (Debian's `opentracker`, in its
//! whitelist mode), a dead one and one answering garbage; `stopped` at shutdown; and
//! `prism-lite dht peers` asking the trackers.

use std::net::{SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::{
    get_json, get_text, metric, quoted, scrape, wait_for_metric, within, Cache, Store,
};
use prism_lite::app::Running;
use prism_lite::blob::BlobHash;
use prism_lite::tracker::{self, client::Outcome};
use tokio::net::UdpSocket;

/// A running opentracker on 127.0.0.1 (TCP and UDP on one port), allowing `allowed` streams.
struct Opentracker {
    addr: SocketAddr,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Opentracker {
    /// Starts it and waits until it answers a BEP-15 connect.
    async fn start(allowed: &[BlobHash]) -> Opentracker {
        let dir = tempfile::tempdir().expect("tempdir");
        // It drops privileges to `nobody` and chroots into -d: both must be readable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let whitelist: String = allowed
            .iter()
            .map(|sd| format!("{}\n", &sd.to_string()[..40]))
            .collect();
        let list = dir.path().join("whitelist");
        std::fs::write(&list, whitelist).unwrap();
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = crate::common::free_port();
        let child = tokio::process::Command::new("opentracker")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-P",
                &port.to_string(),
            ])
            .arg("-d")
            .arg(dir.path())
            // Read after the chroot into -d: a path inside it.
            .args(["-w", "/whitelist"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("opentracker runs (apt-get install opentracker; tests/run.sh does)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        within("opentracker answers", async {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let request = tracker::wire::connect_request(1);
            let mut buf = [0u8; 64];
            loop {
                socket.send_to(&request, addr).await.unwrap();
                let answer =
                    tokio::time::timeout(Duration::from_millis(50), socket.recv(&mut buf)).await;
                if let Ok(Ok(len)) = answer {
                    if let Some(tracker::wire::Answer::Connected(_)) =
                        tracker::wire::parse_answer(&buf[..len])
                    {
                        return;
                    }
                }
            }
        })
        .await;
        Opentracker {
            addr,
            _child: child,
            _dir: dir,
        }
    }
}

/// A tracker that answers every datagram with bytes that are not BEP-15.
async fn garbage_tracker() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            // The request's transaction id, then nonsense: an answer that cannot be decoded.
            let mut answer = vec![0, 0, 0, 7];
            answer.extend_from_slice(buf.get(12..16.min(len)).unwrap_or_default());
            answer.extend_from_slice(b"garbage!");
            let _ = socket.send_to(&answer, from).await;
        }
    });
    addr
}

/// A tracker that never answers (a bound socket nobody reads).
async fn dead_tracker() -> (SocketAddr, UdpSocket) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    (socket.local_addr().unwrap(), socket)
}

/// The small fixture stream: (sd hash, every blob of every fixture stream).
/// A cache with an HTTP and a peer door (in memory) announcing to `trackers`.
fn seeder(trackers: &[SocketAddr], dir: &Path) -> Cache {
    Cache::new()
        .http()
        .peer()
        .store(Store::mem())
        .section("trackers", trackers_section(trackers, dir))
}

/// Waits until a tracker took an announce.
async fn announced_ok(metrics: SocketAddr) {
    wait_for_metric(
        metrics,
        "prism_tracker_announces_total",
        &[("result", "ok")],
        1.0,
    )
    .await;
}

/// `running` once its store holds `blobs`.
async fn holding(running: Running, blobs: &[(BlobHash, bytes::Bytes)]) -> Running {
    for (hash, data) in blobs {
        running.store.put(hash, data.clone()).await.expect("put");
    }
    running
}

fn fixture() -> Option<(BlobHash, Vec<(BlobHash, bytes::Bytes)>)> {
    let streams = crate::common::fixture_streams()?;
    let text = std::fs::read_to_string(streams.join("small/stream.json")).expect("json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("stream.json");
    let sd = BlobHash::parse(json["sd_hash"].as_str().unwrap()).unwrap();
    Some((sd, crate::common::fixture_blobs()))
}

fn trackers_section(servers: &[SocketAddr], data_dir: &Path) -> String {
    let list: Vec<String> = servers.iter().map(|s| quoted(s.to_string())).collect();
    format!(
        "{{servers: [{}], timeout: 200ms, retries: 1, retry_interval: 1h, data_dir: {}}}",
        list.join(", "),
        quoted(data_dir.to_str().unwrap())
    )
}

async fn lookup(tracker: SocketAddr, sd: &BlobHash) -> Vec<SocketAddrV4> {
    let answers = tracker::lookup(&[tracker.to_string()], sd, Duration::from_millis(500), 2).await;
    match &answers[0].1 {
        outcome @ Outcome::Ok { .. } => tracker::peers_of(outcome),
        other => panic!("lookup failed: {other:?}"),
    }
}

/// A stream served through a door is announced to opentracker with the peer door's port; a
/// lookup as an LBRY client makes it finds this cache there, the sd blob downloads from the
/// address the tracker gave, and after shutdown (`stopped`) the tracker no longer lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_stream_is_found_through_opentracker_and_downloaded_from_there() {
    let Some((sd, blobs)) = fixture() else { return };
    let tracker = Opentracker::start(&[sd]).await;
    let dir = tempfile::tempdir().unwrap();
    let running = holding(seeder(&[tracker.addr], dir.path()).start().await, &blobs).await;
    let (status, _, _) = crate::common::get_blob(running.http_addr.unwrap(), &sd.to_string()).await;
    assert_eq!(status, 200);
    let metrics = running.metrics_addr;
    announced_ok(metrics).await;
    let text = scrape(metrics).await;
    assert_eq!(metric(&text, "prism_tracker_announced_streams", &[]), 1.0);

    let peer_port = running.peer_addr.unwrap().port();
    let peers = lookup(tracker.addr, &sd).await;
    let ours = SocketAddrV4::new([127, 0, 0, 1].into(), peer_port);
    assert!(peers.contains(&ours), "tracker lists {peers:?}");
    let from_tracker = Store::peer(SocketAddr::V4(ours)).timeout("5s").build();
    let blob = within("download", from_tracker.get(&sd))
        .await
        .expect("sd blob");
    let expected = &blobs.iter().find(|(h, _)| *h == sd).unwrap().1;
    assert_eq!(&blob.data, expected);

    let status: serde_json::Value = crate::common::http_client()
        .get(format!("http://{metrics}/trackers/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["trackers"][0]["last_result"], "ok");
    assert_eq!(status["port"], peer_port);

    running.stop().await;
    // `stopped` was answered before stop() returned; a busy tracker may still be applying it.
    within("the tracker drops us after `stopped`", async {
        while lookup(tracker.addr, &sd).await.contains(&ours) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A tracker that never answers and one that answers garbage cost a count each; the real one
/// beside them is announced to, and the cache serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_garbage_trackers_cost_a_count_and_nothing_else() {
    let Some((sd, blobs)) = fixture() else { return };
    let real = Opentracker::start(&[sd]).await;
    let (dead, _held) = dead_tracker().await;
    let garbage = garbage_tracker().await;
    let dir = tempfile::tempdir().unwrap();
    let running = holding(
        seeder(&[dead, garbage, real.addr], dir.path())
            .start()
            .await,
        &blobs,
    )
    .await;
    let http = running.http_addr.unwrap();
    let (status, _, _) = crate::common::get_blob(http, &sd.to_string()).await;
    assert_eq!(status, 200);
    let metrics = running.metrics_addr;
    within("every tracker tried", async {
        loop {
            let text = scrape(metrics).await;
            let count = |r| metric(&text, "prism_tracker_announces_total", &[("result", r)]);
            if count("ok") >= 1.0 && count("timeout") >= 1.0 && count("garbage") >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (status, _, _) = crate::common::get_blob(http, &sd.to_string()).await;
    assert_eq!(status, 200, "the cache serves on");
    let ours = SocketAddrV4::new([127, 0, 0, 1].into(), running.peer_addr.unwrap().port());
    assert!(lookup(real.addr, &sd).await.contains(&ours));
    running.stop().await;
}

/// A stream the tracker's whitelist does not allow is refused, and counted as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_refusing_a_stream_is_counted() {
    let Some((sd, blobs)) = fixture() else { return };
    let tracker = Opentracker::start(&[BlobHash::of(b"another stream")]).await;
    let dir = tempfile::tempdir().unwrap();
    let running = holding(seeder(&[tracker.addr], dir.path()).start().await, &blobs).await;
    crate::common::get_blob(running.http_addr.unwrap(), &sd.to_string()).await;
    let metrics = running.metrics_addr;
    within("refusal counted", async {
        loop {
            let text = scrape(metrics).await;
            let failed: f64 = ["refused"]
                .iter()
                .map(|r| metric(&text, "prism_tracker_announces_total", &[("result", r)]))
                .sum();
            if failed >= 1.0 {
                assert_eq!(
                    metric(&text, "prism_tracker_announces_total", &[("result", "ok")]),
                    0.0
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    running.stop().await;
}

/// Announced streams are remembered: after a restart on the same disk tier, the stream is on
/// the tracker announce list again without being requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_announcements_survive_a_restart() {
    let Some((sd, blobs)) = fixture() else { return };
    let tracker = Opentracker::start(&[sd]).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new()
        .http()
        .peer()
        .store(Store::disk(dir.path().join("blobs")))
        .section(
            "trackers",
            trackers_section(&[tracker.addr], &dir.path().join("t")),
        );
    let running = cache.start().await;
    let running = holding(running, &blobs).await;
    crate::common::get_blob(running.http_addr.unwrap(), &sd.to_string()).await;
    running.stop().await;

    let running = cache.start().await;
    let metrics = running.metrics_addr;
    announced_ok(metrics).await;
    let ours = SocketAddrV4::new([127, 0, 0, 1].into(), running.peer_addr.unwrap().port());
    assert!(lookup(tracker.addr, &sd).await.contains(&ours));
    running.stop().await;
}

/// `prism-lite dht peers` asks the configured trackers and marks this cache's entry, even
/// when the DHT cannot be joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_peers_command_asks_the_trackers_and_marks_this_cache() {
    let Some((sd, blobs)) = fixture() else { return };
    let tracker = Opentracker::start(&[sd]).await;
    let dir = tempfile::tempdir().unwrap();
    let section = trackers_section(&[tracker.addr], &dir.path().join("t"));
    let cache = Cache::new()
        .http()
        .peer()
        .store(Store::mem())
        .section("trackers", &section)
        .fixed_ports();
    let running = cache.start().await;
    let running = holding(running, &blobs).await;
    crate::common::get_blob(running.http_addr.unwrap(), &sd.to_string()).await;
    let metrics = running.metrics_addr;
    announced_ok(metrics).await;

    let conf = tempfile::tempdir().unwrap();
    let dht_dir = conf.path().join("dht");
    cache
        .clone()
        .section(
            "dht",
            format!(
                "{{bootstrap: [], data_dir: {}}}",
                quoted(dht_dir.to_str().unwrap())
            ),
        )
        .write_to(conf.path());
    let (ok, stdout, stderr) =
        crate::common::run_command(&["dht", "peers", &sd.to_string()], conf.path()).await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let line = format!(
        "127.0.0.1:{} tracker {} (this cache)",
        running.peer_addr.unwrap().port(),
        tracker.addr
    );
    assert!(
        stdout.lines().any(|l| l == line),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("among them"), "{stderr}");
    let seen_at = format!(
        "the tracker {} lists this cache at 127.0.0.1:{}, an address only this network can reach",
        tracker.addr,
        running.peer_addr.unwrap().port()
    );
    let verdict = format!("reachable from outside: no, because {seen_at}");
    assert!(
        stdout.lines().any(|l| l.starts_with(&verdict)),
        "stdout: {stdout}"
    );

    // The running cache's own self-check says the same on its status page (and in a metric).
    let reachability = within("the self-check's verdict", async {
        loop {
            let status = get_json(metrics, "/status.json").await;
            if status["reachability"]["reachable"] != "unknown" {
                break status["reachability"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(reachability["reachable"], "no", "{reachability}");
    assert!(
        reachability["because"]
            .as_str()
            .unwrap()
            .starts_with(&seen_at),
        "{reachability}"
    );
    let page = get_text(metrics, "/").await;
    assert!(
        page.contains("<p id=reachable><b>no</b>, because the tracker"),
        "{page}"
    );
    assert_eq!(metric(&scrape(metrics).await, "prism_reachable", &[]), 0.0);
    running.stop().await;
}
