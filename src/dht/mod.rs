//! Taking part in the LBRY DHT, so LBRY clients find this cache as a peer for the blobs it
//! holds (the wire facts are in [`wire`]'s docs; the reference is the LBRY SDK's `lbry/dht/`).
//!
//! - [`bencode`], [`wire`]: the datagram format (integer-keyed bencoded dicts).
//! - [`rpc`]: the UDP socket, request/answer matching with timeouts, per-source rate limits.
//! - [`routing`]: k-buckets; [`store`]: others' announcements and the token scheme.
//! - [`node`]: the node's state; answering, iterative lookups, announcing and routing-table
//!   upkeep each in a file of their own under it.
//!
//! [`Dht`] is the handle the rest of the program uses; [`Announcer`] is the small piece the
//! prefetcher holds to say "announce this blob".

pub mod bencode;
pub mod journal;
pub mod metrics;
pub mod node;
mod random;
pub mod routing;
pub mod rpc;
pub mod store;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::blob::BlobHash;

pub use self::node::is_public;
pub use self::node::lookup::ALPHA;
pub use self::routing::K;
pub use self::wire::{CompactPeer, Contact, NodeId, MAX_DATAGRAM};
pub use crate::config::DhtConfig;

/// The persisted node id in `data_dir/node_id`, if there is a valid one.
pub fn read_node_id(data_dir: &Path) -> Option<NodeId> {
    let text = std::fs::read_to_string(data_dir.join("node_id")).ok()?;
    NodeId::parse_hex(&text)
}

