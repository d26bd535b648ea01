//! "How much have I helped": bytes served per stream, bounded in memory.
//!
//! Per channel too: the prefetcher tags the streams it warms with their channel
//! ([`ServedStreams::tag_channel`]), and their served bytes add up per channel (every
//! configured channel, at most [`MAX_CHANNELS`]), as `prism_served_channel_bytes{channel}`.
//!
//! Two bounded structures, both fed without touching a door:
//! - which stream a blob belongs to: learned from every sd blob the root store's announcing
//!   layer sees ([`ServedStreams::learn`]); at most [`MAX_MAPPED`] blobs, the streams learned
//!   first forgotten first;
//! - bytes per stream, the top [`TOP`] only, counted with the space-saving algorithm (a new
//!   stream replaces the smallest counter and starts from its count, so the heavy hitters are
//!   kept and each count is an upper bound off by at most the replaced count).
//!
//! Counted where the serving core hands a blob to a door (`server::BlobService`), so
//! prefetching and admin warms are not "served". It lives with the stores because the root
//! store's announcing layer feeds it the stream of each blob. Exposed as
//! `prism_served_stream_bytes{sd_hash}` (a gauge per tracked stream; a stream leaving the top
//! loses its series) and on the status page.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use prometheus::{IntGaugeVec, Registry};

use crate::blob::BlobHash;
use crate::metrics::{Family, Registrar};

/// Streams whose served bytes are tracked.
pub const TOP: usize = 100;
/// Blobs whose stream is remembered.
pub const MAX_MAPPED: usize = 50_000;
/// Channels counted.
pub const MAX_CHANNELS: usize = 10_000;

#[derive(Default)]
struct State {
    /// Blob (content or sd) to its stream's sd hash.
    stream_of: HashMap<BlobHash, BlobHash>,
    /// Streams in the order learned, with their blobs, to forget the oldest.
    learned: VecDeque<(BlobHash, Vec<BlobHash>)>,
    /// Space-saving counters: sd hash to bytes.
    bytes: HashMap<BlobHash, u64>,
    /// The channel of a (learned) stream the prefetcher warmed.
    channel_of: HashMap<BlobHash, Arc<str>>,
    /// Bytes served per channel.
    channels: HashMap<Arc<str>, u64>,
}

pub struct ServedStreams {
    state: Mutex<State>,
    gauge: IntGaugeVec,
    channel_gauge: IntGaugeVec,
}

impl Family for ServedStreams {
    fn register(registry: &Registry) -> ServedStreams {
        let prism = Registrar::new(registry, "prism");
        ServedStreams {
            state: Mutex::default(),
            gauge: prism.gauge_vec(
                "served_stream_bytes",
                "Bytes served to clients per stream, for the most served streams (estimates)",
                &["sd_hash"],
            ),
            channel_gauge: prism.gauge_vec(
                "served_channel_bytes",
                "Bytes served to clients of the streams the prefetcher warmed, per channel",
                &["channel"],
            ),
        }
    }
}

impl ServedStreams {
    /// Whether the stream with this sd hash is already known.
    pub fn knows(&self, sd: &BlobHash) -> bool {
        self.lock().stream_of.contains_key(sd)
    }

    /// Remembers that `content` (and `sd` itself) belong to the stream `sd`.
    pub fn learn(&self, sd: &BlobHash, content: Vec<BlobHash>) {
        let mut state = self.lock();
        if state.stream_of.contains_key(sd) {
            return;
        }
        let content: Vec<BlobHash> = content.into_iter().take(MAX_MAPPED - 1).collect();
        while state.stream_of.len() + content.len() + 1 > MAX_MAPPED {
            let Some((old_sd, old)) = state.learned.pop_front() else {
                break;
            };
            for hash in std::iter::once(&old_sd).chain(&old) {
                if state.stream_of.get(hash) == Some(&old_sd) {
                    state.stream_of.remove(hash);
                }
            }
            state.channel_of.remove(&old_sd);
        }
        for hash in std::iter::once(sd).chain(&content) {
            state.stream_of.insert(*hash, *sd);
        }
        state.learned.push_back((*sd, content));
    }

