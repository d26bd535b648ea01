//! `servers.reflector`: stream uploads. The uploader here speaks the protocol byte for byte as
//! the LBRY SDK's `StreamReflectorClient` does (v2: `json.dumps` formatting, one request then one
//! answer parsed from the whole receive buffer) and as reflector.go's uploader does (v1: compact
//! JSON, lone blob offers). It uploads the shared fixture streams to a real blobcache.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use bytes::Bytes;
use prism_lite::app::Running;
use prism_lite::blob::BlobHash;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{
    create_bucket, fixture_streams, free_port, get_blob, metric, scrape, sdk_client, wait_until,
    within, Cache, Door, Haproxy, S3Server, Store, BUCKET,
};

/// A fixture stream as its publisher holds it.
pub(crate) struct Fixture {
    pub(crate) sd_hash: BlobHash,
    pub(crate) sd: Bytes,
    /// Content blobs in stream order.
    pub(crate) blobs: Vec<(BlobHash, Bytes)>,
}

impl Fixture {
    fn load(dir: &Path) -> Fixture {
        let meta: Value =
            serde_json::from_slice(&std::fs::read(dir.join("stream.json")).expect("stream.json"))
                .expect("stream.json parses");
        let read = |hash: &str| Bytes::from(std::fs::read(dir.join("blobs").join(hash)).unwrap());
        let sd_hex = meta["sd_hash"].as_str().expect("sd_hash");
        let blobs = meta["blobs"]
            .as_array()
            .expect("blobs")
            .iter()
            .filter_map(|b| b["blob_hash"].as_str())
            .map(|h| (BlobHash::parse(h).unwrap(), read(h)))
            .collect();
        Fixture {
            sd_hash: BlobHash::parse(sd_hex).unwrap(),
            sd: read(sd_hex),
            blobs,
        }
    }

    /// Every blob of the stream, sd blob first.
    pub(crate) fn all(&self) -> Vec<(BlobHash, Bytes)> {
        let mut all = vec![(self.sd_hash, self.sd.clone())];
        all.extend(self.blobs.iter().cloned());
        all
    }
}

/// `small` (one content blob) and `medium` (three, two of them 2 MiB), or `None` without
/// fixtures.
pub(crate) fn fixtures() -> Option<(Fixture, Fixture)> {
    let dir = fixture_streams()?;
    Some((
        Fixture::load(&dir.join("small")),
        Fixture::load(&dir.join("medium")),
    ))
}

/// One client connection. Answers are read the SDK's way: bytes accumulate until the whole
/// buffer parses as JSON, so a server that sent two answers at once would hang the SDK; here it
/// fails the test.
struct Uploader {
    socket: TcpStream,
    buf: Vec<u8>,
}

impl Uploader {
    async fn connect(addr: SocketAddr) -> Uploader {
        Uploader::connect_from("127.0.0.1".parse().unwrap(), addr).await
    }

    /// Connects from `local` (127.0.0.2 plays an outside address).
    async fn connect_from(local: IpAddr, addr: SocketAddr) -> Uploader {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(local, 0)).expect("bind client");
        let socket = within("connect", socket.connect(addr))
            .await
            .expect("connect");
        Uploader {
            socket,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        within("write", self.socket.write_all(bytes))
            .await
            .expect("write");
    }

    /// The next answer; `None` when the server closed the connection instead.
    async fn answer(&mut self) -> Option<Value> {
        loop {
            if !self.buf.is_empty() {
                match serde_json::from_slice::<Value>(&self.buf) {
                    Ok(v) => {
                        self.buf.clear();
                        return Some(v);
                    }
                    Err(e) if e.is_eof() => {}
                    Err(e) => panic!(
                        "answer is not one JSON object ({e}): {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                }
            }
            match within("read answer", self.socket.read_buf(&mut self.buf)).await {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "closed mid-answer");
                    return None;
                }
                Ok(_) => {}
            }
        }
    }

    async fn request(&mut self, message: &str) -> Option<Value> {
        self.send(message.as_bytes()).await;
        self.answer().await
    }

