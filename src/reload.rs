//! Reloading `blobcache.yaml` without a restart (SIGHUP).
//!
//! What can change live does: the protected list (its file is re-read), the blocklist (file and
//! URL re-read, newly blocked blobs purged), the `edge_token` and request limits of
//! `servers.http`, `servers.http3` and `servers.peer`, and their `shutdown_timeout` (so a
//! rotated token stops working on every door at once),
//! `limits:` (the in-flight budget), and the prefetcher's channels and limits. What cannot
//! (ports, addresses, TLS files, connection limits, the store tree, the LBRY API client's
//! settings) is reported as needing a restart, key by key, and left as it is. Key names only:
//! values (tokens) are never reported.
//! A file that does not load, or a list that does not parse, rejects the whole reload: the
//! running configuration stays exactly as it was. The access log file is reopened on every
//! reload, whatever the file says (logrotate sends SIGHUP after moving it away).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use serde_yaml::Value;

use crate::blocklist;
use crate::config::{self, BlobcacheConfig, BlocklistConfig};
use crate::hashlist;
use crate::policy::Policy;
use crate::prefetch::Prefetcher;
use crate::server::access_log::AccessLog;
use crate::server::budget::InflightBudget;
use crate::server::door::Door;
use crate::store::BlobStore;

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings now in force.
    pub applied: Vec<String>,
    /// Settings that changed in the file but need a restart.
    pub needs_restart: Vec<String>,
}

/// The running front doors whose settings a reload can change.
pub struct LiveDoors {
    pub http: Option<Arc<Door>>,
    pub http3: Option<Arc<Door>>,
    pub peer: Option<Arc<Door>>,
    /// The in-flight budget every door shares (`limits:`).
    pub budget: Arc<InflightBudget>,
    /// The doors' access log, reopened on every reload.
    pub access_log: Option<Arc<AccessLog>>,
}

pub struct Reloader {
    /// The file re-read on reload; `None` when the configuration came from command-line flags
    /// (`prism-lite reflector --disk-cache ...`): there is nothing to re-read.
    file: Option<PathBuf>,
    /// The file as last applied (raw, to compare the parts that need a restart). The lock also
    /// serializes reloads.
    applied: tokio::sync::Mutex<Value>,
    policy: Arc<Policy>,
    store: Arc<dyn BlobStore>,
    doors: LiveDoors,
    /// `None` when `--disable-blocklist` is set.
    blocklist: Option<Arc<ArcSwap<Option<BlocklistConfig>>>>,
    prefetcher: Option<Arc<Prefetcher>>,
    client: reqwest::Client,
}

/// Reads a serving config file (`blobcache.yaml`, `reflector.yaml`) as typed config and as raw
/// YAML.
pub fn read_config(path: &std::path::Path) -> anyhow::Result<(BlobcacheConfig, Value)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let typed: BlobcacheConfig = config::parse(&text, &path.display().to_string())?;
    let raw: Value = serde_yaml::from_str(&text)?;
    Ok((typed, raw))
}

/// Loads the protected list named by the config (empty when none).
pub fn load_protected(cfg: &BlobcacheConfig) -> anyhow::Result<HashSet<crate::blob::BlobHash>> {
    match &cfg.protected_list {
        Some(path) => hashlist::load(path).context("protected_list"),
        None => Ok(HashSet::new()),
    }
}

impl Reloader {
    pub fn new(
        file: Option<PathBuf>,
        applied: Value,
        policy: Arc<Policy>,
        store: Arc<dyn BlobStore>,
        doors: LiveDoors,
        blocklist: Option<Arc<ArcSwap<Option<BlocklistConfig>>>>,
        prefetcher: Option<Arc<Prefetcher>>,
    ) -> Reloader {
        Reloader {
            file,
            applied: tokio::sync::Mutex::new(applied),
            policy,
            store,
            doors,
            blocklist,
            prefetcher,
            client: blocklist::list_client(),
        }
    }

