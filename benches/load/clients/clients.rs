//! Load clients shared by the examples (`h3_vs_h1`, `loadgen_peer`, `loadgen_h3`,
//! `quic_ceiling`).
//!
//! Each client holds one keep-alive connection and fetches one blob per call, returning the
//! body length: raw HTTP/1.1 and the LBRY peer protocol over plain sockets (no client library
//! overhead), HTTP/3 over quinn/h3. [`run_load`] drives C of them for a fixed time (or one
//! request each, all started together) and gathers latencies, then closes them.
//!
//! QUIC clients hold a [`QuicConn`] and end it with [`QuicConn::close`]: a process that exits
//! without sending CONNECTION_CLOSE leaves its connections open on the server until its idle
//! timeout (30 s), where they count against `max_connections_per_ip` and refuse the next run.
#![allow(dead_code)] // every example uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use prism_lite::blob::{verify, BlobHash, MAX_BLOB_SIZE};
use prism_lite::protocol::peer::{next_frame, Frame};
use prism_lite::quic::{self, Verify};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client that can fetch one blob and return its length.
pub trait Fetch: Send + 'static {
    fn fetch(
        &mut self,
        hash: BlobHash,
    ) -> impl std::future::Future<Output = anyhow::Result<usize>> + Send;

    /// Ends the connection when the run is over. Dropping is enough for a TCP socket (the
    /// kernel sends the FIN); QUIC clients close theirs with [`QuicConn::close`].
    fn close(self) -> impl std::future::Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// The longest [`QuicConn::close`] waits for its close to leave.
pub const QUIC_CLOSE_WAIT: Duration = Duration::from_secs(3);

/// HTTP/3's "no error" code (H3_NO_ERROR), to close an HTTP/3 connection with.
pub const H3_NO_ERROR: u32 = 0x100;

/// One QUIC connection and the endpoint it alone uses (the endpoint must outlive it).
pub struct QuicConn {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
}

impl QuicConn {
    /// Closes the connection with application error `code` and waits, at most
    /// [`QUIC_CLOSE_WAIT`], until its CONNECTION_CLOSE has left, so the server ends the
    /// connection at once instead of at its idle timeout.
    ///
    /// The wait ends at the first of: the endpoint idle (`wait_idle`), or the connection having
    /// counted a datagram sent (`udp_tx`) since just after `close`. Once closed, quinn builds
    /// nothing but the close packet, and its driver counts a datagram and hands it to the socket
    /// under one lock; `close` only wakes the driver, so the count read just after it is almost
    /// always from before the close packet (if not, the wait falls back to `wait_idle`).
    /// `wait_idle` alone lasts quinn's whole closing period, 3 PTO, which on a loaded debug run
    /// was 0.15 to over 3 s; `benches/load/run.sh` takes client and server CPU over the
    /// client's whole wall time, so that idle tail would lower both figures.
    ///
    /// A connection that has already ended (closed by the server, or by an error here) is left
    /// as it is: there is nothing more to tell the server.
    pub async fn close(self, code: u32) {
        if self.conn.close_reason().is_some() {
            return;
        }
        self.conn.close(quinn::VarInt::from_u32(code), b"done");
        let sent_before = self.conn.stats().udp_tx.datagrams;
        let close_sent = async {
            while self.conn.stats().udp_tx.datagrams == sent_before {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let gone = async {
            tokio::select! {
                _ = close_sent => {}
                _ = self.endpoint.wait_idle() => {}
            }
        };
        if tokio::time::timeout(QUIC_CLOSE_WAIT, gone).await.is_err() {
            eprintln!(
                "QUIC close to {} not seen sent within {QUIC_CLOSE_WAIT:?}",
                self.conn.remote_address()
            );
        }
    }
}

/// HTTP/3: one QUIC connection, one request stream per fetch (`GET /get/HASH`). Every answer's
/// status and length (against `content-length`) are checked. Bodies are not hashed: collecting
/// and hashing each connection's first 2 MiB on the client's one core (as [`Raw`] does) held up
/// the other connections' packets and moved the HTTP/3 p99 from ~120-170 to ~540-560 ms in a
/// pinned A/B run, so it measured the client, not the server.
pub struct H3 {
    pub send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    pub quic: QuicConn,
}

impl H3 {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<H3> {
        let quic = quic_connect(addr).await?;
        let h3_conn = h3_quinn::Connection::new(quic.conn.clone());
        let (mut driver, send) = match h3::client::new(h3_conn).await {
            Ok(h3) => h3,
            Err(e) => {
                quic.close(H3_NO_ERROR).await;
                return Err(e.into());
            }
        };
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3 { send, quic })
    }
}

impl Fetch for H3 {
    async fn fetch(&mut self, hash: BlobHash) -> anyhow::Result<usize> {
        let req = http::Request::get(format!("https://localhost/get/{hash}")).body(())?;
        let mut stream = self.send.send_request(req).await?;
        prism_lite::protocol::http3::request_sent(stream.finish().await)?;
        let resp = stream.recv_response().await?;
        anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
        let expected: Option<usize> = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let mut n = 0;
        while let Some(chunk) = stream.recv_data().await? {
            n += chunk.remaining();
        }
        anyhow::ensure!(
            expected == Some(n),
            "{n} body bytes, content-length {expected:?}"
        );
        Ok(n)
    }

