//! Blob identity and integrity.
//!
//! A blob is named by the SHA-384 of its bytes, written as 96 lowercase hex characters. Every
//! hash that arrives from outside (a URL, a peer request, a file name on disk, a config file) is
//! parsed into a [`BlobHash`] first, so nothing else in the program ever builds a file path or a
//! remote key from unchecked text.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use sha2::{Digest, Sha384};

/// The largest blob the LBRY network allows: 2 MiB (a full encrypted content blob).
pub const MAX_BLOB_SIZE: usize = 2 * 1024 * 1024;

/// Length of a blob hash in hex characters (SHA-384 = 48 bytes = 96 hex chars).
pub const HASH_HEX_LEN: usize = 96;

/// A validated blob name: the SHA-384 of the blob's bytes.
///
/// Stored as the raw 48 bytes (cheap to copy, hash and compare); formatted as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash([u8; 48]);

/// Why a string is not a blob hash. The message is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHash {
    #[error("blob hash is missing")]
    Missing,
    #[error("blob hash must be {HASH_HEX_LEN} hex characters, got {0}")]
    WrongLength(usize),
    #[error("blob hash must be lowercase hex (0-9, a-f); found {0:?} at position {1}")]
    BadCharacter(char, usize),
}

impl BlobHash {
    /// The hash of `data` (what its name must be).
    pub fn of(data: &[u8]) -> BlobHash {
        BlobHash(Sha384::digest(data).into())
    }

    /// Parses exactly 96 lowercase hex characters; anything else is rejected.
    pub fn parse(text: &str) -> Result<BlobHash, InvalidHash> {
        if text.is_empty() {
            return Err(InvalidHash::Missing);
        }
        if text.len() != HASH_HEX_LEN {
            return Err(InvalidHash::WrongLength(text.chars().count()));
        }
        if let Some((pos, c)) = text
            .char_indices()
            .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(InvalidHash::BadCharacter(c, pos));
        }
        let mut raw = [0u8; 48];
        hex::decode_to_slice(text, &mut raw).map_err(|_| InvalidHash::WrongLength(text.len()))?;
        Ok(BlobHash(raw))
    }

    /// The raw 48 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 48] {
        &self.0
    }

    /// Builds a hash from raw digest bytes (e.g. a DHT key).
    pub fn from_bytes(raw: [u8; 48]) -> BlobHash {
        BlobHash(raw)
    }

    /// Lowercase hex, 96 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `n` hex characters: the shard directory / key prefix used by `sharding_size`.
    pub fn shard_prefix(&self, n: usize) -> String {
        let mut hex = self.to_hex();
        hex.truncate(n.min(HASH_HEX_LEN));
        hex
    }

    /// `prefix/hash` when `sharding_size > 0`, else `hash`: the layout reflector.go uses on disk,
    /// in S3 keys and on HTTP origins.
    pub fn sharded_path(&self, sharding_size: usize) -> String {
        if sharding_size == 0 {
            self.to_hex()
        } else {
            format!("{}/{}", self.shard_prefix(sharding_size), self)
        }
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; HASH_HEX_LEN];
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        // hex output is always ASCII.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({self})")
    }
}

impl FromStr for BlobHash {
    type Err = InvalidHash;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BlobHash::parse(s)
    }
}

impl serde::Serialize for BlobHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BlobHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        BlobHash::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why some bytes may not be stored or served under a given name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("blob is empty")]
    Empty,
    #[error("blob is {0} bytes, more than the {MAX_BLOB_SIZE}-byte maximum")]
    TooLarge(usize),
    #[error("blob bytes hash to {actual}, not {expected}")]
    HashMismatch {
        expected: BlobHash,
        actual: BlobHash,
    },
}

/// Checks that `data` is a legal blob whose SHA-384 is `expected`.
///
/// Size is checked first so an oversized answer is refused without hashing it.
pub fn verify(data: &[u8], expected: &BlobHash) -> Result<(), VerifyError> {
    check_size(data.len())?;
    let actual = BlobHash::of(data);
    if actual != *expected {
        return Err(VerifyError::HashMismatch {
            expected: *expected,
            actual,
        });
    }
    Ok(())
}

/// Checks only the size rules (non-empty, at most [`MAX_BLOB_SIZE`]).
pub fn check_size(len: usize) -> Result<(), VerifyError> {
    if len == 0 {
        Err(VerifyError::Empty)
    } else if len > MAX_BLOB_SIZE {
        Err(VerifyError::TooLarge(len))
    } else {
        Ok(())
    }
}

/// Convenience for tests and tools: a blob's bytes together with its computed name.
pub fn named(data: impl Into<Bytes>) -> (BlobHash, Bytes) {
    let data = data.into();
    (BlobHash::of(&data), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA384: &str = "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b";

    #[test]
    fn hash_of_known_input() {
        assert_eq!(BlobHash::of(b"").to_string(), EMPTY_SHA384);
    }

    #[test]
    fn parse_round_trips() {
        let h = BlobHash::parse(EMPTY_SHA384).unwrap();
        assert_eq!(h.to_string(), EMPTY_SHA384);
        assert_eq!(h.to_hex(), EMPTY_SHA384);
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(BlobHash::parse(""), Err(InvalidHash::Missing));
        assert_eq!(BlobHash::parse("abc"), Err(InvalidHash::WrongLength(3)));
        let upper = EMPTY_SHA384.to_uppercase();
        assert!(matches!(
            BlobHash::parse(&upper),
            Err(InvalidHash::BadCharacter('B', 2))
        ));
        let traversal = format!("../{}", &EMPTY_SHA384[3..]);
        assert!(matches!(
            BlobHash::parse(&traversal),
            Err(InvalidHash::BadCharacter('.', 0))
        ));
        // 96 bytes but multi-byte characters: rejected, never sliced mid-char.
        let mut weird = "é".repeat(48);
        assert_eq!(weird.len(), 96);
        assert!(BlobHash::parse(&weird).is_err());
        weird.clear();
    }

    #[test]
    fn sharding_matches_reflector_layout() {
        let h = BlobHash::parse(EMPTY_SHA384).unwrap();
        assert_eq!(h.sharded_path(0), EMPTY_SHA384);
        assert_eq!(h.sharded_path(2), format!("38/{EMPTY_SHA384}"));
        assert_eq!(h.sharded_path(4), format!("38b0/{EMPTY_SHA384}"));
    }

    #[test]
    fn verify_checks_size_and_hash() {
        let (h, data) = named(&b"hello"[..]);
        assert_eq!(verify(&data, &h), Ok(()));
        assert_eq!(verify(b"", &h), Err(VerifyError::Empty));
        assert!(matches!(
            verify(b"hellO", &h),
            Err(VerifyError::HashMismatch { .. })
        ));
        let big = vec![0u8; MAX_BLOB_SIZE + 1];
        assert_eq!(
            verify(&big, &h),
            Err(VerifyError::TooLarge(MAX_BLOB_SIZE + 1))
        );
        let max = vec![7u8; MAX_BLOB_SIZE];
        assert_eq!(verify(&max, &BlobHash::of(&max)), Ok(()));
    }
}
