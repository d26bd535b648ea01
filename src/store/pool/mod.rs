//! A pool of remote caches behind one store (`upstream: {upstreams: [...]}`, `http3` and `peer`
//! with `addresses: [...]`): each blob has one *home* endpoint, a failed home is skipped for the
//! next-ranked one within the same request, and endpoints that keep failing are ejected for a
//! cool-down.
//!
//! The tier this serves is N regional caches over one origin, with edges that send each blob to
//! its home regional, so the regionals split the keyspace instead of each caching everything
//! (nginx `hash ... consistent`, Varnish's shard director). The parts:
//!
//! - [`rendezvous`]: the ranking of endpoints per blob (weighted HRW on a fixed SHA-256), the
//!   same on every edge with the same list, in any order.
//! - [`health`]: each endpoint's passive health state machine (Healthy / Ejected / Probing).
//! - [`verdict`]: what one endpoint's result means for the request and for the endpoint.
//! - [`PoolStore`] (here): the failover loop. A get or has asks the blob's endpoints in rank
//!   order, skipping ejected ones at once. A connection error, timeout, 5xx or bad blob from an
//!   endpoint moves on to the next; an *answer*, "not found" included, ends the request: the
//!   home is authoritative unless it is down, so a 404 never fans out to every regional.
//!
//! Each endpoint is a complete single-endpoint store (one `upstream`, `http3` or `peer` store per
//! address), so connection reuse, deadlines and verification are exactly theirs. The pool adds
//! no `Via` hop of its own: the endpoint store's hop (named after the pool) is the hop. Single
//! flight stays where it was (the `caching` store above), so one miss is one pool call: one
//! fetch from the home, or, when the home is down, one from the endpoint that stands in for it.
//!
//! Per-endpoint series: `prism_upstream_endpoint_{requests,errors,ejections}_total` and
//! `prism_upstream_endpoint_state{store,endpoint}` (see [`crate::store::metrics::EndpointMetrics`]).

pub mod health;
pub mod rendezvous;
pub mod verdict;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::IntCounter;

use crate::blob::BlobHash;
use crate::config::{Endpoint, PoolHealthConfig};
use crate::store::{Blob, BlobStore, BuildContext, StoreError, StoreResult};

use self::health::{Change, EndpointHealth, Policy};
use self::rendezvous::Ranking;
use self::verdict::Verdict;

/// What a store tells [`build`] about its pool.
pub struct PoolSpec<'a> {
    /// The store's name (metrics label, errors).
    pub store: &'a str,
    pub endpoints: &'a [Endpoint],
    pub health: &'a PoolHealthConfig,
    /// The endpoint's name: its hashing identity and its (secret-free) metrics label.
    pub name_of: fn(&str) -> String,
}

/// One endpoint: its own store, health and counters.
struct Member {
    store: Arc<dyn BlobStore>,
    /// The printable name (metrics label, logs).
    name: String,
    health: EndpointHealth,
    requests: IntCounter,
    errors: IntCounter,
    ejections: IntCounter,
}

/// A store over a pool of endpoints (see the module docs).
pub struct PoolStore {
    name: Arc<str>,
    members: Vec<Member>,
    ranking: Ranking,
}

/// Builds the pool for `spec`, with `endpoint_store` making the single-endpoint store for one
/// configured address. Two endpoints with the same name (the same cache written two ways) are a
/// configuration error: they would split its keyspace share between two spellings.
pub fn build(
    spec: PoolSpec<'_>,
    ctx: &BuildContext,
    mut endpoint_store: impl FnMut(&Endpoint) -> anyhow::Result<Arc<dyn BlobStore>>,
) -> anyhow::Result<PoolStore> {
    let policy = if spec.endpoints.len() > 1 {
        Policy::from_config(spec.health)
    } else {
        Policy::never_eject()
    };
    let store_metrics = ctx.store_metrics();
    let m = &store_metrics.upstream_endpoints;
    let mut members: Vec<Member> = Vec::with_capacity(spec.endpoints.len());
    for endpoint in spec.endpoints {
        let name = (spec.name_of)(&endpoint.address);
        if members.iter().any(|other| other.name == name) {
            anyhow::bail!(
                "{}: {name} is listed twice (as written: {:?})",
                spec.store,
                crate::secret::redact_url(&endpoint.address)
            );
        }
        let labels = [spec.store, name.as_str()];
        members.push(Member {
            store: endpoint_store(endpoint)?,
            health: EndpointHealth::new(policy, m.state.with_label_values(&labels)),
            requests: m.requests_total.with_label_values(&labels),
            errors: m.errors_total.with_label_values(&labels),
            ejections: m.ejections_total.with_label_values(&labels),
            name,
        });
    }
    if members.is_empty() {
        anyhow::bail!("{}: no endpoints", spec.store);
    }
    let ranking = Ranking::new(
        members
            .iter()
            .zip(spec.endpoints)
            .map(|(m, e)| (m.name.clone(), e.weight)),
    );
    Ok(PoolStore {
        name: Arc::from(spec.store),
        members,
        ranking,
    })
}

