//! Planning a run: channel URL -> claim id -> the channel's streams (newest first) -> the sd
//! hashes to warm, after `since`, `max_streams` and `max_bytes`.
//!
//! Resolutions are cached for the life of the process: a channel's claim id never changes, and
//! re-resolving every channel every hour is load on the API for nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::blob::BlobHash;

use super::api::{ApiError, LbryApi, StreamClaim};
use crate::config::prefetch::{BlobSelection, ChannelSpec};

/// Hard stop for paging, whatever the server says: a server that never sends a short page
/// must not keep a run going forever.
const MAX_PAGES: u32 = 1000;

/// One stream to warm.
#[derive(Debug, Clone)]
pub struct PlannedStream {
    pub sd_hash: BlobHash,
    pub claim_name: String,
    pub blobs: BlobSelection,
    /// Pin it once warmed (`pin: true` on its channel), with its release time.
    pub pin: Option<Pin>,
}

/// How a planned stream is pinned.
#[derive(Debug, Clone)]
pub struct Pin {
    /// `channel @name`, shown in `/admin/pins`.
    pub source: String,
    /// The claim's release time (unix seconds): the oldest lose their pin first.
    pub released: Option<i64>,
}

/// What planning one channel produced.
#[derive(Debug, Clone, Default)]
pub struct ChannelPlan {
    pub claim_id: Option<String>,
    /// Streams the API listed (before filters).
    pub listed: u64,
    /// Streams that passed `since` and the limits, deduplicated against earlier channels.
    pub streams: Vec<PlannedStream>,
    /// Listed claims without a usable sd hash (e.g. livestreams, reposts of nothing).
    pub without_sd: u64,
    /// Streams left out because an earlier channel already has them in this run.
    pub duplicates: u64,
}

/// Resolves and lists channels; keeps resolutions between runs.
pub struct Planner {
    api: LbryApi,
    page_size: u32,
    resolved: Mutex<HashMap<String, String>>,
}

impl Planner {
    pub fn new(api: LbryApi, page_size: u32) -> Planner {
        Planner {
            api,
            page_size,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    pub fn api(&self) -> &LbryApi {
        &self.api
    }

    /// The channel's claim id, from the cache or `resolve`.
    pub async fn claim_id(&self, channel: &str) -> Result<String, ApiError> {
        if let Some(id) = self.cached(channel) {
            return Ok(id);
        }
        let id = self.api.resolve_channel(channel).await?;
        if let Ok(mut map) = self.resolved.lock() {
            map.insert(channel.to_string(), id.clone());
        }
        Ok(id)
    }

    fn cached(&self, channel: &str) -> Option<String> {
        self.resolved.lock().ok()?.get(channel).cloned()
    }

    /// Plans one channel. `seen` holds the sd hashes earlier channels of this run took.
    pub async fn plan_channel(
        &self,
        spec: &ChannelSpec,
        seen: &mut HashSet<BlobHash>,
    ) -> Result<ChannelPlan, ApiError> {
        let claim_id = self.claim_id(&spec.channel).await?;
        let mut plan = ChannelPlan {
            claim_id: Some(claim_id.clone()),
            ..ChannelPlan::default()
        };
        let since = spec.since.map(|d| d.unix_start());
        let max_streams = spec.max_streams.unwrap_or(u64::MAX);
        let max_bytes = spec.max_bytes.map(|b| b.0).unwrap_or(u64::MAX);
        let mut selected = 0u64;
        let mut selected_bytes = 0u64;
        'pages: for page in 1..=MAX_PAGES {
            if selected >= max_streams {
                break;
            }
            // ">S-1" so a stream released exactly at midnight of `since` is kept.
            let result = self
                .api
                .claim_search(&claim_id, page, self.page_size, since.map(|s| s - 1))
                .await?;
            plan.listed += result.returned as u64;
            let mut older_seen = false;
            for claim in result.items {
                if let (Some(since), Some(released)) = (since, claim.release_time) {
                    // Servers that ignore the filter still get it applied.
                    if released < since {
                        older_seen = true;
                        continue;
                    }
                }
                let Some(sd_hash) = claim.sd_hash else {
                    plan.without_sd += 1;
                    continue;
                };
                let size = claim.size.unwrap_or(0);
                if selected_bytes.saturating_add(size) > max_bytes {
                    // Newest first: the next stream that does not fit ends the channel, so the
                    // selection is always "the newest N", never a patchwork.
                    break 'pages;
                }
                selected += 1;
                selected_bytes = selected_bytes.saturating_add(size);
                if seen.insert(sd_hash) {
                    plan.streams.push(planned(&claim, sd_hash, spec));
                } else {
                    plan.duplicates += 1;
                }
                if selected >= max_streams {
                    break 'pages;
                }
            }
            // Newest first: once a page reaches past `since`, later pages are all older.
            if result.returned < self.page_size as usize || older_seen {
                break;
            }
        }
        Ok(plan)
    }
}

fn planned(claim: &StreamClaim, sd_hash: BlobHash, spec: &ChannelSpec) -> PlannedStream {
    PlannedStream {
        sd_hash,
        claim_name: claim.name.clone(),
        blobs: spec.blobs,
        pin: spec.pin.then(|| Pin {
            source: format!("channel {}", spec.channel),
            released: claim.release_time,
        }),
    }
}
