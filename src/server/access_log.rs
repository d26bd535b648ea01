//! The access log (`access_log:`): one line per request on every HTTP door and one per blob on
//! the peer door, in nginx's `combined` format or as JSON.
//!
//! - **Never blocks a request.** A door hands an [`Entry`] to a bounded channel
//!   ([`QUEUE_ENTRIES`]); a writer thread formats and appends it. When the writer falls behind
//!   (a slow disk) the entry is dropped and counted in `prism_access_log_dropped_total`, so the
//!   log costs a request at most one allocation and a `try_send`. Every field is cut at a
//!   bounded length, so the queue is bounded in bytes too.
//! - **Never holds a secret.** The query string is written with only the values of parameters
//!   known to carry none (`hash`, `trace`, `download`); every other value (`edge_token`, a
//!   signed URL's signature and expiry, anything unknown) is written `***`.
//! - **Reopened on SIGHUP** ([`AccessLog::reopen`]), so logrotate can move the file away.
//! - The `combined` line is nginx's byte for byte:
//!   `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
//!   "$http_referer" "$http_user_agent"`, with nginx's escaping (`"`, `\`, control and non-ASCII
//!   bytes as `\xHH`) and `-` for what is absent. Times are UTC (`+0000`). The bytes are the
//!   answer body's length as the door answered (what nginx writes once all of it was sent; a
//!   client that goes away early is not told apart here).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::{IntCounter, Registry};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::metrics::{Family, Registrar};
use crate::secret::REDACTED;
use crate::server::door::DoorKind;

/// Entries waiting for the writer; past this they are dropped (and counted).
pub const QUEUE_ENTRIES: usize = 4096;

/// Longest request line kept (longer ones are cut: the queue stays bounded in bytes).
const MAX_REQUEST: usize = 2048;
/// Longest `Referer` / `User-Agent` kept.
const MAX_HEADER: usize = 512;

/// Query parameters whose values are never secret, so the log keeps them.
const PLAIN_PARAMETERS: &[&str] = &["hash", "trace", "download"];

/// The access log's metrics (registered at start whether or not the log is on, so dashboards
/// see a zero).
pub struct AccessLogMetrics {
    /// Lines dropped because the writer was behind.
    pub dropped_total: IntCounter,
}

impl Family for AccessLogMetrics {
    fn register(registry: &Registry) -> AccessLogMetrics {
        AccessLogMetrics {
            dropped_total: Registrar::new(registry, "prism").counter(
                "access_log_dropped_total",
                "Access log lines dropped because the writer was behind",
            ),
        }
    }
}

/// What the store tree did for the request's blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheResult {
    /// Served from a local tier: no origin was asked.
    Hit,
    /// Fetched from an origin, or not found anywhere.
    Miss,
    /// The store tree failed (the answer was an error status).
    Error,
}

/// One request, as the log writes it.
#[derive(Debug, Clone)]
pub struct Entry {
    time: OffsetDateTime,
    client: IpAddr,
    /// The request line, query values redacted.
    request: String,
    status: u16,
    bytes: u64,
    referer: Option<String>,
    user_agent: Option<String>,
    door: DoorKind,
    duration: Duration,
    cache: Option<CacheResult>,
    /// A `HEAD` request: no body is sent, whatever the answer's length.
    is_head: bool,
}

impl Entry {
    /// An HTTP request that started at `start` from `client` (answered with
    /// [`answered`](Self::answered)).
    pub fn http<B>(
        door: DoorKind,
        client: IpAddr,
        req: &http::Request<B>,
        start: Instant,
    ) -> Entry {
        let header = |name: http::header::HeaderName| {
            req.headers()
                .get(name)
                .map(|v| cut(&String::from_utf8_lossy(v.as_bytes()), MAX_HEADER))
        };
        let request = format!(
            "{} {} {:?}",
            req.method(),
            redacted_target(req.uri()),
            req.version()
        );
        Entry {
            referer: header(http::header::REFERER),
            user_agent: header(http::header::USER_AGENT),
            is_head: req.method() == http::Method::HEAD,
            ..Entry::new(door, client, &request, start)
        }
    }

