//! `prism-lite reflector`: reflector.go's ingest command. Loads `CONF_DIR/reflector.yaml` (the
//! same vocabulary as `blobcache.yaml`: servers and a store tree, typically a `proxied-s3` whose
//! writer is the bucket) and runs it with the upload door (the reflector protocol) on
//! `--receiver-port`, as `prism reflector` does. Given reflector.go's older flag form instead
//! (`--disk-cache ... --upstream-reflector ...`, see [`crate::reflector_flags`]), it reads no
//! file and runs what the flags describe.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use prism_lite::app::{self, RunOptions};
use prism_lite::config::{self, BlobcacheConfig, ReflectorServerConfig};
use prism_lite::reload;

use crate::reflector_flags::{self, LegacyFlags};

/// reflector.go's `reflector` flags.
#[derive(clap::Args, Debug)]
pub struct ReflectorArgs {
    /// Port of the upload (ingest) door [default: servers.reflector.port of the file, else 5566].
    #[arg(long, value_name = "PORT")]
    pub receiver_port: Option<u16>,
    /// Port for /metrics, /healthz and /readyz.
    #[arg(long, default_value_t = 2112, value_name = "PORT")]
    pub metrics_port: u16,
    /// Address for the metrics port (all interfaces by default).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub metrics_address: IpAddr,
    /// Do not apply the blocklist (`--disable-blocklist` or `--disable-blocklist=true`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub disable_blocklist: bool,
    /// Print the blobcache.yaml the flags stand for (secrets as ***) and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub legacy: LegacyFlags,
}

/// Runs `CONF_DIR/reflector.yaml` with its upload door until SIGINT/SIGTERM.
pub fn run(conf_dir: &Path, args: ReflectorArgs) -> anyhow::Result<()> {
    if args.legacy.any() || args.print_config {
        return run_flags(conf_dir, args);
    }
    let file = conf_dir.join("reflector.yaml");
    if !file.exists() {
        anyhow::bail!(
            "{} does not exist; write it (see `check-config reflector`), or run without a file by giving reflector.go's flags (--disk-cache, --upstream-reflector, --origin-endpoint, ...)",
            file.display()
        );
    }
    let (mut cfg, raw) = reload::read_config(&file)?;
    with_ingest_door(&mut cfg, args.receiver_port);
    let opts = RunOptions {
        conf_dir: conf_dir.to_path_buf(),
        metrics_addr: SocketAddr::new(args.metrics_address, args.metrics_port),
        disable_blocklist: args.disable_blocklist,
    };
    crate::serve(|| app::start_loaded(cfg, raw, opts, Some(file)))
}

/// The upload door `reflector` always runs: `servers.reflector` as the file sets it (or every
/// default), on `--receiver-port` when that is given.
pub fn with_ingest_door(cfg: &mut BlobcacheConfig, receiver_port: Option<u16>) {
    let door = cfg
        .servers
        .reflector
        .get_or_insert_with(ReflectorServerConfig::default);
    if let Some(port) = receiver_port {
        door.port = port;
    }
}

/// The flag form: build the file the flags stand for, check it as `check-config` would, then
/// print it (`--print-config`) or run it (nothing to reload: SIGHUP says so).
fn run_flags(conf_dir: &Path, args: ReflectorArgs) -> anyhow::Result<()> {
    let (yaml, notes) = args.legacy.to_yaml(args.receiver_port)?;
    let text = serde_yaml::to_string(&yaml)?;
    let cfg: BlobcacheConfig = config::parse(&text, "the flags")?;
    if args.print_config {
        prism_lite::store::check::check(&cfg.store)?;
        print!("{}", reflector_flags::printable(&yaml));
        return Ok(());
    }
    for note in &notes {
        tracing::info!("{note}");
    }
    let opts = RunOptions {
        conf_dir: conf_dir.to_path_buf(),
        metrics_addr: SocketAddr::new(args.metrics_address, args.metrics_port),
        disable_blocklist: args.disable_blocklist,
    };
    crate::serve(|| app::start_loaded(cfg, serde_yaml::Value::Null, opts, None))
}
