//! Announcing held streams to BitTorrent-style UDP trackers (BEP-15), which LBRY clients ask
//! for peers beside the DHT (the SDK's `tracker_servers`; `lbry/torrent/tracker.py`).
//!
//! - [`wire`]: the messages, as the SDK fills them in; [`link`]: one tracker's socket, batches,
//!   retries; [`client`]: connection ids and each announce's [`client::Outcome`];
//!   [`schedule`]: when each stream is next due at a tracker.
//!
//! [`Trackers`] is the running announcer: the root store's announcing layer hands it every
//! stream the DHT would announce (it takes the sd hash; the info hash is its first 20 bytes),
//! each configured tracker gets its own task that announces what is due in batches and
//! re-announces at the interval the tracker names (never more often than `min_interval`),
//! and at shutdown every stream is announced `stopped` once, within [`STOP_BUDGET`]. A tracker
//! that is down or broken costs a log line when its state changes and a count in
//! `prism_tracker_announces_total{result}`.

pub mod client;
pub mod link;
pub mod metrics;
pub mod schedule;
pub mod wire;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::client::{Outcome, TrackerClient};
use self::metrics::TrackerMetrics;
use self::schedule::Schedule;
use self::wire::{Announce, InfoHash};
use crate::blob::BlobHash;
use crate::config::TrackersConfig;
use crate::dht::journal::Journal;

/// How long shutdown spends announcing `stopped` (once, no retries) to all trackers.
pub const STOP_BUDGET: Duration = Duration::from_secs(3);

/// Longest re-announce interval taken from a tracker.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The journal file in `trackers.data_dir`.
const JOURNAL: &str = "tracker_announced";

/// The running tracker announcer; cheap to clone.
#[derive(Clone)]
pub struct Trackers {
    shared: Arc<Shared>,
}

struct Shared {
    config: TrackersConfig,
    /// What goes in every announce but the info hash.
    me: Me,
    announced: Mutex<HashSet<InfoHash>>,
    servers: Vec<Server>,
    metrics: Arc<TrackerMetrics>,
    journal: OnceLock<Journal>,
}

/// Who we announce as.
#[derive(Debug, Clone, Copy)]
struct Me {
    peer_id: [u8; 20],
    port: u16,
    ip: Ipv4Addr,
}

struct Server {
    name: String,
    schedule: Mutex<Schedule>,
    wake: Notify,
    state: Mutex<ServerState>,
}

/// What `/dht/status` shows of one tracker.
#[derive(Default, Clone)]
struct ServerState {
    last_result: Option<&'static str>,
    last_announce: Option<SystemTime>,
    interval: Option<Duration>,
}

