//! The body of a stream response: fetch, check and decrypt one content blob at a time, hand
//! out the requested slice of its plaintext, and keep the next blobs coming (readahead).
//!
//! Memory per response is about one blob: the current blob's ciphertext and plaintext, nothing
//! more. That blob is charged to the in-flight budget ([`crate::server::budget`]) like a `/blob`
//! answer: room is reserved before the blob is fetched (none in time cuts the response), and the
//! [`Chunk`] carries the charge until the door has handed its bytes on, so stalled viewers hold
//! no more than the budget however many responses they open. Readahead does not hold blobs; it fetches them through the store tree so they land in
//! the cache tier (the encrypted tier *is* the cache), and the response then reads them from
//! there. A blob that cannot be served as planned (missing, corrupt, undecryptable, another
//! length than planned) ends the body with an error, which makes the HTTP layer abort the
//! response: the client sees a short response, never wrong bytes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::server::budget::Charge;
use crate::server::door::Door;
use crate::server::serve::{BlobService, Refusal};
use crate::store::StoreError;

use super::layout::{BlobFault, StreamPlan};
use super::metrics::PlaybackMetrics;
use super::range::ByteRange;

/// Why a response was cut; the HTTP layer only sees that the body failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamCut {
    #[error("content blob {num} is not in any store")]
    Missing { num: u32 },
    #[error("content blob {num}: {source}")]
    Store {
        num: u32,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Blob(#[from] BlobFault),
    #[error("no request slot for content blob {num} (server at its request limit)")]
    Busy { num: u32 },
    #[error("no room in the in-flight budget for content blob {num}")]
    OverBudget { num: u32 },
    #[error("decrypting content blob {num} failed: {message}")]
    Internal { num: u32, message: String },
}

impl StreamCut {
    fn reason(&self) -> &'static str {
        match self {
            StreamCut::Missing { .. } => "blob_missing",
            StreamCut::Store { .. } => "origin_error",
            StreamCut::Blob(fault) => fault.reason(),
            StreamCut::Busy { .. } | StreamCut::OverBudget { .. } => "busy",
            StreamCut::Internal { .. } => "internal",
        }
    }
}

/// What a body needs besides its plan and range.
#[derive(Clone)]
pub struct BodyContext {
    /// The serving core: each blob is fetched through it (slot, budget, store).
    pub service: Arc<BlobService>,
    /// The door the request came through, whose request slots the fetches take.
    pub door: Arc<Door>,
    pub metrics: PlaybackMetrics,
    /// Readahead fetches in flight over all responses.
    pub readahead_slots: Arc<Semaphore>,
    /// Blobs fetched ahead of the one being read (per response).
    pub readahead: usize,
    /// The client's address, whose share of the in-flight budget the response's blobs take.
    pub client: IpAddr,
}

/// A piece of a response body: one blob's slice of plaintext, and the in-flight budget charge
/// for the buffer behind it, which the door drops once it has handed `bytes` on (written to the
/// kernel, or taken by QUIC).
pub struct Chunk {
    pub bytes: Bytes,
    pub charge: Charge,
}

/// The plaintext bytes `range` of the stream, as a stream of chunks (one per blob).
pub fn body(
    ctx: BodyContext,
    plan: Arc<StreamPlan>,
    range: ByteRange,
) -> BoxStream<'static, Result<Chunk, StreamCut>> {
    let indexes = plan.blobs_for(range);
    let reader = Reader {
        next: *indexes.start(),
        indexes,
        range,
        plan,
        readahead: Readahead::default(),
        ctx,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        reader,
        |mut reader| async move {
            let chunk = reader.next_chunk().await?;
            Some((chunk, reader))
        },
    ))
}

struct Reader {
    ctx: BodyContext,
    plan: Arc<StreamPlan>,
    range: ByteRange,
    /// Blob indexes this response covers.
    indexes: RangeInclusive<usize>,
    next: usize,
    readahead: Readahead,
    done: bool,
}

impl Reader {
    async fn next_chunk(&mut self) -> Option<Result<Chunk, StreamCut>> {
        if self.done || self.next > *self.indexes.end() {
            return None;
        }
        let index = self.next;
        self.next += 1;
        match self.read_blob(index).await {
            Ok(chunk) => {
                self.ctx
                    .metrics
                    .bytes_served
                    .inc_by(chunk.bytes.len() as u64);
                Some(Ok(chunk))
            }
            Err(cut) => {
                self.done = true;
                self.ctx
                    .metrics
                    .cut
                    .with_label_values(&[cut.reason()])
                    .inc();
                tracing::warn!(sd_hash = %self.plan.sd_hash, error = %cut, "stream response cut");
                Some(Err(cut))
            }
        }
    }

