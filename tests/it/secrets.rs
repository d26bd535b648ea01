//! Secrets never leave the process, and clients get short fixed errors (issue #12).
//!
//! The leak tests run the real binary with stderr on a pipe (so "the log" is everything the
//! process wrote), put one kind of secret into its configuration, make the origin fail in each
//! way it can (answers 500 with a marker body, resets the connection, is unreachable), ask on
//! every door (HTTP GET and HEAD, HTTP/3 /get and /has, the peer protocol), and then assert that
//! neither the secret nor the marker is in any response, any /metrics line or any log line.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prism_lite::blob::BlobHash;
use prism_lite::protocol::peer::{next_frame, Frame};
use prism_lite::quic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::{
    blob_bytes, free_port, http_client, quoted, within, Cache, Door, H3Client, Store, TEST_TIMEOUT,
};

const BIN: &str = env!("CARGO_BIN_EXE_prism-lite");
/// What the failing origin puts in its error body: its own words, never to be repeated.
const MARKER: &str = "LEAKMARKER7f3a";
/// The doors' own edge_token: a secret in every configuration below.
const DOOR_TOKEN: &str = "DOORSECRET5f";

// ---------------------------------------------------------------------------------------------
// A scripted origin: plain TCP speaking just enough HTTP/1.1.

#[derive(Clone)]
enum Mode {
    /// 200 with these bytes.
    Serve(Bytes),
    /// 500 with an S3-shaped XML body carrying [`MARKER`].
    Marker500,
    /// 403 with a body carrying [`MARKER`].
    Forbidden,
    /// Reads the request, then resets the connection (RST).
    Reset,
}

