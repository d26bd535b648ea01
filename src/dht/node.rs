//! The node: answers other nodes' RPCs, looks keys up iteratively, keeps its routing table
//! fresh, and announces our blobs.
//!
//! Everything runs in one task per node ([`Node::run`]): the receive loop, maintenance
//! (bootstrap when alone, bucket refresh, pinging stale contacts, expiring announcements) and
//! the announcer. Short-lived helper tasks (pinging a new contact, the RPCs of a lookup) are
//! spawned and end within one RPC timeout.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::bencode::Value;
use super::metrics::DhtMetrics;
use super::routing::{BucketInfo, Insert, RoutingTable};
use super::rpc::{Answer, Rpc, RpcError};
use super::store::{PeerStore, StoreRefusal, Tokens};
use super::wire::{
    decode_contacts, encode_contacts, Body, CompactPeer, Contact, Datagram, FindValueResult,
    NodeId, Request, RpcId,
};
use super::{ALPHA, K, MAX_DATAGRAM};

/// How often the SDK rotates its token secret.
const TOKEN_ROTATION: Duration = Duration::from_secs(300);
/// A bucket no lookup touched for this long gets a refresh lookup.
const REFRESH_AFTER: Duration = Duration::from_secs(3600);
/// A contact not heard from for this long gets pinged (BEP 5's "questionable").
const PING_AFTER: Duration = Duration::from_secs(15 * 60);
/// How often maintenance runs.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);
/// Background pings (to requesters we do not know yet) in flight at once.
const BACKGROUND_PINGS: usize = 16;
/// Extra `findValue` pages fetched from one node at most.
const MAX_PAGES: u32 = 8;
/// Candidates remembered by one lookup.
const MAX_SHORTLIST: usize = 128;
/// Announcers collected by one lookup.
const MAX_PEERS_FOUND: usize = 256;
/// Retry delay for an announcement that reached nobody.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(60);

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
}

impl Announced {
    fn schedule(&mut self, hash: NodeId, at: Instant) {
        if let Some(old) = self.due.insert(hash, at) {
            self.queue.remove(&(old, hash));
        }
        self.queue.insert((at, hash));
    }
}

/// What an iterative lookup found.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The closest nodes that answered, closest first (at most K).
    pub closest: Vec<Contact>,
    /// Announcers of the key (findValue lookups only).
    pub peers: Vec<CompactPeer>,
    /// Store tokens handed out by the nodes that answered a findValue.
    pub tokens: HashMap<NodeId, Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Fresh,
    Asked,
    Answered,
    Failed,
}

/// One lookup step's outcome: closer contacts, announcers, a token.
struct Step {
    contacts: Vec<Contact>,
    peers: Vec<CompactPeer>,
    token: Option<Vec<u8>>,
    responder: NodeId,
}

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

