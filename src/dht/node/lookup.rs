//! Kademlia's iterative lookups: `findNode` to find the nodes closest to a key, `findValue` to
//! also collect its announcers and the store tokens an announcement needs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::{lock, Node};
use crate::dht::routing::K;
use crate::dht::wire::{decode_contacts, CompactPeer, Contact, FindValueResult, NodeId, Request};

/// Queries in flight per lookup.
pub const ALPHA: usize = 5;
/// Extra `findValue` pages fetched from one node at most.
const MAX_PAGES: u32 = 8;
/// Candidates remembered by one lookup.
const MAX_SHORTLIST: usize = 128;
/// Announcers collected by one lookup.
const MAX_PEERS_FOUND: usize = 256;
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

impl Node {
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
}

fn set_state(shortlist: &mut [(Contact, State)], id: &NodeId, state: State) {
    if let Some(entry) = shortlist.iter_mut().find(|(c, _)| c.id == *id) {
        entry.1 = state;
    }
}