/// The persisted node id, created on first use, so a restart keeps our place in the network
/// (nodes that stored our announcements know us by it).
pub fn load_or_create_node_id(data_dir: &Path) -> anyhow::Result<NodeId> {
    let path = data_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => NodeId::parse_hex(&text).with_context(|| {
            format!(
                "{} does not hold a 96-hex-character node id; delete it to get a new one",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating dht.data_dir {}", data_dir.display()))?;
            let id = NodeId::random();
            let tmp = data_dir.join("node_id.tmp");
            std::fs::write(&tmp, format!("{id}\n"))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A running (or ready to run) DHT node. Cheap to clone.
#[derive(Clone)]
pub struct Dht {
    node: Arc<node::Node>,
    /// Where announced blobs are recorded, once [`Dht::open_journal`] was called.
    journal: Arc<OnceLock<journal::Journal>>,
}

/// Tells the DHT node to announce blobs (and keep re-announcing them).
#[derive(Clone)]
pub struct Announcer {
    node: Arc<node::Node>,
    journal: Arc<OnceLock<journal::Journal>>,
}

/// The root store's announcing layer ([`crate::store::announce`]) hands it every stream it sees.
impl crate::store::announce::AnnounceSink for Announcer {
    fn is_announced(&self, hash: &BlobHash) -> bool {
        Announcer::is_announced(self, hash)
    }

    fn announce(&self, hash: &BlobHash) -> bool {
        Announcer::announce(self, hash)
    }

    fn restored(&self) {
        Announcer::restored(self)
    }
}

impl Announcer {
    /// Whether `hash` is among the announced blobs.
    pub fn is_announced(&self, hash: &BlobHash) -> bool {
        NodeId::from_slice(hash.as_bytes()).is_some_and(|id| self.node.is_scheduled(&id))
    }

    /// Adds `hash` to the announced blobs (and to the journal, when one is open). False when
    /// the announce list is full.
    pub fn announce(&self, hash: &BlobHash) -> bool {
        let Some(id) = NodeId::from_slice(hash.as_bytes()) else {
            return false;
        };
        match self.node.schedule(id) {
            node::Scheduled::Added => {
                if let Some(journal) = self.journal.get() {
                    journal.record(hash);
                }
                true
            }
            node::Scheduled::Already => true,
            node::Scheduled::Full => false,
        }
    }

    /// The journal's earlier entries have been announced again (or dropped): see
    /// [`journal::Journal::restored`].
    pub fn restored(&self) {
        if let Some(journal) = self.journal.get() {
            journal.restored();
        }
    }
}

impl Dht {
    /// Binds the UDP socket. `tcp_port` is what announcements advertise (`None`: do not
    /// announce). Call [`Dht::run`] to join and serve.
    pub async fn bind(
        config: &DhtConfig,
        tcp_port: Option<u16>,
        node_id: NodeId,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Dht> {
        let host = config.address.clone().unwrap_or_else(|| "0.0.0.0".into());
        let ip: Ipv4Addr = host
            .parse()
            .with_context(|| format!("dht.address {host:?} is not an IPv4 address"))?;
        let bind = SocketAddrV4::new(ip, config.port);
        let socket = UdpSocket::bind(bind)
            .await
            .with_context(|| format!("binding dht on udp {bind}"))?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => anyhow::bail!("dht socket bound to IPv6 {a}"),
        };
        let metrics = metrics::DhtMetrics::register(registry).context("registering dht metrics")?;
        let rpc = rpc::Rpc::new(
            socket,
            node_id,
            config.rpc_timeout,
            config.requests_per_second_per_ip,
            metrics.clone(),
        );
        let spacing = Duration::from_secs(60) / config.announces_per_minute.max(1);
        let settings = node::Settings {
            allow_private: config.allow_private,
            tcp_port: config.announce_port.or(tcp_port),
            announce_ip: config.announce_address,
            bootstrap: config.bootstrap.clone(),
            reannounce: config.reannounce_interval,
            announce_spacing: spacing,
            max_announced: config.max_announced,
        };
        let node = node::Node::new(
            rpc,
            local,
            settings,
            config.expiry,
            config.max_stored_announcements,
            metrics,
        );
        Ok(Dht {
            node: Arc::new(node),
            journal: Arc::new(OnceLock::new()),
        })
    }

    /// Records announced blobs in `data_dir/announced` from now on, and returns the blobs
    /// earlier runs recorded (at most `limit`), for the caller to announce again those it still
    /// holds. Only the long-running blobcache calls this: one-shot commands sharing the data
    /// directory must not rotate its journal.
    pub fn open_journal(&self, data_dir: &Path, limit: usize) -> anyhow::Result<Vec<BlobHash>> {
        let (journal, remembered) = journal::Journal::open(data_dir, limit)
            .with_context(|| format!("opening the announce journal in {}", data_dir.display()))?;
        let _ = self.journal.set(journal);
        Ok(remembered)
    }

    /// Joins (bootstrap), then serves and maintains until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        self.node.run(shutdown).await
    }

    /// Only answers and matches datagrams (for one-shot lookups driven by the caller).
    pub async fn serve(self, shutdown: CancellationToken) {
        self.node.serve(shutdown).await
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.node.local
    }

    pub fn node_id(&self) -> NodeId {
        self.node.own_id()
    }

    pub fn announcer(&self) -> Announcer {
        Announcer {
            node: Arc::clone(&self.node),
            journal: Arc::clone(&self.journal),
        }
    }

    /// Pings the bootstrap nodes and fills the table; returns the table size.
    pub async fn join(&self) -> usize {
        self.node.bootstrap().await
    }

    /// An iterative findNode: the K closest nodes that answered.
    pub async fn find_node(&self, key: NodeId) -> Vec<Contact> {
        self.node.lookup(key, false).await.closest
    }

    /// An iterative findValue: everyone announcing `key`.
    pub async fn find_peers(&self, key: NodeId) -> Vec<CompactPeer> {
        self.node.find_peers(key).await
    }

    /// The last announced hash at least one node stored (the reachability check looks it up
    /// to see the address the DHT hands out for us).
    pub fn last_stored(&self) -> Option<NodeId> {
        self.node.last_stored()
    }

    /// Announces once, now (no re-announcing); returns how many nodes stored it.
    pub async fn announce_now(&self, key: NodeId) -> anyhow::Result<usize> {
        self.node.announce_once(key).await
    }

    /// Routing-table contacts closest to `key`, without network traffic.
    pub fn known_closest(&self, key: &NodeId, count: usize) -> Vec<Contact> {
        self.node.known_closest(key, count)
    }

    /// `/dht/status`.
    pub fn status(&self) -> serde_json::Value {
        self.node.status()
    }
}
