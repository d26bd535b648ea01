//! The `prism-lite` command line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use prism_lite::app::{self, RunOptions};
use prism_lite::blob::BlobHash;
use prism_lite::blocklist;
use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::metrics::Metrics;
use prism_lite::policy::Policy;
use prism_lite::reload;
use prism_lite::store::{self, disk::DiskStore};
use tokio::signal::unix::{signal, SignalKind};

mod cli_check;
mod cli_dht;
mod cli_encode;
mod cli_prefetch;
mod cli_reflector;
mod cli_upload;
mod reflector_flags;

/// A small, fast, never-wrong blob cache for the LBRY/Odysee network.
#[derive(Parser)]
#[command(name = "prism-lite", version, about)]
struct Cli {
    /// Directory holding `<command>.yaml` (e.g. blobcache.yaml).
    #[arg(long, global = true, default_value = "./")]
    conf_dir: PathBuf,
    /// Log line format on stderr: `text` (colours only on a terminal) or `json` (one object per
    /// line, for journald/Loki pipelines).
    #[arg(long, global = true, env = "PRISM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Debug logging for these components (comma-separated; reflector.go's `-v`).
    #[arg(short = 'v', long, global = true, value_delimiter = ',', value_name = "COMPONENTS",
          value_parser = clap::builder::PossibleValuesParser::new(VERBOSE_COMPONENTS.map(|(name, _)| name)))]
    verbose: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
        /// Do not apply the blocklist (`--disable-blocklist` or `--disable-blocklist=true`).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value_t = false,
              action = clap::ArgAction::Set)]
        disable_blocklist: bool,
    },
    /// Run reflector.go's ingest server: CONF_DIR/reflector.yaml's servers and store, plus the
    /// upload door (reflector protocol) on --receiver-port.
    Reflector(cli_reflector::ReflectorArgs),
    /// Upload every blob file of PATH (e.g. lbrynet's blobfiles/) into the store of
    /// CONF_DIR/upload.yaml (reflector.go's uploader).
    Upload(cli_upload::UploadArgs),
    /// Fetch one blob through the store tree (cache, then origin) to stdout or a file.
    Getblob {
        /// The blob's SHA-384 hash (96 lowercase hex characters).
        hash: String,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Re-hash every blob in the disk stores of blobcache.yaml and remove corrupt ones.
    CheckIntegrity,
    /// Warm the cache with the channels of the `prefetch:` section of CONF_DIR/blobcache.yaml,
    /// without starting any server.
    Prefetch {
        /// Run once, print a per-channel summary and exit (non-zero if the API was unreachable).
        /// Without it, runs every `prefetch.interval` until stopped.
        #[arg(long)]
        once: bool,
    },
    /// LBRY DHT tools (uses the `dht:` section of CONF_DIR/blobcache.yaml).
    Dht {
        #[command(subcommand)]
        command: DhtCommand,
    },
    /// Make an LBRY stream from FILE: write every blob (and the sd blob) as OUT/<hash> and print
    /// the sd hash. Byte-compatible with the LBRY SDK's encoder.
    Encode {
        /// The file to encode; its base name becomes the stream name.
        file: PathBuf,
        /// Directory for the blobs (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The AES-128 key as 32 hex characters (default: random). Needs --ivs.
        #[arg(long, requires = "ivs")]
        key: Option<String>,
        /// A file of IVs, one 32-hex-character IV per line: one per content blob plus one for
        /// the terminator (default: random). Needs --key.
        #[arg(long, requires = "key")]
        ivs: Option<PathBuf>,
    },
    /// Load CONF_DIR/<COMMAND>.yaml, print the store tree, and exit non-zero if it is invalid.
    CheckConfig {
        /// Which command's file to check.
        #[arg(default_value = "blobcache")]
        command: String,
    },
}

