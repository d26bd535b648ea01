//! Pinned streams: blobs the disk tier's LRU never evicts (seedit's `never_delete`).
//!
//! A stream is pinned by the admin API (`POST /admin/stream/{sd}/pin`) or by the prefetcher for
//! a channel with `pin: true`. [`Pins`] keeps the pinned streams (sd hash, content blob hashes,
//! bytes by the descriptor's lengths, who pinned it, its release time) and the set of pinned
//! blobs, persisted as JSON (written whole to a temp file, then renamed) so pins survive
//! restarts. Pinned bytes are bounded by `pin_max` (default: half the disk tier's `max_size`):
//! pinning past it unpins the oldest-released streams first, with one log line each. Since
//! `pin_max` never exceeds `max_size`, the tier always has unpinned blobs to evict and still
//! never exceeds `max_size`.
//!
//! How the disk tier finds the registry: [`PinSlot`] is a metrics family (it owns
//! `prism_pinned_bytes`), so every disk tier built from the process's context gets the same
//! slot, which `app` fills once the registry is open. A disk tier skips (and refreshes) a
//! pinned eviction candidate; see `store/disk`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::{IntGauge, Registry};
use serde::{Deserialize, Serialize};

use crate::blob::BlobHash;
use crate::metrics::{Family, Registrar};

/// One pinned stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinnedStream {
    pub content: Vec<BlobHash>,
    pub bytes: u64,
    /// `admin` or `channel @name`.
    pub source: String,
    /// Release time (unix seconds) when known, else when it was pinned: the oldest lose their
    /// pin first past `pin_max`.
    pub released: i64,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    streams: BTreeMap<BlobHash, PinnedStream>,
    #[serde(skip)]
    blobs: HashMap<BlobHash, u32>,
    #[serde(skip)]
    bytes: u64,
}

impl State {
    fn add(&mut self, sd: BlobHash, stream: PinnedStream) {
        self.remove(&sd);
        for hash in std::iter::once(&sd).chain(&stream.content) {
            *self.blobs.entry(*hash).or_default() += 1;
        }
        self.bytes += stream.bytes;
        self.streams.insert(sd, stream);
    }

    fn remove(&mut self, sd: &BlobHash) -> Option<PinnedStream> {
        let stream = self.streams.remove(sd)?;
        for hash in std::iter::once(sd).chain(&stream.content) {
            if let Some(count) = self.blobs.get_mut(hash) {
                *count -= 1;
                if *count == 0 {
                    self.blobs.remove(hash);
                }
            }
        }
        self.bytes -= stream.bytes;
        Some(stream)
    }

    /// The oldest-released pinned stream.
    fn oldest(&self) -> Option<BlobHash> {
        self.streams
            .iter()
            .min_by_key(|(sd, s)| (s.released, **sd))
            .map(|(sd, _)| *sd)
    }
}

/// The pin registry; see the module docs.
pub struct Pins {
    state: Mutex<State>,
    file: PathBuf,
    max_bytes: u64,
    gauge: IntGauge,
}

