//! `prism-lite upload PATH`: reflector.go's uploader. Puts every blob file of PATH (an lbrynet
//! `blobfiles/` folder as it is, or one file) into the store of `CONF_DIR/upload.yaml` (for a
//! `proxied-s3`, its writer), `--workers` at a time.
//!
//! A file is a blob when its name is a blob hash (96 lowercase hex) and its bytes are at most
//! 2 MiB and hash to that name; anything else (a stray file, a half-downloaded blob, a folder)
//! is skipped and reported, never uploaded. A file is only ever removed
//! (`--deleteBlobsAfterUpload`) after its own put succeeded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use prism_lite::blob::{self, BlobHash, MAX_BLOB_SIZE};
use prism_lite::config::{self, UploadConfig};
use prism_lite::metrics::Metrics;
use prism_lite::store::{self, BlobStore, BuildContext};

/// Without a terminal (cron, systemd) there is no progress bar: a log line every this many
/// files instead.
const PROGRESS_EVERY: usize = 1000;

/// Most concurrent puts: each holds up to one 2 MiB blob in memory.
const MAX_WORKERS: usize = 1024;

/// reflector.go's `upload` flags, spelled as it spells them.
#[derive(clap::Args, Debug)]
pub struct UploadArgs {
    /// A folder of blob files (e.g. lbrynet's `blobfiles/`), or one blob file.
    pub path: PathBuf,
    /// How many puts run at once (1 to 1024).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_WORKERS as i64))]
    pub workers: u16,
    /// Do not ask the store whether it already has a blob before putting it.
    #[arg(long = "skipExistsCheck", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub skip_exists_check: bool,
    /// Remove each file once its put succeeded (never a file that failed or was skipped).
    #[arg(long = "deleteBlobsAfterUpload", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub delete_blobs_after_upload: bool,
}

/// What happened to one file.
enum Outcome {
    /// `deleted` is `None` without `--deleteBlobsAfterUpload`.
    Uploaded {
        deleted: Option<Result<(), String>>,
    },
    AlreadyPresent,
    Skipped(String),
    Failed(String),
}

/// The counts the summary prints.
#[derive(Default)]
struct Tally {
    files: usize,
    uploaded: usize,
    already_present: usize,
    skipped: usize,
    failed: usize,
    deleted: usize,
}

impl Tally {
    /// Counts `outcome` and reports the ones worth a line (on stderr, above the progress bar).
    fn add(&mut self, name: &str, outcome: Outcome, bar: &indicatif::ProgressBar) {
        self.files += 1;
        match outcome {
            Outcome::Uploaded { deleted } => {
                self.uploaded += 1;
                match deleted {
                    Some(Ok(())) => self.deleted += 1,
                    Some(Err(e)) => report(bar, format!("uploaded {name}, but not deleted: {e}")),
                    None => {}
                }
            }
            Outcome::AlreadyPresent => self.already_present += 1,
            Outcome::Skipped(why) => {
                self.skipped += 1;
                report(bar, format!("skipped {name}: {why}"));
            }
            Outcome::Failed(why) => {
                self.failed += 1;
                report(bar, format!("failed {name}: {why}"));
            }
        }
    }
}

/// A line above the progress bar, or plainly on stderr when there is no bar (not a terminal:
/// indicatif then drops its `println`s).
fn report(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Uploads PATH; an error (exit status 1) when the run could not start or any put failed.
pub fn run(conf_dir: &Path, args: UploadArgs) -> anyhow::Result<()> {
    let cfg: UploadConfig = config::load_file(conf_dir, "upload")?;
    if cfg.database.is_some() {
        tracing::info!("upload.yaml: `database:` accepted and ignored (prism-lite keeps no database; the store's `has` is the exists check)");
    }
    let files = list(&args.path)?;
    let tally = crate::runtime()?.block_on(upload_all(cfg, files, &args))?;
    println!(
        "upload summary: files={} uploaded={} already_present={} skipped={} failed={} deleted={}",
        tally.files,
        tally.uploaded,
        tally.already_present,
        tally.skipped,
        tally.failed,
        tally.deleted
    );
    anyhow::ensure!(tally.failed == 0, "{} puts failed", tally.failed);
    Ok(())
}

/// The files to look at: PATH itself when it is a file, else its entries (not recursive: an
/// lbrynet `blobfiles/` folder is flat), in name order.
fn list(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("listing {}", path.display()))?;
    files.sort();
    Ok(files)
}