    async fn close(self) {
        // The h3 driver task ends when it sees the connection closed.
        self.quic.close(H3_NO_ERROR).await;
    }
}

/// One QUIC connection to `addr` on its own endpoint, with the same tuned socket, endpoint and
/// transport settings as the server and the `http3` store (certificate not checked: bench
/// servers are self-signed).
pub async fn quic_connect(addr: SocketAddr) -> anyhow::Result<QuicConn> {
    let cfg = quic::client_config(&Verify::Insecure, &[quic::ALPN_H3], Duration::from_secs(30))?;
    let any: std::net::IpAddr = if addr.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let mut endpoint = quic::client_endpoint(SocketAddr::new(any, 0))?;
    endpoint.set_default_client_config(cfg);
    let conn = endpoint.connect(addr, "localhost")?.await?;
    Ok(QuicConn { endpoint, conn })
}

/// Which plain-socket protocol a [`Raw`] client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawProto {
    /// The LBRY SDK's blob request; the answer is a JSON header followed by the blob.
    Peer,
    /// `GET /blob?hash=H HTTP/1.1`, keep-alive, Content-Length body.
    Http1,
}

/// A raw keep-alive socket. The first body it receives is verified against its hash when
/// `verify` is set (SHA-384 of 2 MiB costs ~2 ms of client CPU, so a storm of one-request
/// connections verifies a sample; every answer's status and length are always checked).
pub struct Raw {
    proto: RawProto,
    stream: TcpStream,
    buf: Vec<u8>,
    verified: bool,
}

impl Raw {
    pub async fn connect(proto: RawProto, addr: SocketAddr, verify: bool) -> anyhow::Result<Raw> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Raw {
            proto,
            stream,
            buf: Vec::with_capacity(256 * 1024),
            verified: !verify,
        })
    }
}

impl Fetch for Raw {
    async fn fetch(&mut self, hash: BlobHash) -> anyhow::Result<usize> {
        let request = match self.proto {
            RawProto::Peer => format!(
                r#"{{"requested_blobs":["{hash}"],"lbrycrd_address":true,"blob_data_payment_rate":0.0,"requested_blob":"{hash}"}}"#
            ),
            RawProto::Http1 => format!("GET /blob?hash={hash} HTTP/1.1\r\nHost: bench\r\n\r\n"),
        };
        self.stream.write_all(request.as_bytes()).await?;
        let (header_len, body_len) = match self.proto {
            RawProto::Peer => read_peer_header(&mut self.stream, &mut self.buf).await?,
            RawProto::Http1 => read_http_header(&mut self.stream, &mut self.buf).await?,
        };
        self.buf.drain(..header_len);
        if !self.verified {
            // Keep the whole first body and check it is the blob asked for.
            while self.buf.len() < body_len {
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    anyhow::bail!("{:?} server closed mid-body", self.proto);
                }
            }
            verify(&self.buf[..body_len], &hash)?;
            self.verified = true;
            self.buf.drain(..body_len);
            self.buf.shrink_to(256 * 1024);
            return Ok(body_len);
        }
        // Afterwards, count the body through a small buffer (no 2 MiB per connection).
        let mut left = body_len;
        loop {
            let take = left.min(self.buf.len());
            self.buf.drain(..take);
            left -= take;
            if left == 0 {
                return Ok(body_len);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                anyhow::bail!("{:?} server closed mid-body", self.proto);
            }
        }
    }
}

async fn read_peer_header(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(usize, usize)> {
    loop {
        match next_frame(buf) {
            Frame::Complete(map, used) => {
                let len = map
                    .get("incoming_blob")
                    .and_then(|b| b.get("length"))
                    .and_then(|l| l.as_u64())
                    .ok_or_else(|| anyhow::anyhow!("no blob in peer answer: {map:?}"))?;
                anyhow::ensure!(len as usize <= MAX_BLOB_SIZE, "blob too large: {len}");
                return Ok((used, len as usize));
            }
            Frame::Incomplete => {}
            other => anyhow::bail!("bad peer answer: {other:?}"),
        }
        if stream.read_buf(buf).await? == 0 {
            anyhow::bail!("peer server closed");
        }
    }
}

async fn read_http_header(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(usize, usize)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "http status: {head}");
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .ok_or_else(|| anyhow::anyhow!("no content-length: {head}"))?;
            return Ok((end + 4, len));
        }
        if stream.read_buf(buf).await? == 0 {
            anyhow::bail!("http server closed");
        }
    }
}

