//! Channel prefetch: keep the blobs of chosen LBRY channels warm in the cache.
//!
//! This takes over Reflector Lite's job (same channel list format) without downloading and
//! decoding whole streams: a run asks the LBRY JSON-RPC API which streams a channel has
//! ([`plan`]), then asks the *root store* for each stream's sd blob and content blobs
//! ([`warm`]), so every cache tier and every metric behaves exactly as for a client request.
//!
//! It runs inside `blobcache` as a background task ([`Prefetcher::run_forever`], started by
//! [`crate::app::start`]) or once from the command line (`prism-lite prefetch --once`). Either
//! way it is safe to stop at any moment: the next run fetches only what is still missing.

pub mod api;
pub mod channel_list;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod warm;

/// The `prefetch:` section's types live in [`crate::config::prefetch`] (the loader must not
/// depend on the prefetcher); this is their old path.
pub use crate::config::prefetch as config;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;

use crate::store::BlobStore;

use self::api::LbryApi;
use self::channel_list::read_channel_list;
use self::metrics::PrefetchMetrics;
use self::plan::Planner;
use self::report::{unix_now, ChannelReport, RunReport, StatusHandle};
use self::warm::{WarmJob, Warmer};
use crate::config::prefetch::{ChannelSpec, PrefetchConfig};

/// A configured prefetcher: the API client (with its resolution cache), the root store, the
/// metrics and the status it publishes.
pub struct Prefetcher {
    /// Swapped on reload (SIGHUP); each run reads one snapshot at its start.
    config: ArcSwap<PrefetchConfig>,
    root: Arc<dyn BlobStore>,
    planner: Planner,
    metrics: PrefetchMetrics,
    status: StatusHandle,
    /// Relative `channel_list_file` paths resolve against this (the working directory).
    base_dir: PathBuf,
    /// Where `pin: true` channels' streams are pinned ([`Prefetcher::with_pins`]).
    pins: Option<Arc<crate::store::pins::Pins>>,
    /// Told each warmed stream's channel ([`Prefetcher::with_served_streams`]).
    streams: Option<Arc<crate::store::served::ServedStreams>>,
}

impl Prefetcher {
    /// Builds a prefetcher and registers its metrics in `registry`.
    pub fn new(
        config: PrefetchConfig,
        root: Arc<dyn BlobStore>,
        registry: &prometheus::Registry,
        status: StatusHandle,
    ) -> anyhow::Result<Prefetcher> {
        if config.channels.is_empty() && config.channel_list_file.is_none() {
            anyhow::bail!(
                "prefetch has nothing to do: add `prefetch.channels` or \
                 `prefetch.channel_list_file`"
            );
        }
        let api = LbryApi::new(
            &config.api,
            config.api_timeout,
            config.retries,
            config.retry_backoff,
        )?;
        let metrics =
            PrefetchMetrics::register(registry).context("registering prefetch metrics")?;
        for spec in &config.channels {
            metrics.touch_channel(&spec.channel);
        }
        for result in ["ok", "api_unreachable", "cancelled"] {
            metrics.runs.with_label_values(&[result]);
        }
        Ok(Prefetcher {
            planner: Planner::new(api, config.page_size),
            config: ArcSwap::from_pointee(config),
            root,
            metrics,
            status,
            base_dir: PathBuf::from("."),
            pins: None,
            streams: None,
        })
    }

    /// Tells `streams` which channel each warmed stream belongs to (served bytes per channel).
    pub fn with_served_streams(
        mut self,
        streams: Arc<crate::store::served::ServedStreams>,
    ) -> Prefetcher {
        self.streams = Some(streams);
        self
    }