impl Trackers {
    /// An announcer for `config.servers`, advertising TCP `port` (and `ip`, when set: the
    /// tracker otherwise takes the datagrams' source address). Call [`Trackers::run`].
    pub fn new(
        config: TrackersConfig,
        port: u16,
        ip: Option<Ipv4Addr>,
        metrics: Arc<TrackerMetrics>,
    ) -> Trackers {
        let servers = config
            .servers
            .iter()
            .map(|name| Server {
                name: name.clone(),
                schedule: Mutex::default(),
                wake: Notify::new(),
                state: Mutex::default(),
            })
            .collect();
        let me = Me {
            peer_id: peer_id(),
            port,
            ip: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        Trackers {
            shared: Arc::new(Shared {
                config,
                me,
                announced: Mutex::default(),
                servers,
                metrics,
                journal: OnceLock::new(),
            }),
        }
    }

    /// Records announced streams in `data_dir/tracker_announced` from now on and returns the
    /// sd hashes earlier runs recorded, for the caller to announce again those still held.
    pub fn open_journal(&self, data_dir: &Path) -> std::io::Result<Vec<BlobHash>> {
        let limit = self.shared.config.max_announced;
        let (journal, remembered) = Journal::open_named(data_dir, JOURNAL, limit)?;
        let _ = self.shared.journal.set(journal);
        Ok(remembered)
    }

    /// Whether the stream with this sd hash is on the announce list.
    pub fn is_announced(&self, sd_hash: &BlobHash) -> bool {
        lock(&self.shared.announced).contains(&wire::info_hash(sd_hash))
    }

    /// Puts a stream on the announce list (due at once at every tracker). False when the list
    /// is full.
    pub fn announce(&self, sd_hash: &BlobHash) -> bool {
        let hash = wire::info_hash(sd_hash);
        {
            let mut announced = lock(&self.shared.announced);
            if announced.contains(&hash) {
                return true;
            }
            if announced.len() >= self.shared.config.max_announced {
                return false;
            }
            announced.insert(hash);
            self.shared.metrics.streams.set(announced.len() as i64);
        }
        if let Some(journal) = self.shared.journal.get() {
            journal.record(sd_hash);
        }
        let now = Instant::now();
        for server in &self.shared.servers {
            lock(&server.schedule).set(hash, now);
            server.wake.notify_one();
        }
        true
    }

    /// Asks every tracker who announces one stream we announce (port 0, as a downloader
    /// asks), for the reachability check: the peers each tracker lists, in server order.
    /// Empty when nothing is announced.
    pub async fn look_up_announced(&self) -> Vec<(String, Vec<SocketAddrV4>)> {
        let Some(hash) = lock(&self.shared.announced).iter().next().copied() else {
            return Vec::new();
        };
        let config = &self.shared.config;
        lookup_info_hash(&config.servers, hash, config.timeout, config.retries)
            .await
            .into_iter()
            .map(|(server, outcome)| {
                let peers = peers_of(&outcome);
                (server, peers)
            })
            .collect()
    }

    /// Announces until `shutdown`, then sends `stopped` for everything.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.shared.servers.len() {
            tasks.spawn(Arc::clone(&self.shared).run_server(index, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }

    /// For `/dht/status`: each tracker's last result and when.
    pub fn status(&self) -> serde_json::Value {
        let servers: Vec<serde_json::Value> = self
            .shared
            .servers
            .iter()
            .map(|server| {
                let state = lock(&server.state).clone();
                serde_json::json!({
                    "server": server.name,
                    "last_result": state.last_result,
                    "last_announce_unix": state.last_announce
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    "interval_secs": state.interval.map(|d| d.as_secs()),
                    "scheduled": lock(&server.schedule).len(),
                })
            })
            .collect();
        serde_json::json!({
            "announced_streams": lock(&self.shared.announced).len(),
            "port": self.shared.me.port,
            "trackers": servers,
        })
    }
}

/// The root store's announcing layer hands the trackers every stream; only sd hashes go to
/// trackers (LBRY clients look streams up by them).
impl crate::store::announce::AnnounceSink for Trackers {
    fn is_announced(&self, hash: &BlobHash) -> bool {
        Trackers::is_announced(self, hash)
    }

    fn announce(&self, hash: &BlobHash) -> bool {
        Trackers::announce(self, hash)
    }

    fn announce_stream(&self, sd_hash: &BlobHash, _first: Option<&BlobHash>) -> bool {
        Trackers::announce(self, sd_hash)
    }

    fn restored(&self) {
        if let Some(journal) = self.shared.journal.get() {
            journal.restored();
        }
    }
}

impl Shared {
    /// One tracker's loop: announce what is due, sleep until the next is, repeat.
    async fn run_server(self: Arc<Shared>, index: usize, shutdown: CancellationToken) {
        let server = &self.servers[index];
        let config = &self.config;
        let mut client = TrackerClient::new(server.name.clone(), config.timeout, config.retries);
        loop {
            let batch = lock(&server.schedule).due(Instant::now(), config.batch.max(1));
            if batch.is_empty() {
                let next = lock(&server.schedule).next();
                let far = Instant::now() + MAX_INTERVAL;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = server.wake.notified() => {}
                    _ = tokio::time::sleep_until(next.unwrap_or(far)) => {}
                }
                continue;
            }
            let announces = self.announces(&batch, false);
            let outcomes = tokio::select! {
                _ = shutdown.cancelled() => break,
                outcomes = client.announce(&announces, None) => outcomes,
            };
            self.record(server, &batch, &outcomes);
        }
        self.stop_server(server, &mut client).await;
    }

    fn announces(&self, hashes: &[InfoHash], stopped: bool) -> Vec<Announce> {
        hashes
            .iter()
            .map(|hash| Announce {
                info_hash: *hash,
                peer_id: self.me.peer_id,
                port: self.me.port,
                ip: self.me.ip,
                stopped,
            })
            .collect()
    }

    /// Counts, reschedules and logs (on a change of state) a batch's outcomes.
    fn record(&self, server: &Server, batch: &[InfoHash], outcomes: &[Outcome]) {
        let now = Instant::now();
        let mut schedule = lock(&server.schedule);
        let mut interval = None;
        for (hash, outcome) in batch.iter().zip(outcomes) {
            self.metrics
                .announces
                .with_label_values(&[outcome.label()])
                .inc();
            let next = match outcome {
                Outcome::Ok {
                    interval: asked, ..
                } => {
                    let chosen = (*asked).clamp(self.config.min_interval, MAX_INTERVAL);
                    interval = Some(chosen);
                    chosen
                }
                _ => self.config.retry_interval,
            };
            schedule.set(*hash, now + next);
        }
        drop(schedule);
        let worst = outcomes
            .iter()
            .find(|o| !matches!(o, Outcome::Ok { .. }))
            .or(outcomes.first());
        let Some(worst) = worst else { return };
        let mut state = lock(&server.state);
        if state.last_result != Some(worst.label()) {
            log_change(&server.name, worst, outcomes.len());
        }
        state.last_result = Some(worst.label());
        state.last_announce = Some(SystemTime::now());
        state.interval = interval.or(state.interval);
    }

    /// Announces `stopped` once for every scheduled stream, within [`STOP_BUDGET`].
    async fn stop_server(&self, server: &Server, client: &mut TrackerClient) {
        let all = lock(&server.schedule).all();
        if all.is_empty() {
            return;
        }
        let sending = async {
            for chunk in all.chunks(self.config.batch.max(1)) {
                let announces = self.announces(chunk, true);
                let outcomes = client.announce(&announces, Some(0)).await;
                for outcome in &outcomes {
                    self.metrics
                        .announces
                        .with_label_values(&[outcome.label()])
                        .inc();
                }
            }
        };
        if tokio::time::timeout(STOP_BUDGET, sending).await.is_err() {
            tracing::info!(tracker = %server.name, "tracker: not every `stopped` sent in time");
        }
    }
}

fn log_change(tracker: &str, outcome: &Outcome, count: usize) {
    match outcome {
        Outcome::Ok { interval, .. } => tracing::info!(
            tracker,
            streams = count,
            interval_secs = interval.as_secs(),
            "tracker: announcing"
        ),
        Outcome::Refused(message) => {
            tracing::warn!(tracker, message = %message, "tracker: refused an announce")
        }
        other => tracing::warn!(
            tracker,
            result = other.label(),
            "tracker: announce failed; retrying later"
        ),
    }
}

/// Asks every tracker in `servers` once who announces `sd_hash` (an announce with port 0, as
/// the SDK's downloader does when it offers nothing); results in the order of `servers`.
pub async fn lookup(
    servers: &[String],
    sd_hash: &BlobHash,
    timeout: Duration,
    retries: u32,
) -> Vec<(String, Outcome)> {
    lookup_info_hash(servers, wire::info_hash(sd_hash), timeout, retries).await
}

async fn lookup_info_hash(
    servers: &[String],
    info_hash: InfoHash,
    timeout: Duration,
    retries: u32,
) -> Vec<(String, Outcome)> {
    let announce = Announce {
        info_hash,
        peer_id: peer_id(),
        port: 0,
        ip: Ipv4Addr::UNSPECIFIED,
        stopped: false,
    };
    let asks = servers.iter().map(|server| async move {
        let mut client = TrackerClient::new(server.clone(), timeout, retries);
        let outcome = client.announce(&[announce], None).await.remove(0);
        (server.clone(), outcome)
    });
    futures_util::future::join_all(asks).await
}

/// Peers a lookup found, without the port-0 entries of lookups like ours.
pub fn peers_of(outcome: &Outcome) -> Vec<SocketAddrV4> {
    match outcome {
        Outcome::Ok { peers, .. } => peers.iter().filter(|p| p.port() != 0).copied().collect(),
        _ => Vec::new(),
    }
}

/// An Azureus-style peer id (`-PL0001-` and 12 random characters), new each run.
fn peer_id() -> [u8; 20] {
    let mut id = *b"-PL0001-000000000000";
    for byte in &mut id[8..] {
        *byte = fastrand::alphanumeric() as u8;
    }
    id
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