    /// A peer-protocol blob request for `hash` (as the client sent it).
    pub fn peer_blob(client: IpAddr, hash: &str, start: Instant) -> Entry {
        Entry::new(
            DoorKind::Peer,
            client,
            &format!("requested_blob {hash} lbry-peer"),
            start,
        )
    }

    fn new(door: DoorKind, client: IpAddr, request: &str, start: Instant) -> Entry {
        Entry {
            time: OffsetDateTime::now_utc(),
            client: client.to_canonical(),
            request: cut(request, MAX_REQUEST),
            status: 0,
            bytes: 0,
            referer: None,
            user_agent: None,
            door,
            duration: start.elapsed(),
            cache: None,
            is_head: false,
        }
    }

    /// The answer: its status, its body's length, and the store tree's part (`None` when no
    /// blob was looked up; an error status then counts as [`CacheResult::Error`]).
    pub fn answered(
        mut self,
        status: http::StatusCode,
        bytes: u64,
        cache: Option<CacheResult>,
    ) -> Entry {
        self.status = status.as_u16();
        self.bytes = if self.is_head { 0 } else { bytes };
        self.cache = cache.or(status.is_server_error().then_some(CacheResult::Error));
        self
    }

    /// The line in nginx's `combined` format (no newline).
    pub fn combined(&self) -> String {
        let mut line = String::with_capacity(160 + self.request.len());
        line.push_str(&self.client.to_string());
        line.push_str(" - - [");
        line.push_str(&self.time.format(NGINX_TIME).unwrap_or_default());
        line.push_str("] \"");
        escape_into(&mut line, &self.request);
        line.push_str(&format!("\" {} {} \"", self.status, self.bytes));
        escape_into(&mut line, self.referer.as_deref().unwrap_or("-"));
        line.push_str("\" \"");
        escape_into(&mut line, self.user_agent.as_deref().unwrap_or("-"));
        line.push('"');
        line
    }

    /// The line as one JSON object: `combined`'s fields plus door, duration and cache result.
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            time: String,
            remote_addr: String,
            request: &'a str,
            status: u16,
            body_bytes_sent: u64,
            http_referer: Option<&'a str>,
            http_user_agent: Option<&'a str>,
            door: &'static str,
            duration_seconds: f64,
            cache: Option<CacheResult>,
        }
        let line = Line {
            time: self
                .time
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            remote_addr: self.client.to_string(),
            request: &self.request,
            status: self.status,
            body_bytes_sent: self.bytes,
            http_referer: self.referer.as_deref(),
            http_user_agent: self.user_agent.as_deref(),
            door: self.door.name(),
            duration_seconds: self.duration.as_secs_f64(),
            cache: self.cache,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// A response's `Content-Length` (0 when absent): the body length of a streamed answer.
pub fn content_length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// nginx's `$time_local`, in UTC: `07/Dec/2026:05:30:50 +0000`.
const NGINX_TIME: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
);

/// The request target with every query value but [`PLAIN_PARAMETERS`]' written `***`.
fn redacted_target(uri: &http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if is_plain(key) => format!("{key}={value}"),
            Some((key, _)) => format!("{key}={REDACTED}"),
            None if is_plain(pair) || pair.is_empty() => pair.to_owned(),
            None => REDACTED.to_owned(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// Whether a (percent-encoded) parameter name is one of [`PLAIN_PARAMETERS`].
fn is_plain(key: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
    PLAIN_PARAMETERS.contains(&decoded.as_ref())
}

/// `s`, at most `max` bytes (cut on a character boundary).
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// nginx's default escaping of a logged variable: `"`, `\`, and bytes outside printable ASCII
/// as `\xHH`.
fn escape_into(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' | 0..=0x1f | 0x7f..=0xff => out.push_str(&format!("\\x{b:02X}")),
            _ => out.push(char::from(b)),
        }
    }
}

/// What the writer thread is sent.
enum Message {
    Line(Box<Entry>),
    /// Wakes the writer to reopen the file (the request itself is a flag, so it is never lost
    /// to a full queue).
    Reopen,
}