/// What a load run measured.
#[derive(Default)]
pub struct Run {
    pub bytes: u64,
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Run {
    /// The latency at quantile `p` (0..=1), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    /// `RESULT req_s=.. mb_s=.. p50_ms=.. p99_ms=.. ok=.. errors=..` for scripts.
    pub fn result_line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "RESULT req_s={:.1} mb_s={:.1} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} ok={} errors={}",
            self.latencies.len() as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.percentile(1.0).as_secs_f64() * 1e3,
            self.latencies.len(),
            self.errors,
        )
    }
}

/// How long a load run lasts.
#[derive(Clone, Copy, Debug)]
pub enum Span {
    /// Every client fetches in a loop until this much time has passed.
    For(Duration),
    /// Every client connects, then all send exactly one request at the same moment; the run
    /// ends when all are answered or `timeout` passes.
    Once { timeout: Duration },
}

/// Runs `clients` clients made by `make` (one connection each), fetching `hashes` round-robin
/// (client i starts at hash i). Every client is closed ([`Fetch::close`]) before this returns,
/// after the run is timed, and also when one cannot be made.
pub async fn run_load<F, Fut, C>(
    clients: usize,
    span: Span,
    hashes: &Arc<Vec<BlobHash>>,
    make: F,
) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<C>>,
    C: Fetch,
{
    let mut conns = Vec::with_capacity(clients);
    for i in 0..clients {
        match make(i).await {
            Ok(c) => conns.push(c),
            Err(e) => {
                close_all(conns).await;
                return Err(e);
            }
        }
    }
    let start_gate = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut client) in conns.into_iter().enumerate() {
        let hashes = Arc::clone(hashes);
        let gate = Arc::clone(&start_gate);
        tasks.spawn(async move {
            let mut run = Run::default();
            gate.wait().await;
            let began = Instant::now();
            let (deadline, once) = match span {
                Span::For(d) => (began + d, false),
                Span::Once { timeout } => (began + timeout, true),
            };
            let mut next = i;
            while Instant::now() < deadline {
                let start = Instant::now();
                let hash = hashes[next % hashes.len()];
                match tokio::time::timeout_at(deadline.into(), client.fetch(hash)).await {
                    Ok(Ok(n)) => {
                        run.latencies.push(start.elapsed());
                        run.bytes += n as u64;
                    }
                    Ok(Err(e)) => {
                        run.errors += 1;
                        run.first_error.get_or_insert(format!("{e:#}"));
                        break; // the connection's state is unknown; stop this client
                    }
                    Err(_) if once => {
                        run.errors += 1;
                        run.first_error.get_or_insert("no answer in time".into());
                        break;
                    }
                    Err(_) => break, // the run ended mid-request: not counted
                }
                if once {
                    break;
                }
                next += clients;
            }
            (run, client)
        });
    }
    start_gate.wait().await;
    let began = Instant::now();
    let mut total = Run::default();
    let mut finished = Vec::with_capacity(clients);
    while let Some(done) = tasks.join_next().await {
        let (run, client) = done?;
        finished.push(client);
        total.bytes += run.bytes;
        total.errors += run.errors;
        total.latencies.extend(run.latencies);
        if total.first_error.is_none() {
            total.first_error = run.first_error;
        }
    }
    total.elapsed = match span {
        Span::For(d) => d,
        Span::Once { .. } => began.elapsed(),
    };
    close_all(finished).await;
    Ok(total)
}

/// Closes every client at once and waits for all of them.
async fn close_all<C: Fetch>(clients: Vec<C>) {
    let mut closing = tokio::task::JoinSet::new();
    for c in clients {
        closing.spawn(c.close());
    }
    while closing.join_next().await.is_some() {}
}

/// Hashes from a file, one per line (blank lines and `#` comments ignored).
pub fn read_hashes(path: &str) -> anyhow::Result<Vec<BlobHash>> {
    let text = std::fs::read_to_string(path)?;
    let hashes = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| BlobHash::parse(l).map_err(|e| anyhow::anyhow!("{l}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!hashes.is_empty(), "{path}: no hashes");
    Ok(hashes)
}

/// The flags every load client takes (flattened into each client's own clap parser).
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Server address, HOST:PORT.
    #[arg(long)]
    pub addr: SocketAddr,
    /// File of blob hashes to request, one per line, round-robin.
    #[arg(long)]
    pub hashes: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds of load for a timed run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

impl LoadArgs {
    /// The hash list named by `--hashes`.
    pub fn hash_list(&self) -> anyhow::Result<Arc<Vec<BlobHash>>> {
        Ok(Arc::new(read_hashes(&self.hashes)?))
    }
}

/// Prints a finished run the way `benches/load/run.sh` reads it: the first error (if any) on
/// stderr, the `RESULT ...` line on stdout.
pub fn print_run(run: &Run) {
    if let Some(e) = &run.first_error {
        eprintln!("first error: {e}");
    }
    println!("{}", run.result_line());
}
