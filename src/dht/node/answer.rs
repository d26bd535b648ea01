//! Answering other nodes: the receive loop (which also routes answers back to our own pending
//! RPCs), `ping`, `findNode`, paged `findValue` and `store` with its token check.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{lock, Node};
use crate::dht::bencode::Value;
use crate::dht::routing::K;
use crate::dht::store::StoreRefusal;
use crate::dht::wire::{
    encode_contacts, Body, CompactPeer, Contact, Datagram, FindValueResult, NodeId, Request, RpcId,
    MAX_DATAGRAM,
};

impl Node {
    pub(super) async fn receive_loop(self: Arc<Self>, shutdown: CancellationToken) {
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
                let (reason, message) = match result {
                    Ok(()) => return Body::Response(Value::bytes(b"OK".to_vec())),
                    Err(StoreRefusal::Full) => ("store_full", "store is full"),
                    Err(StoreRefusal::AddressFull) => {
                        ("address_full", "too many announcements from this address")
                    }
                };
                self.metrics.refused.with_label_values(&[reason]).inc();
                error_body(message)
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
}

fn error_body(message: &str) -> Body {
    Body::Error {
        kind: b"ValueError".to_vec(),
        message: message.as_bytes().to_vec(),
    }
}
