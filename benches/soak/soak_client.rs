//! The soak's mixed load (benches/soak/run.sh): workers on HTTP/1.1, HTTP/3 and the peer
//! protocol fetch Zipf-distributed blobs (and, over HTTP/1.1, whole streams) for a fixed time,
//! verifying every body: a blob against its SHA-384 name, a stream against the SHA-256 of its
//! plaintext. Each second it appends `second requests errors wrong_bytes` to `--stats`; at the
//! end it prints `LOAD requests=N errors=E wrong_bytes=W` (and the first error of each door).
//!
//! An error (a refusal, a 502 while the origin is down, a reset) is expected under a flaky
//! origin and only counted; a body that arrives complete but is not what was asked for is a
//! wrong byte, which must never happen.
//!
//! ```text
//! soak_client --http ADDR --h3 ADDR --peer ADDR --hashes FILE [--streams FILE] \
//!     --seconds S --stats FILE [--workers 4] [--zipf 1.0]
//! ```

#[path = "../load/clients/clients.rs"]
mod clients;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Buf, Bytes};
use clap::Parser;
use prism_lite::blob::{BlobHash, MAX_BLOB_SIZE};
use prism_lite::protocol::peer::{next_frame, Answer, Frame, Incoming, Request};
use sha2::{Digest, Sha256, Sha384};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Cli {
    #[arg(long)]
    http: SocketAddr,
    #[arg(long)]
    h3: SocketAddr,
    #[arg(long)]
    peer: SocketAddr,
    /// One blob hash per line, most popular first.
    #[arg(long)]
    hashes: String,
    /// `SD_HASH SHA256_OF_PLAINTEXT` per line: streams fetched whole over HTTP/1.1.
    #[arg(long)]
    streams: Option<String>,
    #[arg(long)]
    seconds: u64,
    #[arg(long)]
    stats: String,
    /// Workers per door.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
}

/// What one fetch ended in.
enum Outcome {
    Ok,
    /// Not served (status, refusal, reset): expected now and then under a flaky origin.
    Error(String),
    /// A complete body that is not what was asked for.
    Wrong(String),
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
    first_error: Mutex<Vec<String>>,
}

impl Counters {
    fn record(&self, door: &str, outcome: &Outcome) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (counter, why) = match outcome {
            Outcome::Ok => return,
            Outcome::Error(why) => (&self.errors, why),
            Outcome::Wrong(why) => (&self.wrong, why),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.first_error.lock().unwrap();
        if seen.len() < 12 && !seen.iter().any(|s| s.starts_with(door)) {
            seen.push(format!("{door}: {why}"));
        }
    }
}

/// A blob or a stream to ask for.
#[derive(Clone)]
enum Item {
    Blob(BlobHash),
    Stream { sd: String, sha256: String },
}

/// Zipf choice over the items (rank 1 most popular).
struct Zipf {
    items: Vec<Item>,
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(items: Vec<Item>, s: f64) -> Zipf {
        let mut total = 0.0;
        let cdf = (1..=items.len())
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect::<Vec<_>>();
        let cdf = cdf.into_iter().map(|c| c / total).collect();
        Zipf { items, cdf }
    }

    fn pick(&self, blobs_only: bool) -> Item {
        loop {
            let u = fastrand::f64();
            let i = self
                .cdf
                .partition_point(|&c| c < u)
                .min(self.items.len() - 1);
            let item = &self.items[i];
            if !(blobs_only && matches!(item, Item::Stream { .. })) {
                return item.clone();
            }
        }
    }
}

