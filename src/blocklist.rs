//! Loading the blocklist (a local file and/or a URL) and purging blocked blobs from the stores.
//!
//! A list that fails to load keeps the previous one in force (a flaky list server must not
//! unblock everything); a file that is malformed at start-up stops the start, like any config
//! error.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::blob::BlobHash;
use crate::config::BlocklistConfig;
use crate::hashlist;
use crate::policy::Policy;
use crate::store::BlobStore;

/// Largest blocklist body accepted from a URL.
const MAX_LIST_BYTES: usize = 64 * 1024 * 1024;

/// The HTTP client for list URLs: bounded in time.
pub fn list_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}

/// Reads the file (if configured) and fetches the URL (if configured), merged.
///
/// A bad file is an error (the operator's mistake, to be reported). An unreachable or broken
/// URL is not: its part of the list falls back to what `current` blocks now, so an outage of
/// the list server never unblocks anything.
pub async fn load(
    config: &BlocklistConfig,
    client: &reqwest::Client,
    current: &Policy,
) -> anyhow::Result<HashSet<BlobHash>> {
    let mut hashes = HashSet::new();
    if let Some(file) = &config.file {
        hashes.extend(hashlist::load(file)?);
    }
    if let Some(url) = &config.url {
        match fetch(client, url.expose()).await {
            Ok(list) => hashes.extend(list),
            Err(err) => {
                tracing::warn!(%url, error = %format!("{err:#}"), "blocklist url failed; keeping the entries blocked now");
                hashes.extend(current.blocked_snapshot().iter().copied());
            }
        }
    }
    Ok(hashes)
}

async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<HashSet<BlobHash>> {
    // Errors without the URL: it may carry credentials (the log names it redacted).
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(reqwest::Error::without_url)?;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(reqwest::Error::without_url)?
    {
        anyhow::ensure!(
            body.len() + chunk.len() <= MAX_LIST_BYTES,
            "list is larger than {MAX_LIST_BYTES} bytes"
        );
        body.extend_from_slice(&chunk);
    }
    hashlist::parse(&String::from_utf8_lossy(&body))
}

/// Installs `hashes` as the blocklist and deletes the newly blocked blobs from the store tree.
/// Returns how many were newly blocked.
pub async fn apply(policy: &Policy, store: &dyn BlobStore, hashes: HashSet<BlobHash>) -> usize {
    let added = policy.set_blocked(hashes);
    purge(store, &added).await;
    added.len()
}

/// Deletes `hashes` from the tree. Stores that cannot delete (read-only origins) are skipped;
/// failures are logged, never fatal.
pub async fn purge(store: &dyn BlobStore, hashes: &[BlobHash]) {
    for hash in hashes {
        if let Err(err) = store.delete(hash).await {
            tracing::debug!(%hash, error = %err, "blocklist purge: delete failed");
        }
    }
}

/// Re-loads the list every `refresh_interval` until shutdown, following reloaded settings.
pub async fn refresh_loop(
    config: Arc<ArcSwap<Option<BlocklistConfig>>>,
    policy: Arc<Policy>,
    store: Arc<dyn BlobStore>,
    shutdown: CancellationToken,
) {
    let client = list_client();
    loop {
        let current = config.load_full();
        let interval = current
            .as_ref()
            .as_ref()
            .map(|c| c.refresh_interval)
            .unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(settings) = config.load_full().as_ref().clone() else {
            continue;
        };
        match load(&settings, &client, &policy).await {
            Ok(hashes) => {
                let added = apply(&policy, store.as_ref(), hashes).await;
                tracing::info!(
                    blocked = policy.blocked_count(),
                    added,
                    "blocklist refreshed"
                );
            }
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "blocklist refresh failed; keeping the previous list")
            }
        }
    }
}
