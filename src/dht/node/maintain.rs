//! Keeping the routing table fresh: learning every node that answers us (and pinging those that
//! ask us before adding them), joining through the bootstrap nodes, and the periodic round of
//! bucket refreshes, pings of quiet contacts and expiry of others' announcements.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{lock, Node, BACKGROUND_PINGS, MAINTENANCE_EVERY};
use crate::dht::routing::{Insert, K};
use crate::dht::rpc::{Answer, RpcError};
use crate::dht::wire::{Contact, NodeId, Request};

/// A bucket no lookup touched for this long gets a refresh lookup.
const REFRESH_AFTER: Duration = Duration::from_secs(3600);

/// A contact not heard from for this long gets pinged (BEP 5's "questionable").
const PING_AFTER: Duration = Duration::from_secs(15 * 60);

impl Node {
    /// A node that sent us a request: refresh it if known, else ping it (bounded) and add it
    /// when it answers, since only nodes that answer belong in the table.
    pub(super) fn consider_requester(self: &Arc<Self>, contact: Contact) {
        if !self.allowed(*contact.addr.ip()) {
            return;
        }
        if lock(&self.table).contains(&contact.id) {
            self.learn(contact);
            return;
        }
        let Ok(permit) = Arc::clone(&self.pings).try_acquire_owned() else {
            return;
        };
        let node = Arc::clone(self);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = node.query(contact.addr, Request::Ping).await;
        });
    }

    /// Adds a node that answered us; a full bucket pings its stalest contact first.
    fn learn(self: &Arc<Self>, contact: Contact) {
        if !self.allowed(*contact.addr.ip()) {
            return;
        }
        let outcome = {
            let mut table = lock(&self.table);
            let outcome = table.insert(contact, Instant::now());
            self.metrics.routing_contacts.set(table.len() as i64);
            outcome
        };
        if let Insert::PingFirst(stale) = outcome {
            let Ok(permit) = Arc::clone(&self.pings).try_acquire_owned() else {
                return;
            };
            let node = Arc::clone(self);
            tokio::spawn(async move {
                let _permit = permit;
                match node.rpc.call(stale.addr, Request::Ping).await {
                    Ok((id, _)) if id == stale.id => {
                        lock(&node.table).insert(stale, Instant::now());
                    }
                    _ => {
                        let mut table = lock(&node.table);
                        table.evict(&stale.id);
                        table.insert(contact, Instant::now());
                        node.metrics.routing_contacts.set(table.len() as i64);
                    }
                }
            });
        }
    }

    /// One RPC to `addr`, keeping the routing table up to date with the outcome.
    pub(super) async fn query(
        self: &Arc<Self>,
        addr: SocketAddrV4,
        request: Request,
    ) -> Result<Answer, RpcError> {
        match self.rpc.call(addr, request).await {
            Ok((id, value)) => {
                self.learn(Contact { id, addr });
                Ok((id, value))
            }
            Err(e) => {
                if matches!(e, RpcError::Timeout(_)) {
                    let mut table = lock(&self.table);
                    let ids: Vec<NodeId> = table
                        .closest(&self.rpc.own, usize::MAX, None)
                        .into_iter()
                        .filter(|c| c.addr == addr)
                        .map(|c| c.id)
                        .collect();
                    for id in ids {
                        table.failed(&id, false);
                    }
                    self.metrics.routing_contacts.set(table.len() as i64);
                }
                Err(e)
            }
        }
    }

    /// Pings the bootstrap nodes, then looks up our own id to fill the table.
    pub async fn bootstrap(self: &Arc<Self>) -> usize {
        let mut pings = JoinSet::new();
        for entry in &self.settings.bootstrap {
            let resolved = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::lookup_host(entry.clone()),
            )
            .await;
            let addrs: Vec<SocketAddrV4> = match resolved {
                Ok(Ok(addrs)) => addrs
                    .filter_map(|a| match a {
                        SocketAddr::V4(a) => Some(a),
                        SocketAddr::V6(_) => None,
                    })
                    .collect(),
                Ok(Err(e)) => {
                    tracing::warn!(node = %entry, error = %e, "dht bootstrap node does not resolve");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(node = %entry, "dht bootstrap node: name lookup timed out");
                    continue;
                }
            };
            for addr in addrs {
                if self.is_self(addr) {
                    continue;
                }
                let node = Arc::clone(self);
                pings.spawn(async move { node.query(addr, Request::Ping).await.is_ok() });
            }
        }
        while pings.join_next().await.is_some() {}
        let own = self.rpc.own;
        self.lookup(own, false).await;
        lock(&self.table).len()
    }

    fn is_self(&self, addr: SocketAddrV4) -> bool {
        addr.port() == self.local.port()
            && (addr.ip() == self.local.ip()
                || (self.local.ip().is_unspecified() && addr.ip().is_loopback()))
    }

    pub(super) async fn maintain(self: Arc<Self>, shutdown: CancellationToken) {
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(MAINTENANCE_EVERY) => {},
                    _ = shutdown.cancelled() => return,
                }
            }
            first = false;
            let known = lock(&self.table).len();
            if known == 0 {
                let joined = tokio::select! {
                    n = self.bootstrap() => n,
                    _ = shutdown.cancelled() => return,
                };
                tracing::info!(contacts = joined, node_id = %self.rpc.own, "dht joined");
            } else if known < K {
                // A thin table (we joined a small or busy network): look ourselves up again,
                // which introduces us to our neighbours and them to us.
                let own = self.rpc.own;
                tokio::select! {
                    _ = self.lookup(own, false) => {},
                    _ = shutdown.cancelled() => return,
                }
            }
            {
                let mut store = lock(&self.store);
                store.expire(Instant::now());
                self.metrics.stored_announcements.set(store.len() as i64);
            }
            let now = Instant::now();
            let (targets, stale) = {
                let table = lock(&self.table);
                (
                    table.stale_bucket_targets(REFRESH_AFTER, now),
                    table.stale_contacts(PING_AFTER, now),
                )
            };
            for target in targets.into_iter().take(8) {
                tokio::select! {
                    _ = self.lookup(target, false) => {},
                    _ = shutdown.cancelled() => return,
                }
            }
            let mut pings = JoinSet::new();
            for contact in stale.into_iter().take(BACKGROUND_PINGS) {
                let node = Arc::clone(&self);
                pings.spawn(async move {
                    if node.rpc.call(contact.addr, Request::Ping).await.is_ok() {
                        node.learn(contact);
                    } else {
                        lock(&node.table).failed(&contact.id, false);
                    }
                });
            }
            while pings.join_next().await.is_some() {}
        }
    }
}