/// A running access log: the sending half of the queue and the writer thread behind it.
pub struct AccessLog {
    sender: mpsc::Sender<Message>,
    reopen: Arc<AtomicBool>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Opens the file (an error now, at start, rather than lines lost later) and starts the
    /// writer thread, which runs until the log is dropped.
    pub fn open(
        config: &AccessLogConfig,
        metrics: &AccessLogMetrics,
    ) -> anyhow::Result<Arc<AccessLog>> {
        let output = Output::open(config)?;
        let (sender, receiver) = mpsc::channel(QUEUE_ENTRIES);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            output,
            format: config.format,
            reopen: Arc::clone(&reopen),
            failing: false,
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(receiver))
            .context("starting the access log writer")?;
        Ok(Arc::new(AccessLog {
            sender,
            reopen,
            dropped: metrics.dropped_total.clone(),
        }))
    }

    /// Queues `entry`, or drops and counts it when the writer is behind.
    pub fn record(&self, entry: Entry) {
        if self
            .sender
            .try_send(Message::Line(Box::new(entry)))
            .is_err()
        {
            self.dropped.inc();
        }
    }

    /// Has the writer reopen the file (after logrotate moved it) before its next line.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        let _ = self.sender.try_send(Message::Reopen);
    }
}

/// Where lines go.
struct Output {
    out: BufWriter<Box<dyn Write + Send>>,
    /// The file, `None` for standard output (nothing to reopen).
    path: Option<PathBuf>,
}

impl Output {
    fn open(config: &AccessLogConfig) -> anyhow::Result<Output> {
        if config.is_stdout() {
            return Ok(Output {
                out: BufWriter::new(Box::new(io::stdout())),
                path: None,
            });
        }
        let file = append(&config.path)
            .with_context(|| format!("access_log: cannot open {}", config.path.display()))?;
        Ok(Output {
            out: BufWriter::new(Box::new(file)),
            path: Some(config.path.clone()),
        })
    }
}

fn append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread's state.
struct Writer {
    output: Output,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    /// Whether the last write failed (its error was logged once).
    failing: bool,
}

