//! `prism-lite dht peers HASH`: is this cache visible in the DHT for a blob?
//!
//! Joins the DHT from a throwaway node (random id, ephemeral UDP port, so it never collides
//! with a running `blobcache` on the same machine), runs an iterative findValue for the blob,
//! and lists every announcer, marking this cache's own entry: the node id in
//! `dht.data_dir/node_id`, or `dht.announce_address` with the announced TCP port.
//!
//! With `trackers:` configured it asks every tracker too (an announce with port 0, as the
//! SDK's downloader does), lists the peers each one gives, and marks this cache's entry: the
//! announced TCP port at `dht.announce_address`, or at a loopback address when that is unset
//! (a tracker on the same machine sees us there). A DHT that cannot be joined is then
//! reported, not fatal.
//!
//! It ends with the reachability verdict ([`prism_lite::reachability::judge`]) from what this
//! lookup saw: where the DHT and the trackers list this cache, and whether that address is
//! this machine's own. Whether a router forwards the port is known to the running blobcache,
//! whose status page also counts peers that connected from outside.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use prism_lite::blob::BlobHash;
use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::dht::{self, Dht, NodeId};
use prism_lite::reachability::{self, Evidence, NatKnowledge, Sighting};
use prism_lite::tracker::client::Outcome;
use std::net::Ipv4Addr;
use tokio_util::sync::CancellationToken;

/// Bound on joining plus the lookup, so the command always ends.
const OVERALL: Duration = Duration::from_secs(60);

pub fn peers(conf_dir: &Path, hash: &str) -> anyhow::Result<()> {
    let hash = BlobHash::parse(hash).map_err(|e| anyhow::anyhow!("bad hash {hash:?}: {e}"))?;
    let cfg: BlobcacheConfig = config::load_file(conf_dir, "blobcache")?;
    let mut dht_cfg = cfg.dht.clone().unwrap_or_default();
    let our_id = dht::read_node_id(&dht_cfg.data_dir);
    let our_port = dht_cfg
        .announce_port
        .or(cfg.servers.peer.as_ref().map(|p| p.port));
    let our_ip = dht_cfg.announce_address;
    dht_cfg.port = 0;
    dht_cfg.address = None;
    let key = NodeId::from_slice(hash.as_bytes()).context("blob hash is not 48 bytes")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let trackers = cfg.trackers.clone();
    let (dht_peers, tracker_answers) = runtime.block_on(async {
        let asking = async {
            match &trackers {
                Some(t) => {
                    prism_lite::tracker::lookup(&t.servers, &hash, t.timeout, t.retries).await
                }
                None => Vec::new(),
            }
        };
        tokio::join!(dht_lookup(&dht_cfg, key), asking)
    });
    let peers = match dht_peers {
        Ok(peers) => Some(peers),
        Err(e) if trackers.is_some() => {
            eprintln!("dht: {e:#}");
            None
        }
        Err(e) => return Err(e),
    };
    let us = Us {
        id: our_id,
        ip: our_ip,
        port: our_port,
    };
    let seen = print_listing(&hash, &us, peers.as_deref(), &tracker_answers);
    let asked = usize::from(peers.is_some())
        + tracker_answers
            .iter()
            .filter(|(_, o)| o.label() == "ok")
            .count();
    let evidence = Evidence {
        peer_port: cfg.servers.peer.as_ref().map_or(0, |p| p.port),
        local_ips: reachability::local_ipv4s(),
        asked,
        seen,
        not_asked_because: None,
        nat: match cfg.nat {
            Some(_) => NatKnowledge::Elsewhere,
            None => NatKnowledge::Off,
        },
        outside_connections: 0,
    };
    let (verdict, because) = reachability::judge(&evidence);
    println!(
        "reachable from outside: {}, because {because}",
        verdict.as_str()
    );
    Ok(())
}

/// How this cache appears in listings: its node id, announced address and port.
struct Us {
    id: Option<NodeId>,
    ip: Option<Ipv4Addr>,
    port: Option<u16>,
}

/// Prints every announcer the DHT and each tracker gave, marking ours, and returns where we
/// were listed. A tracker lists peers without ids: ours is our port at an address that is ours
/// (announced, this machine's, or where the DHT lists us).
fn print_listing(
    hash: &BlobHash,
    us: &Us,
    dht_peers: Option<&[dht::CompactPeer]>,
    tracker_answers: &[(String, Outcome)],
) -> Vec<Sighting> {
    let dht_sightings: Vec<Sighting> = dht_peers
        .into_iter()
        .flatten()
        .filter(|p| {
            Some(p.id) == us.id || (Some(*p.addr.ip()) == us.ip && Some(p.addr.port()) == us.port)
        })
        .map(|p| Sighting {
            source: "DHT".into(),
            addr: p.addr,
        })
        .collect();
    let mut known: Vec<Ipv4Addr> = dht_sightings.iter().map(|s| *s.addr.ip()).collect();
    known.extend(us.ip);
    known.extend(reachability::local_ipv4s());
    let mut at_trackers = Vec::new();
    for (server, outcome) in tracker_answers {
        let listed = prism_lite::tracker::peers_of(outcome);
        eprintln!(
            "tracker {server}: {} ({} peer(s))",
            outcome.label(),
            listed.len()
        );
        let ours = us.port.map_or_else(Vec::new, |port| {
            reachability::tracker_sightings(server, &listed, port, &known)
        });
        for addr in listed {
            let mark = ours.iter().any(|s| s.addr == addr);
            println!("{addr} tracker {server}{}", this_cache(mark));
        }
        at_trackers.extend(ours);
    }
    if dht_peers.is_some_and(<[_]>::is_empty) {
        println!("no peers announce {hash} in the DHT");
    }
    for peer in dht_peers.into_iter().flatten() {
        let mark = dht_sightings.iter().any(|s| s.addr == peer.addr);
        println!("{} {}{}", peer.addr, peer.id, this_cache(mark));
    }
    let mut seen = dht_sightings;
    seen.extend(at_trackers);
    eprintln!(
        "{} peer(s) announce {hash} in the DHT; this cache is {}",
        dht_peers.map_or(0, <[_]>::len),
        if seen.is_empty() {
            "NOT among them"
        } else {
            "among them"
        }
    );
    seen
}

fn this_cache(mark: bool) -> &'static str {
    if mark {
        " (this cache)"
    } else {
        ""
    }
}

/// Joins the DHT from a throwaway node and looks `key` up.
async fn dht_lookup(
    dht_cfg: &dht::DhtConfig,
    key: NodeId,
) -> anyhow::Result<Vec<dht::CompactPeer>> {
    let registry = prometheus::Registry::new();
    let node = Dht::bind(dht_cfg, None, NodeId::random(), &registry).await?;
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(node.clone().serve(shutdown.clone()));
    let result = tokio::time::timeout(OVERALL, async {
        let contacts = node.join().await;
        if contacts == 0 {
            anyhow::bail!(
                "could not reach any DHT node (bootstrap: {}); check dht.bootstrap and \
                     that outgoing UDP is allowed",
                dht_cfg.bootstrap.join(", ")
            );
        }
        eprintln!("joined the DHT: {contacts} contacts");
        Ok(node.find_peers(key).await)
    })
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("DHT lookup took longer than {OVERALL:?}")));
    shutdown.cancel();
    let _ = serving.await;
    result
}
