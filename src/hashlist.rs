//! Lists of blob hashes that operators maintain (protected content, blocklists).
//!
//! Accepted forms: plain text with one hash per line (`#` starts a comment, blank lines are
//! ignored), or a JSON array of hash strings (what list APIs tend to serve). A malformed entry
//! is an error naming its line or index: a typo must not silently unprotect or unblock a blob.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;

use crate::blob::BlobHash;

/// Parses a hash list in either accepted form.
pub fn parse(text: &str) -> anyhow::Result<HashSet<BlobHash>> {
    if text.trim_start().starts_with('[') {
        let items: Vec<String> =
            serde_json::from_str(text).context("not a JSON array of hash strings")?;
        return items
            .iter()
            .enumerate()
            .map(|(i, s)| BlobHash::parse(s.trim()).with_context(|| format!("entry {i}")))
            .collect();
    }
    let mut hashes = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if !line.is_empty() {
            hashes.insert(BlobHash::parse(line).with_context(|| format!("line {}", n + 1))?);
        }
    }
    Ok(hashes)
}

/// Reads and parses a hash list file.
pub fn load(path: &Path) -> anyhow::Result<HashSet<BlobHash>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading hash list {}", path.display()))?;
    parse(&text).with_context(|| format!("in hash list {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_forms() {
        let a = BlobHash::of(b"a");
        let b = BlobHash::of(b"b");
        let text = format!("# list\n\n{a}  # first\n{b}\n{a}\n");
        assert_eq!(parse(&text).unwrap(), HashSet::from([a, b]));
        let json = format!("[\"{a}\", \"{b}\"]");
        assert_eq!(parse(&json).unwrap(), HashSet::from([a, b]));
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_named() {
        let err = parse("# ok\nnot-a-hash\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        let err = parse("[\"zz\"]").unwrap_err();
        assert!(format!("{err:#}").contains("entry 0"), "{err:#}");
        assert!(parse("[1, 2]").is_err());
    }
}