fn load_items(cli: &Cli) -> anyhow::Result<Vec<Item>> {
    let mut items: Vec<Item> = clients::read_hashes(&cli.hashes)?
        .into_iter()
        .map(Item::Blob)
        .collect();
    if let Some(path) = &cli.streams {
        let text = std::fs::read_to_string(path).with_context(|| path.clone())?;
        // Streams are popular: every fifth rank from the third.
        for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let (sd, sha256) = line.split_once(' ').context("stream line: SD SHA256")?;
            let stream = Item::Stream {
                sd: sd.into(),
                sha256: sha256.trim().into(),
            };
            items.insert((2 + 5 * n).min(items.len()), stream);
        }
    }
    anyhow::ensure!(!items.is_empty(), "nothing to ask for");
    Ok(items)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let zipf = Arc::new(Zipf::new(load_items(&cli)?, cli.zipf));
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..cli.workers {
        let (z, c, s) = (zipf.clone(), counters.clone(), stop.clone());
        tasks.push(tokio::spawn(http_worker(cli.http, z, c, s)));
        let (z, c, s) = (zipf.clone(), counters.clone(), stop.clone());
        tasks.push(tokio::spawn(peer_worker(cli.peer, z, c, s)));
        let (z, c, s) = (zipf.clone(), counters.clone(), stop.clone());
        tasks.push(tokio::spawn(h3_worker(cli.h3, z, c, s, w)));
    }
    let mut stats = std::fs::File::create(&cli.stats)?;
    let start = Instant::now();
    let mut last = (0, 0, 0);
    for second in 1..=cli.seconds {
        tokio::time::sleep_until((start + Duration::from_secs(second)).into()).await;
        let now = (
            counters.requests.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
            counters.wrong.load(Ordering::Relaxed),
        );
        writeln!(
            stats,
            "{second} {} {} {}",
            now.0 - last.0,
            now.1 - last.1,
            now.2 - last.2
        )?;
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        // A worker finishes its fetch in flight (bounded by the client timeouts).
        let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
    }
    for e in counters.first_error.lock().unwrap().iter() {
        eprintln!("first {e}");
    }
    println!(
        "LOAD requests={} errors={} wrong_bytes={}",
        counters.requests.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed),
        counters.wrong.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Pause after a failed connection so a door that is refusing is not spun against.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

async fn http_worker(addr: SocketAddr, zipf: Arc<Zipf>, c: Arc<Counters>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
        .expect("an HTTP client");
    while !stop.load(Ordering::Relaxed) {
        let outcome = match zipf.pick(false) {
            Item::Blob(hash) => {
                let url = format!("http://{addr}/blob?hash={hash}");
                match get(&client, &url).await {
                    Ok(body) => blob_outcome(&body, &hash),
                    Err(e) => Outcome::Error(e),
                }
            }
            Item::Stream { sd, sha256 } => {
                match get(&client, &format!("http://{addr}/stream/{sd}")).await {
                    Ok(body) if hex::encode(Sha256::digest(&body)) == sha256 => Outcome::Ok,
                    Ok(body) => Outcome::Wrong(format!(
                        "stream {sd}: {} bytes, not the plaintext",
                        body.len()
                    )),
                    Err(e) => Outcome::Error(e),
                }
            }
        };
        if matches!(outcome, Outcome::Error(_)) {
            tokio::time::sleep(RECONNECT_PAUSE / 4).await;
        }
        c.record("http", &outcome);
    }
}

/// A 200's whole body (checked against Content-Length by reqwest), or why not.
async fn get(client: &reqwest::Client, url: &str) -> Result<Bytes, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    response
        .bytes()
        .await
        .map_err(|e| format!("body: {}", e.without_url()))
}

fn blob_outcome(body: &[u8], hash: &BlobHash) -> Outcome {
    if BlobHash::from_bytes(Sha384::digest(body).into()) == *hash {
        Outcome::Ok
    } else {
        Outcome::Wrong(format!(
            "blob {hash}: {} bytes that do not hash to it",
            body.len()
        ))
    }
}

async fn peer_worker(addr: SocketAddr, zipf: Arc<Zipf>, c: Arc<Counters>, stop: Arc<AtomicBool>) {
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        let stream = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    c.record("peer", &Outcome::Error(format!("connect: {e}")));
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        let Item::Blob(hash) = zipf.pick(true) else {
            continue;
        };
        let exchange = tokio::time::timeout(Duration::from_secs(30), peer_fetch(stream, hash));
        let (outcome, kept) = match exchange.await {
            Ok(r) => r,
            Err(_) => (Outcome::Error("timed out".into()), None),
        };
        conn = kept;
        c.record("peer", &outcome);
    }
}