    /// Records that the (learned) stream `sd` belongs to `channel`.
    pub fn tag_channel(&self, sd: &BlobHash, channel: &str) {
        let mut state = self.lock();
        if !state.stream_of.contains_key(sd) {
            return;
        }
        let name = match state.channels.get_key_value(channel) {
            Some((name, _)) => Arc::clone(name),
            None if state.channels.len() < MAX_CHANNELS => {
                let name: Arc<str> = Arc::from(channel);
                state.channels.insert(Arc::clone(&name), 0);
                self.channel_gauge.with_label_values(&[channel]).set(0);
                name
            }
            None => return,
        };
        state.channel_of.insert(*sd, name);
    }

    /// Bytes served per channel, most first.
    pub fn channels(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .lock()
            .channels
            .iter()
            .map(|(c, b)| (c.to_string(), *b))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Counts `len` bytes of `hash` served, when its stream is known.
    pub fn served(&self, hash: &BlobHash, len: usize) {
        let mut state = self.lock();
        let Some(sd) = state.stream_of.get(hash).copied() else {
            return;
        };
        let len = len as u64;
        if let Some(channel) = state.channel_of.get(&sd).cloned() {
            if let Some(total) = state.channels.get_mut(&channel) {
                *total += len;
                let value = i64::try_from(*total).unwrap_or(i64::MAX);
                self.channel_gauge.with_label_values(&[&channel]).set(value);
            }
        }
        let count = if let Some(count) = state.bytes.get_mut(&sd) {
            *count += len;
            *count
        } else if state.bytes.len() < TOP {
            state.bytes.insert(sd, len);
            len
        } else {
            let (smallest, floor) = state
                .bytes
                .iter()
                .min_by_key(|(_, bytes)| **bytes)
                .map(|(sd, bytes)| (*sd, *bytes))
                .expect("TOP > 0");
            state.bytes.remove(&smallest);
            let _ = self.gauge.remove_label_values(&[&smallest.to_string()]);
            state.bytes.insert(sd, floor + len);
            floor + len
        };
        self.gauge
            .with_label_values(&[&sd.to_string()])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The tracked streams, most served first.
    pub fn top(&self) -> Vec<(BlobHash, u64)> {
        let mut top: Vec<(BlobHash, u64)> =
            self.lock().bytes.iter().map(|(sd, b)| (*sd, *b)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_stream_within_bounds() {
        let served = ServedStreams::register(&Registry::new());
        let h = |i: u64| BlobHash::of(&i.to_be_bytes());
        served.learn(&h(0), vec![h(1), h(2)]);
        served.served(&h(1), 10);
        served.served(&h(2), 5);
        served.served(&h(0), 1);
        served.served(&h(99), 1000); // unknown blob: not counted
        assert_eq!(served.top(), vec![(h(0), 16)]);
        served.tag_channel(&h(0), "@chan:1");
        served.served(&h(2), 4);
        assert_eq!(served.channels(), vec![("@chan:1".to_string(), 4)]);
        assert_eq!(served.top(), vec![(h(0), 20)]);

        // More streams than TOP: the smallest counter makes room, the big one stays.
        for s in 1..=(TOP as u64 + 5) {
            let sd = h(1000 + s);
            served.learn(&sd, vec![]);
            served.served(&sd, 1);
        }
        let top = served.top();
        assert_eq!(top.len(), TOP);
        assert_eq!(top[0], (h(0), 20));

        // The blob map forgets the oldest streams first.
        for s in 0..(MAX_MAPPED as u64) {
            served.learn(&h(10_000_000 + s), vec![]);
        }
        assert!(!served.knows(&h(0)));
        assert!(served.lock().stream_of.len() <= MAX_MAPPED);
    }
}
