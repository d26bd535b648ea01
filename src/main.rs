//! The `prism-lite` command line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prism_lite::app::{self, RunOptions};
use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::store;

mod cli_prefetch;

/// A small, fast, never-wrong blob cache for the LBRY/Odysee network.
#[derive(Parser)]
#[command(name = "prism-lite", version, about)]
struct Cli {
    /// Directory holding `<command>.yaml` (e.g. blobcache.yaml).
    #[arg(long, global = true, default_value = "./")]
    conf_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the blob cache described by CONF_DIR/blobcache.yaml.
    Blobcache {
        /// Port for /metrics, /healthz and /readyz.
        #[arg(long, default_value_t = 2112)]
        metrics_port: u16,
        /// Address for the metrics port (all interfaces by default).
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        metrics_address: IpAddr,
        /// Do not apply the blocklist (accepted for reflector.go compatibility).
        #[arg(long)]
        disable_blocklist: bool,
    },
    /// Warm the cache with the channels of the `prefetch:` section of CONF_DIR/blobcache.yaml,
    /// without starting any server.
    Prefetch {
        /// Run once, print a per-channel summary and exit (non-zero if the API was unreachable).
        /// Without it, runs every `prefetch.interval` until stopped.
        #[arg(long)]
        once: bool,
    },
    /// Load CONF_DIR/<COMMAND>.yaml, print the store tree, and exit non-zero if it is invalid.
    CheckConfig {
        /// Which command's file to check.
        #[arg(default_value = "blobcache")]
        command: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Blobcache {
            metrics_port,
            metrics_address,
            disable_blocklist,
        } => run_blobcache(RunOptions {
            conf_dir: cli.conf_dir,
            metrics_addr: SocketAddr::new(metrics_address, metrics_port),
            disable_blocklist,
        }),
        Command::CheckConfig { command } => check_config(&cli.conf_dir, &command),
        Command::Prefetch { once } => cli_prefetch::run(&cli.conf_dir, once),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(conf_dir: &std::path::Path, command: &str) -> anyhow::Result<()> {
    if command != "blobcache" {
        anyhow::bail!("unknown command {command:?}; allowed: blobcache");
    }
    let cfg: BlobcacheConfig = config::load_file(conf_dir, command)?;
    println!("{}/{command}.yaml is valid.", conf_dir.display());
    if let Some(http) = &cfg.servers.http {
        println!(
            "servers.http: {}:{} (max_concurrent_requests {})",
            http.address.as_deref().unwrap_or("0.0.0.0"),
            http.port,
            http.max_concurrent_requests
        );
    }
    if let Some(p) = &cfg.prefetch {
        println!(
            "prefetch: api {} ({} inline channels, list file {}, every {:?}, budget {}, enabled {})",
            p.api,
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
    Ok(())
}

fn run_blobcache(opts: RunOptions) -> anyhow::Result<()> {
    let cfg: BlobcacheConfig = config::load_file(&opts.conf_dir, "blobcache")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let running = app::start(cfg, opts).await?;
        let shutdown = running.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new connections, draining in-flight requests");
            shutdown.cancel();
        });
        running.wait().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
