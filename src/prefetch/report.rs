//! What a run did, per channel: the numbers behind the CLI's summary table, the
//! `/prefetch/status` JSON and the `prism_prefetch_*` metrics.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Errors kept per channel (and per run): enough to diagnose, bounded so a channel of 10,000
/// broken streams cannot grow the status without limit.
const MAX_ERRORS: usize = 20;

/// One channel's numbers for one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelReport {
    pub channel: String,
    pub claim_id: Option<String>,
    /// Streams the API listed.
    pub streams_listed: u64,
    /// Streams chosen for warming (after `since`, limits and cross-channel dedupe).
    pub streams_selected: u64,
    /// Streams whose selected blobs are all in the cache now.
    pub streams_complete: u64,
    /// Streams with a missing/invalid sd blob or a blob that failed.
    pub streams_failed: u64,
    /// Streams left unfinished because the byte budget ran out or the run was stopped.
    pub streams_incomplete: u64,
    pub blobs_fetched: u64,
    pub blobs_cached: u64,
    pub blobs_failed: u64,
    pub bytes_fetched: u64,
    pub bytes_cached: u64,
    pub errors: Vec<String>,
    /// Errors beyond the ones kept in `errors`.
    pub errors_dropped: u64,
}

impl ChannelReport {
    pub fn new(channel: &str) -> ChannelReport {
        ChannelReport {
            channel: channel.to_string(),
            ..ChannelReport::default()
        }
    }

    pub fn error(&mut self, message: String) {
        push_bounded(&mut self.errors, &mut self.errors_dropped, message);
    }
}

/// One run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Unix seconds.
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub duration_seconds: f64,
    pub byte_budget: u64,
    pub bytes_fetched: u64,
    /// The run stopped starting fetches because `run_byte_budget` was reached.
    pub budget_hit: bool,
    /// Some API call failed after every retry (the CLI exits non-zero).
    pub api_unreachable: bool,
    /// The run was stopped by shutdown before it finished.
    pub cancelled: bool,
    pub channels: Vec<ChannelReport>,
    /// Problems not tied to one channel (channel list file, bad lines in it).
    pub errors: Vec<String>,
    pub errors_dropped: u64,
}

impl RunReport {
    pub fn error(&mut self, message: String) {
        push_bounded(&mut self.errors, &mut self.errors_dropped, message);
    }

    /// A run counts as successful when it finished and the API answered.
    pub fn succeeded(&self) -> bool {
        self.finished_at.is_some() && !self.api_unreachable && !self.cancelled
    }

    /// The per-channel table the CLI prints.
    pub fn summary_table(&self) -> String {
        let mut rows = vec![[
            "channel".to_string(),
            "streams".into(),
            "complete".into(),
            "failed".into(),
            "fetched".into(),
            "cached".into(),
            "blob fails".into(),
            "bytes fetched".into(),
        ]];
        for c in &self.channels {
            rows.push([
                c.channel.clone(),
                c.streams_selected.to_string(),
                c.streams_complete.to_string(),
                c.streams_failed.to_string(),
                c.blobs_fetched.to_string(),
                c.blobs_cached.to_string(),
                c.blobs_failed.to_string(),
                bytesize::ByteSize(c.bytes_fetched).to_string_as(true),
            ]);
        }
        let mut widths = [0usize; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i == 0 {
                    let _ = write!(line, "{cell:<w$}");
                } else {
                    let _ = write!(line, "  {cell:>w$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "total: {} fetched in {:.1}s (budget {}){}{}",
            bytesize::ByteSize(self.bytes_fetched).to_string_as(true),
            self.duration_seconds,
            bytesize::ByteSize(self.byte_budget).to_string_as(true),
            if self.budget_hit {
                "; byte budget reached, the rest waits for the next run"
            } else {
                ""
            },
            if self.api_unreachable {
                "; LBRY API unreachable"
            } else {
                ""
            },
        );
        for c in &self.channels {
            for e in &c.errors {
                let _ = writeln!(out, "error: {}: {e}", c.channel);
            }
        }
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
        out
    }
}

fn push_bounded(list: &mut Vec<String>, dropped: &mut u64, message: String) {
    if list.len() < MAX_ERRORS {
        list.push(message);
    } else {
        *dropped += 1;
    }
}

/// What `/prefetch/status` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrefetchStatus {
    pub enabled: bool,
    pub api: String,
    /// A run is in progress.
    pub running: bool,
    pub runs_started: u64,
    pub runs_succeeded: u64,
    /// Unix seconds of the last run that finished with the API reachable.
    pub last_success_at: Option<f64>,
    /// Unix seconds the next run is due (background mode).
    pub next_run_at: Option<f64>,
    /// The run in progress (partial numbers) or, when idle, the last finished one.
    pub last_run: Option<RunReport>,
}

/// Shared between the prefetch task (writer) and the metrics port (reader).
#[derive(Clone, Default)]
pub struct StatusHandle(Arc<Mutex<PrefetchStatus>>);

impl StatusHandle {
    pub fn new(enabled: bool, api: &str) -> StatusHandle {
        StatusHandle(Arc::new(Mutex::new(PrefetchStatus {
            enabled,
            // Shown on the admin port's status page: without a password or query.
            api: crate::secret::redact_url(api),
            ..PrefetchStatus::default()
        })))
    }

    pub fn update(&self, f: impl FnOnce(&mut PrefetchStatus)) {
        // A poisoned lock only means a writer panicked mid-update; the data is still the best
        // status there is.
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }

    pub fn snapshot(&self) -> PrefetchStatus {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The status as JSON for the metrics port.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.snapshot()).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Unix seconds now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