/// One SDK download exchange; the connection comes back when it is still in step.
async fn peer_fetch(mut s: TcpStream, hash: BlobHash) -> (Outcome, Option<TcpStream>) {
    if let Err(e) = s.write_all(&Request::download(&hash).to_bytes()).await {
        return (Outcome::Error(format!("write: {e}")), None);
    }
    let mut buf = Vec::with_capacity(64 * 1024);
    let (header, used) = loop {
        match next_frame(&buf) {
            Frame::Complete(map, used) => break (map, used),
            Frame::Incomplete if buf.len() < 64 * 1024 => {}
            other => return (Outcome::Error(format!("header: {other:?}")), None),
        }
        match s.read_buf(&mut buf).await {
            Ok(0) => return (Outcome::Error("closed before the header".into()), None),
            Ok(_) => {}
            Err(e) => return (Outcome::Error(format!("read: {e}")), None),
        }
    };
    let length = match Answer::read(&header).map(|a| a.incoming()) {
        Ok(Incoming::Blob {
            length: Some(n), ..
        }) if n as usize <= MAX_BLOB_SIZE => n as usize,
        Ok(Incoming::Refused(why)) => return (Outcome::Error(format!("refused: {why}")), Some(s)),
        other => return (Outcome::Error(format!("answer: {other:?}")), None),
    };
    buf.drain(..used);
    while buf.len() < length {
        match s.read_buf(&mut buf).await {
            Ok(0) => return (Outcome::Error("closed mid-blob".into()), None),
            Ok(_) => {}
            Err(e) => return (Outcome::Error(format!("read: {e}")), None),
        }
    }
    let extra = buf.len() > length;
    let outcome = blob_outcome(&buf[..length], &hash);
    (outcome, (!extra).then_some(s))
}

async fn h3_worker(
    addr: SocketAddr,
    zipf: Arc<Zipf>,
    c: Arc<Counters>,
    stop: Arc<AtomicBool>,
    worker: usize,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut h3 = match clients::H3::connect(addr).await {
            Ok(h3) => h3,
            Err(e) => {
                c.record("h3", &Outcome::Error(format!("connect: {e}")));
                tokio::time::sleep(RECONNECT_PAUSE * (1 + worker as u32)).await;
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let Item::Blob(hash) = zipf.pick(true) else {
                continue;
            };
            let fetched = tokio::time::timeout(Duration::from_secs(30), h3.fetch_body(hash));
            let outcome = match fetched.await {
                Ok(Ok(Some(body))) => blob_outcome(&body, &hash),
                Ok(Ok(None)) => Outcome::Error("not 200".into()),
                Ok(Err(e)) => Outcome::Error(e.to_string()),
                Err(_) => Outcome::Error("timed out".into()),
            };
            let broken = matches!(&outcome, Outcome::Error(e) if e != "not 200");
            c.record("h3", &outcome);
            if broken {
                break;
            }
        }
        h3.close_now().await;
    }
}

impl clients::H3 {
    /// `GET /get/HASH`: the whole body of a 200, `None` for another status.
    async fn fetch_body(&mut self, hash: BlobHash) -> anyhow::Result<Option<Vec<u8>>> {
        let req = http::Request::get(format!("https://localhost/get/{hash}")).body(())?;
        let mut stream = self.send.send_request(req).await?;
        prism_lite::protocol::http3::request_sent(stream.finish().await)?;
        let resp = stream.recv_response().await?;
        if resp.status() != 200 {
            return Ok(None);
        }
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            anyhow::ensure!(
                body.len() + chunk.remaining() <= MAX_BLOB_SIZE,
                "body too large"
            );
            while chunk.has_remaining() {
                let part = chunk.chunk();
                body.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(Some(body))
    }

    async fn close_now(self) {
        clients::Fetch::close(self).await;
    }
}
