//! `prism-lite check-config`: load the file and run every check that start-up runs, without
//! starting anything, then print what would run. Secrets print as `***`.
//!
//! The checks are start-up's own functions, called the same way (the store constructors via
//! [`store::check::check`], the protected-list and blocklist loaders, the HTTP/3 certificate
//! loader), so a file that passes here does not fail at start for a reason this could see.

use std::path::Path;

use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::secret::shown;
use prism_lite::store::{self, origin::check_base_url};
use prism_lite::{hashlist, quic, reload};

/// The commands whose file `check-config` knows.
pub const COMMANDS: &str = "blobcache, reflector, upload";

pub fn run(conf_dir: &Path, command: &str) -> anyhow::Result<()> {
    let file = format!("{}/{command}.yaml", conf_dir.display());
    match command {
        "blobcache" | "reflector" => {
            let cfg: BlobcacheConfig = config::load_file(conf_dir, command)?;
            check_serving(&cfg, &file)?;
            if command == "reflector" {
                print_ingest_door(&cfg);
            }
            Ok(())
        }
        "upload" => check_upload(conf_dir, &file),
        other => anyhow::bail!("unknown command {other:?}; allowed: {COMMANDS}"),
    }
}

/// `prism-lite reflector` always runs the upload door: as `servers.reflector` says, on
/// `--receiver-port` when that is given.
fn print_ingest_door(cfg: &BlobcacheConfig) {
    match &cfg.servers.reflector {
        Some(r) => println!(
            "ingest: the upload door of servers.reflector (port {}, or --receiver-port)",
            r.port
        ),
        None => println!("ingest: the upload door on --receiver-port (default 5566)"),
    }
}

/// `upload.yaml`: the store the uploads are put into.
fn check_upload(conf_dir: &Path, file: &str) -> anyhow::Result<()> {
    let cfg: config::UploadConfig = config::load_file(conf_dir, "upload")?;
    let notes = store::check::check(&cfg.store)?;
    println!("{file} is valid.");
    if cfg.database.is_some() {
        println!("database: accepted and ignored (prism-lite keeps no database)");
    }
    println!("store:\n{}", store::describe(&cfg.store).trim_end());
    for note in notes {
        println!("note: {note}");
    }
    Ok(())
}

/// Every check start-up runs on a serving config (blobcache or reflector), then what would run.
pub fn check_serving(cfg: &BlobcacheConfig, file: &str) -> anyhow::Result<()> {
    let notes = store::check::check(&cfg.store)?;
    let protected = reload::load_protected(cfg)?;
    if let Some(list) = &cfg.blocklist {
        if let Some(file) = &list.file {
            hashlist::load(file).map_err(|e| anyhow::anyhow!("blocklist.file: {e:#}"))?;
        }
        if let Some(url) = &list.url {
            check_base_url("blocklist", "url", url.expose())?;
        }
    }
    if let Some(problem) = cfg.servers.proxy_problem() {
        anyhow::bail!(problem);
    }
    if let Some(http3) = &cfg.servers.http3 {
        let identity = quic::server_identity(http3)?;
        quic::server_config(http3, identity)?;
    }

    println!("{file} is valid.");
    print_servers(cfg);
    if let Some(path) = &cfg.protected_list {
        println!(
            "protected_list: {} ({} hashes)",
            path.display(),
            protected.len()
        );
    }
    if let Some(list) = &cfg.blocklist {
        println!(
            "blocklist: file {}, url {}, refresh every {:?}",
            list.file
                .as_ref()
                .map_or_else(|| "none".into(), |f| f.display().to_string()),
            list.url
                .as_ref()
                .map_or_else(|| "none".into(), ToString::to_string),
            list.refresh_interval
        );
    }
    if let Some(log) = &cfg.access_log {
        println!("access_log: {} ({:?})", log.path.display(), log.format);
    }
    if let Some(p) = &cfg.prefetch {
        println!(
            "prefetch: api {} ({} inline channels, list file {}, every {:?}, budget {}, enabled {})",
            prism_lite::secret::redact_url(&p.api),
            p.channels.len(),
            p.channel_list_file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "none".into()),
            p.interval,
            p.run_byte_budget,
            p.enabled
        );
    }
    println!("store:\n{}", store::describe(&cfg.store).trim_end());
    for note in notes {
        println!("note: {note}");
    }
    Ok(())
}

fn print_servers(cfg: &BlobcacheConfig) {
    let host = |a: &Option<String>| a.clone().unwrap_or_else(|| "0.0.0.0".into());
    if let Some(http) = &cfg.servers.http {
        println!(
            "servers.http: {}:{} (max_concurrent_requests {}, max_connections {}, edge_token {})",
            host(&http.address),
            http.port,
            http.max_concurrent_requests,
            http.max_connections,
            shown(http.edge_token.as_ref())
        );
    }
    if let Some(h3) = &cfg.servers.http3 {
        println!(
            "servers.http3: {}:{} udp (max_concurrent_requests {}, max_connections {}, max_streams_per_connection {}, tls {}, edge_token {})",
            host(&h3.address),
            h3.port,
            h3.max_concurrent_requests,
            h3.max_connections,
            h3.max_streams_per_connection,
            h3.cert_file
                .as_ref()
                .map_or_else(|| "self-signed".into(), |c| c.display().to_string()),
            shown(h3.edge_token.as_ref())
        );
    }
    if let Some(peer) = &cfg.servers.peer {
        println!(
            "servers.peer: {}:{} (max_connections {}, max_request_size {}, idle_timeout {:?}, write_timeout {:?})",
            host(&peer.address),
            peer.port,
            peer.max_connections,
            peer.max_request_size,
            peer.idle_timeout,
            peer.write_timeout
        );
    }
    if let Some(r) = &cfg.servers.reflector {
        println!(
            "servers.reflector: {}:{} (max_connections {}, max_connections_per_ip {}, allow {})",
            host(&r.address),
            r.port,
            r.max_connections,
            r.max_connections_per_ip,
            r.allow
                .as_ref()
                .map_or_else(|| "any".into(), |a| format!("{} networks", a.len()))
        );
    }
}