    /// Re-reads the file and applies what can change live.
    pub async fn reload(&self) -> anyhow::Result<ReloadReport> {
        let mut applied = self.applied.lock().await;
        if let Some(log) = &self.doors.access_log {
            log.reopen();
        }
        let Some(file) = &self.file else {
            anyhow::bail!(
                "configured by command-line flags: no file to re-read; restart with new flags"
            );
        };
        let (cfg, raw) = read_config(file)?;
        // Load everything that can fail before changing anything.
        let protected = load_protected(&cfg)?;
        let blocked = match (&self.blocklist, &cfg.blocklist) {
            (Some(_), Some(b)) => Some(
                blocklist::load(b, &self.client, &self.policy)
                    .await
                    .context("blocklist")?,
            ),
            (Some(_), None) => Some(HashSet::new()),
            (None, _) => None,
        };

        let mut report = ReloadReport {
            needs_restart: restart_needed(&applied, &raw),
            ..ReloadReport::default()
        };

        self.policy.set_protected(protected);
        report.applied.push(format!(
            "protected_list ({} hashes)",
            self.policy.protected_count()
        ));
        if let (Some(settings), Some(hashes)) = (&self.blocklist, blocked) {
            settings.store(Arc::new(cfg.blocklist.clone()));
            let added = blocklist::apply(&self.policy, self.store.as_ref(), hashes).await;
            report.applied.push(format!(
                "blocklist ({} hashes, {added} newly blocked)",
                self.policy.blocked_count()
            ));
        }
        let live = &self.doors;
        let servers = &cfg.servers;
        for (name, door, settings) in [
            (
                "http",
                &live.http,
                servers.http.as_ref().map(|c| c.settings()),
            ),
            (
                "http3",
                &live.http3,
                servers.http3.as_ref().map(|c| c.settings()),
            ),
            (
                "peer",
                &live.peer,
                servers.peer.as_ref().map(|c| c.settings()),
            ),
        ] {
            if let (Some(door), Some(settings)) = (door, settings) {
                door.reconfigure(settings);
                report.applied.push(format!(
                    "servers.{name} {}",
                    live_keys(name).unwrap_or_default().join(", ")
                ));
            }
        }
        live.budget.reconfigure(&cfg.limits);
        report.applied.push(
            "limits max_inflight_bytes, max_inflight_bytes_per_ip, inflight_wait, write_stall_timeout"
                .to_string(),
        );
        match (&self.prefetcher, cfg.prefetch) {
            (Some(prefetcher), Some(settings)) => {
                let kept = prefetcher.reconfigure(settings);
                report.applied.push(
                    "prefetch channels, channel_list_file, interval, concurrency, budget, enabled"
                        .to_string(),
                );
                report
                    .needs_restart
                    .extend(kept.into_iter().map(String::from));
            }
            (None, None) => {}
            _ => report
                .needs_restart
                .push("prefetch (added or removed)".to_string()),
        }
        *applied = raw;
        Ok(report)
    }
}

/// The keys of `servers.<door>` that a reload applies to the running door; `None` for a door
/// that takes none (its every key needs a restart).
fn live_keys(door: &str) -> Option<&'static [&'static str]> {
    // What [`Door::reconfigure`] applies: the token and the request limits at once,
    // `shutdown_timeout` at the next drain.
    const SERVING: &[&str] = &[
        "edge_token",
        "max_concurrent_requests",
        "max_queued_requests",
        "queue_timeout",
        "shutdown_timeout",
    ];
    match door {
        "http" | "http3" => Some(SERVING),
        "peer" => Some(&SERVING[1..]),
        _ => None,
    }
}

/// What changed between two versions of the file that only a restart can apply, by key.
fn restart_needed(old: &Value, new: &Value) -> Vec<String> {
    let mut changed = Vec::new();
    if old.get("store") != new.get("store") {
        changed.push("store (the store tree)".to_string());
    }
    if old.get("dht") != new.get("dht") {
        changed.push("dht (the DHT node)".to_string());
    }
    if old.get("stream") != new.get("stream") {
        changed.push("stream (playback settings)".to_string());
    }
    if old.get("access_log") != new.get("access_log") {
        changed.push("access_log (its path and format)".to_string());
    }
    if old.get("nat") != new.get("nat") {
        changed.push("nat (port mapping on the router)".to_string());
    }
    if old.get("trackers") != new.get("trackers") {
        changed.push("trackers (the tracker announcer)".to_string());
    }
    if old.get("pins") != new.get("pins") {
        changed.push("pins (pinning)".to_string());
    }
    if old.get("admin") != new.get("admin") {
        changed.push("admin (the admin API)".to_string());
    }
    for door in ["http", "http3", "peer", "reflector"] {
        let old_server = old.get("servers").and_then(|s| s.get(door));
        let new_server = new.get("servers").and_then(|s| s.get(door));
        match (old_server, new_server) {
            (Some(o), Some(n)) => {
                let live = live_keys(door).unwrap_or_default();
                for key in changed_keys(o, n) {
                    if !live.contains(&key.as_str()) {
                        changed.push(format!("servers.{door}.{key}"));
                    }
                }
            }
            (None, None) => {}
            _ => changed.push(format!("servers.{door} (added or removed)")),
        }
    }
    changed
}

/// The keys (of two YAML maps) whose values differ, sorted, each once.
fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let keys = |v: &Value| -> Vec<String> {
        v.as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut all = keys(old);
    all.extend(keys(new));
    all.sort();
    all.dedup();
    all.retain(|k| old.get(k.as_str()) != new.get(k.as_str()));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn a_changed_limit_needs_no_restart() {
        let old = yaml("store: {noop: {}}\nlimits: {max_inflight_bytes: 1GiB}");
        let new = yaml("store: {noop: {}}\nlimits: {max_inflight_bytes: 2GiB, inflight_wait: 1s}");
        assert!(restart_needed(&old, &new).is_empty());
    }

    #[test]
    fn only_keys_that_cannot_change_live_need_a_restart() {
        let old = yaml(
            "servers: {http: {port: 1, edge_token: a}, http3: {port: 2, edge_token: a, cert_file: x}, peer: {port: 3}}\nstore: {noop: {}}",
        );
        let new = yaml(
            "servers: {http: {port: 1, edge_token: b, max_connections: 5}, http3: {port: 2, edge_token: b, cert_file: y, max_concurrent_requests: 9}, peer: {port: 3, idle_timeout: 5s}}\nstore: {noop: {}}",
        );
        assert_eq!(
            restart_needed(&old, &new),
            [
                "servers.http.max_connections",
                "servers.http3.cert_file",
                "servers.peer.idle_timeout"
            ]
        );
    }
}