    /// The slice of blob `index`'s plaintext that falls in the range.
    async fn read_blob(&mut self, index: usize) -> Result<Chunk, StreamCut> {
        self.readahead
            .schedule(&self.ctx, &self.plan, index, &self.indexes);
        if self.readahead.wait_for(index).await {
            self.ctx.metrics.readahead_hits.inc();
        }
        let planned = &self.plan.blobs[index];
        let num = planned.num;
        // A request slot, then room in the budget, as `/blob` takes them (the serving core);
        // both before the fetch, so a response waiting for either holds no blob.
        let served = self
            .ctx
            .service
            .fetch_reserved(&self.ctx.door, planned.hash, self.ctx.client)
            .await
            .map_err(|refusal| match refusal {
                Refusal::Busy => StreamCut::Busy { num },
                Refusal::OverBudget => StreamCut::OverBudget { num },
                Refusal::Store(StoreError::NotFound) => StreamCut::Missing { num },
                Refusal::Store(source) => StreamCut::Store { num, source },
                other => StreamCut::Internal {
                    num,
                    message: other.to_string(),
                },
            })?;
        let (blob, reservation) = served;
        // Hashing and decrypting 2 MiB takes milliseconds: off the async workers.
        let plan = Arc::clone(&self.plan);
        let plain = tokio::task::spawn_blocking(move || plan.decrypt(index, &blob))
            .await
            .map_err(|e| StreamCut::Internal {
                num,
                message: e.to_string(),
            })??;
        let start = self.range.first.saturating_sub(planned.offset);
        let end = (self.range.last + 1 - planned.offset).min(planned.plain_len);
        // The plaintext is a fresh buffer per response: it counts in full. (The reservation
        // was held through the decrypt, so waiting responses cannot overtake it.)
        let charge = reservation.charge(&plain);
        // start <= end <= plain.len(): the range overlaps this blob, and decrypt() checked the
        // plaintext has the planned length.
        Ok(Chunk {
            bytes: plain.slice(start as usize..end as usize),
            charge,
        })
    }
}

/// A response's readahead: at most `readahead` fetches of the blobs after the current one, each
/// holding one of the global `readahead_slots` (none free = that readahead is skipped).
#[derive(Default)]
struct Readahead {
    tasks: HashMap<usize, JoinHandle<bool>>,
    /// The highest index scheduled (or skipped) so far, so each blob is tried once.
    scheduled_through: Option<usize>,
}

impl Readahead {
    fn schedule(
        &mut self,
        ctx: &BodyContext,
        plan: &StreamPlan,
        current: usize,
        indexes: &RangeInclusive<usize>,
    ) {
        if ctx.readahead == 0 {
            return;
        }
        let from = self
            .scheduled_through
            .map_or(current + 1, |s| s.max(current) + 1);
        let through = current.saturating_add(ctx.readahead).min(*indexes.end());
        for index in from..=through {
            self.scheduled_through = Some(index);
            let Ok(permit) = Arc::clone(&ctx.readahead_slots).try_acquire_owned() else {
                ctx.metrics.readahead_skipped.inc();
                continue;
            };
            ctx.metrics.readahead_started.inc();
            let store = Arc::clone(ctx.service.store());
            let hash = plan.blobs[index].hash;
            // Detached: if the client goes away the fetch still finishes (bounded by the global
            // slots and the store's own timeouts) and the blob is cached for the next viewer.
            self.tasks.insert(
                index,
                tokio::spawn(async move {
                    let fetched = store.get(&hash).await.is_ok();
                    // Wait for the cache fill, so the response's own get finds the blob.
                    store.wait_for_fill(&hash).await;
                    drop(permit);
                    fetched
                }),
            );
        }
    }

    /// Waits for the readahead of `index`, if one runs; whether it fetched the blob.
    async fn wait_for(&mut self, index: usize) -> bool {
        match self.tasks.remove(&index) {
            Some(task) => task.await.unwrap_or(false),
            None => false,
        }
    }
}
