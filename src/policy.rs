//! What may be served: protected content (needs an edge token) and blocked content (never).
//!
//! Front doors consult the [`Policy`] on every request; reloads (SIGHUP, blocklist refresh) swap
//! in a new snapshot atomically, so a request sees either the old rules or the new ones, never a
//! mix, and nobody waits on a lock.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::blob::BlobHash;

/// The live rules.
#[derive(Default)]
pub struct Policy {
    protected: ArcSwap<HashSet<BlobHash>>,
    blocked: ArcSwap<HashSet<BlobHash>>,
}

impl Policy {
    pub fn new(protected: HashSet<BlobHash>, blocked: HashSet<BlobHash>) -> Policy {
        Policy {
            protected: ArcSwap::from_pointee(protected),
            blocked: ArcSwap::from_pointee(blocked),
        }
    }

    pub fn is_protected(&self, hash: &BlobHash) -> bool {
        self.protected.load().contains(hash)
    }

    pub fn is_blocked(&self, hash: &BlobHash) -> bool {
        self.blocked.load().contains(hash)
    }

    /// Whether a request for `hash` carrying token `presented` may be served by a front door
    /// whose configured token is `configured`. Protected blobs need a configured token and an
    /// exact match.
    pub fn allows(
        &self,
        hash: &BlobHash,
        configured: Option<&str>,
        presented: Option<&str>,
    ) -> bool {
        if !self.is_protected(hash) {
            return true;
        }
        match (configured, presented) {
            (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
            _ => false,
        }
    }

    pub fn protected_count(&self) -> usize {
        self.protected.load().len()
    }

    pub fn blocked_count(&self) -> usize {
        self.blocked.load().len()
    }

    /// The blocklist in force now.
    pub fn blocked_snapshot(&self) -> Arc<HashSet<BlobHash>> {
        self.blocked.load_full()
    }

    pub fn set_protected(&self, hashes: HashSet<BlobHash>) {
        self.protected.store(Arc::new(hashes));
    }

    /// Replaces the blocklist; returns the hashes that were not blocked before (to purge).
    pub fn set_blocked(&self, hashes: HashSet<BlobHash>) -> Vec<BlobHash> {
        let old = self.blocked.swap(Arc::new(hashes));
        self.blocked
            .load()
            .iter()
            .filter(|h| !old.contains(h))
            .copied()
            .collect()
    }
}

/// Compares tokens without an early exit, so timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_needs_the_exact_token() {
        let h = BlobHash::of(b"secret video");
        let other = BlobHash::of(b"public video");
        let policy = Policy::new(HashSet::from([h]), HashSet::new());
        assert!(policy.allows(&other, None, None));
        assert!(!policy.allows(&h, None, Some("t")));
        assert!(!policy.allows(&h, Some("token"), None));
        assert!(!policy.allows(&h, Some("token"), Some("tokem")));
        assert!(!policy.allows(&h, Some("token"), Some("token2")));
        assert!(policy.allows(&h, Some("token"), Some("token")));
    }

    #[test]
    fn blocklist_swap_reports_new_entries() {
        let (a, b, c) = (BlobHash::of(b"a"), BlobHash::of(b"b"), BlobHash::of(b"c"));
        let policy = Policy::default();
        let mut added = policy.set_blocked(HashSet::from([a, b]));
        added.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(added, want);
        assert_eq!(policy.set_blocked(HashSet::from([b, c])), vec![c]);
        assert!(!policy.is_blocked(&a) && policy.is_blocked(&b) && policy.is_blocked(&c));
    }
}
