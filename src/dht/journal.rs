//! The announce list survives a restart: every blob put on it is appended to
//! `data_dir/announced` (one hex hash per line), and the blobcache reads that file back at
//! start-up and announces again what its cache tiers still hold (see `app.rs`).
//!
//! Why a journal rather than a scan of the disk tier: telling which of millions of cached blobs
//! are sd blobs means opening files, so a scan costs I/O in proportion to the whole cache on
//! every start; the journal costs one short append per stream announced and is bounded by
//! `dht.max_announced` lines (entries are only ever added while the list has room, never
//! removed). Blobs evicted since they were announced are dropped at the next start, because
//! only hashes the cache tiers still hold are announced again.
//!
//! Crash safety: at start the previous file is renamed to `announced.old` and read; a new file
//! collects what is announced from then on (the restored entries included). `.old` is removed
//! only once the restore finished ([`Journal::restored`]), so a crash during the restore loses
//! nothing: the next start reads both files.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::blob::BlobHash;

/// The DHT's journal; the tracker announcer keeps its own ([`Journal::open_named`]).
const FILE: &str = "announced";
#[cfg(test)]
const OLD: &str = "announced.old";

/// The open journal; see the module docs.
pub struct Journal {
    file: Mutex<File>,
    old: PathBuf,
}

impl Journal {
    /// Opens the journal in `data_dir` and returns the hashes recorded by earlier runs (at most
    /// `limit`, duplicates and malformed lines dropped).
    pub fn open(data_dir: &Path, limit: usize) -> io::Result<(Journal, Vec<BlobHash>)> {
        Journal::open_named(data_dir, FILE, limit)
    }

    /// [`Journal::open`] on the file `name` (and `name.old`).
    pub fn open_named(
        data_dir: &Path,
        name: &str,
        limit: usize,
    ) -> io::Result<(Journal, Vec<BlobHash>)> {
        std::fs::create_dir_all(data_dir)?;
        let (path, old) = (data_dir.join(name), data_dir.join(format!("{name}.old")));
        let mut text = read_if_present(&old)?;
        // A crash during the last restore left both files: take the union.
        text.push_str(&read_if_present(&path)?);
        std::fs::write(&old, &text)?;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        let mut seen = HashSet::new();
        let remembered = text
            .lines()
            .filter_map(|line| BlobHash::parse(line.trim()).ok())
            .filter(|hash| seen.insert(*hash))
            .take(limit)
            .collect();
        let journal = Journal {
            file: Mutex::new(file),
            old,
        };
        Ok((journal, remembered))
    }

    /// Records that `hash` is announced. A failed write is logged, not fatal: the blob is still
    /// announced, only a restart would forget it.
    pub fn record(&self, hash: &BlobHash) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(file, "{hash}") {
            tracing::warn!(error = %e, "cannot record an announced blob; a restart will forget it");
        }
    }

    /// The earlier runs' entries that are still wanted have been recorded again: their old
    /// file can go.
    pub fn restored(&self) {
        if let Err(e) = std::fs::remove_file(&self.old) {
            tracing::debug!(error = %e, "removing the previous announce journal");
        }
    }
}

fn read_if_present(path: &Path) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_restart_and_a_crash_during_restore() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (BlobHash::of(b"a"), BlobHash::of(b"b"), BlobHash::of(b"c"));
        let (journal, remembered) = Journal::open(dir.path(), 10).unwrap();
        assert!(remembered.is_empty());
        for h in [&a, &b, &a] {
            journal.record(h);
        }
        drop(journal);

        // Restart; the restore keeps only `b`, then "crashes" before `restored()`.
        let (journal, remembered) = Journal::open(dir.path(), 10).unwrap();
        assert_eq!(remembered, vec![a, b], "deduplicated, in order");
        journal.record(&b);
        journal.record(&c);
        drop(journal);

        // The next start still sees everything; after a finished restore only the new file stays.
        let (journal, remembered) = Journal::open(dir.path(), 2).unwrap();
        assert_eq!(remembered, vec![a, b], "union, capped at the limit");
        journal.restored();
        assert!(!dir.path().join(OLD).exists());
        drop(journal);
        let (_, remembered) = Journal::open(dir.path(), 10).unwrap();
        assert!(remembered.is_empty(), "nothing recorded since the restore");
    }
}