impl Pins {
    /// Opens the registry persisted in `file` (absent: none pinned yet).
    pub fn open(file: &Path, max_bytes: u64, slot: &PinSlot) -> io::Result<Pins> {
        let mut state = State::default();
        match std::fs::read(file) {
            Ok(bytes) => {
                let saved: State = serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                for (sd, stream) in saved.streams {
                    state.add(sd, stream);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let pins = Pins {
            state: Mutex::new(state),
            file: file.to_path_buf(),
            max_bytes,
            gauge: slot.pinned_bytes.clone(),
        };
        let mut state = pins.lock();
        pins.enforce_max(&mut state);
        pins.gauge.set(state.bytes as i64);
        drop(state);
        Ok(pins)
    }

    /// Pins a stream (again: replaces its entry). Returns false when `pin_max` leaves no room
    /// for it (it was the oldest-released).
    pub fn pin(
        &self,
        sd: &BlobHash,
        content: &[BlobHash],
        bytes: u64,
        source: &str,
        released: Option<i64>,
    ) -> bool {
        let released = released.unwrap_or_else(now);
        let stream = PinnedStream {
            content: content.to_vec(),
            bytes,
            source: source.to_string(),
            released,
        };
        let mut state = self.lock();
        state.add(*sd, stream);
        self.enforce_max(&mut state);
        let kept = state.streams.contains_key(sd);
        self.saved(&state);
        kept
    }

    /// Unpins a stream; false when it was not pinned.
    pub fn unpin(&self, sd: &BlobHash) -> bool {
        let mut state = self.lock();
        let was = state.remove(sd).is_some();
        if was {
            self.saved(&state);
        }
        was
    }

    /// Whether `hash` belongs to a pinned stream (the disk tier asks before evicting).
    pub fn is_pinned(&self, hash: &BlobHash) -> bool {
        self.lock().blobs.contains_key(hash)
    }

    pub fn pinned_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// `GET /admin/pins`.
    pub fn to_json(&self) -> serde_json::Value {
        let state = self.lock();
        let streams: Vec<serde_json::Value> = state
            .streams
            .iter()
            .map(|(sd, s)| {
                serde_json::json!({
                    "sd_hash": sd.to_string(),
                    "blobs": s.content.len() + 1,
                    "bytes": s.bytes,
                    "source": s.source,
                    "released": s.released,
                })
            })
            .collect();
        serde_json::json!({
            "pinned_bytes": state.bytes,
            "pin_max": self.max_bytes,
            "streams": streams,
        })
    }

    /// Unpins oldest-released streams until the pinned bytes fit `pin_max`.
    fn enforce_max(&self, state: &mut State) {
        while state.bytes > self.max_bytes {
            let Some(oldest) = state.oldest() else { break };
            let stream = state.remove(&oldest);
            tracing::warn!(sd_hash = %oldest, source = ?stream.map(|s| s.source),
                pin_max = self.max_bytes, "pin_max reached: the oldest-released pinned stream lost its pin");
        }
    }

    /// Updates the gauge and writes the file (a failed write is logged: the pins hold until
    /// a restart).
    fn saved(&self, state: &State) {
        self.gauge.set(state.bytes as i64);
        let write = || -> io::Result<()> {
            let tmp = self.file.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(state)?)?;
            std::fs::rename(&tmp, &self.file)
        };
        if let Err(e) = write() {
            tracing::warn!(file = %self.file.display(), error = %e,
                "cannot save the pins; a restart would forget the latest changes");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Where disk tiers find the pin registry, and `prism_pinned_bytes`; see the module docs.
pub struct PinSlot {
    pub pinned_bytes: IntGauge,
    pins: OnceLock<Arc<Pins>>,
}

impl PinSlot {
    /// Makes `pins` the registry disk tiers consult (once).
    pub fn set(&self, pins: Arc<Pins>) {
        let _ = self.pins.set(pins);
    }

    /// Whether `hash` is pinned (false while no registry is open).
    pub fn is_pinned(&self, hash: &BlobHash) -> bool {
        self.pins.get().is_some_and(|p| p.is_pinned(hash))
    }
}

impl Family for PinSlot {
    fn register(registry: &Registry) -> PinSlot {
        PinSlot {
            pinned_bytes: Registrar::new(registry, "prism").gauge(
                "pinned_bytes",
                "Bytes of pinned streams (by their descriptors), kept from the disk tier's eviction",
            ),
            pins: OnceLock::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> PinSlot {
        PinSlot::register(&Registry::new())
    }

    #[test]
    fn oldest_released_lose_their_pin_past_pin_max_and_pins_persist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pins.json");
        let (a, b, c) = (BlobHash::of(b"a"), BlobHash::of(b"b"), BlobHash::of(b"c"));
        let blob = BlobHash::of(b"content");
        let pins = Pins::open(&file, 100, &slot()).unwrap();
        assert!(pins.pin(&a, &[blob], 40, "admin", Some(10)));
        assert!(pins.pin(&b, &[], 40, "admin", Some(30)));
        assert!(pins.is_pinned(&blob) && pins.is_pinned(&a));
        assert!(pins.pin(&c, &[], 40, "admin", Some(20)));
        assert!(
            !pins.is_pinned(&a) && !pins.is_pinned(&blob),
            "oldest released went"
        );
        assert_eq!(pins.pinned_bytes(), 80);
        assert!(
            !pins.pin(&a, &[], 40, "admin", Some(5)),
            "older than all: no room"
        );
        drop(pins);
        let pins = Pins::open(&file, 100, &slot()).unwrap();
        assert!(pins.is_pinned(&b) && pins.is_pinned(&c));
        assert!(pins.unpin(&b));
        assert!(!pins.is_pinned(&b));
        assert_eq!(pins.pinned_bytes(), 40);
    }
}