/// Builds the store and runs the puts, `--workers` at a time, until done or Ctrl-C.
async fn upload_all(
    cfg: UploadConfig,
    files: Vec<PathBuf>,
    args: &UploadArgs,
) -> anyhow::Result<Tally> {
    let ctx = BuildContext {
        metrics: Arc::new(Metrics::new()),
    };
    let store_config = cfg.store.clone();
    let store = tokio::task::spawn_blocking(move || store::build(&store_config, &ctx))
        .await
        .context("store build task failed")??;
    tracing::info!(tree = %store::describe(&cfg.store).trim_end(), "store tree built");

    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{pos}/{len} files [{bar:40}] {per_sec} eta {eta}",
        )?
        .progress_chars("=> "),
    );
    let mut results = stream::iter(files)
        .map(|path| {
            let store = Arc::clone(&store);
            async move {
                let outcome = upload_one(store.as_ref(), &path, args).await;
                (path, outcome)
            }
        })
        .buffer_unordered(usize::from(args.workers));
    let mut tally = Tally::default();
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            next = results.next() => match next {
                Some((path, outcome)) => {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    tally.add(&name, outcome, &bar);
                    bar.inc(1);
                    if bar.is_hidden() && tally.files % PROGRESS_EVERY == 0 {
                        tracing::info!(done = tally.files, of = bar.length(), uploaded = tally.uploaded, failed = tally.failed, "upload progress");
                    }
                }
                None => break,
            },
            _ = &mut interrupt => {
                bar.abandon();
                anyhow::bail!("interrupted after {} files ({} uploaded)", tally.files, tally.uploaded);
            }
        }
    }
    bar.finish();
    Ok(tally)
}

/// One file: check it is a blob, ask `has` (unless skipped), put, remove (when asked).
async fn upload_one(store: &dyn BlobStore, path: &Path, args: &UploadArgs) -> Outcome {
    let (hash, data) = match read_blob(path.to_path_buf()).await {
        Ok(blob) => blob,
        Err(why) => return Outcome::Skipped(why),
    };
    if !args.skip_exists_check {
        match store.has(&hash).await {
            Ok(true) => return Outcome::AlreadyPresent,
            Ok(false) => {}
            Err(e) => return Outcome::Failed(format!("exists check: {e}")),
        }
    }
    if let Err(e) = store.put(&hash, data).await {
        return Outcome::Failed(e.to_string());
    }
    let deleted = match args.delete_blobs_after_upload {
        true => Some(
            tokio::fs::remove_file(path)
                .await
                .map_err(|e| e.to_string()),
        ),
        false => None,
    };
    Outcome::Uploaded { deleted }
}

/// The file's hash and bytes when it is a blob; otherwise why it is not. The size is checked
/// before reading, so a large stray file is never read into memory.
async fn read_blob(path: PathBuf) -> Result<(BlobHash, bytes::Bytes), String> {
    tokio::task::spawn_blocking(move || {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let hash = BlobHash::parse(&name).map_err(|e| format!("not a blob name ({e})"))?;
        let meta = std::fs::metadata(&path).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a file".into());
        }
        if meta.len() > MAX_BLOB_SIZE as u64 {
            return Err(format!(
                "{} bytes, larger than a blob ({MAX_BLOB_SIZE})",
                meta.len()
            ));
        }
        let data = std::fs::read(&path).map_err(|e| e.to_string())?;
        blob::verify(&data, &hash).map_err(|e| format!("wrong bytes: {e}"))?;
        Ok((hash, bytes::Bytes::from(data)))
    })
    .await
    .unwrap_or_else(|e| Err(format!("reading task failed: {e}")))
}