impl Writer {
    /// Writes what arrives, flushing whenever the queue is empty, until every sender is gone.
    fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Line(entry) => self.write(&entry),
                    // In order: lines queued after the reopen go to the new file.
                    Message::Reopen => self.reopen_if_asked(),
                }
                next = receiver.try_recv().ok();
            }
            let flushed = self.output.out.flush();
            self.note(flushed);
            // A reopen whose message found the queue full.
            self.reopen_if_asked();
        }
        let _ = self.output.out.flush();
    }

    fn write(&mut self, entry: &Entry) {
        let mut line = match self.format {
            AccessLogFormat::Combined => entry.combined(),
            AccessLogFormat::Json => entry.json(),
        };
        line.push('\n');
        let written = self.output.out.write_all(line.as_bytes());
        self.note(written);
    }

    /// Logs the first of a run of write errors (a full disk would otherwise log every line).
    fn note(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(error = %e, "access log write failed; lines are being lost");
            }
            Err(_) => {}
        }
    }

    /// Reopens the file if a reopen was asked for since the last one.
    fn reopen_if_asked(&mut self) {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_file();
        }
    }

    /// Opens the file again at its path (what was written to the old one flushed first); on
    /// failure the old one stays in use.
    fn reopen_file(&mut self) {
        let Some(path) = &self.output.path else {
            return;
        };
        match append(path) {
            Ok(file) => {
                let _ = self.output.out.flush();
                self.output.out = BufWriter::new(Box::new(file));
                tracing::info!(path = %path.display(), "access log reopened");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "access log reopen failed; writing to the old file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uri: &str, headers: &[(&str, &str)]) -> Entry {
        let mut req = http::Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut e = Entry::http(
            DoorKind::Http,
            "::ffff:192.0.2.7".parse().unwrap(),
            &req.body(()).unwrap(),
            Instant::now(),
        );
        e.time = OffsetDateTime::from_unix_timestamp(1_796_621_450).unwrap();
        e
    }

    #[test]
    fn combined_is_nginx_s_line() {
        let e = entry(
            "/blob?hash=ab12",
            &[
                ("referer", "https://odysee.com/"),
                ("user-agent", "curl/8.5 \"x\""),
            ],
        )
        .answered(http::StatusCode::OK, 2097152, Some(CacheResult::Hit));
        assert_eq!(
            e.combined(),
            "192.0.2.7 - - [07/Dec/2026:05:30:50 +0000] \"GET /blob?hash=ab12 HTTP/1.1\" 200 2097152 \"https://odysee.com/\" \"curl/8.5 \\x22x\\x22\""
        );
        let bare = entry("/", &[]).answered(http::StatusCode::NOT_FOUND, 0, None);
        assert!(
            bare.combined()
                .ends_with("\"GET / HTTP/1.1\" 404 0 \"-\" \"-\""),
            "{}",
            bare.combined()
        );
    }

    #[test]
    fn json_has_the_same_fields_and_door_duration_cache() {
        let e = entry("/blob?hash=ab12", &[("user-agent", "lbry")]).answered(
            http::StatusCode::BAD_GATEWAY,
            20,
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(v["time"], "2026-12-07T05:30:50Z");
        assert_eq!(v["remote_addr"], "192.0.2.7");
        assert_eq!(v["request"], "GET /blob?hash=ab12 HTTP/1.1");
        assert_eq!(v["status"], 502);
        assert_eq!(v["body_bytes_sent"], 20);
        assert_eq!(v["http_referer"], serde_json::Value::Null);
        assert_eq!(v["http_user_agent"], "lbry");
        assert_eq!(v["door"], "http");
        assert_eq!(
            v["cache"], "error",
            "an error status with no lookup is an error"
        );
        assert!(v["duration_seconds"].as_f64().unwrap() >= 0.0);
    }

    #[test]
    fn query_values_but_plain_ones_are_redacted() {
        let e = entry(
            "/blob?hash=ab12&edge_token=s3cret&Signature=abc&Expires=9&trace=1&bare&%65dge_token=x",
            &[],
        );
        assert_eq!(
            e.request,
            "GET /blob?hash=ab12&edge_token=***&Signature=***&Expires=***&trace=1&***&%65dge_token=*** HTTP/1.1"
        );
        assert!(!e.combined().contains("s3cret"));
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // No writer drains this queue of one: the second and third lines cannot wait.
        let (sender, _receiver) = mpsc::channel(1);
        let dropped = IntCounter::new("d", "d").unwrap();
        let log = AccessLog {
            sender,
            reopen: Arc::new(AtomicBool::new(false)),
            dropped: dropped.clone(),
        };
        for _ in 0..3 {
            log.record(entry("/", &[]));
        }
        assert_eq!(dropped.get(), 2);
        // A reopen asked for while the queue is full is remembered, not lost.
        log.reopen();
        assert!(log.reopen.load(Ordering::Acquire));
    }

    #[test]
    fn lines_reach_the_file_and_a_reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let config = AccessLogConfig {
            path: path.clone(),
            format: AccessLogFormat::Combined,
        };
        let metrics = AccessLogMetrics::register(&Registry::new());
        let log = AccessLog::open(&config, &metrics).unwrap();
        let wait_for = |p: &std::path::Path, n: usize| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
                < n
            {
                assert!(
                    Instant::now() < deadline,
                    "{} never had {n} lines",
                    p.display()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        log.record(entry("/one", &[]));
        wait_for(&path, 1);
        std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        log.reopen();
        log.record(entry("/two", &[]));
        wait_for(&path, 1);
        assert!(std::fs::read_to_string(&path).unwrap().contains("GET /two"));
        assert_eq!(metrics.dropped_total.get(), 0);
    }

    #[test]
    fn long_and_odd_fields_are_bounded_and_escaped() {
        let long = format!("/{}", "a".repeat(5000));
        assert!(entry(&long, &[]).request.len() <= MAX_REQUEST);
        let mut line = String::new();
        escape_into(&mut line, "a\\b\u{1}é");
        assert_eq!(line, "a\\x5Cb\\x01\\xC3\\xA9");
    }
}