    /// `send_handshake`: `{"version": N}` and the same version back.
    async fn handshake(&mut self, version: u64) {
        let answer = self.request(&format!(r#"{{"version": {version}}}"#)).await;
        assert_eq!(answer, Some(serde_json::json!({ "version": version })));
    }

    /// `send_blob` (SDK formatting): offer, then the bytes if asked. Returns (asked, received).
    async fn offer_blob(&mut self, hash: &BlobHash, data: &[u8]) -> (bool, bool) {
        let offer = format!(r#"{{"blob_hash": "{hash}", "blob_size": {}}}"#, data.len());
        let answer = self.request(&offer).await.expect("send_blob answer");
        if !answer["send_blob"].as_bool().expect("send_blob") {
            return (false, false);
        }
        self.send(data).await;
        let received = self.answer().await.expect("received_blob answer");
        (true, received["received_blob"] == true)
    }
}

/// What one SDK-style upload did.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    pub(crate) sent_sd: bool,
    /// `needed_blobs` of the sd answer.
    pub(crate) needed: Vec<String>,
    /// Content blobs whose bytes were sent.
    pub(crate) sent: Vec<BlobHash>,
}

/// `ManagedStream.upload_to_reflector` with `StreamReflectorClient`, v2: sd offer, then the
/// needed blobs (all of them after a fresh sd blob). Stops after `limit` content blobs sent.
pub(crate) async fn upload_v2(addr: SocketAddr, stream: &Fixture, limit: Option<usize>) -> Upload {
    let mut c = Uploader::connect(addr).await;
    c.handshake(1).await;
    let offer = format!(
        r#"{{"sd_blob_hash": "{}", "sd_blob_size": {}}}"#,
        stream.sd_hash,
        stream.sd.len()
    );
    let answer = c.request(&offer).await.expect("send_sd_blob answer");
    let mut upload = Upload {
        needed: serde_json::from_value(answer.get("needed_blobs").cloned().unwrap_or_default())
            .unwrap_or_default(),
        ..Upload::default()
    };
    let mut needed = upload.needed.clone();
    if answer["send_sd_blob"].as_bool().expect("send_sd_blob") {
        c.send(&stream.sd).await;
        let received = c.answer().await.expect("received_sd_blob answer");
        if received["received_sd_blob"] == true {
            upload.sent_sd = true;
            if needed.is_empty() {
                needed = stream.blobs.iter().map(|(h, _)| h.to_hex()).collect();
            }
        }
    }
    for hex in needed {
        if limit.is_some_and(|n| upload.sent.len() >= n) {
            break;
        }
        let (hash, data) = stream
            .blobs
            .iter()
            .find(|(h, _)| h.to_hex() == hex)
            .expect("server asked for a blob of this stream");
        if c.offer_blob(hash, data).await.0 {
            upload.sent.push(*hash);
        }
    }
    upload
}

/// A cache keeping what is uploaded to its reflector door on a disk at `dir`, serving it over
/// HTTP.
fn cache(dir: &Path) -> Cache {
    Cache::new()
        .http()
        .reflector()
        .store(Store::disk(dir).named("local"))
}

fn reflector_addr(running: &Running) -> SocketAddr {
    running.reflector_addr.expect("reflector listening")
}

async fn assert_served(running: &Running, blobs: &[(BlobHash, Bytes)]) {
    for (hash, data) in blobs {
        assert!(running.store.has(hash).await.unwrap(), "{hash} not stored");
        let (status, _, body) = get_blob(running.http_addr.unwrap(), &hash.to_hex()).await;
        assert_eq!(status, 200, "{hash}");
        assert_eq!(&body, data, "{hash} served with other bytes");
    }
}

async fn assert_absent(running: &Running, hash: &BlobHash) {
    assert!(!running.store.has(hash).await.unwrap(), "{hash} was stored");
    let (status, _, _) = get_blob(running.http_addr.unwrap(), &hash.to_hex()).await;
    assert_eq!(status, 404, "{hash} is served");
}

async fn upload_errors(running: &Running, kind: &str) -> f64 {
    metric(
        &scrape(running.metrics_addr).await,
        "reflector_error_total",
        &[("direction", "upload"), ("error_type", kind)],
    )
}

/// Polls `/metrics` until `reflector_error_total{direction="upload",error_type=kind}` reaches
/// `at_least` (the server counts a closed connection after the client has seen it close).
async fn wait_for_error(running: &Running, kind: &str, at_least: f64) {
    within(&format!("{kind} counted"), async {
        while upload_errors(running, kind).await < at_least {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

async fn open_connections(running: &Running) -> f64 {
    let text = scrape(running.metrics_addr).await;
    metric(&text, "prism_reflector_connections", &[])
}

async fn dht_status(running: &Running) -> Value {
    let url = format!("http://{}/dht/status", running.metrics_addr);
    let resp = within("status", crate::common::http_client().get(&url).send())
        .await
        .expect("status");
    within("status body", resp.json::<Value>())
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_upload_stores_every_blob_and_a_second_upload_sends_nothing() {
    let Some((small, medium)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path()).start().await;
    let addr = reflector_addr(&running);

    let mut blobs = 0;
    for stream in [&small, &medium] {
        let upload = upload_v2(addr, stream, None).await;
        assert!(upload.sent_sd, "sd blob not asked for");
        assert!(upload.needed.is_empty(), "fresh sd answer lists no blobs");
        assert_eq!(
            upload.sent.len(),
            stream.blobs.len(),
            "every content blob asked for"
        );
        assert_served(&running, &stream.all()).await;
        blobs += stream.all().len();
    }

    let text = scrape(running.metrics_addr).await;
    assert_eq!(
        metric(&text, "reflector_blob_upload_total", &[]),
        blobs as f64
    );
    assert_eq!(metric(&text, "reflector_sdblob_upload_total", &[]), 2.0);
    assert_eq!(metric(&text, "prism_reflector_streams_total", &[]), 2.0);
    let bytes: usize = [&small, &medium]
        .iter()
        .flat_map(|s| s.all())
        .map(|(_, d)| d.len())
        .sum();
    assert_eq!(
        metric(&text, "reflector_reflector_in_bytes", &[]),
        bytes as f64
    );
    assert!(text.contains("# TYPE reflector_reflector_in_bytes untyped"));

    // A repeat upload: the server has the stream, says so, and nothing is sent.
    for stream in [&small, &medium] {
        let again = upload_v2(addr, stream, None).await;
        assert!(!again.sent_sd && again.needed.is_empty() && again.sent.is_empty());
    }
    let text = scrape(running.metrics_addr).await;
    assert_eq!(
        metric(&text, "reflector_blob_upload_total", &[]),
        blobs as f64
    );
    running.stop().await;
}

/// A reader that is down cannot say whether a blob is held: the door asks for it rather than
/// close the connection (the soak found uploads closed with `origin_unavailable`), so a
/// `proxied-s3` whose writer works still takes the whole upload; each failed check is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_completes_while_the_reader_is_down() {
    let Some((small, _)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = Cache::new()
        .reflector()
        .store(
            Store::new("proxied-s3")
                .set("reader", Store::upstreams(&["http://127.0.0.1:9"]).yaml())
                .set("writer", Store::disk(dir.path()).named("local").yaml()),
        )
        .start()
        .await;
    let upload = upload_v2(reflector_addr(&running), &small, None).await;
    assert!(upload.sent_sd, "the sd blob is asked for and taken");
    assert_eq!(upload.sent.len(), small.blobs.len(), "every content blob");
    for (hash, data) in small.all() {
        let written = std::fs::read(dir.path().join(hash.to_hex())).expect("in the writer");
        assert_eq!(written, data);
    }
    assert!(upload_errors(&running, "origin_unavailable").await >= 1.0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_upload_resumes_with_only_the_missing_blobs() {
    let Some((_, medium)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path()).start().await;
    let addr = reflector_addr(&running);

    let first = upload_v2(addr, &medium, Some(1)).await;
    assert_eq!(first.sent, vec![medium.blobs[0].0]);
    // The sd blob and the first blob are stored; the stream is not complete.
    assert_served(&running, &medium.all()[..2]).await;
    assert_absent(&running, &medium.blobs[1].0).await;
    let text = scrape(running.metrics_addr).await;
    assert_eq!(metric(&text, "prism_reflector_streams_total", &[]), 0.0);

    let second = upload_v2(addr, &medium, None).await;
    assert!(!second.sent_sd);
    let missing: Vec<String> = medium.blobs[1..].iter().map(|(h, _)| h.to_hex()).collect();
    assert_eq!(
        second.needed, missing,
        "needed_blobs lists exactly the missing blobs"
    );
    assert_eq!(second.sent.len(), 2);
    assert_served(&running, &medium.all()).await;
    let text = scrape(running.metrics_addr).await;
    assert_eq!(metric(&text, "prism_reflector_streams_total", &[]), 1.0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_accepts_lone_blobs_and_v2_only_a_streams_blobs() {
    let Some((small, medium)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path()).start().await;
    let addr = reflector_addr(&running);

    // reflector.go's uploader: {"version":0}, then compact lone blob offers.
    let mut v1 = Uploader::connect(addr).await;
    let answer = v1.request(r#"{"version":0}"#).await;
    assert_eq!(answer, Some(serde_json::json!({"version": 0})));
    let (hash, data) = &medium.blobs[2];
    let offer = format!(r#"{{"blob_hash":"{hash}","blob_size":{}}}"#, data.len());
    assert_eq!(v1.request(&offer).await.unwrap()["send_blob"], true);
    v1.send(data).await;
    assert_eq!(v1.answer().await.unwrap()["received_blob"], true);
    assert_eq!(
        v1.offer_blob(hash, data).await,
        (false, false),
        "held: not asked again"
    );
    assert_served(&running, &[(*hash, data.clone())]).await;

    // v2 without an sd blob first: refused, nothing stored.
    let mut v2 = Uploader::connect(addr).await;
    v2.handshake(1).await;
    let (hash, data) = &small.blobs[0];
    assert_eq!(v2.offer_blob(hash, data).await, (false, false));
    // After the small stream's sd blob, a blob of another stream is refused too.
    let offer = format!(
        r#"{{"sd_blob_hash": "{}", "sd_blob_size": {}}}"#,
        small.sd_hash,
        small.sd.len()
    );
    assert_eq!(v2.request(&offer).await.unwrap()["send_sd_blob"], true);
    v2.send(&small.sd).await;
    assert_eq!(v2.answer().await.unwrap()["received_sd_blob"], true);
    let (other, other_data) = &medium.blobs[1];
    assert_eq!(v2.offer_blob(other, other_data).await, (false, false));
    assert_absent(&running, hash).await;
    assert_absent(&running, other).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_store_nothing_and_the_server_keeps_serving() {
    let Some((small, medium)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let blocked = prism_lite::blob::BlobHash::of(b"a blocked upload");
    let list = dir.path().join("blocked.txt");
    std::fs::write(&list, format!("{blocked}\n{}\n", small.sd_hash)).unwrap();
    let running = cache(&dir.path().join("store"))
        .blocklist_file(&list)
        .start()
        .await;
    let addr = reflector_addr(&running);
    let (hash, data) = &medium.blobs[0];

    // Wrong bytes for the offered hash (right length): refused, connection closed.
    let mut c = Uploader::connect(addr).await;
    c.handshake(0).await;
    let offer = format!(r#"{{"blob_hash": "{hash}", "blob_size": {}}}"#, data.len());
    assert_eq!(c.request(&offer).await.unwrap()["send_blob"], true);
    let mut wrong = data.to_vec();
    wrong[1000] ^= 1;
    c.send(&wrong).await;
    assert_eq!(c.answer().await.unwrap()["received_blob"], false);
    assert_eq!(c.answer().await, None, "closed after wrong bytes");
    assert_absent(&running, hash).await;

    // An offer over 2 MiB: closed before any bytes are asked for.
    let mut c = Uploader::connect(addr).await;
    c.handshake(0).await;
    let offer = format!(
        r#"{{"blob_hash": "{hash}", "blob_size": {}}}"#,
        2 * 1024 * 1024 + 1
    );
    assert_eq!(c.request(&offer).await, None);

    // Garbage instead of a message, and an endless message.
    let mut c = Uploader::connect(addr).await;
    assert_eq!(c.request("GET / HTTP/1.1\r\n\r\n").await, None);
    let mut c = Uploader::connect(addr).await;
    c.handshake(1).await;
    let endless = format!(r#"{{"blob_hash": "{}"#, "a".repeat(8 * 1024));
    assert_eq!(c.request(&endless).await, None);

    // Disconnect mid-blob: half the bytes, then gone.
    let before = upload_errors(&running, "unexpected_eof").await;
    let mut c = Uploader::connect(addr).await;
    c.handshake(0).await;
    assert_eq!(
        c.request(&offer.replace("2097153", &data.len().to_string()))
            .await
            .unwrap()["send_blob"],
        true
    );
    c.send(&data[..data.len() / 2]).await;
    drop(c);
    wait_for_error(&running, "unexpected_eof", before + 1.0).await;
    assert_absent(&running, hash).await;

    // Blocklist: a blocked blob is not asked for, a blocked sd blob closes the connection.
    let mut c = Uploader::connect(addr).await;
    c.handshake(0).await;
    assert_eq!(
        c.offer_blob(&blocked, b"a blocked upload").await,
        (false, false)
    );
    let mut c = Uploader::connect(addr).await;
    c.handshake(1).await;
    let offer = format!(
        r#"{{"sd_blob_hash": "{}", "sd_blob_size": {}}}"#,
        small.sd_hash,
        small.sd.len()
    );
    assert_eq!(c.request(&offer).await, None);
    assert_absent(&running, &small.sd_hash).await;

    for kind in [
        "hash_mismatch",
        "blob_too_big",
        "json_syntax",
        "request_too_large",
        "blocked_blob",
    ] {
        wait_for_error(&running, kind, 1.0).await;
    }
    let text = scrape(running.metrics_addr).await;
    assert_eq!(metric(&text, "reflector_blob_upload_total", &[]), 0.0);

    // Still serving: a good upload goes through.
    let upload = upload_v2(addr, &medium, None).await;
    assert_eq!(upload.sent.len(), medium.blobs.len());
    assert_served(&running, &medium.all()).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_refuses_outside_addresses_and_each_address_is_capped() {
    let Some((small, _)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path())
        .door(
            Door::reflector()
                .set("allow", "[127.0.0.1/32]")
                .set("max_connections_per_ip", 1),
        )
        .start()
        .await;
    let addr = reflector_addr(&running);

    let mut outside = Uploader::connect_from("127.0.0.2".parse().unwrap(), addr).await;
    assert_eq!(outside.request(r#"{"version": 1}"#).await, None);
    wait_for_error(&running, "not_allowed", 1.0).await;

    // One connection per address: the second is closed while the first is open.
    let mut first = Uploader::connect(addr).await;
    first.handshake(1).await;
    let mut second = Uploader::connect(addr).await;
    assert_eq!(second.request(r#"{"version": 1}"#).await, None);
    wait_for_error(&running, "too_many_connections", 1.0).await;
    drop(first);
    within("first connection released", async {
        while open_connections(&running).await > 0.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let upload = upload_v2(addr, &small, None).await;
    assert!(upload.sent_sd);
    assert_served(&running, &small.all()).await;
    running.stop().await;
}

/// Behind haproxy (`send-proxy-v2`), `allow` sees the uploader haproxy names, not haproxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_applies_to_the_uploader_a_proxy_header_names() {
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path())
        .door(
            Door::reflector()
                .set("allow", "[127.0.0.2]")
                .set("trusted_proxies", "[127.0.0.1]")
                .set("proxy_protocol", true),
        )
        .start()
        .await;
    let port = free_port();
    let _haproxy = Haproxy::start(
        dir.path(),
        &[(port, reflector_addr(&running), "send-proxy-v2")],
    )
    .await;
    let front = SocketAddr::from(([127, 0, 0, 1], port));
    let mut allowed = Uploader::connect_from("127.0.0.2".parse().unwrap(), front).await;
    allowed.handshake(1).await;
    let mut outside = Uploader::connect_from("127.0.0.3".parse().unwrap(), front).await;
    assert_eq!(outside.request(r#"{"version": 1}"#).await, None);
    wait_for_error(&running, "not_allowed", 1.0).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_reach_every_store_of_a_multiwriter() {
    let Some((small, _)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(&s3_root).unwrap();
    let s3 = S3Server::start(&s3_root, 0).await;
    let client = sdk_client(&s3.endpoint());
    create_bucket(&client).await;
    let running = Cache::new()
        .http()
        .reflector()
        .store(Store::multiwriter(&[
            Store::disk(dir.path().join("disk"))
                .named("local")
                .sharding(2),
            Store::s3(&s3.endpoint())
                .named("s3")
                .sharding(0)
                .timeout("10s"),
        ]))
        .start()
        .await;
    let upload = upload_v2(reflector_addr(&running), &small, None).await;
    assert!(upload.sent_sd);
    assert_served(&running, &small.all()).await;
    for (hash, data) in small.all() {
        let object = within(
            "s3 get",
            client.get_object().bucket(BUCKET).key(hash.to_hex()).send(),
        )
        .await
        .unwrap_or_else(|e| panic!("{hash} not in S3: {e}"));
        let body = within("s3 body", object.body.collect()).await.unwrap();
        assert_eq!(body.into_bytes(), data);
        let on_disk = dir.path().join("disk").join(hash.sharded_path(2));
        assert_eq!(std::fs::read(&on_disk).expect("on disk"), data);
    }
    running.stop().await;
    s3.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_stream_is_announced_and_a_reupload_after_restart_announces_it_again() {
    let Some((_, medium)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let announcing = cache(&dir.path().join("store"))
        .peer()
        .dht(dir.path().join("dht"));
    let announced = |running: &Running| {
        let announcer = running.dht.as_ref().expect("dht").announcer();
        [medium.sd_hash, medium.blobs[0].0]
            .iter()
            .all(|h| announcer.is_announced(h))
    };

    let running = announcing.start().await;
    assert!(!announced(&running));
    let upload = upload_v2(reflector_addr(&running), &medium, None).await;
    assert_eq!(upload.sent.len(), medium.blobs.len());
    wait_until("stream announced", || announced(&running)).await;
    assert_eq!(dht_status(&running).await["announced_blobs"], 2);
    running.stop().await;

    // After a restart, the publisher's next upload sends nothing and re-announces the stream.
    let running = announcing.start().await;
    let again = upload_v2(reflector_addr(&running), &medium, None).await;
    assert!(!again.sent_sd && again.sent.is_empty());
    wait_until("stream announced again", || announced(&running)).await;
    assert_eq!(dht_status(&running).await["announced_blobs"], 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_time_out_and_store_nothing() {
    let Some((_, medium)) = fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path())
        .door(
            Door::reflector()
                .set("idle_timeout", "300ms")
                .set("blob_timeout", "300ms"),
        )
        .start()
        .await;
    let addr = reflector_addr(&running);

    // Half a blob, then silence: closed when blob_timeout passes, nothing stored.
    let (hash, data) = &medium.blobs[0];
    let mut c = Uploader::connect(addr).await;
    c.handshake(0).await;
    let offer = format!(r#"{{"blob_hash": "{hash}", "blob_size": {}}}"#, data.len());
    assert_eq!(c.request(&offer).await.unwrap()["send_blob"], true);
    c.send(&data[..1000]).await;
    assert_eq!(c.answer().await, None, "stalled upload closed");
    wait_for_error(&running, "io_timeout", 1.0).await;
    assert_absent(&running, hash).await;

    // Half a message, then silence: closed by idle_timeout.
    let mut c = Uploader::connect(addr).await;
    assert_eq!(c.request(r#"{"vers"#).await, None);
    wait_for_error(&running, "io_timeout", 2.0).await;

    // A connection that never speaks is closed too (quietly: not an error).
    let mut c = Uploader::connect(addr).await;
    assert_eq!(c.answer().await, None);
    within("connections closed", async {
        while open_connections(&running).await > 0.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    running.stop().await;
}