#[derive(Subcommand)]
enum DhtCommand {
    /// Join the DHT, look a blob up and list the peers announcing it (marking this cache).
    Peers {
        /// The blob's SHA-384 hash (96 lowercase hex characters), e.g. a stream's sd hash.
        hash: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| exit_on_parse_error(e));
    init_logging(cli.log_format, &cli.verbose);
    let result = match cli.command {
        Command::Blobcache {
            metrics_port,
            metrics_address,
            disable_blocklist,
        } => {
            let opts = RunOptions {
                conf_dir: cli.conf_dir,
                metrics_addr: SocketAddr::new(metrics_address, metrics_port),
                disable_blocklist,
            };
            serve(|| app::start_from_dir(opts))
        }
        Command::Reflector(args) => cli_reflector::run(&cli.conf_dir, args),
        Command::Upload(args) => cli_upload::run(&cli.conf_dir, args),
        Command::CheckConfig { command } => cli_check::run(&cli.conf_dir, &command),
        Command::Getblob { hash, output } => getblob(&cli.conf_dir, &hash, output.as_deref()),
        Command::CheckIntegrity => match check_integrity(&cli.conf_dir) {
            Ok(0) => Ok(()),
            Ok(_) => return ExitCode::from(CORRUPT_FOUND),
            Err(e) => Err(e),
        },
        Command::Encode {
            file,
            out,
            key,
            ivs,
        } => cli_encode::run(&file, &out, key.as_deref(), ivs.as_deref()),
        Command::Prefetch { once } => cli_prefetch::run(&cli.conf_dir, once),
        Command::Dht {
            command: DhtCommand::Peers { hash },
        } => cli_dht::peers(&cli.conf_dir, &hash),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `check-integrity`'s exit status when it found (and removed) corrupt blobs: the run itself
/// worked, but a cron job or an alert must notice that the disk is damaging data.
const CORRUPT_FOUND: u8 = 2;

/// A bad command line is one line on stderr (which flag, what is wrong, what is allowed) and
/// exit status 2; help and version print as clap prints them.
fn exit_on_parse_error(err: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
        _ => {
            let text = err.render().to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .filter(|l| !l.starts_with("For more information"))
                .collect();
            eprintln!("{}", line.join(" "));
            std::process::exit(2)
        }
    }
}

/// `-v` components and the log targets they raise to debug (`all`: every prism-lite module).
const VERBOSE_COMPONENTS: [(&str, &str); 11] = [
    ("all", "prism_lite"),
    ("dht", "prism_lite::dht"),
    ("node_finder", "prism_lite::dht"),
    ("store", "prism_lite::store"),
    ("server", "prism_lite::server"),
    ("http", "prism_lite::server::http"),
    ("http3", "prism_lite::server::http3"),
    ("peer", "prism_lite::server::peer"),
    ("reflector", "prism_lite::server::reflector"),
    ("playback", "prism_lite::server::playback"),
    ("prefetch", "prism_lite::prefetch"),
];

/// Logs go to stderr at `RUST_LOG` (default `info`), with `-v` components at debug. Colour
/// codes only when stderr is a terminal: in a file, a pipe or journald they are noise that
/// breaks grep and parsers.
fn init_logging(format: LogFormat, verbose: &[String]) {
    use std::io::IsTerminal;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for (name, target) in VERBOSE_COMPONENTS {
        if verbose.iter().any(|v| v == name) {
            if let Ok(directive) = format!("{target}=debug").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Starts a server (`blobcache`, `reflector`) and runs it until SIGINT/SIGTERM, reloading its
/// file on SIGHUP.
fn serve<F, Fut>(start: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<app::Running>>,
{
    runtime()?.block_on(async move {
        let running = start().await?;
        let shutdown = running.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new connections, draining in-flight requests");
            shutdown.cancel();
        });
        let reloader = running.reloader();
        tokio::spawn(async move {
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload needs a restart");
                return;
            };
            while hup.recv().await.is_some() {
                match reloader.reload().await {
                    Ok(report) => {
                        tracing::info!(applied = ?report.applied, "configuration reloaded");
                        if !report.needs_restart.is_empty() {
                            tracing::warn!(changed = ?report.needs_restart, "these changes need a restart to take effect");
                        }
                    }
                    Err(err) => tracing::error!(
                        error = %format!("{err:#}"),
                        "reload rejected; the running configuration stays"
                    ),
                }
            }
        });
        running.wait().await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn getblob(
    conf_dir: &std::path::Path,
    hash: &str,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let hash = BlobHash::parse(hash).map_err(|e| anyhow::anyhow!("bad hash {hash:?}: {e}"))?;
    let cfg: BlobcacheConfig = config::load_file(conf_dir, "blobcache")?;
    let blob = runtime()?.block_on(async {
        let metrics = Arc::new(Metrics::new());
        let policy = Arc::new(Policy::new(
            reload::load_protected(&cfg)?,
            Default::default(),
        ));
        if let Some(list) = &cfg.blocklist {
            policy.set_blocked(blocklist::load(list, &blocklist::list_client(), &policy).await?);
        }
        let root = app::build_root(&cfg, &metrics, &policy, cfg.blocklist.is_some()).await?;
        let blob = root.get(&hash).await;
        anyhow::Ok(blob)
    })?;
    let blob = blob.map_err(|e| anyhow::anyhow!("{hash}: {e}"))?;
    prism_lite::blob::verify(&blob.data, &hash)?;
    match output {
        Some(path) => std::fs::write(path, &blob.data)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?,
        None => std::io::stdout().lock().write_all(&blob.data)?,
    }
    eprintln!("{hash}: {} bytes, verified", blob.data.len());
    Ok(())
}

/// Returns how many corrupt blobs were found (and removed).
fn check_integrity(conf_dir: &std::path::Path) -> anyhow::Result<usize> {
    let cfg: BlobcacheConfig = config::load_file(conf_dir, "blobcache")?;
    let disks = cfg.store.disks();
    anyhow::ensure!(
        !disks.is_empty(),
        "blobcache.yaml has no disk store to check"
    );
    let metrics = Arc::new(Metrics::new());
    let ctx = store::BuildContext { metrics };
    let mut corrupt_total = 0;
    for disk_cfg in disks {
        let disk = DiskStore::open(disk_cfg, &ctx)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", disk_cfg.mount_point.display()))?;
        disk.wait_indexed(None);
        let bar = indicatif::ProgressBar::new(disk.used_bytes());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )?
            .progress_chars("=> "),
        );
        bar.set_message(disk_cfg.mount_point.display().to_string());
        let report = disk.check_integrity(|n| bar.inc(n));
        bar.finish();
        println!(
            "{}: {} blobs checked ({} bytes), {} corrupt removed",
            disk_cfg.mount_point.display(),
            report.checked,
            report.bytes,
            report.corrupt_removed.len()
        );
        for hash in &report.corrupt_removed {
            println!("  removed {hash}");
        }
        corrupt_total += report.corrupt_removed.len();
    }
    println!("integrity check done: {corrupt_total} corrupt blobs removed");
    if corrupt_total > 0 {
        eprintln!("check-integrity: {corrupt_total} corrupt blobs found and removed (exit status {CORRUPT_FOUND})");
    }
    Ok(corrupt_total)
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
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
