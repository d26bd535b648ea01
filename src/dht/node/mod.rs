//! The node: answers other nodes' RPCs, looks keys up iteratively, keeps its routing table
//! fresh, and announces our blobs.
//!
//! One file per job: `answer.rs` (serving other nodes' RPCs), [`lookup`] (iterative lookups),
//! `announce.rs` and `maintain.rs` (routing-table upkeep); this file holds the node's state.
//!
//! Everything runs in one task per node ([`Node::run`]): the receive loop, maintenance
//! (bootstrap when alone, bucket refresh, pinging stale contacts, expiring announcements) and
//! the announcer. Short-lived helper tasks (pinging a new contact, the RPCs of a lookup) are
//! spawned and end within one RPC timeout.

mod announce;
pub use announce::Scheduled;
mod answer;
pub mod lookup;
mod maintain;

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::metrics::DhtMetrics;
use super::routing::{BucketInfo, RoutingTable};
use super::rpc::Rpc;
use super::store::{PeerStore, Tokens};
use super::wire::{Contact, NodeId};

/// How often the SDK rotates its token secret.
const TOKEN_ROTATION: Duration = Duration::from_secs(300);

/// How often maintenance runs.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);

/// Background pings (to requesters we do not know yet) in flight at once.
const BACKGROUND_PINGS: usize = 16;
/// What the node needs from its configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub allow_private: bool,
    /// The TCP port announced for blob downloads; `None` = we do not announce.
    pub tcp_port: Option<u16>,
    pub announce_ip: Option<Ipv4Addr>,
    pub bootstrap: Vec<String>,
    pub reannounce: Duration,
    pub announce_spacing: Duration,
    pub max_announced: usize,
}

/// Blobs we announce: when each is next due.
#[derive(Default)]
struct Announced {
    due: HashMap<NodeId, Instant>,
    queue: BTreeSet<(Instant, NodeId)>,
    last_announce: Option<SystemTime>,
    /// The last hash some node stored (the reachability check looks it up).
    last_stored: Option<NodeId>,
}

impl Announced {
    fn schedule(&mut self, hash: NodeId, at: Instant) {
        if let Some(old) = self.due.insert(hash, at) {
            self.queue.remove(&(old, hash));
        }
        self.queue.insert((at, hash));
    }
}

/// One DHT node's state, shared by its receive loop, maintenance, announcer and lookups.
pub struct Node {
    pub(super) rpc: Rpc,
    pub(super) local: SocketAddrV4,
    settings: Settings,
    table: Mutex<RoutingTable>,
    store: Mutex<PeerStore>,
    tokens: Mutex<Tokens>,
    announced: Mutex<Announced>,
    wake: Notify,
    pings: Arc<Semaphore>,
    pub(super) metrics: DhtMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether an address may appear in the public DHT (the SDK's `is_valid_public_ipv4`), and
/// whether clients on the internet can reach it (the reachability check's rule too).
pub fn is_public(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)))
}

impl Node {
    pub fn new(
        rpc: Rpc,
        local: SocketAddrV4,
        settings: Settings,
        expiry: Duration,
        max_stored: usize,
        metrics: DhtMetrics,
    ) -> Node {
        Node {
            table: Mutex::new(RoutingTable::new(rpc.own)),
            store: Mutex::new(PeerStore::new(max_stored, expiry)),
            tokens: Mutex::new(Tokens::new(TOKEN_ROTATION)),
            announced: Mutex::new(Announced::default()),
            wake: Notify::new(),
            pings: Arc::new(Semaphore::new(BACKGROUND_PINGS)),
            rpc,
            local,
            settings,
            metrics,
        }
    }

    pub fn own_id(&self) -> NodeId {
        self.rpc.own
    }

    fn allowed(&self, ip: Ipv4Addr) -> bool {
        self.settings.allow_private || is_public(ip)
    }

    /// Runs until `shutdown`: joins the network, then serves and maintains.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::join!(
            Arc::clone(&self).receive_loop(shutdown.clone()),
            Arc::clone(&self).maintain(shutdown.clone()),
            Arc::clone(&self).announce_loop(shutdown.clone()),
        );
    }

    /// Answers and matches datagrams only (no maintenance, no announcing): for one-shot tools
    /// that drive lookups themselves.
    pub async fn serve(self: Arc<Self>, shutdown: CancellationToken) {
        self.receive_loop(shutdown).await
    }

    /// Contacts in the routing table closest to `key` (no network traffic).
    pub fn known_closest(&self, key: &NodeId, count: usize) -> Vec<Contact> {
        lock(&self.table).closest(key, count, None)
    }

    pub fn status(&self) -> serde_json::Value {
        let now = Instant::now();
        let (size, buckets): (usize, Vec<BucketInfo>) = {
            let t = lock(&self.table);
            (t.len(), t.buckets(now))
        };
        let (announced, last) = {
            let a = lock(&self.announced);
            (a.due.len(), a.last_announce)
        };
        let last = last
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        serde_json::json!({
            "node_id": self.rpc.own.to_hex(),
            "udp_address": self.local.to_string(),
            "announce_address": self.settings.announce_ip.map(|ip| ip.to_string()),
            "tcp_port": self.settings.tcp_port,
            "routing_table_size": size,
            "buckets": buckets.into_iter().filter(|b| b.contacts > 0 || b.replacements > 0).collect::<Vec<_>>(),
            "bucket_count": lock(&self.table).buckets(now).len(),
            "announced_blobs": announced,
            "last_announce_unix": last,
            "stored_announcements": lock(&self.store).len(),
        })
    }
}
