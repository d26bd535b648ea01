//! `prism-lite dht peers HASH`: is this cache visible in the DHT for a blob?
//!
//! Joins the DHT from a throwaway node (random id, ephemeral UDP port, so it never collides
//! with a running `blobcache` on the same machine), runs an iterative findValue for the blob,
//! and lists every announcer, marking this cache's own entry: the node id in
//! `dht.data_dir/node_id`, or `dht.announce_address` with the announced TCP port.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use prism_lite::blob::BlobHash;
use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::dht::{self, Dht, NodeId};
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
    let peers = runtime.block_on(async {
        let registry = prometheus::Registry::new();
        let node = Dht::bind(&dht_cfg, None, NodeId::random(), &registry).await?;
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
    })?;

    if peers.is_empty() {
        println!("no peers announce {hash}");
    }
    let mut ours = false;
    for peer in &peers {
        let is_us = Some(peer.id) == our_id
            || (Some(*peer.addr.ip()) == our_ip && Some(peer.addr.port()) == our_port);
        ours |= is_us;
        println!(
            "{} {}{}",
            peer.addr,
            peer.id,
            if is_us { " (this cache)" } else { "" }
        );
    }
    eprintln!(
        "{} peer(s) announce {hash}; this cache is {}",
        peers.len(),
        if ours { "among them" } else { "NOT among them" }
    );
    Ok(())
}