/// Whether an address may appear in the public DHT (the SDK's `is_valid_public_ipv4`).
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

    async fn receive_loop(self: Arc<Self>, shutdown: CancellationToken) {
        // One byte more than the limit: a longer datagram arrives truncated and is recognised
        // as oversized by its length, without ever allocating for it.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let (len, from) = tokio::select! {
                r = self.rpc.socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(e) => {
                        // ICMP "port unreachable" from an earlier send surfaces here; harmless.
                        tracing::trace!(error = %e, "dht recv error");
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let SocketAddr::V4(from) = from else {
                self.metrics.dropped("bad_source");
                continue;
            };
            if len > MAX_DATAGRAM {
                self.metrics.dropped("oversized");
                continue;
            }
            let datagram = match Datagram::decode(&buf[..len]) {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(%from, error = %e, "dropping bad dht datagram");
                    self.metrics.dropped("malformed");
                    continue;
                }
            };
            if datagram.node_id == self.rpc.own || from.port() == 0 {
                self.metrics.dropped("bad_source");
                continue;
            }
            match datagram.body {
                Body::Request(request) => {
                    if !self.rpc.admit(IpAddr::V4(*from.ip()), Instant::now()) {
                        self.metrics.dropped("rate_limited");
                        continue;
                    }
                    let (rpc_id, sender) = (datagram.rpc_id, datagram.node_id);
                    self.handle_request(from, rpc_id, sender, request).await;
                }
                Body::Response(_) | Body::Error { .. } => {
                    if !self.rpc.complete(from, datagram) {
                        self.metrics.dropped("unexpected_response");
                    }
                }
            }
        }
    }

    async fn handle_request(
        self: &Arc<Self>,
        from: SocketAddrV4,
        rpc_id: RpcId,
        sender: NodeId,
        request: Result<Request, String>,
    ) {
        let body = match request {
            Ok(request) => {
                self.metrics
                    .rpc_in
                    .with_label_values(&[request.method().label()])
                    .inc();
                self.answer(from, sender, request)
            }
            Err(message) => {
                self.metrics
                    .refused
                    .with_label_values(&["bad_arguments"])
                    .inc();
                error_body(&message)
            }
        };
        self.rpc.reply(from, rpc_id, body).await;
        self.consider_requester(Contact {
            id: sender,
            addr: from,
        });
    }

    /// The answer to one request.
    fn answer(&self, from: SocketAddrV4, sender: NodeId, request: Request) -> Body {
        let now = Instant::now();
        match request {
            Request::Ping => Body::Response(Value::bytes(b"pong".to_vec())),
            Request::FindNode { key } => {
                let contacts = lock(&self.table).closest(&key, K, Some(&sender));
                Body::Response(encode_contacts(&contacts))
            }
            Request::FindValue { key, page } => {
                self.find_value_answer(from, sender, key, page, now)
            }
            Request::Store {
                blob_hash,
                token,
                port,
            } => {
                if !lock(&self.tokens).verify(&token, *from.ip(), now) {
                    self.metrics.refused.with_label_values(&["bad_token"]).inc();
                    return error_body("Invalid token");
                }
                if !self.allowed(*from.ip()) {
                    self.metrics
                        .refused
                        .with_label_values(&["bad_address"])
                        .inc();
                    return error_body("invalid ip address");
                }
                let peer = CompactPeer {
                    id: sender,
                    addr: SocketAddrV4::new(*from.ip(), port),
                };
                let mut store = lock(&self.store);
                let result = store.add(blob_hash, peer, now);
                self.metrics.stored_announcements.set(store.len() as i64);
                match result {
                    Ok(()) => Body::Response(Value::bytes(b"OK".to_vec())),
                    Err(StoreRefusal::Full) => {
                        self.metrics
                            .refused
                            .with_label_values(&["store_full"])
                            .inc();
                        error_body("store is full")
                    }
                }
            }
        }
    }

    /// `findValue`, paged as the SDK pages it: `p` says how many pages of announcers exist,
    /// page 0 also carries the closest contacts, and each page holds at most K announcers.
    fn find_value_answer(
        &self,
        from: SocketAddrV4,
        sender: NodeId,
        key: NodeId,
        page: u32,
        now: Instant,
    ) -> Body {
        let token = lock(&self.tokens).make(*from.ip(), now);
        let mut peers = lock(&self.store).peers(&key, now);
        if let (Some(ip), Some(port)) = (self.settings.announce_ip, self.settings.tcp_port) {
            if peers.len() < K && lock(&self.announced).due.contains_key(&key) {
                peers.push(CompactPeer {
                    id: self.rpc.own,
                    addr: SocketAddrV4::new(ip, port),
                });
            }
        }
        let pages = if peers.is_empty() {
            0
        } else {
            (peers.len() / (K + 1) + 1) as u32
        };
        let start = (page as usize).saturating_mul(K);
        let mut result = FindValueResult {
            token,
            contacts: if page == 0 {
                lock(&self.table).closest(&key, K, Some(&sender))
            } else {
                vec![]
            },
            peers: peers.into_iter().skip(start).take(K).collect(),
            pages,
        };
        // Stay under the datagram limit: shed contacts first, then announcers.
        loop {
            let body = Body::Response(result.encode(&key));
            let size = Datagram {
                rpc_id: RpcId([0; 20]),
                node_id: self.rpc.own,
                body: body.clone(),
            }
            .encode()
            .len();
            if size <= MAX_DATAGRAM || (result.contacts.is_empty() && result.peers.is_empty()) {
                return body;
            }
            if result.contacts.pop().is_none() {
                result.peers.pop();
            }
        }
    }

    /// A node that sent us a request: refresh it if known, else ping it (bounded) and add it
    /// when it answers, since only nodes that answer belong in the table.
    fn consider_requester(self: &Arc<Self>, contact: Contact) {
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
    async fn query(
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

    /// One lookup step against `contact`.
    async fn step(
        self: Arc<Self>,
        contact: Contact,
        key: NodeId,
        want_value: bool,
    ) -> Option<Step> {
        if !want_value {
            let (responder, value) = self
                .query(contact.addr, Request::FindNode { key })
                .await
                .ok()?;
            return Some(Step {
                contacts: decode_contacts(&value)?,
                peers: vec![],
                token: None,
                responder,
            });
        }
        let (responder, value) = self
            .query(contact.addr, Request::FindValue { key, page: 0 })
            .await
            .ok()?;
        let first = FindValueResult::decode(&value, &key)?;
        let mut peers = first.peers;
        for page in 1..first.pages.min(MAX_PAGES) {
            let Ok((_, value)) = self
                .query(contact.addr, Request::FindValue { key, page })
                .await
            else {
                break;
            };
            match FindValueResult::decode(&value, &key) {
                Some(more) => peers.extend(more.peers),
                None => break,
            }
        }
        Some(Step {
            contacts: first.contacts,
            peers,
            token: Some(first.token),
            responder,
        })
    }

    /// Kademlia's iterative lookup: keep up to ALPHA queries in flight to the closest nodes
    /// not yet asked, until the K closest known have all answered or failed.
    pub async fn lookup(self: &Arc<Self>, key: NodeId, want_value: bool) -> Lookup {
        let mut shortlist: Vec<(Contact, State)> = {
            let mut table = lock(&self.table);
            table.touch(&key, Instant::now());
            table
                .closest(&key, K, None)
                .into_iter()
                .map(|c| (c, State::Fresh))
                .collect()
        };
        let mut found = Lookup::default();
        let mut inflight = JoinSet::new();
        loop {
            let mut considered = 0;
            for (contact, state) in shortlist.iter_mut() {
                if considered >= K || inflight.len() >= ALPHA {
                    break;
                }
                match state {
                    State::Failed => continue,
                    State::Fresh => {
                        *state = State::Asked;
                        let (node, contact) = (Arc::clone(self), *contact);
                        inflight.spawn(async move {
                            (contact, node.step(contact, key, want_value).await)
                        });
                    }
                    State::Asked | State::Answered => {}
                }
                considered += 1;
            }
            let Some(joined) = inflight.join_next().await else {
                break;
            };
            let Ok((contact, outcome)) = joined else {
                continue;
            };
            let Some(step) = outcome else {
                set_state(&mut shortlist, &contact.id, State::Failed);
                continue;
            };
            set_state(&mut shortlist, &contact.id, State::Answered);
            if step.responder != contact.id {
                // Ids are learned from answers; keep the true id for tokens and results.
                if let Some(entry) = shortlist.iter_mut().find(|(c, _)| c.id == contact.id) {
                    entry.0.id = step.responder;
                }
            }
            if let Some(token) = step.token {
                found.tokens.insert(step.responder, token);
            }
            for peer in step.peers {
                if found.peers.len() < MAX_PEERS_FOUND && !found.peers.contains(&peer) {
                    found.peers.push(peer);
                }
            }
            for c in step.contacts {
                if c.id == self.rpc.own
                    || !self.allowed(*c.addr.ip())
                    || shortlist
                        .iter()
                        .any(|(s, _)| s.id == c.id || s.addr == c.addr)
                {
                    continue;
                }
                shortlist.push((c, State::Fresh));
            }
            shortlist.sort_by_key(|(c, _)| c.id.distance(&key));
            shortlist.truncate(MAX_SHORTLIST);
        }
        found.closest = shortlist
            .iter()
            .filter(|(_, s)| *s == State::Answered)
            .map(|(c, _)| *c)
            .take(K)
            .collect();
        found
    }

    /// Everyone known to announce `key`: an iterative findValue plus our own store.
    pub async fn find_peers(self: &Arc<Self>, key: NodeId) -> Vec<CompactPeer> {
        let mut peers = self.lookup(key, true).await.peers;
        for p in lock(&self.store).peers(&key, Instant::now()) {
            if !peers.contains(&p) {
                peers.push(p);
            }
        }
        peers
    }

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
        lock(&self.announced).last_announce = Some(SystemTime::now());
        tracing::debug!(hash = %hash, stored, "dht announce");
        Ok(stored)
    }

    /// Adds `hash` to the blobs we announce (now, then every `reannounce` interval).
    pub fn schedule(&self, hash: NodeId) -> bool {
        let mut a = lock(&self.announced);
        if a.due.contains_key(&hash) {
            return true;
        }
        if a.due.len() >= self.settings.max_announced {
            return false;
        }
        a.schedule(hash, Instant::now());
        self.metrics.announced_blobs.set(a.due.len() as i64);
        drop(a);
        self.wake.notify_one();
        true
    }

    pub fn is_scheduled(&self, hash: &NodeId) -> bool {
        lock(&self.announced).due.contains_key(hash)
    }

    async fn announce_loop(self: Arc<Self>, shutdown: CancellationToken) {
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

    async fn maintain(self: Arc<Self>, shutdown: CancellationToken) {
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

fn set_state(shortlist: &mut [(Contact, State)], id: &NodeId, state: State) {
    if let Some(entry) = shortlist.iter_mut().find(|(c, _)| c.id == *id) {
        entry.1 = state;
    }
}

fn error_body(message: &str) -> Body {
    Body::Error {
        kind: b"ValueError".to_vec(),
        message: message.as_bytes().to_vec(),
    }
}
