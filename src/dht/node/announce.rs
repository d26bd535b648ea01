//! Announcing our blobs: a `findValue` lookup for the blob, then `store` on the closest nodes
//! that answered, again every `reannounce` interval. The network forgets an announcement after
//! 24 h, so the interval must stay well under that.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{lock, Node, MAINTENANCE_EVERY};
use crate::dht::wire::{FindValueResult, NodeId, Request};

/// Retry delay for an announcement that reached nobody.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(60);

/// What [`Node::schedule`] did, decided under one lock (so two announces of one blob cannot
/// both see it as new).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduled {
    Added,
    Already,
    /// The announce list holds `max_announced` blobs.
    Full,
}

impl Node {
    /// Announces `hash` once: lookup, then `store` on the K closest nodes that answered.
    /// Returns how many stored it.
    pub async fn announce_once(self: &Arc<Self>, hash: NodeId) -> anyhow::Result<usize> {
        let port = self.settings.tcp_port.ok_or_else(|| {
            anyhow::anyhow!("no TCP port to announce: set servers.peer or dht.announce_port")
        })?;
        let found = self.lookup(hash, true).await;
        let mut stores = JoinSet::new();
        for contact in found.closest {
            let node = Arc::clone(self);
            let token = found.tokens.get(&contact.id).cloned();
            stores.spawn(async move {
                let token = match token {
                    Some(t) => t,
                    None => {
                        let (_, v) = node
                            .query(contact.addr, Request::FindValue { key: hash, page: 0 })
                            .await
                            .ok()?;
                        FindValueResult::decode(&v, &hash)?.token
                    }
                };
                let request = Request::Store {
                    blob_hash: hash,
                    token,
                    port,
                };
                let (_, v) = node.query(contact.addr, request).await.ok()?;
                (v.as_bytes() == Some(b"OK")).then_some(())
            });
        }
        let mut stored = 0;
        while let Some(r) = stores.join_next().await {
            if matches!(r, Ok(Some(()))) {
                stored += 1;
            }
        }
        let result = if stored > 0 { "ok" } else { "failed" };
        self.metrics
            .announcements
            .with_label_values(&[result])
            .inc();
        let mut announced = lock(&self.announced);
        announced.last_announce = Some(SystemTime::now());
        if stored > 0 {
            announced.last_stored = Some(hash);
        }
        drop(announced);
        tracing::debug!(hash = %hash, stored, "dht announce");
        Ok(stored)
    }

    /// Adds `hash` to the blobs we announce (now, then every `reannounce` interval).
    pub fn schedule(&self, hash: NodeId) -> Scheduled {
        let mut a = lock(&self.announced);
        if a.due.contains_key(&hash) {
            return Scheduled::Already;
        }
        if a.due.len() >= self.settings.max_announced {
            return Scheduled::Full;
        }
        a.schedule(hash, Instant::now());
        self.metrics.announced_blobs.set(a.due.len() as i64);
        drop(a);
        self.wake.notify_one();
        Scheduled::Added
    }

    /// The last hash at least one node stored for us.
    pub fn last_stored(&self) -> Option<NodeId> {
        lock(&self.announced).last_stored
    }

    pub fn is_scheduled(&self, hash: &NodeId) -> bool {
        lock(&self.announced).due.contains_key(hash)
    }

    pub(super) async fn announce_loop(self: Arc<Self>, shutdown: CancellationToken) {
        if self.settings.tcp_port.is_none() {
            tracing::warn!("dht: no TCP port to announce (set servers.peer or dht.announce_port); not announcing");
            return;
        }
        loop {
            let now = Instant::now();
            let next = lock(&self.announced).queue.first().copied();
            match next {
                Some((at, hash)) if at <= now => {
                    let ok = matches!(self.announce_once(hash).await, Ok(n) if n > 0);
                    let delay = if ok {
                        self.settings.reannounce
                    } else {
                        self.settings.reannounce.min(ANNOUNCE_RETRY)
                    };
                    lock(&self.announced).schedule(hash, Instant::now() + delay);
                    tokio::select! {
                        _ = tokio::time::sleep(self.settings.announce_spacing) => {},
                        _ = shutdown.cancelled() => return,
                    }
                }
                other => {
                    let wait = other
                        .map(|(at, _)| at.saturating_duration_since(now))
                        .unwrap_or(MAINTENANCE_EVERY)
                        .min(MAINTENANCE_EVERY);
                    tokio::select! {
                        _ = self.wake.notified() => {},
                        _ = tokio::time::sleep(wait) => {},
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }
}