    /// Pins the streams of `pin: true` channels in `pins` once warmed.
    pub fn with_pins(mut self, pins: Option<Arc<crate::store::pins::Pins>>) -> Prefetcher {
        self.pins = pins;
        self
    }

    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Applies a reloaded `prefetch:` section from the next run on. Channels, the list file,
    /// `interval`, `concurrency`, `run_byte_budget` and `enabled` change live; the API client's
    /// settings (`api`, `api_timeout`, `retries`, `retry_backoff`, `page_size`) are kept and
    /// returned by name so the caller can report that they need a restart.
    pub fn reconfigure(&self, new: PrefetchConfig) -> Vec<&'static str> {
        let old = self.config.load_full();
        let mut kept = Vec::new();
        if new.api != old.api {
            kept.push("prefetch.api");
        }
        if new.api_timeout != old.api_timeout {
            kept.push("prefetch.api_timeout");
        }
        if new.retries != old.retries {
            kept.push("prefetch.retries");
        }
        if new.retry_backoff != old.retry_backoff {
            kept.push("prefetch.retry_backoff");
        }
        if new.page_size != old.page_size {
            kept.push("prefetch.page_size");
        }
        for spec in &new.channels {
            self.metrics.touch_channel(&spec.channel);
        }
        self.config.store(Arc::new(PrefetchConfig {
            api: old.api.clone(),
            api_timeout: old.api_timeout,
            retries: old.retries,
            retry_backoff: old.retry_backoff,
            page_size: old.page_size,
            ..new
        }));
        kept
    }

    /// The channels of this run: the inline ones, then the channel list file's (re-read now,
    /// so edits apply without a restart). A channel listed twice runs once, with the first
    /// entry's settings.
    fn channels(&self, config: &PrefetchConfig, report: &mut RunReport) -> Vec<ChannelSpec> {
        let mut specs = config.channels.clone();
        if let Some(path) = &config.channel_list_file {
            match read_channel_list(&self.base_dir, path) {
                Ok((listed, errors)) => {
                    for e in errors {
                        report.error(format!(
                            "channel list {}: {e}; line skipped",
                            path.display()
                        ));
                    }
                    specs.extend(listed);
                }
                Err(e) => report.error(format!(
                    "cannot read channel list {}: {e}; using the inline channels only",
                    path.display()
                )),
            }
        }
        let mut seen = HashSet::new();
        specs.retain(|s| seen.insert(s.channel.clone()));
        specs
    }

    /// One full run: plan every channel, warm every planned stream, publish the report.
    pub async fn run_once(&self, cancel: &CancellationToken, progress: ProgressBar) -> RunReport {
        let start = Instant::now();
        let config = self.config.load_full();
        let mut report = RunReport {
            started_at: unix_now(),
            byte_budget: config.run_byte_budget.0,
            ..RunReport::default()
        };
        self.status.update(|s| {
            s.running = true;
            s.runs_started += 1;
            s.next_run_at = None;
        });
        let specs = self.channels(&config, &mut report);
        progress.set_message("resolving channels");

        let mut seen = HashSet::new();
        let mut channels = Vec::with_capacity(specs.len());
        let mut jobs = Vec::new();
        for spec in &specs {
            let mut ch = ChannelReport::new(&spec.channel);
            let planned = tokio::select! {
                p = self.planner.plan_channel(spec, &mut seen) => Some(p),
                _ = cancel.cancelled() => None,
            };
            match planned {
                None => {
                    report.cancelled = true;
                    channels.push(ch);
                    break;
                }
                Some(Ok(plan)) => {
                    ch.claim_id = plan.claim_id;
                    ch.streams_listed = plan.listed;
                    ch.streams_selected = plan.streams.len() as u64;
                    if plan.without_sd > 0 {
                        tracing::debug!(channel = %spec.channel, n = plan.without_sd, "claims without an sd hash skipped");
                    }
                    let index = channels.len();
                    jobs.extend(plan.streams.into_iter().map(|stream| WarmJob {
                        channel: index,
                        stream,
                    }));
                }
                Some(Err(e)) => {
                    report.api_unreachable |= e.is_unreachable();
                    tracing::warn!(channel = %spec.channel, error = %e, "prefetch: cannot list channel");
                    ch.error(e.to_string());
                }
            }
            channels.push(ch);
        }

        progress.set_message("warming");
        let warmer = Warmer::new(
            Arc::clone(&self.root),
            config.concurrency,
            config.run_byte_budget.0,
            channels,
            self.metrics.clone(),
            cancel.clone(),
            progress.clone(),
            self.pins.clone(),
            self.streams.clone(),
        );
        let outcome = warmer.run(jobs).await;
        progress.finish_and_clear();

        report.channels = outcome.channels;
        report.bytes_fetched = outcome.bytes_fetched;
        report.budget_hit = outcome.budget_hit;
        report.cancelled |= cancel.is_cancelled();
        report.finished_at = Some(unix_now());
        report.duration_seconds = start.elapsed().as_secs_f64();
        self.publish(&report);
        report
    }

    fn publish(&self, report: &RunReport) {
        let m = &self.metrics;
        let result = if report.cancelled {
            "cancelled"
        } else if report.api_unreachable {
            "api_unreachable"
        } else {
            "ok"
        };
        m.runs.with_label_values(&[result]).inc();
        m.run_duration.observe(report.duration_seconds);
        if report.budget_hit {
            m.budget_exhausted.inc();
            tracing::info!(
                budget = report.byte_budget,
                "prefetch run stopped by run_byte_budget; the rest waits for the next run"
            );
        }
        let succeeded = report.succeeded();
        if succeeded {
            m.last_success
                .set(report.finished_at.unwrap_or_else(unix_now));
        }
        self.status.update(|s| {
            s.running = false;
            if succeeded {
                s.runs_succeeded += 1;
                s.last_success_at = report.finished_at;
            }
            s.last_run = Some(report.clone());
        });
    }

    /// Runs now, then every `interval` (±10%) until `cancel`. While `enabled` is false (it can
    /// change on reload) the runs are skipped.
    pub async fn run_forever(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let started = Instant::now();
            if self.config.load().enabled {
                let report = self.run_once(&cancel, ProgressBar::hidden()).await;
                tracing::info!(
                    channels = report.channels.len(),
                    bytes_fetched = report.bytes_fetched,
                    budget_hit = report.budget_hit,
                    api_unreachable = report.api_unreachable,
                    seconds = report.duration_seconds,
                    "prefetch run finished"
                );
            } else {
                tracing::debug!("prefetch disabled (prefetch.enabled: false); run skipped");
            }
            if cancel.is_cancelled() {
                break;
            }
            let wait = jittered(self.config.load().interval).saturating_sub(started.elapsed());
            self.status
                .update(|s| s.next_run_at = Some(unix_now() + wait.as_secs_f64()));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => break,
            }
        }
        self.status.update(|s| {
            s.running = false;
            s.next_run_at = None;
        });
    }
}

/// `interval` ±10%, so many caches started together do not hit the API in lockstep.
fn jittered(interval: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let unit = (h.finish() % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
    interval.mul_f64(1.0 + 0.1 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(3600);
        for _ in 0..100 {
            let j = jittered(base);
            assert!(
                j >= Duration::from_secs(3240) && j <= Duration::from_secs(3960),
                "{j:?}"
            );
        }
    }
}