struct FakeOrigin {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    /// Request lines received (`GET /path?query HTTP/1.1`).
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FakeOrigin {
    async fn start(mode: Mode) -> FakeOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (m, s) = (Arc::clone(&mode), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(answer(socket, Arc::clone(&m), Arc::clone(&s)));
                while connections.try_join_next().is_some() {}
            }
        });
        FakeOrigin {
            addr,
            mode,
            seen,
            task,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Closes the port and every connection: from now on the origin is unreachable.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn answer(mut socket: TcpStream, mode: Arc<Mutex<Mode>>, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return;
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let line = text.lines().next().unwrap_or_default().to_string();
    let is_head = line.starts_with("HEAD ");
    seen.lock().unwrap().push(line);
    let mode = mode.lock().unwrap().clone();
    let (status, body) = match mode {
        Mode::Serve(data) => ("200 OK", data),
        Mode::Marker500 => (
            "500 Internal Server Error",
            Bytes::from(format!(
                "<?xml version=\"1.0\"?><Error><Code>InternalError</Code>\
                 <Message>{MARKER} internal origin http://10.9.8.7/secret-path</Message></Error>"
            )),
        ),
        Mode::Forbidden => ("403 Forbidden", Bytes::from(format!("denied {MARKER}"))),
        Mode::Reset => {
            // SO_LINGER 0 makes the close a reset. (Deprecated because it can block a thread
            // on drop with a non-zero linger; zero never blocks.)
            #[allow(deprecated)]
            let _ = socket.set_linger(Some(Duration::ZERO));
            return;
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !is_head {
        response.extend_from_slice(&body);
    }
    let _ = socket.write_all(&response).await;
    let _ = socket.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The blobcache process.

/// A running `prism-lite blobcache` whose stderr (a pipe) is collected as it is written.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
    drain: Option<std::thread::JoinHandle<()>>,
    http: SocketAddr,
    http3: SocketAddr,
    peer: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ports for the doors, and caches using them.
struct Doors {
    http: u16,
    http3: u16,
    peer: u16,
    metrics: u16,
}

impl Doors {
    fn new() -> Doors {
        Doors {
            http: free_port(),
            http3: free_port(),
            peer: free_port(),
            metrics: free_port(),
        }
    }

    /// The HTTP/3 door, locked with `token`.
    fn http3(&self, token: &str) -> Door {
        Door::http3().port(self.http3).token(token)
    }

    /// A cache with the HTTP and HTTP/3 doors locked with `token`, and the peer door.
    fn cache(&self, token: &str) -> Cache {
        Cache::new()
            .door(Door::http().port(self.http).token(token))
            .door(self.http3(token))
            .door(Door::peer().port(self.peer))
    }
}

impl Proc {
    async fn start(conf_dir: &Path, doors: &Doors, env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(BIN)
            .args(["--conf-dir", conf_dir.to_str().unwrap(), "blobcache"])
            .args(["--metrics-port", &doors.metrics.to_string()])
            .args(["--metrics-address", "127.0.0.1"])
            .current_dir(conf_dir)
            .env("RUST_LOG", "info")
            .env_remove("PRISM_LOG_FORMAT")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn blobcache");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        // Drained continuously, so the process never blocks on a full pipe.
        let drain = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let proc = Proc {
            child,
            log,
            drain: Some(drain),
            http: localhost(doors.http),
            http3: localhost(doors.http3),
            peer: localhost(doors.peer),
            metrics: localhost(doors.metrics),
        };
        proc.wait_ready().await;
        proc
    }

    async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.metrics);
        let deadline = Instant::now() + TEST_TIMEOUT;
        loop {
            if let Ok(r) = http_client().get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "blobcache did not become ready; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// SIGTERM, wait (bounded) for the exit, and return everything the process logged.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + TEST_TIMEOUT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "blobcache did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(drain) = self.drain.take() {
            drain.join().unwrap();
        }
        self.log_text()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }
}

/// One answer a client saw: where, the status, and its text (headers included).
struct Seen {
    what: String,
    status: u16,
    text: String,
}

async fn http_get(addr: SocketAddr, query: &str) -> Seen {
    let r = within(
        "http get",
        http_client()
            .get(format!("http://{addr}/blob?{query}"))
            .send(),
    )
    .await
    .unwrap();
    let status = r.status().as_u16();
    let headers = format!("{:?}", r.headers());
    let body = r.text().await.unwrap();
    Seen {
        what: format!("HTTP GET ?{query}"),
        status,
        text: format!("{headers}\n{body}"),
    }
}

async fn http_head(addr: SocketAddr, query: &str) -> Seen {
    let r = within(
        "http head",
        http_client()
            .head(format!("http://{addr}/blob?{query}"))
            .send(),
    )
    .await
    .unwrap();
    Seen {
        what: format!("HTTP HEAD ?{query}"),
        status: r.status().as_u16(),
        text: format!("{:?}", r.headers()),
    }
}

async fn h3_get(addr: SocketAddr, path: &str) -> Seen {
    let c = H3Client::connect(addr, &[quic::ALPN_H3]).await.unwrap();
    let (r, body) = c.get(path).await;
    Seen {
        what: format!("HTTP/3 {path}"),
        status: r.status().as_u16(),
        text: format!("{:?}\n{}", r.headers(), String::from_utf8_lossy(&body)),
    }
}

/// The LBRY SDK's download request; returns the response header as text.
async fn peer_ask(addr: SocketAddr, hash: &BlobHash) -> Seen {
    let mut s = within("peer connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let request = format!(
        r#"{{"requested_blobs":["{hash}"],"lbrycrd_address":true,"blob_data_payment_rate":0.0,"requested_blob":"{hash}"}}"#
    );
    within("peer write", s.write_all(request.as_bytes()))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let header = loop {
        if let Frame::Complete(map, _) = next_frame(&buf) {
            break map;
        }
        let n = within("peer read", s.read_buf(&mut buf)).await.unwrap();
        assert!(n > 0, "peer door closed without an answer");
    };
    Seen {
        what: "peer requested_blob".into(),
        status: 0,
        text: serde_json::to_string(&header).unwrap(),
    }
}

/// Asks every door for `hash` (a blob the origin does not serve).
async fn ask_every_door(p: &Proc, hash: &BlobHash) -> Vec<Seen> {
    vec![
        http_get(p.http, &format!("hash={hash}")).await,
        http_head(p.http, &format!("hash={hash}")).await,
        h3_get(p.http3, &format!("/get/{hash}")).await,
        h3_get(p.http3, &format!("/has/{hash}")).await,
        peer_ask(p.peer, hash).await,
    ]
}

fn assert_clean(place: &str, text: &str, secrets: &[&str]) {
    for secret in secrets.iter().chain([&MARKER, &"10.9.8.7"]) {
        assert!(
            !text.contains(secret),
            "{place} contains {secret:?}:\n{text}"
        );
    }
}

/// Every answer failed with the fixed wording `want` (the peer door's `incoming_blob.error`
/// and HTTP bodies alike), and none carries a secret.
fn assert_answers(answers: &[Seen], want: &str, secrets: &[&str]) {
    for a in answers {
        assert_clean(&a.what, &a.text, secrets);
        if a.status != 0 {
            assert!(
                a.status == 502 || a.status == 504,
                "{}: status {}",
                a.what,
                a.status
            );
        }
        let is_bodyless = a.what.starts_with("HTTP HEAD");
        if !is_bodyless {
            assert!(
                a.text.contains(want),
                "{}: want {want:?} in\n{}",
                a.what,
                a.text
            );
        }
    }
}

/// The leak test for one store configuration: `store` talks to `origin` and holds `secrets`.
/// Runs the three failures, then checks /metrics and the whole log.
async fn no_leak_on_any_door(store: Store, origin: FakeOrigin, secrets: &[&str], refusal: bool) {
    let dir = tempfile::tempdir().unwrap();
    let doors = Doors::new();
    doors.cache(DOOR_TOKEN).store(store).write_to(dir.path());
    let p = Proc::start(dir.path(), &doors, &[]).await;
    let mut secrets = secrets.to_vec();
    secrets.push(DOOR_TOKEN);

    origin.set(Mode::Marker500);
    let answers = ask_every_door(&p, &BlobHash::of(b"marker 500")).await;
    assert_answers(&answers, "origin unavailable", &secrets);
    if refusal {
        origin.set(Mode::Forbidden);
        let answers = ask_every_door(&p, &BlobHash::of(b"refused")).await;
        assert_answers(&answers, "origin refused (check edge_token)", &secrets);
    }
    origin.set(Mode::Reset);
    let answers = ask_every_door(&p, &BlobHash::of(b"reset")).await;
    assert_answers(&answers, "origin unavailable", &secrets);
    origin.stop().await;
    let answers = ask_every_door(&p, &BlobHash::of(b"unreachable")).await;
    assert_answers(&answers, "origin unavailable", &secrets);

    let metrics = within(
        "metrics",
        http_client()
            .get(format!("http://{}/metrics", p.metrics))
            .send(),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_clean("/metrics", &metrics, &secrets);

    let log = p.stop();
    assert_clean("the log", &log, &secrets);
    assert!(!log.contains('\x1b'), "colour codes in a piped log:\n{log}");
    // The detail did go to the log (once per failed request, without secrets).
    assert!(log.contains("blob request failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_edge_token_never_leaks() {
    let origin = FakeOrigin::start(Mode::Marker500).await;
    let store = Store::upstream(&format!("http://{}", origin.addr))
        .named("regional")
        .set("edge_token", "EDGESECRET1a")
        .timeout("5s");
    no_leak_on_any_door(store, origin, &["EDGESECRET1a"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_never_leak() {
    let origin = FakeOrigin::start(Mode::Marker500).await;
    let store = Store::new("s3")
        .named("bucket")
        .set("endpoint", quoted(format!("http://{}", origin.addr)))
        .set("bucket", "blobs")
        .set("aws_id", "AKIDSECRET2b")
        .set("aws_secret", "S3SECRET2c")
        .set("retries", 0)
        .timeout("5s");
    no_leak_on_any_door(store, origin, &["AKIDSECRET2b", "S3SECRET2c"], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_password_never_leaks() {
    let origin = FakeOrigin::start(Mode::Marker500).await;
    let store = Store::http_url(&format!(
        "http://reader:PASSSECRET3d@{}/bucket/",
        origin.addr
    ))
    .named("cdn")
    .timeout("5s");
    no_leak_on_any_door(store, origin, &["PASSSECRET3d"], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_query_never_leaks_and_reaches_the_origin_intact() {
    let origin = FakeOrigin::start(Mode::Marker500).await;
    let (hash, data) = {
        let data = blob_bytes(12, 3000);
        (BlobHash::of(&data), data)
    };
    origin.set(Mode::Serve(data.clone()));
    let store = Store::http_url(&format!(
        "http://{}/bucket/?sig=QSECRET4e&exp=99",
        origin.addr
    ))
    .named("cdn")
    .sharding(2)
    .timeout("5s");
    // First a success: the hash goes into the path, the query is sent as configured.
    {
        let dir = tempfile::tempdir().unwrap();
        let doors = Doors::new();
        doors
            .cache(DOOR_TOKEN)
            .store(store.clone())
            .write_to(dir.path());
        let p = Proc::start(dir.path(), &doors, &[]).await;
        let r = within(
            "get",
            http_client()
                .get(format!("http://{}/blob?hash={hash}", p.http))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), data);
        let hex = hash.to_hex();
        let want = format!(
            "GET /bucket/{}/{hex}?sig=QSECRET4e&exp=99 HTTP/1.1",
            &hex[..2]
        );
        assert!(origin.seen().contains(&want), "{:?}", origin.seen());
        p.stop();
    }
    no_leak_on_any_door(store, origin, &["QSECRET4e"], false).await;
}

// ---------------------------------------------------------------------------------------------

#[test]
fn check_config_redacts_and_shows_every_server() {
    let dir = tempfile::tempdir().unwrap();
    let doors = Doors::new();
    doors
        .cache(DOOR_TOKEN)
        .store(Store::multiwriter(&[
            Store::upstream("http://u:PASSSECRET3d@up.example:5569")
                .set("edge_token", "EDGESECRET1a"),
            Store::new("s3")
                .set("endpoint", quoted("http://s3.example"))
                .set("bucket", "b")
                .set("aws_id", "AKIDSECRET2b")
                .set("aws_secret", "S3SECRET2c"),
            Store::http_url("https://cdn.example/b/?sig=QSECRET4e"),
            Store::disk(dir.path().join("not-yet")),
        ]))
        .section(
            "blocklist",
            format!(
                "{{url: {}}}",
                quoted("https://list:LISTSECRET6g@lists.example/x?key=LISTSECRET6g")
            ),
        )
        .write_to(dir.path());
    let out = Command::new(BIN)
        .args(["--conf-dir", dir.path().to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    for secret in [
        DOOR_TOKEN,
        "EDGESECRET1a",
        "PASSSECRET3d",
        "AKIDSECRET2b",
        "S3SECRET2c",
        "QSECRET4e",
        "LISTSECRET6g",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    for shown in [
        "servers.http:",
        "servers.http3:",
        "servers.peer:",
        "edge_token ***",
        "edge_token=***",
        "upstream=http://up.example:5569",
        "https://cdn.example/b/?***",
        "keys=***",
        "does not exist; it will be created at start",
    ] {
        assert!(stdout.contains(shown), "{shown:?} missing:\n{stdout}");
    }
    assert!(!dir.path().join("not-yet").exists());

    // A start-up failure is a check-config failure too: here a missing TLS key file.
    doors
        .cache(DOOR_TOKEN)
        .door(
            doors
                .http3(DOOR_TOKEN)
                .set("cert_file", "/nonexistent/c.pem")
                .set("key_file", "/nonexistent/k.pem"),
        )
        .store(Store::mem())
        .write_to(dir.path());
    let out = Command::new(BIN)
        .args(["--conf-dir", dir.path().to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/c.pem"));
}

#[tokio::test]
async fn http3_has_answers_403_for_a_protected_blob_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = blob_bytes(7, 1000);
    let hash = BlobHash::of(&data);
    let list = dir.path().join("protected.txt");
    std::fs::write(&list, format!("{hash}\n")).unwrap();
    let running = Cache::new()
        .door(Door::http().token("T0K"))
        .door(Door::http3().token("T0K"))
        .protected_list(&list)
        .store(Store::mem())
        .start()
        .await;
    running.store.put(&hash, data).await.unwrap();
    let h3 = running.http3_addr.unwrap();
    assert_eq!(h3_get(h3, &format!("/has/{hash}")).await.status, 403);
    assert_eq!(
        h3_get(h3, &format!("/has/{hash}?edge_token=wrong"))
            .await
            .status,
        403
    );
    assert_eq!(
        h3_get(h3, &format!("/has/{hash}?edge_token=T0K"))
            .await
            .status,
        200
    );
    // The same answer HTTP HEAD gives.
    let http = running.http_addr.unwrap();
    assert_eq!(http_head(http, &format!("hash={hash}")).await.status, 403);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_edge_token_on_http_and_http3() {
    let dir = tempfile::tempdir().unwrap();
    let hash = BlobHash::of(b"protected, never stored");
    std::fs::write(dir.path().join("protected.txt"), format!("{hash}\n")).unwrap();
    let doors = Doors::new();
    // The list is named relative to the configuration directory (the process's working one).
    let conf = |token: &str| {
        doors
            .cache(token)
            .protected_list("protected.txt")
            .store(Store::mem())
    };
    conf("OLDTOKEN1").write_to(dir.path());
    let p = Proc::start(dir.path(), &doors, &[("PRISM_LOG_FORMAT", "json")]).await;
    // Unlocked by the old token: past the protection, the empty store says 404.
    let http_with = |t: &str| format!("hash={hash}&edge_token={t}");
    let h3_with = |t: &str| format!("/get/{hash}?edge_token={t}");
    assert_eq!(http_get(p.http, &http_with("OLDTOKEN1")).await.status, 404);
    assert_eq!(h3_get(p.http3, &h3_with("OLDTOKEN1")).await.status, 404);

    conf("NEWTOKEN2")
        .door(doors.http3("NEWTOKEN2").set("max_connections", 77))
        .write_to(dir.path());
    p.signal("-HUP");
    // Poll (bounded) until the reload is in force on both doors.
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let http = http_get(p.http, &http_with("OLDTOKEN1")).await.status;
        let h3 = h3_get(p.http3, &h3_with("OLDTOKEN1")).await.status;
        if http == 403 && h3 == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old token still accepted: http {http}, http3 {h3}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http_get(p.http, &http_with("NEWTOKEN2")).await.status, 404);
    assert_eq!(h3_get(p.http3, &h3_with("NEWTOKEN2")).await.status, 404);

    let log = p.stop();
    assert_clean("the log", &log, &["OLDTOKEN1", "NEWTOKEN2"]);
    // What cannot change live is reported by key.
    assert!(log.contains("servers.http3.max_connections"), "{log}");
    // --log-format json via PRISM_LOG_FORMAT: every line is one JSON object.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
}
