//! Protected content: blobs that are only served with the right edge token.
//!
//! reflector.go asks an API which blobs are protected; we read a file the operator manages
//! (one hash per line, `#` comments, blank lines ignored). A bad line is a start-up error naming
//! the file and line, not a silently unprotected blob.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;

use crate::blob::BlobHash;

/// The set of protected hashes (empty when no list is configured).
#[derive(Debug, Default, Clone)]
pub struct ProtectedList {
    hashes: HashSet<BlobHash>,
}

impl ProtectedList {
    pub fn load(path: &Path) -> anyhow::Result<ProtectedList> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading protected list {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in protected list {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<ProtectedList> {
        let mut hashes = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let hash = BlobHash::parse(line).with_context(|| format!("line {}", n + 1))?;
            hashes.insert(hash);
        }
        Ok(ProtectedList { hashes })
    }

    pub fn contains(&self, hash: &BlobHash) -> bool {
        self.hashes.contains(hash)
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether a request for `hash` carrying `presented` may be served, given the front door's
    /// configured token. Protected blobs need a configured token and an exact match.
    pub fn allows(
        &self,
        hash: &BlobHash,
        configured: Option<&str>,
        presented: Option<&str>,
    ) -> bool {
        if !self.contains(hash) {
            return true;
        }
        match (configured, presented) {
            (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
            _ => false,
        }
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
    fn parses_and_checks_tokens() {
        let h = BlobHash::of(b"secret video");
        let other = BlobHash::of(b"public video");
        let list = ProtectedList::parse(&format!("# protected\n\n{h}  # a comment\n")).unwrap();
        assert_eq!(list.len(), 1);
        assert!(list.allows(&other, None, None));
        assert!(!list.allows(&h, None, Some("t")));
        assert!(!list.allows(&h, Some("token"), None));
        assert!(!list.allows(&h, Some("token"), Some("tokem")));
        assert!(!list.allows(&h, Some("token"), Some("token2")));
        assert!(list.allows(&h, Some("token"), Some("token")));
    }

    #[test]
    fn bad_line_is_named() {
        let err = ProtectedList::parse("# ok\nnot-a-hash\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
