//! Announcing what we serve: a store layer around the root that tells the DHT about every
//! stream whose sd blob passes through it, whichever door (HTTP, HTTP/3, peer, prefetcher)
//! asked, so LBRY clients can find this cache for streams that viewers pulled in, not only for
//! the ones the prefetcher warmed or a publisher uploaded.
//!
//! What is announced is what LBRY clients look up: the sd blob, and the stream's first content
//! blob (what a client fetches right after). A blob is taken for an sd blob when its bytes
//! parse as a stream descriptor; content blobs are AES ciphertext, so the first-byte check
//! (`{`) turns nearly all of them away without parsing, and a hash already announced is never
//! parsed again.
//!
//! The sink is attached late ([`AnnouncingStore::attach`]): the DHT node is bound after the
//! front doors (it advertises the peer door's port), while the doors need the root store first.
//! Until a sink is attached (or when no DHT runs) the layer only passes calls through.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;

use crate::blob::BlobHash;
use crate::store::{Blob, BlobStore, StoreResult};
use crate::stream::StreamDescriptor;

/// Where announcements go (the DHT's announce list). Kept as a trait so stores do not depend
/// on the DHT.
pub trait AnnounceSink: Send + Sync + 'static {
    /// Whether `hash` is already on the announce list.
    fn is_announced(&self, hash: &BlobHash) -> bool;
    /// Puts `hash` on the announce list; false when the list is full.
    fn announce(&self, hash: &BlobHash) -> bool;
    /// Announces a stream under the hashes this sink's clients look up; by default its sd blob
    /// and its first content blob (what LBRY clients fetch right after). False when the list
    /// is full.
    fn announce_stream(&self, sd_hash: &BlobHash, first: Option<&BlobHash>) -> bool {
        std::iter::once(sd_hash)
            .chain(first)
            // Every hash is tried (no short circuit); true when none was refused.
            .filter(|hash| !self.announce(hash))
            .count()
            == 0
    }
    /// The announcements an earlier run remembered have been made again.
    fn restored(&self) {}
}

/// Announces a stream through `sink` (see [`AnnounceSink::announce_stream`]).
pub fn announce_stream(sink: &dyn AnnounceSink, sd_hash: &BlobHash, first: Option<&BlobHash>) {
    if !sink.announce_stream(sd_hash, first) {
        tracing::warn!(%sd_hash, "announce list full; stream not announced");
    }
}

/// Several sinks as one (the DHT and the trackers): a hash counts as announced once every
/// sink has it.
pub struct Sinks(pub Vec<Arc<dyn AnnounceSink>>);

impl AnnounceSink for Sinks {
    fn is_announced(&self, hash: &BlobHash) -> bool {
        self.0.iter().all(|sink| sink.is_announced(hash))
    }

    fn announce(&self, hash: &BlobHash) -> bool {
        self.0.iter().filter(|sink| !sink.announce(hash)).count() == 0
    }

    fn announce_stream(&self, sd_hash: &BlobHash, first: Option<&BlobHash>) -> bool {
        self.0
            .iter()
            .filter(|sink| !sink.announce_stream(sd_hash, first))
            .count()
            == 0
    }
}

/// The layer; see the module docs.
pub struct AnnouncingStore {
    inner: Arc<dyn BlobStore>,
    sink: OnceLock<Arc<dyn AnnounceSink>>,
    /// Learns which stream each blob belongs to (for served bytes per stream).
    streams: OnceLock<Arc<crate::store::served::ServedStreams>>,
}

impl AnnouncingStore {
    pub fn new(inner: Arc<dyn BlobStore>) -> AnnouncingStore {
        AnnouncingStore {
            inner,
            sink: OnceLock::new(),
            streams: OnceLock::new(),
        }
    }

    /// Tells `streams` the blobs of every stream whose sd blob passes (once).
    pub fn learn_streams(&self, streams: Arc<crate::store::served::ServedStreams>) {
        let _ = self.streams.set(streams);
    }

    /// Starts announcing through `sink` (once; a second call is ignored).
    pub fn attach(&self, sink: Arc<dyn AnnounceSink>) {
        let _ = self.sink.set(sink);
    }

    fn observe(&self, hash: &BlobHash, data: &[u8]) {
        if data.first() != Some(&b'{') {
            return;
        }
        let sink = self.sink.get().filter(|sink| !sink.is_announced(hash));
        let streams = self.streams.get().filter(|s| !s.knows(hash));
        if sink.is_none() && streams.is_none() {
            return;
        }
        let Ok(sd) = StreamDescriptor::parse(data) else {
            return;
        };
        if let Some(sink) = sink {
            announce_stream(sink.as_ref(), hash, sd.first_content_blob().as_ref());
        }
        if let Some(streams) = streams {
            streams.learn(hash, sd.content_blobs().map(|(_, h, _)| h).collect());
        }
    }
}

#[async_trait]
impl BlobStore for AnnouncingStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.inner.has(hash).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let blob = self.inner.get(hash).await?;
        self.observe(hash, &blob.data);
        Ok(blob)
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        self.inner.put(hash, data).await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.inner.delete(hash).await
    }

    async fn has_cached(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.inner.has_cached(hash).await
    }

    async fn delete_cached(&self, hash: &BlobHash) -> StoreResult<()> {
        self.inner.delete_cached(hash).await
    }

    async fn wait_for_fill(&self, hash: &BlobHash) {
        self.inner.wait_for_fill(hash).await
    }

    fn list(&self) -> Option<Vec<BlobHash>> {
        self.inner.list()
    }
}
