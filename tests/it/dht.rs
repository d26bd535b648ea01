//! The DHT node against itself and against raw datagrams, all on 127.0.0.1
//! (`allow_private: true`): joining, lookups, announcing, expiry, token checks, bad input,
//! the wire format's exact bytes, `/dht/status`, and `prism-lite dht peers` as a process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{metric, quoted, within, Cache, Door, Store};
use prism_lite::blob::BlobHash;
use prism_lite::dht::bencode::{Key, Value};
use prism_lite::dht::wire::{Body, Datagram, FindValueResult, Request, RpcId};
use prism_lite::dht::{Dht, DhtConfig, NodeId, K};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// TCP port announced by node `i` of a test network.
fn tcp_port(i: usize) -> u16 {
    3333 + i as u16
}

struct Net {
    nodes: Vec<Dht>,
    registries: Vec<prometheus::Registry>,
    shutdown: CancellationToken,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Net {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Net {
    fn metrics(&self, i: usize) -> String {
        render(&self.registries[i])
    }
}

fn test_config(dir: &std::path::Path, bootstrap: Vec<String>) -> DhtConfig {
    DhtConfig {
        enabled: true,
        port: 0,
        address: Some("127.0.0.1".into()),
        bootstrap,
        allow_private: true,
        data_dir: dir.to_path_buf(),
        rpc_timeout: Duration::from_secs(2),
        announces_per_minute: 6000,
        ..DhtConfig::default()
    }
}

/// `n` nodes; node 0 is everyone's bootstrap node. Returns once every routing table holds
/// every other node.
async fn network(n: usize, tweak: impl Fn(&mut DhtConfig)) -> Net {
    let shutdown = CancellationToken::new();
    let mut net = Net {
        nodes: Vec::new(),
        registries: Vec::new(),
        shutdown: shutdown.clone(),
        _dirs: Vec::new(),
    };
    for i in 0..n {
        let dir = tempfile::tempdir().expect("tempdir");
        let bootstrap = match net.nodes.first() {
            Some(first) => vec![first.local_addr().to_string()],
            None => vec![],
        };
        let mut cfg = test_config(dir.path(), bootstrap);
        tweak(&mut cfg);
        let id = prism_lite::dht::load_or_create_node_id(dir.path()).expect("node id");
        let registry = prometheus::Registry::new();
        let node = Dht::bind(&cfg, Some(tcp_port(i)), id, &registry)
            .await
            .expect("bind");
        tokio::spawn(node.clone().run(shutdown.clone()));
        // Join one at a time, as nodes do in practice: the next one starts once this one and
        // the bootstrap node know each other.
        if let Some(first) = net.nodes.first() {
            let (first_id, id) = (first.node_id(), node.node_id());
            within("node joins", async {
                while !(has(first, &id) && has(&node, &first_id)) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
        }
        net.nodes.push(node);
        net.registries.push(registry);
        net._dirs.push(dir);
    }
    let all: Vec<NodeId> = net.nodes.iter().map(Dht::node_id).collect();
    within("routing tables converge", async {
        loop {
            let converged = net
                .nodes
                .iter()
                .all(|node| node.known_closest(&node.node_id(), 64).len() == all.len() - 1);
            if converged {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    net
}

fn has(node: &Dht, id: &NodeId) -> bool {
    node.known_closest(id, 1).first().map(|c| c.id) == Some(*id)
}

/// The fixture stream's sd hash, or a made-up blob hash when the fixtures are absent.
fn sd_hash() -> prism_lite::blob::BlobHash {
    let json = crate::common::fixture_streams()
        .and_then(|dir| std::fs::read_to_string(dir.join("small/stream.json")).ok());
    match json {
        Some(text) => {
            let v: serde_json::Value = serde_json::from_str(&text).expect("stream.json");
            prism_lite::blob::BlobHash::parse(v["sd_hash"].as_str().expect("sd_hash"))
                .expect("sd hash")
        }
        None => {
            eprintln!("fixture streams absent: announcing a made-up hash instead");
            prism_lite::blob::BlobHash::of(b"dht test stream")
        }
    }
}

fn key_of(hash: &prism_lite::blob::BlobHash) -> NodeId {
    NodeId(*hash.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_node_converges_on_the_k_closest() {
    let net = network(6, |_| {}).await;
    for (i, node) in net.nodes.iter().enumerate() {
        let key = NodeId::random();
        let mut expected: Vec<NodeId> = net
            .nodes
            .iter()
            .map(Dht::node_id)
            .filter(|id| *id != node.node_id())
            .collect();
        expected.sort_by_key(|id| id.distance(&key));
        expected.truncate(K);
        let found: Vec<NodeId> = within("find_node", node.find_node(key))
            .await
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(found, expected, "node {i}: lookup result differs");
    }
    // Lookups are real RPCs: findNode requests arrived and were counted.
    let served: f64 = (0..6)
        .map(|i| {
            metric(
                &net.metrics(i),
                "prism_dht_rpc_in_total",
                &[("method", "findNode")],
            )
        })
        .sum();
    assert!(served >= 5.0, "findNode served {served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_stream_is_found_with_its_tcp_port() {
    let net = network(6, |_| {}).await;
    let hash = sd_hash();
    let key = key_of(&hash);
    let announcer = &net.nodes[2];
    let stored = within("announce", announcer.announce_now(key))
        .await
        .expect("announce");
    assert_eq!(
        stored, 5,
        "every other node (all within the K closest) stores it"
    );
    for (i, node) in net.nodes.iter().enumerate() {
        if i == 2 {
            continue;
        }
        let peers = within("find_peers", node.find_peers(key)).await;
        let found = peers
            .iter()
            .find(|p| p.id == announcer.node_id())
            .unwrap_or_else(|| panic!("node {i} did not find the announcer: {peers:?}"));
        assert_eq!(
            found.addr,
            format!("127.0.0.1:{}", tcp_port(2)).parse().unwrap()
        );
    }
    let text = net.metrics(2);
    assert_eq!(
        metric(&text, "prism_dht_announcements_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "prism_dht_rpc_out_total",
            &[("method", "store"), ("result", "ok")]
        ),
        5.0
    );
    let status = announcer.status();
    assert!(status["last_announce_unix"].as_u64().is_some(), "{status}");
    assert_eq!(status["routing_table_size"], 5);
    // An unknown key has no announcers.
    let none = within("find_peers", net.nodes[0].find_peers(NodeId::random())).await;
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_expire_unless_reannounced() {
    let expiry = Duration::from_millis(1500);
    let reannounce = Duration::from_millis(250);
    let net = network(4, |c| {
        c.expiry = expiry;
        c.reannounce_interval = reannounce;
    })
    .await;
    let once = NodeId::random();
    let kept = prism_lite::blob::BlobHash::of(b"re-announced blob");
    let (a, b, seeker) = (&net.nodes[1], &net.nodes[2], &net.nodes[3]);

    // Announced once: visible, then gone after the expiry.
    assert!(
        within("announce", a.announce_now(once))
            .await
            .expect("announce")
            > 0
    );
    let peers = within("find_peers", seeker.find_peers(once)).await;
    assert!(peers.iter().any(|p| p.id == a.node_id()));
    within("announcement expires", async {
        loop {
            let peers = seeker.find_peers(once).await;
            if !peers.iter().any(|p| p.id == a.node_id()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // Scheduled through the Announcer: re-announced, so still visible well past one expiry.
    assert!(b.announcer().announce(&kept));
    let ok = || {
        metric(
            &net.metrics(2),
            "prism_dht_announcements_total",
            &[("result", "ok")],
        )
    };
    within("first announce", async {
        while ok() < 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let first = tokio::time::Instant::now();
    within("re-announces", async {
        while first.elapsed() < expiry + reannounce || ok() < 3.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let peers = within("find_peers", seeker.find_peers(key_of(&kept))).await;
    assert!(
        peers
            .iter()
            .any(|p| p.id == b.node_id() && p.addr.port() == tcp_port(2)),
        "re-announced blob missing after the expiry: {peers:?}"
    );
    assert_eq!(b.status()["announced_blobs"], 1);
}

/// A single node and a raw UDP socket playing a (sometimes hostile) peer.
async fn lone_node() -> (
    Dht,
    prometheus::Registry,
    CancellationToken,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), vec![]);
    let registry = prometheus::Registry::new();
    let node = Dht::bind(&cfg, Some(3333), NodeId::random(), &registry)
        .await
        .expect("bind");
    let shutdown = CancellationToken::new();
    tokio::spawn(node.clone().run(shutdown.clone()));
    (node, registry, shutdown, dir)
}

fn render(registry: &prometheus::Registry) -> String {
    let mut buf = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&registry.gather(), &mut buf)
        .expect("encode");
    buf
}

/// Sends a request and returns the answer with the same rpc id (skipping the node's own
/// requests to us, e.g. its ping-back).
async fn ask(sock: &UdpSocket, to: SocketAddr, me: NodeId, request: Request) -> Datagram {
    let rpc_id = RpcId::random();
    let bytes = Datagram {
        rpc_id,
        node_id: me,
        body: Body::Request(Ok(request)),
    }
    .encode();
    sock.send_to(&bytes, to).await.expect("send");
    within("answer", async {
        let mut buf = [0u8; 2048];
        loop {
            let (n, _) = sock.recv_from(&mut buf).await.expect("recv");
            if let Ok(d) = Datagram::decode(&buf[..n]) {
                if d.rpc_id == rpc_id {
                    return d;
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datagrams_are_dropped_and_the_node_keeps_answering() {
    let (node, registry, shutdown, _dir) = lone_node().await;
    let to = SocketAddr::V4(node.local_addr());
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = NodeId::random();
    let garbage: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        b"d1:a".to_vec(),
        b"di0ei0ei1e3:abce".to_vec(),
        [vec![b'l'; 500], vec![b'e'; 500]].concat(),
        b"99999999999999999999:x".to_vec(),
        vec![0xff; 10],
    ];
    for g in &garbage {
        sock.send_to(g, to).await.expect("send");
    }
    // Oversized: a valid-looking but 3,000-byte datagram.
    let big = [b"d1:x2990:".as_slice(), &[b'a'; 2990], b"e"].concat();
    sock.send_to(&big, to).await.expect("send");
    // A response nobody asked for.
    let stray = Datagram {
        rpc_id: RpcId::random(),
        node_id: me,
        body: Body::Response(Value::bytes(b"pong".to_vec())),
    };
    sock.send_to(&stray.encode(), to).await.expect("send");

    let pong = ask(&sock, to, me, Request::Ping).await;
    assert_eq!(pong.node_id, node.node_id());
    assert_eq!(pong.body, Body::Response(Value::bytes(b"pong".to_vec())));

    // An unknown method gets an error datagram, not silence and not a crash.
    let mut d = BTreeMap::new();
    let rpc_id = RpcId::random();
    d.insert(Key::Int(0), Value::Int(0));
    d.insert(Key::Int(1), Value::bytes(rpc_id.0.to_vec()));
    d.insert(Key::Int(2), Value::bytes(me.0.to_vec()));
    d.insert(Key::Int(3), Value::bytes(b"shutdown".to_vec()));
    d.insert(Key::Int(4), Value::List(vec![]));
    sock.send_to(&Value::Dict(d).encode(), to)
        .await
        .expect("send");
    let err = within("error reply", async {
        let mut buf = [0u8; 2048];
        loop {
            let (n, _) = sock.recv_from(&mut buf).await.expect("recv");
            if let Ok(d) = Datagram::decode(&buf[..n]) {
                if d.rpc_id == rpc_id {
                    return d;
                }
            }
        }
    })
    .await;
    assert!(matches!(err.body, Body::Error { .. }), "{err:?}");

    let text = render(&registry);
    let dropped = |r: &str| metric(&text, "prism_dht_dropped_datagrams_total", &[("reason", r)]);
    assert_eq!(dropped("malformed"), garbage.len() as f64);
    assert_eq!(dropped("oversized"), 1.0);
    assert_eq!(dropped("unexpected_response"), 1.0);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_needs_a_token_from_find_value() {
    let (node, registry, shutdown, _dir) = lone_node().await;
    let to = SocketAddr::V4(node.local_addr());
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = NodeId::random();
    let key = NodeId::random();

    let bad = Request::Store {
        blob_hash: key,
        token: vec![7; 48],
        port: 3333,
    };
    match ask(&sock, to, me, bad).await.body {
        Body::Error { message, .. } => assert_eq!(message, b"Invalid token"),
        other => panic!("store with a made-up token was not refused: {other:?}"),
    }

    let answer = ask(&sock, to, me, Request::FindValue { key, page: 0 }).await;
    let Body::Response(v) = answer.body else {
        panic!("findValue failed: {answer:?}")
    };
    let fv = FindValueResult::decode(&v, &key).expect("findValue result");
    assert!(fv.peers.is_empty());
    assert_eq!(fv.pages, 0);
    let good = Request::Store {
        blob_hash: key,
        token: fv.token,
        port: 3399,
    };
    assert_eq!(
        ask(&sock, to, me, good).await.body,
        Body::Response(Value::bytes(b"OK".to_vec()))
    );
    let answer = ask(&sock, to, me, Request::FindValue { key, page: 0 }).await;
    let Body::Response(v) = answer.body else {
        panic!("findValue failed: {answer:?}")
    };
    let fv = FindValueResult::decode(&v, &key).expect("findValue result");
    assert_eq!(fv.pages, 1);
    assert_eq!(fv.peers.len(), 1);
    assert_eq!(fv.peers[0].id, me);
    assert_eq!(fv.peers[0].addr, "127.0.0.1:3399".parse().unwrap());

    let text = render(&registry);
    assert_eq!(
        metric(
            &text,
            "prism_dht_refused_requests_total",
            &[("reason", "bad_token")]
        ),
        1.0
    );
    assert_eq!(node.status()["stored_announcements"], 1);
    shutdown.cancel();
}

#[test]
fn wire_format_matches_the_sdk_bytes() {
    let rpc_id = RpcId([b'r'; 20]);
    let me = NodeId([b'n'; 48]);
    let key = NodeId([b'k'; 48]);
    let encode = |request| {
        Datagram {
            rpc_id,
            node_id: me,
            body: Body::Request(Ok(request)),
        }
        .encode()
    };
    let head = |t: &[u8]| {
        [
            b"di0e".as_slice(),
            t,
            b"i1e20:",
            &[b'r'; 20],
            b"i2e48:",
            &[b'n'; 48],
        ]
        .concat()
    };

    // RequestDatagram.make_find_value(me, key, rpc_id, page=0).bencode()
    let expected = [
        head(b"i0e").as_slice(),
        b"i3e9:findValuei4el48:",
        &[b'k'; 48],
        b"d1:pi0e15:protocolVersioni1eeee",
    ]
    .concat();
    assert_eq!(encode(Request::FindValue { key, page: 0 }), expected);

    // RequestDatagram.make_find_node(me, key, rpc_id).bencode()
    let expected = [
        head(b"i0e").as_slice(),
        b"i3e8:findNodei4el48:",
        &[b'k'; 48],
        b"d15:protocolVersioni1eeee",
    ]
    .concat();
    assert_eq!(encode(Request::FindNode { key }), expected);

    // RequestDatagram.make_store(me, key, token, 3333, rpc_id).bencode():
    // args [blob_hash, token, port, original_publisher_id, age, {protocolVersion: 1}]
    let expected = [
        head(b"i0e").as_slice(),
        b"i3e5:storei4el48:",
        &[b'k'; 48],
        b"48:",
        &[b't'; 48],
        b"i3333e48:",
        &[b'n'; 48],
        b"i0ed15:protocolVersioni1eeee",
    ]
    .concat();
    let store = Request::Store {
        blob_hash: key,
        token: vec![b't'; 48],
        port: 3333,
    };
    assert_eq!(encode(store.clone()), expected);
    let decoded = Datagram::decode(&expected).expect("decode store");
    assert_eq!(decoded.body, Body::Request(Ok(store)));

    // A findNode response as the SDK writes it: [[node_id, b"1.2.3.4", udp_port], ...].
    let response = [
        head(b"i1e").as_slice(),
        b"i3ell48:",
        &[b'c'; 48],
        b"7:1.2.3.4i4444eeee",
    ]
    .concat();
    let d = Datagram::decode(&response).expect("decode findNode response");
    let Body::Response(v) = d.body else {
        panic!("not a response")
    };
    let contacts = prism_lite::dht::wire::decode_contacts(&v).expect("contacts");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].id, NodeId([b'c'; 48]));
    assert_eq!(contacts[0].addr, "1.2.3.4:4444".parse().unwrap());
    assert_eq!(prism_lite::dht::wire::encode_contacts(&contacts), v);

    // An error datagram: {0: 2, 1: rpc_id, 2: node_id, 3: exception type, 4: message}.
    let error = [
        head(b"i2e").as_slice(),
        b"i3e10:ValueErrori4e13:Invalid tokene",
    ]
    .concat();
    let d = Datagram::decode(&error).expect("decode error");
    assert_eq!(
        d.body,
        Body::Error {
            kind: b"ValueError".to_vec(),
            message: b"Invalid token".to_vec()
        }
    );
    assert_eq!(d.encode(), error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobcache_runs_the_dht_and_reports_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Cache::new()
        .peer()
        .store(Store::mem())
        .dht(dir.path())
        .start()
        .await;
    let dht_addr = running.dht_addr.expect("dht address");
    let node = running.dht.clone().expect("dht handle");
    assert_eq!(SocketAddr::V4(node.local_addr()), dht_addr);
    let persisted = prism_lite::dht::read_node_id(dir.path()).expect("node id persisted");
    assert_eq!(persisted, node.node_id());

    let url = format!("http://{}/dht/status", running.metrics_addr);
    let status: serde_json::Value = within("status", async {
        crate::common::http_client()
            .get(&url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    })
    .await;
    assert_eq!(status["node_id"], persisted.to_hex());
    assert_eq!(
        status["tcp_port"],
        running.peer_addr.expect("peer addr").port()
    );
    let text = crate::common::scrape(running.metrics_addr).await;
    assert!(
        text.contains("prism_dht_rpc_in_total"),
        "dht metrics missing"
    );
    running.stop().await;
}

/// A stream pulled in by a viewer is announced like a warmed or uploaded one: serving its sd
/// blob through any door puts the sd blob and the first content blob on the announce list; a
/// content blob served alone announces nothing. After a restart, what was announced and is
/// still in the disk tier is announced again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_served_through_a_door_are_announced_and_survive_a_restart() {
    let Some(streams) = crate::common::fixture_streams() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new()
        .http()
        .peer()
        .store(Store::disk(dir.path().join("blobs")))
        .dht(dir.path().join("dht"));
    let running = cache.start().await;
    let announcer = running.dht.clone().expect("dht handle").announcer();
    for (hash, data) in crate::common::fixture_blobs() {
        running.store.put(&hash, data).await.expect("put");
    }
    let stream = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(streams.join(name).join("stream.json")).expect("json");
        serde_json::from_str(&text).expect("stream.json")
    };
    let hash = |v: &serde_json::Value| BlobHash::parse(v.as_str().unwrap()).unwrap();
    let (medium, small) = (stream("medium"), stream("small"));
    let (sd, first) = (
        hash(&medium["sd_hash"]),
        hash(&medium["blobs"][0]["blob_hash"]),
    );
    let lone = hash(&small["blobs"][0]["blob_hash"]);
    assert!(
        !announcer.is_announced(&sd),
        "a put alone announces nothing"
    );

    let http = running.http_addr.expect("http addr");
    for h in [&sd, &lone] {
        let (status, _, _) = crate::common::get_blob(http, &h.to_string()).await;
        assert_eq!(status, 200, "{h}");
    }
    assert!(announcer.is_announced(&sd), "sd blob announced");
    assert!(
        announcer.is_announced(&first),
        "first content blob announced"
    );
    assert!(!announcer.is_announced(&lone), "a lone content blob is not");
    assert!(!announcer.is_announced(&hash(&small["sd_hash"])));
    running.stop().await;

    // Restart on the same disk tier and data directory: nothing is requested this time.
    let running = cache.start().await;
    let announcer = running.dht.clone().expect("dht handle").announcer();
    crate::common::wait_until("announcements restored", || {
        announcer.is_announced(&sd) && announcer.is_announced(&first)
    })
    .await;
    assert!(!announcer.is_announced(&lone));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_peers_command_lists_the_announcer_and_marks_this_cache() {
    let net = network(3, |_| {}).await;
    let hash = sd_hash();
    let announcer = &net.nodes[1];
    assert!(
        within("announce", announcer.announce_now(key_of(&hash)))
            .await
            .expect("announce")
            > 0
    );

    let conf = tempfile::tempdir().expect("tempdir");
    let data = conf.path().join("dht");
    std::fs::create_dir_all(&data).expect("mkdir");
    // This cache *is* node 1: same node id file.
    std::fs::write(data.join("node_id"), format!("{}\n", announcer.node_id())).expect("write");
    Cache::new()
        .door(Door::peer().port(tcp_port(1)))
        .store(Store::mem())
        .section(
            "dht",
            format!(
                "{{bootstrap: [{}], allow_private: true, data_dir: {}, rpc_timeout: 2s}}",
                quoted(net.nodes[0].local_addr().to_string()),
                quoted(data.to_str().unwrap())
            ),
        )
        .write_to(conf.path());
    let (ok, stdout, stderr) =
        crate::common::run_command(&["dht", "peers", &hash.to_string()], conf.path()).await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let line = format!(
        "127.0.0.1:{} {} (this cache)",
        tcp_port(1),
        announcer.node_id()
    );
    assert!(
        stdout.lines().any(|l| l == line),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("among them"), "{stderr}");
    let verdict = format!(
        "reachable from outside: no, because the DHT lists this cache at 127.0.0.1:{}, an address only this network can reach",
        tcp_port(1)
    );
    assert!(
        stdout.lines().any(|l| l.starts_with(&verdict)),
        "stdout: {stdout}"
    );

    // An unannounced blob: no peers, still a clean exit.
    let other = prism_lite::blob::BlobHash::of(b"nobody has this");
    let (ok, stdout, _) =
        crate::common::run_command(&["dht", "peers", &other.to_string()], conf.path()).await;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("no peers announce"), "{stdout}");
    assert!(
        stdout.contains(
            "reachable from outside: unknown, because none of the 1 DHT/tracker lookup(s) lists this cache yet"
        ),
        "{stdout}"
    );
}