impl PoolStore {
    /// Endpoint names, best first, for `hash` (its home first): what the failover loop tries.
    pub fn ranked(&self, hash: &BlobHash) -> Vec<&str> {
        self.ranking
            .rank(hash)
            .into_iter()
            .map(|i| self.members[i].name.as_str())
            .collect()
    }

    /// Runs `op` on the blob's endpoints in rank order until one answers (see the module docs).
    async fn first_answer<T, F>(
        &self,
        hash: &BlobHash,
        op: impl Fn(Arc<dyn BlobStore>) -> F,
    ) -> StoreResult<T>
    where
        F: std::future::Future<Output = StoreResult<T>>,
    {
        let mut last_error = None;
        for index in self.ranking.rank(hash) {
            let member = &self.members[index];
            let Some(ticket) = member.health.admit(Instant::now()) else {
                continue;
            };
            member.requests.inc();
            let result = op(Arc::clone(&member.store)).await;
            let verdict = match &result {
                Ok(_) => Verdict::Answer,
                Err(e) => verdict::of(e),
            };
            let probe = ticket.is_probe();
            let change = ticket.finish(verdict.endpoint_is_up(), Instant::now());
            self.note(member, change, result.as_ref().err(), probe);
            if verdict == Verdict::Answer {
                return result;
            }
            if verdict == Verdict::Failed {
                member.errors.inc();
            }
            if let Err(e) = &result {
                tracing::debug!(store = %self.name, endpoint = %member.name, %hash, error = %e, "pool endpoint did not answer; trying the next");
            }
            last_error = result.err();
        }
        Err(last_error.unwrap_or_else(|| self.all_ejected()))
    }

    fn note(&self, member: &Member, change: Change, error: Option<&StoreError>, probe: bool) {
        match change {
            Change::None => {}
            Change::Ejected { cooldown } => {
                member.ejections.inc();
                let error = error.map(ToString::to_string).unwrap_or_default();
                tracing::warn!(store = %self.name, endpoint = %member.name, ?cooldown, probe, %error, "pool endpoint ejected");
            }
            Change::Recovered => {
                tracing::info!(store = %self.name, endpoint = %member.name, "pool endpoint is back in rotation");
            }
        }
    }

    /// Every endpoint is ejected: fail fast (a 502), saying when the first one may be retried.
    fn all_ejected(&self) -> StoreError {
        let now = Instant::now();
        let next = self
            .members
            .iter()
            .filter_map(|m| m.health.ejected_until())
            .min()
            .map(|t| t.saturating_duration_since(now));
        let message = match next {
            Some(wait) => format!(
                "all {} pool endpoints are ejected after failures; the next retry is in {wait:.1?}",
                self.members.len()
            ),
            None => format!(
                "all {} pool endpoints are ejected or being probed",
                self.members.len()
            ),
        };
        StoreError::unavailable(&self.name, message)
    }
}

#[async_trait]
impl BlobStore for PoolStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        let hash = *hash;
        self.first_answer(&hash, |store| async move { store.has(&hash).await })
            .await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let hash = *hash;
        self.first_answer(&hash, |store| async move { store.get(&hash).await })
            .await
    }

    /// The endpoint stores are read-only; the first one says so.
    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        self.members[0].store.put(hash, data).await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.members[0].store.delete(hash).await
    }

    /// A backend, not a cache.
    async fn has_cached(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }

    /// Starts no fills.
    async fn wait_for_fill(&self, _: &BlobHash) {}

    /// Remotes: cannot list.
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}

#[cfg(test)]
mod tests;
