//! Warming: for each planned stream, get its sd blob through the root store, parse it, then get
//! its content blobs (all, or the first N), so every cache tier fills exactly as it would for a
//! client.
//!
//! - **Cheap when warm.** A blob the root already holds in a cache tier
//!   ([`BlobStore::has_cached`]) is counted as cached and not fetched, so a re-run (or a run
//!   after an interruption) only fetches what is missing.
//! - **Polite.** Fetches share one small semaphore (`concurrency`), separate from the front
//!   doors' limits, and yield to the scheduler before each fetch: clients always come first.
//! - **Bounded.** A run stops *starting* fetches once the next one would take it past
//!   `run_byte_budget` (content blob sizes are known from the sd blob, so the budget is never
//!   exceeded by more than the sd blobs' few KB).
//! - **Broken streams are data, not crashes.** A missing sd blob, an invalid sd blob or a blob
//!   that fails marks that stream failed, with the reason in the report; the run goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::blob::BlobHash;
use crate::store::{Blob, BlobStore, StoreError};
use crate::stream::StreamDescriptor;

use super::metrics::PrefetchMetrics;
use super::plan::PlannedStream;
use super::report::ChannelReport;
use crate::config::prefetch::BlobSelection;

/// One stream to warm, tagged with the index of its channel in the run's report.
#[derive(Debug, Clone)]
pub struct WarmJob {
    pub channel: usize,
    pub stream: PlannedStream,
}

/// How one stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamOutcome {
    Complete,
    Failed,
    /// Budget reached or run stopped before every selected blob was handled.
    Incomplete,
}

/// Why a fetch produced no blob.
enum FetchError {
    Store(StoreError),
    Cancelled,
}

/// How a stream ended and, for a failure not yet counted in its channel's report, why.
type Warmed = (StreamOutcome, Option<String>);

/// A content blob's fetch as its task returns it: the hash, the bytes reserved for it, and
/// what the fetch got.
type ContentFetch = (BlobHash, u64, Result<Blob, FetchError>);

/// A store error as a channel report tells it.
fn failure(e: &StoreError) -> String {
    if e.is_not_found() {
        "not found in any store".to_string()
    } else {
        e.to_string()
    }
}

/// The run's byte budget: bytes fetched plus bytes reserved by fetches in flight.
struct Budget {
    limit: u64,
    used: Mutex<u64>,
    hit: AtomicBool,
}

impl Budget {
    /// Reserves `expected` bytes, or reports the budget as reached. `expected` is 0 for sd
    /// blobs (size unknown until fetched), which then only need the budget not yet used up.
    fn reserve(&self, expected: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if *used >= self.limit || used.saturating_add(expected) > self.limit {
            self.hit.store(true, Ordering::Release);
            return false;
        }
        *used += expected;
        true
    }

    /// Replaces a reservation with what the fetch really took (0 if it failed).
    fn settle(&self, reserved: u64, actual: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(reserved).saturating_add(actual);
    }

    fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Per-channel numbers, shared by every stream task of the run.
struct Tally {
    reports: Mutex<Vec<ChannelReport>>,
    metrics: PrefetchMetrics,
}

impl Tally {
    fn with<T>(&self, channel: usize, f: impl FnOnce(&mut ChannelReport) -> T) -> Option<T> {
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.get_mut(channel).map(f)
    }

    fn label(&self, channel: usize) -> String {
        self.with(channel, |r| r.channel.clone())
            .unwrap_or_default()
    }

    fn fetched(&self, channel: usize, bytes: u64) {
        self.with(channel, |r| {
            r.blobs_fetched += 1;
            r.bytes_fetched += bytes;
        });
        let label = self.label(channel);
        let m = &self.metrics;
        m.blobs.with_label_values(&[&label, "fetched"]).inc();
        m.bytes
            .with_label_values(&[&label, "fetched"])
            .inc_by(bytes);
    }

    fn cached(&self, channel: usize, bytes: u64) {
        self.with(channel, |r| {
            r.blobs_cached += 1;
            r.bytes_cached += bytes;
        });
        let label = self.label(channel);
        let m = &self.metrics;
        m.blobs.with_label_values(&[&label, "skipped"]).inc();
        m.bytes
            .with_label_values(&[&label, "skipped"])
            .inc_by(bytes);
    }

    fn failed(&self, channel: usize, message: String) {
        tracing::warn!(channel = %self.label(channel), error = %message, "prefetch: blob failed");
        self.with(channel, |r| {
            r.blobs_failed += 1;
            r.error(message);
        });
        let label = self.label(channel);
        self.metrics
            .blobs
            .with_label_values(&[&label, "failed"])
            .inc();
    }

