//! Where blob files live and how one is written.
//!
//! Layout is reflector.go's: `mount_point/<first sharding_size hex chars>/<hash>` (flat when
//! `sharding_size` is 0), so an existing reflector.go cache directory is picked up as it is.
//!
//! A file is a whole verified blob or nothing: writes go to `mount_point/.tmp/` (same
//! filesystem), are fsynced, then renamed into place. A blob file is never opened for writing
//! again after that: it is replaced by a rename or removed by an unlink, never truncated or
//! rewritten in place. That is what makes serving it from a memory map safe (see
//! [`super::mapped`]). Leftovers in `.tmp/` are a crash's remains and are deleted at start; they
//! are never served because nothing reads `.tmp/`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::blob::BlobHash;

/// Sub-directory for in-progress writes.
pub(super) const TMP_DIR: &str = ".tmp";

/// The store's directory tree.
pub(super) struct Files {
    root: PathBuf,
    tmp_dir: PathBuf,
    sharding: usize,
    tmp_counter: AtomicU64,
}

impl Files {
    /// Creates the directories if needed.
    pub(super) fn open(root: PathBuf, sharding: usize) -> io::Result<Files> {
        let tmp_dir = root.join(TMP_DIR);
        fs::create_dir_all(&tmp_dir)?;
        Ok(Files {
            root,
            tmp_dir,
            sharding,
            tmp_counter: AtomicU64::new(0),
        })
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn sharding(&self) -> usize {
        self.sharding
    }

    pub(super) fn path_of(&self, hash: &BlobHash) -> PathBuf {
        self.root.join(hash.sharded_path(self.sharding))
    }

    /// Deletes what a crash left in the temp directory; returns how many entries went.
    pub(super) fn sweep_temp(&self) -> io::Result<usize> {
        let mut swept = 0;
        for entry in fs::read_dir(&self.tmp_dir)? {
            let path = entry?.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => swept += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not sweep temp file")
                }
            }
        }
        Ok(swept)
    }

    /// Writes `data` to a new temp file and makes it durable; [`TempFile::install`] puts it in
    /// place.
    pub(super) fn write_temp(&self, hash: &BlobHash, data: &[u8]) -> io::Result<TempFile> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = TempFile {
            path: self
                .tmp_dir
                .join(format!("{hash}.{}.{n}", std::process::id())),
            installed: false,
        };
        let mut file = fs::File::create(&temp.path)?;
        file.write_all(data)?;
        file.sync_data()?;
        Ok(temp)
    }

    /// Creates the directory `hash`'s file goes in.
    pub(super) fn make_parent(&self, hash: &BlobHash) -> io::Result<()> {
        if self.sharding == 0 {
            return Ok(());
        }
        fs::create_dir_all(self.root.join(hash.shard_prefix(self.sharding)))
    }

    /// Removes `hash`'s file; an absent file is not an error.
    pub(super) fn remove(&self, hash: &BlobHash) -> io::Result<()> {
        match fs::remove_file(self.path_of(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A written temp file; deleted when dropped unless installed.
pub(super) struct TempFile {
    path: PathBuf,
    installed: bool,
}

impl TempFile {
    /// Renames the file to `dest` (atomically replacing what is there).
    pub(super) fn install(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.installed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.installed {
            let _ = fs::remove_file(&self.path);
        }
    }
}
