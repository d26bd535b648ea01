//! `prism-lite prefetch`: the channel prefetcher on its own, without servers.
//!
//! Builds the same store tree `blobcache` would (so blobs land in the same cache directories),
//! runs the prefetcher once (`--once`, with a progress bar and a summary table) or on its
//! interval until Ctrl-C/SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use prism_lite::config::{self, BlobcacheConfig};
use prism_lite::metrics::Metrics;
use prism_lite::prefetch::report::StatusHandle;
use prism_lite::prefetch::Prefetcher;
use prism_lite::store::{self, BuildContext};
use tokio_util::sync::CancellationToken;

pub fn run(conf_dir: &Path, once: bool) -> anyhow::Result<()> {
    let cfg: BlobcacheConfig = config::load_file(conf_dir, "blobcache")?;
    let Some(prefetch) = cfg.prefetch.clone() else {
        anyhow::bail!(
            "{}/blobcache.yaml has no `prefetch:` section; add one with `api:` and `channels:` \
             (see docs/prefetch.md)",
            conf_dir.display()
        );
    };
    if !prefetch.enabled {
        tracing::info!("prefetch.enabled is false; running anyway because it was asked for");
    }
    let metrics = Arc::new(Metrics::new());
    let ctx = BuildContext {
        metrics: Arc::clone(&metrics),
    };
    let root = store::build(&cfg.store, &ctx).context("building the store tree")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let status = StatusHandle::new(true, &prefetch.api);
        let prefetcher = Prefetcher::new(prefetch, root, &metrics.registry, status)?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: in-flight fetches are abandoned, the next run resumes");
            stop.cancel();
        });
        if !once {
            Arc::new(prefetcher).run_forever(cancel).await;
            return Ok(());
        }
        let report = prefetcher.run_once(&cancel, progress_bar()).await;
        print!("{}", report.summary_table());
        if report.api_unreachable {
            anyhow::bail!("the LBRY API was unreachable; see the errors above");
        }
        if report.cancelled {
            anyhow::bail!("stopped before the run finished");
        }
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM (SIGINT only if SIGTERM cannot be watched).
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A bar on stderr (hidden automatically when stderr is not a terminal).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} blobs {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