    fn stream(&self, channel: usize, outcome: StreamOutcome, why: Option<String>) {
        let result = match outcome {
            StreamOutcome::Complete => "complete",
            StreamOutcome::Failed => "failed",
            StreamOutcome::Incomplete => "incomplete",
        };
        self.with(channel, |r| {
            match outcome {
                StreamOutcome::Complete => r.streams_complete += 1,
                StreamOutcome::Failed => r.streams_failed += 1,
                StreamOutcome::Incomplete => r.streams_incomplete += 1,
            }
            if let Some(why) = why {
                r.error(why);
            }
        });
        let label = self.label(channel);
        self.metrics
            .streams
            .with_label_values(&[&label, result])
            .inc();
    }
}

/// What a finished warming pass hands back.
pub struct WarmOutcome {
    pub channels: Vec<ChannelReport>,
    pub bytes_fetched: u64,
    pub budget_hit: bool,
}

/// Warms a list of streams through one root store.
pub struct Warmer {
    root: Arc<dyn BlobStore>,
    concurrency: usize,
    slots: Arc<Semaphore>,
    budget: Budget,
    cancel: CancellationToken,
    progress: ProgressBar,
    tally: Tally,
    /// Where `pin: true` channels' streams are pinned (none without a disk tier).
    pins: Option<Arc<crate::store::pins::Pins>>,
    /// Told each warmed stream's blobs and channel, for served bytes per channel.
    streams: Option<Arc<crate::store::served::ServedStreams>>,
}

impl Warmer {
    #[allow(clippy::too_many_arguments)] // one caller; each argument is a distinct input
    pub fn new(
        root: Arc<dyn BlobStore>,
        concurrency: usize,
        byte_budget: u64,
        channels: Vec<ChannelReport>,
        metrics: PrefetchMetrics,
        cancel: CancellationToken,
        progress: ProgressBar,
        pins: Option<Arc<crate::store::pins::Pins>>,
        streams: Option<Arc<crate::store::served::ServedStreams>>,
    ) -> Arc<Warmer> {
        let concurrency = concurrency.max(1);
        Arc::new(Warmer {
            root,
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency)),
            budget: Budget {
                limit: byte_budget,
                used: Mutex::new(0),
                hit: AtomicBool::new(false),
            },
            cancel,
            progress,
            tally: Tally {
                reports: Mutex::new(channels),
                metrics,
            },
            pins,
            streams,
        })
    }

    /// Warms every job; returns the per-channel numbers.
    pub async fn run(self: Arc<Self>, jobs: Vec<WarmJob>) -> WarmOutcome {
        self.progress.inc_length(jobs.len() as u64);
        // Streams in progress at once: as many as fetch slots, so a stream waiting on its sd
        // blob never starves the slots of the others.
        let streams = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            if self.stopped() {
                self.tally
                    .stream(job.channel, StreamOutcome::Incomplete, None);
                break;
            }
            let Some(permit) = self.acquire(&streams).await else {
                self.tally
                    .stream(job.channel, StreamOutcome::Incomplete, None);
                break;
            };
            let me = Arc::clone(&self);
            tasks.spawn(async move {
                let _permit = permit;
                me.warm_stream(job).await;
            });
            while tasks.try_join_next().is_some() {}
        }
        for job in jobs {
            self.tally
                .stream(job.channel, StreamOutcome::Incomplete, None);
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "prefetch stream task failed");
            }
        }
        let channels =
            std::mem::take(&mut *self.tally.reports.lock().unwrap_or_else(|p| p.into_inner()));
        WarmOutcome {
            channels,
            bytes_fetched: self.budget.used(),
            budget_hit: self.budget.hit.load(Ordering::Acquire),
        }
    }

    fn stopped(&self) -> bool {
        self.cancel.is_cancelled() || self.budget.hit.load(Ordering::Acquire)
    }

    async fn acquire(&self, sem: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            permit = Arc::clone(sem).acquire_owned() => permit.ok(),
            _ = self.cancel.cancelled() => None,
        }
    }

    async fn is_cached(&self, hash: &BlobHash) -> bool {
        self.root.has_cached(hash).await.unwrap_or(false)
    }

    /// One `root.get` plus waiting for the cache fill it started to land, so "fetched" means
    /// "in the cache". Abandoned on shutdown (harmless: cache fills run detached).
    async fn fetch(&self, hash: &BlobHash) -> Result<Blob, FetchError> {
        tokio::task::yield_now().await;
        tokio::select! {
            r = async {
                let blob = self.root.get(hash).await?;
                self.root.wait_for_fill(hash).await;
                Ok(blob)
            } => r.map_err(FetchError::Store),
            _ = self.cancel.cancelled() => Err(FetchError::Cancelled),
        }
    }

    async fn warm_stream(self: Arc<Self>, job: WarmJob) {
        let (outcome, why) = self.warm_stream_inner(&job).await;
        self.tally.stream(job.channel, outcome, why);
    }

    async fn warm_stream_inner(self: &Arc<Self>, job: &WarmJob) -> Warmed {
        let sd = match self.warm_sd_blob(job).await {
            Ok(sd) => sd,
            Err(end) => return end,
        };
        let (name, sd_hash) = (&job.stream.claim_name, job.stream.sd_hash);
        let descriptor = match StreamDescriptor::parse(&sd.data) {
            Ok(d) => d,
            Err(e) => {
                return (
                    StreamOutcome::Failed,
                    Some(format!(
                        "stream {name:?}: sd blob {sd_hash} is not a valid stream descriptor: {e}"
                    )),
                )
            }
        };
        let take = match job.stream.blobs {
            BlobSelection::All => usize::MAX,
            BlobSelection::Head(n) => n,
        };
        let blobs: Vec<(BlobHash, u64)> = descriptor
            .content_blobs()
            .take(take)
            .map(|(_, hash, len)| (hash, len))
            .collect();
        if let Some(streams) = &self.streams {
            streams.learn(
                &sd_hash,
                descriptor.content_blobs().map(|(_, h, _)| h).collect(),
            );
            streams.tag_channel(&sd_hash, &self.tally.label(job.channel));
        }
        if let (Some(pin), Some(pins)) = (&job.stream.pin, &self.pins) {
            let content: Vec<BlobHash> = blobs.iter().map(|(h, _)| *h).collect();
            let bytes = blobs.iter().map(|(_, len)| len).sum::<u64>() + sd.data.len() as u64;
            pins.pin(&sd_hash, &content, bytes, &pin.source, pin.released);
        }
        self.progress.inc_length(blobs.len() as u64);
        (self.warm_content(job, blobs).await, None)
    }

    /// The stream's sd blob, fetched (within the budget) or found cached, and counted; or how
    /// the stream ends without it.
    async fn warm_sd_blob(&self, job: &WarmJob) -> Result<Blob, Warmed> {
        let sd_hash = job.stream.sd_hash;
        let was_cached = self.is_cached(&sd_hash).await;
        if !was_cached && !self.budget.reserve(0) {
            return Err((StreamOutcome::Incomplete, None));
        }
        let Some(permit) = self.acquire(&self.slots).await else {
            return Err((StreamOutcome::Incomplete, None));
        };
        let sd = self.fetch(&sd_hash).await;
        drop(permit);
        self.progress.inc(1);
        let sd = match sd {
            Ok(blob) => blob,
            Err(FetchError::Cancelled) => return Err((StreamOutcome::Incomplete, None)),
            Err(FetchError::Store(e)) => {
                let name = &job.stream.claim_name;
                let what = failure(&e);
                self.tally.failed(
                    job.channel,
                    format!("stream {name:?}: sd blob {sd_hash}: {what}"),
                );
                return Err((StreamOutcome::Failed, None));
            }
        };
        let sd_len = sd.data.len() as u64;
        if was_cached {
            self.tally.cached(job.channel, sd_len);
        } else {
            self.budget.settle(0, sd_len);
            self.tally.fetched(job.channel, sd_len);
        }
        Ok(sd)
    }

    /// Fetches the content blobs not cached yet, each within the budget and a fetch slot, and
    /// waits for them all; the stream's outcome.
    async fn warm_content(
        self: &Arc<Self>,
        job: &WarmJob,
        blobs: Vec<(BlobHash, u64)>,
    ) -> StreamOutcome {
        let ch = job.channel;
        let mut outcome = StreamOutcome::Complete;
        let mut fetches = JoinSet::new();
        for (hash, len) in blobs {
            if self.is_cached(&hash).await {
                self.tally.cached(ch, len);
                self.progress.inc(1);
                continue;
            }
            if self.cancel.is_cancelled() || !self.budget.reserve(len) {
                outcome = StreamOutcome::Incomplete;
                break;
            }
            let Some(permit) = self.acquire(&self.slots).await else {
                self.budget.settle(len, 0);
                outcome = StreamOutcome::Incomplete;
                break;
            };
            let me = Arc::clone(self);
            fetches.spawn(async move {
                let _permit = permit;
                (hash, len, me.fetch(&hash).await)
            });
        }
        self.settle_content(job, fetches, outcome).await
    }

    /// Waits for the content fetches of [`warm_content`](Self::warm_content), settling the
    /// budget and counting each; `outcome` as the spawning left it, worsened by any failure.
    async fn settle_content(
        &self,
        job: &WarmJob,
        mut fetches: JoinSet<ContentFetch>,
        mut outcome: StreamOutcome,
    ) -> StreamOutcome {
        let (ch, name) = (job.channel, &job.stream.claim_name);
        while let Some(joined) = fetches.join_next().await {
            self.progress.inc(1);
            match joined {
                Ok((_, len, Ok(blob))) => {
                    let got = blob.data.len() as u64;
                    self.budget.settle(len, got);
                    self.tally.fetched(ch, got);
                }
                Ok((_, len, Err(FetchError::Cancelled))) => {
                    self.budget.settle(len, 0);
                    if outcome == StreamOutcome::Complete {
                        outcome = StreamOutcome::Incomplete;
                    }
                }
                Ok((hash, len, Err(FetchError::Store(e)))) => {
                    self.budget.settle(len, 0);
                    let what = failure(&e);
                    self.tally
                        .failed(ch, format!("stream {name:?}: blob {hash}: {what}"));
                    outcome = StreamOutcome::Failed;
                }
                Err(e) => {
                    self.tally
                        .failed(ch, format!("stream {name:?}: fetch task failed: {e}"));
                    outcome = StreamOutcome::Failed;
                }
            }
        }
        outcome
    }
}
