//! [`StreamError`], and [`preview`] for quoting untrusted text in its messages.

use crate::blob::{BlobHash, InvalidHash, MAX_BLOB_SIZE};

use super::key::KEY_HEX_LEN;

/// Everything that can be wrong with an sd blob or with a stream's content.
///
/// Messages name the blob (by `blob_num`) and the field involved, because they end up in logs
/// read by operators who have to find the bad blob.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// An sd blob is a blob, so it cannot be larger than the blob limit.
    #[error("sd blob is {0} bytes, more than the {MAX_BLOB_SIZE}-byte blob maximum")]
    SdTooLarge(usize),
    /// Not JSON, not UTF-8, or JSON of the wrong shape (missing key, wrong type, negative number).
    #[error("sd blob is not a valid stream descriptor: {0}")]
    Json(#[from] serde_json::Error),
    /// A content blob's `blob_hash` is not 96 lowercase hex characters.
    #[error("blob {blob_num} has an invalid blob_hash: {source}")]
    BadBlobHash {
        blob_num: u32,
        #[source]
        source: InvalidHash,
    },
    /// A non-terminator entry without a `blob_hash`: there is no way to fetch its content.
    #[error("blob {blob_num} has length {length} but no blob_hash")]
    MissingBlobHash { blob_num: u32, length: u64 },
    /// The stream `key` is not 32 hex characters.
    #[error("stream key must be {KEY_HEX_LEN} hex characters (16 bytes), found {found:?}")]
    BadKey { found: String },
    /// An `iv` is not 32 hex characters.
    #[error("iv{} must be {KEY_HEX_LEN} hex characters (16 bytes), found {found:?}", blob_label(.blob_num))]
    BadIv {
        blob_num: Option<u32>,
        found: String,
    },
    /// The `blobs` list does not end with the zero-length, hash-less stream terminator.
    #[error("stream descriptor does not end with the zero-length stream terminator")]
    MissingTerminator,
    /// A zero-length, hash-less entry that is not the last one: the stream would end early.
    #[error("stream terminator (blob {blob_num}) is not the last entry of the blob list")]
    TerminatorNotLast { blob_num: u32 },
    /// The SDK refuses a terminator that names a blob.
    #[error("stream terminator (blob {blob_num}) must not have a blob_hash")]
    TerminatorHasHash { blob_num: u32 },
    /// `blob_num` must count 0, 1, 2, ... in list order.
    #[error("blob list entry {position} has blob_num {found}; blobs must be numbered 0, 1, 2, ... in order")]
    BlobNumOutOfOrder { position: usize, found: u32 },
    /// A content blob that is empty or larger than a blob may be.
    #[error(
        "blob {blob_num} has length {length}; a content blob must be 1..={MAX_BLOB_SIZE} bytes"
    )]
    BadContentLength { blob_num: u32, length: u64 },
    /// The declared `stream_hash` is not the hash of the descriptor's contents.
    #[error(
        "stream_hash {declared:?} does not match the descriptor contents (computed {computed})"
    )]
    StreamHashMismatch { declared: String, computed: String },
    /// `stream_name` / `suggested_file_name` is not valid hex.
    #[error("{field} is not valid hex")]
    NotHex { field: &'static str },
    /// `stream_name` / `suggested_file_name` decodes to bytes that are not UTF-8.
    #[error("{field} does not decode to UTF-8 text")]
    NotUtf8 { field: &'static str },
    /// The blob source had no bytes for a content blob.
    #[error("content blob {blob_num} ({hash}) is not available")]
    MissingBlob { blob_num: u32, hash: BlobHash },
    /// A content blob's size differs from the length the sd blob declares.
    #[error("content blob {blob_num} ({hash}) is {actual} bytes, the sd blob says {expected}")]
    BlobLengthMismatch {
        blob_num: u32,
        hash: BlobHash,
        expected: u64,
        actual: usize,
    },
    /// A content blob's bytes do not hash to its name.
    #[error("content blob {blob_num} bytes hash to {actual}, not {expected}")]
    BlobHashMismatch {
        blob_num: u32,
        expected: BlobHash,
        actual: BlobHash,
    },
    /// AES-CBC decryption failed: wrong key or iv, or corrupt ciphertext.
    #[error("cannot decrypt{}: {reason}", blob_label(.blob_num))]
    Decrypt {
        blob_num: Option<u32>,
        reason: &'static str,
    },
}

/// " of blob N" when the blob is known, for error messages shared by per-blob and free-standing
/// operations.
pub(super) fn blob_label(blob_num: &Option<u32>) -> String {
    match blob_num {
        Some(n) => format!(" of blob {n}"),
        None => String::new(),
    }
}

/// A bounded copy of untrusted text for an error message, so a hostile sd blob cannot make one
/// log line megabytes long.
pub(super) fn preview(text: &str) -> String {
    const MAX_CHARS: usize = 100;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}
