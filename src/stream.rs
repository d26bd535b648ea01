//! LBRY stream descriptors (sd blobs) and stream content decoding.
//!
//! A stream is one *sd blob* (a JSON stream descriptor) plus N AES-128-CBC encrypted content
//! blobs. The cache mostly treats blobs as opaque bytes, but it has to read sd blobs to know which
//! content blobs belong to a stream (prefetching, announcing head blobs, checking a stream is
//! complete), and it has to write them byte-exactly, because an sd blob's name is the SHA-384 of
//! its bytes: a descriptor re-serialized with a different key order or spacing would be a
//! different blob that no LBRY client asks for.
//!
//! Parsing goes through a permissive wire struct (so every problem can be reported as a specific
//! [`StreamError`] naming the offending blob, rather than as an opaque JSON error), then through
//! [`StreamDescriptor::validate`], which applies the same rules the reference LBRY SDK applies
//! when it loads an sd blob (terminator last and hash-less, blob numbers in order, no empty
//! content blob, stream hash consistent with the contents), plus the size limits of the network.

use std::io;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, KeyIvInit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::blob::{BlobHash, InvalidHash, MAX_BLOB_SIZE};

/// Length in hex characters of the AES key and of each blob's IV (16 bytes each).
pub const KEY_HEX_LEN: usize = 32;

/// The only stream type LBRY has ever written.
pub const STREAM_TYPE_LBRYFILE: &str = "lbryfile";

/// AES block size; CBC ciphertext is always a whole number of blocks.
const AES_BLOCK: usize = 16;

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

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
fn blob_label(blob_num: &Option<u32>) -> String {
    match blob_num {
        Some(n) => format!(" of blob {n}"),
        None => String::new(),
    }
}

/// A bounded copy of untrusted text for an error message, so a hostile sd blob cannot make one
/// log line megabytes long.
fn preview(text: &str) -> String {
    const MAX_CHARS: usize = 100;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Decodes a 32-hex-character key or iv into 16 bytes; `None` if it is anything else.
fn decode_hex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != KEY_HEX_LEN {
        return None;
    }
    let mut raw = [0u8; 16];
    hex::decode_to_slice(text, &mut raw).ok()?;
    Some(raw)
}

/// One entry of an sd blob's `blobs` list.
///
/// Field order is alphabetical on purpose: serde serializes in declaration order, and the SDK
/// writes keys sorted, so this order *is* the wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobInfo {
    /// The content blob's name; `None` only for the stream terminator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_hash: Option<BlobHash>,
    /// Position in the stream, counting from 0.
    pub blob_num: u32,
    /// AES-CBC IV for this blob, 32 hex characters as written in the sd blob.
    pub iv: String,
    /// Encrypted (on-the-wire) length of the blob; 0 for the terminator.
    pub length: u64,
}

impl BlobInfo {
    /// The terminator is the zero-length, hash-less last entry; it marks the end of the stream
    /// and is not a blob anyone can fetch.
    pub fn is_terminator(&self) -> bool {
        self.length == 0 && self.blob_hash.is_none()
    }
}

/// A parsed sd blob.
///
/// Strings are kept exactly as on the wire (hex stays hex) so [`StreamDescriptor::to_bytes`]
/// reproduces the original bytes and therefore the original sd hash. Field order is alphabetical
/// because it is the serialized key order (see [`BlobInfo`]). Unknown keys in the input are
/// accepted and dropped; no known writer emits any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamDescriptor {
    /// Content blobs in order, then the terminator.
    pub blobs: Vec<BlobInfo>,
    /// AES-128 key, 32 hex characters.
    pub key: String,
    /// SHA-384 over the descriptor's contents (see [`StreamDescriptor::compute_stream_hash`]).
    pub stream_hash: String,
    /// Hex-encoded UTF-8 stream name.
    pub stream_name: String,
    /// Always `lbryfile` in practice.
    pub stream_type: String,
    /// Hex-encoded UTF-8 file name suggested for saving the stream.
    pub suggested_file_name: String,
}

/// What the JSON must look like before validation: the hash stays a string so a bad one is
/// reported as [`StreamError::BadBlobHash`] with its blob number, not as a generic JSON error.
#[derive(Deserialize)]
struct WireDescriptor {
    blobs: Vec<WireBlobInfo>,
    key: String,
    stream_hash: String,
    stream_name: String,
    stream_type: String,
    suggested_file_name: String,
}

#[derive(Deserialize)]
struct WireBlobInfo {
    #[serde(default)]
    blob_hash: Option<String>,
    blob_num: u32,
    iv: String,
    length: u64,
}

impl StreamDescriptor {
    /// Parses and validates sd blob bytes.
    ///
    /// Keys are matched by name, never by position, because older SDK versions wrote them in a
    /// different order. See [`StreamDescriptor::validate`] for the rules applied.
    pub fn parse(bytes: &[u8]) -> Result<StreamDescriptor, StreamError> {
        if bytes.len() > MAX_BLOB_SIZE {
            return Err(StreamError::SdTooLarge(bytes.len()));
        }
        let wire: WireDescriptor = serde_json::from_slice(bytes)?;
        let mut blobs = Vec::with_capacity(wire.blobs.len());
        for entry in wire.blobs {
            let blob_hash = entry
                .blob_hash
                .map(|text| BlobHash::parse(&text))
                .transpose()
                .map_err(|source| StreamError::BadBlobHash {
                    blob_num: entry.blob_num,
                    source,
                })?;
            blobs.push(BlobInfo {
                blob_hash,
                blob_num: entry.blob_num,
                iv: entry.iv,
                length: entry.length,
            });
        }
        let sd = StreamDescriptor {
            blobs,
            key: wire.key,
            stream_hash: wire.stream_hash,
            stream_name: wire.stream_name,
            stream_type: wire.stream_type,
            suggested_file_name: wire.suggested_file_name,
        };
        sd.validate()?;
        Ok(sd)
    }

    /// Checks the rules the reference SDK enforces when loading an sd blob, plus blob size
    /// limits: key and ivs are 32 hex characters; `blob_num` counts 0, 1, 2, ...; every entry but
    /// the last is a content blob with a hash and a length of 1..=2 MiB; the last entry is the
    /// zero-length, hash-less terminator; `stream_hash` matches the contents.
    ///
    /// Public because the fields are public: a descriptor built or edited in code can be checked
    /// the same way, and [`decode_stream`] checks it before trusting it.
    pub fn validate(&self) -> Result<(), StreamError> {
        if decode_hex16(&self.key).is_none() {
            return Err(StreamError::BadKey {
                found: preview(&self.key),
            });
        }
        let Some((last, content)) = self.blobs.split_last() else {
            return Err(StreamError::MissingTerminator);
        };
        for (position, info) in self.blobs.iter().enumerate() {
            if usize::try_from(info.blob_num).ok() != Some(position) {
                return Err(StreamError::BlobNumOutOfOrder {
                    position,
                    found: info.blob_num,
                });
            }
            if decode_hex16(&info.iv).is_none() {
                return Err(StreamError::BadIv {
                    blob_num: Some(info.blob_num),
                    found: preview(&info.iv),
                });
            }
        }
        for info in content {
            if info.is_terminator() {
                return Err(StreamError::TerminatorNotLast {
                    blob_num: info.blob_num,
                });
            }
            if info.length == 0 || info.length > MAX_BLOB_SIZE as u64 {
                return Err(StreamError::BadContentLength {
                    blob_num: info.blob_num,
                    length: info.length,
                });
            }
            if info.blob_hash.is_none() {
                return Err(StreamError::MissingBlobHash {
                    blob_num: info.blob_num,
                    length: info.length,
                });
            }
        }
        if last.length != 0 {
            return Err(StreamError::MissingTerminator);
        }
        if last.blob_hash.is_some() {
            return Err(StreamError::TerminatorHasHash {
                blob_num: last.blob_num,
            });
        }
        let computed = self.compute_stream_hash();
        if computed != self.stream_hash {
            return Err(StreamError::StreamHashMismatch {
                declared: preview(&self.stream_hash),
                computed,
            });
        }
        Ok(())
    }

    /// The stream hash as the reference SDK computes it (`get_stream_hash` in
    /// `lbry/stream/descriptor.py`):
    /// `sha384(stream_name_hex + key_hex + suggested_file_name_hex + sha384(concat(blob_sums)))`,
    /// where each blob's sum is `sha384([blob_hash] + str(blob_num) + iv + str(length))` (the
    /// hash omitted for zero-length entries). All strings are hashed exactly as written.
    pub fn compute_stream_hash(&self) -> String {
        let mut blobs_hashsum = Sha384::new();
        for info in &self.blobs {
            let mut sum = Sha384::new();
            if info.length != 0 {
                if let Some(hash) = &info.blob_hash {
                    sum.update(hash.to_hex().as_bytes());
                }
            }
            sum.update(info.blob_num.to_string().as_bytes());
            sum.update(info.iv.as_bytes());
            sum.update(info.length.to_string().as_bytes());
            blobs_hashsum.update(sum.finalize());
        }
        let mut h = Sha384::new();
        h.update(self.stream_name.as_bytes());
        h.update(self.key.as_bytes());
        h.update(self.suggested_file_name.as_bytes());
        h.update(blobs_hashsum.finalize());
        hex::encode(h.finalize())
    }

    /// The sd blob bytes exactly as the current SDK writes them: Python
    /// `json.dumps(..., sort_keys=True)` — keys sorted, `", "` and `": "` separators, non-ASCII
    /// escaped as `\uXXXX`, no trailing newline. Parsing a current-format sd blob and calling this
    /// gives back the identical bytes (and so the same sd hash).
    ///
    /// Sd blobs from older SDK versions used another key order; this method always writes the
    /// current order, so for those the original bytes must be kept to serve them under their name.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.blobs.len() * 200);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
        // Writing into a Vec cannot fail, and every field is a string, an integer or a BlobHash
        // (whose Display never fails), so serde_json has no error to report here.
        self.serialize(&mut ser)
            .expect("serializing a StreamDescriptor into memory cannot fail");
        out
    }

    /// The SHA-384 of [`StreamDescriptor::to_bytes`]: the name this descriptor has as a blob.
    pub fn sd_hash(&self) -> BlobHash {
        BlobHash::of(&self.to_bytes())
    }

    /// Content blobs in stream order as `(blob_num, hash, encrypted length)`; the terminator
    /// (which has no hash) is left out.
    pub fn content_blobs(&self) -> impl Iterator<Item = (u32, BlobHash, u64)> + '_ {
        self.blobs
            .iter()
            .filter_map(|b| b.blob_hash.map(|h| (b.blob_num, h, b.length)))
    }

    /// `stream_name` decoded from hex to text.
    pub fn stream_name_utf8(&self) -> Result<String, StreamError> {
        hex_to_utf8(&self.stream_name, "stream_name")
    }

    /// `suggested_file_name` decoded from hex to text.
    pub fn suggested_file_name_utf8(&self) -> Result<String, StreamError> {
        hex_to_utf8(&self.suggested_file_name, "suggested_file_name")
    }
}

fn hex_to_utf8(text: &str, field: &'static str) -> Result<String, StreamError> {
    let raw = hex::decode(text).map_err(|_| StreamError::NotHex { field })?;
    String::from_utf8(raw).map_err(|_| StreamError::NotUtf8 { field })
}

/// A `serde_json` formatter that writes what Python's `json.dumps` writes by default:
/// `", "` between items, `": "` between key and value, and `ensure_ascii` escaping (every
/// character above `~` as lowercase `\uXXXX`, astral characters as surrogate pairs). serde_json's
/// own escaping of `"`, `\` and control characters already matches Python's.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut plain_start = 0;
        for (pos, c) in fragment.char_indices() {
            if c <= '~' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[plain_start..pos])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            plain_start = pos + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[plain_start..])
    }
}

/// Decrypts one content blob: AES-128-CBC with `key_hex`/`iv_hex` (32 hex characters each), then
/// PKCS#7 unpadding.
///
/// A wrong key or iv almost always shows up as bad padding and is reported as
/// [`StreamError::Decrypt`]; padding is the only integrity signal CBC gives, so a wrong key that
/// happens to leave valid padding (about 1 in 256) yields garbage — which is why
/// [`decode_stream`] checks each blob's SHA-384 before decrypting.
pub fn decrypt_blob(key_hex: &str, iv_hex: &str, encrypted: &[u8]) -> Result<Vec<u8>, StreamError> {
    let key = decode_hex16(key_hex).ok_or_else(|| StreamError::BadKey {
        found: preview(key_hex),
    })?;
    let iv = decode_hex16(iv_hex).ok_or_else(|| StreamError::BadIv {
        blob_num: None,
        found: preview(iv_hex),
    })?;
    if encrypted.is_empty() || !encrypted.len().is_multiple_of(AES_BLOCK) {
        return Err(StreamError::Decrypt {
            blob_num: None,
            reason: "ciphertext length is not a positive multiple of the 16-byte AES block",
        });
    }
    let mut buf = encrypted.to_vec();
    let plain_len = Aes128CbcDec::new(&key.into(), &iv.into())
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| StreamError::Decrypt {
            blob_num: None,
            reason: "invalid PKCS#7 padding (wrong key or iv, or corrupt data)",
        })?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// Decodes a whole stream: fetches each content blob in order with `get_blob`, checks its length
/// against the sd blob and its SHA-384 against its name, decrypts it and appends the plaintext.
///
/// Verification happens before decryption so a corrupt or substituted blob is reported as what it
/// is (a hash or length mismatch) instead of as a confusing padding error or, worse, as garbage
/// that happens to unpad. The descriptor is validated first because its fields are public.
pub fn decode_stream(
    sd: &StreamDescriptor,
    mut get_blob: impl FnMut(&BlobHash) -> Option<bytes::Bytes>,
) -> Result<Vec<u8>, StreamError> {
    sd.validate()?;
    let mut out = Vec::new();
    for info in &sd.blobs {
        let Some(hash) = info.blob_hash else {
            // validate() guarantees this is the terminator.
            break;
        };
        let data = get_blob(&hash).ok_or(StreamError::MissingBlob {
            blob_num: info.blob_num,
            hash,
        })?;
        if data.len() as u64 != info.length {
            return Err(StreamError::BlobLengthMismatch {
                blob_num: info.blob_num,
                hash,
                expected: info.length,
                actual: data.len(),
            });
        }
        let actual = BlobHash::of(&data);
        if actual != hash {
            return Err(StreamError::BlobHashMismatch {
                blob_num: info.blob_num,
                expected: hash,
                actual,
            });
        }
        let plain = decrypt_blob(&sd.key, &info.iv, &data).map_err(|e| match e {
            StreamError::Decrypt { reason, .. } => StreamError::Decrypt {
                blob_num: Some(info.blob_num),
                reason,
            },
            other => other,
        })?;
        out.extend_from_slice(&plain);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockEncryptMut;

    const KEY: &str = "22222222222222222222222222222222";

    /// A two-entry descriptor (one content blob + terminator) with a correct stream hash.
    fn tiny() -> StreamDescriptor {
        let mut sd = StreamDescriptor {
            blobs: vec![
                BlobInfo {
                    blob_hash: Some(BlobHash::from_bytes([0xab; 48])),
                    blob_num: 0,
                    iv: "00".repeat(16),
                    length: 32,
                },
                BlobInfo {
                    blob_hash: None,
                    blob_num: 1,
                    iv: "11".repeat(16),
                    length: 0,
                },
            ],
            key: KEY.to_owned(),
            stream_hash: String::new(),
            stream_name: hex::encode("a.bin"),
            stream_type: STREAM_TYPE_LBRYFILE.to_owned(),
            suggested_file_name: hex::encode("a.bin"),
        };
        sd.stream_hash = sd.compute_stream_hash();
        sd
    }

    /// Serializes a descriptor that may break the rules (the struct has no validation) so the
    /// parser can be fed it; re-hashes first so only the intended fault is present.
    fn bytes_of(mut sd: StreamDescriptor) -> Vec<u8> {
        sd.stream_hash = sd.compute_stream_hash();
        sd.to_bytes()
    }

    fn encrypt(key: &[u8; 16], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; plain.len() + AES_BLOCK];
        buf[..plain.len()].copy_from_slice(plain);
        let n = cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into())
            .encrypt_padded_mut::<Pkcs7>(&mut buf, plain.len())
            .unwrap()
            .len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn serializer_matches_python_json_dumps_byte_for_byte() {
        let mut sd = tiny();
        sd.stream_hash = "X".to_owned();
        // Produced by Python: json.dumps(d, sort_keys=True) for the same dict.
        let expected = concat!(
            r#"{"blobs": [{"blob_hash": "abababababababababababababababababababababababababababababababababababababababababababababababab", "blob_num": 0, "iv": "00000000000000000000000000000000", "length": 32}, "#,
            r#"{"blob_num": 1, "iv": "11111111111111111111111111111111", "length": 0}], "#,
            r#""key": "22222222222222222222222222222222", "stream_hash": "X", "stream_name": "612e62696e", "#,
            r#""stream_type": "lbryfile", "suggested_file_name": "612e62696e"}"#
        );
        assert_eq!(String::from_utf8(sd.to_bytes()).unwrap(), expected);
    }

    #[test]
    fn serializer_escapes_like_python_ensure_ascii() {
        let mut sd = tiny();
        sd.blobs.clear();
        sd.stream_type = "é\u{7f}😀\n\u{1}~\"\\".to_owned();
        let text = String::from_utf8(sd.to_bytes()).unwrap();
        // Python: json.dumps("é\x7f😀\n\x01~\"\\")
        assert!(
            text.contains(r#""stream_type": "\u00e9\u007f\ud83d\ude00\n\u0001~\"\\""#),
            "{text}"
        );
        assert!(text.starts_with(r#"{"blobs": [], "key": "#), "{text}");
    }

    #[test]
    fn round_trip_and_accessors() {
        let sd = tiny();
        let bytes = sd.to_bytes();
        let parsed = StreamDescriptor::parse(&bytes).unwrap();
        assert_eq!(parsed, sd);
        assert_eq!(parsed.to_bytes(), bytes);
        assert_eq!(parsed.sd_hash(), BlobHash::of(&bytes));
        assert_eq!(parsed.stream_name_utf8().unwrap(), "a.bin");
        assert_eq!(parsed.suggested_file_name_utf8().unwrap(), "a.bin");
        let content: Vec<_> = parsed.content_blobs().collect();
        assert_eq!(content, vec![(0, BlobHash::from_bytes([0xab; 48]), 32)]);
    }

    #[test]
    fn parse_is_by_key_and_ignores_unknown_keys() {
        let sd = tiny();
        let hash = BlobHash::from_bytes([0xab; 48]);
        // The pre-sort SDK order (stream_name first, blob keys length/blob_num/blob_hash/iv),
        // compact separators, plus an unknown key.
        let old = format!(
            r#"{{"stream_name":"{}","blobs":[{{"length":32,"blob_num":0,"blob_hash":"{hash}","iv":"{}","extra":1}},{{"length":0,"blob_num":1,"iv":"{}"}}],"stream_type":"lbryfile","key":"{KEY}","suggested_file_name":"{}","stream_hash":"{}","future":[1,2]}}"#,
            sd.stream_name, sd.blobs[0].iv, sd.blobs[1].iv, sd.suggested_file_name, sd.stream_hash
        );
        assert_eq!(StreamDescriptor::parse(old.as_bytes()).unwrap(), sd);
    }

    #[test]
    fn parse_rejects_invalid_json_and_garbage() {
        for input in [
            &b"{\"blobs\": ["[..],
            b"",
            b"\xff\xfe\x00garbage\x80",
            b"[1, 2, 3]",
            b"{\"blobs\": []}",
        ] {
            let err = StreamDescriptor::parse(input).unwrap_err();
            assert!(matches!(err, StreamError::Json(_)), "{input:?}: {err}");
        }
        // A negative length is a type error, not a panic or wraparound.
        let text = String::from_utf8(tiny().to_bytes())
            .unwrap()
            .replace("\"length\": 32", "\"length\": -32");
        assert!(text.contains("-32"), "{text}");
        assert!(matches!(
            StreamDescriptor::parse(text.as_bytes()),
            Err(StreamError::Json(_))
        ));
    }

    #[test]
    fn parse_rejects_oversized_sd_blob() {
        let big = vec![b' '; MAX_BLOB_SIZE + 1];
        assert!(matches!(
            StreamDescriptor::parse(&big),
            Err(StreamError::SdTooLarge(n)) if n == MAX_BLOB_SIZE + 1
        ));
    }

    #[test]
    fn parse_rejects_bad_blob_hash() {
        let good = BlobHash::from_bytes([0xab; 48]).to_hex();
        let text = String::from_utf8(tiny().to_bytes()).unwrap();
        for bad in [
            "ab".to_owned(),
            good.to_uppercase(),
            format!("../{}", &good[3..]),
        ] {
            let tampered = text.replace(&good, &bad);
            match StreamDescriptor::parse(tampered.as_bytes()) {
                Err(StreamError::BadBlobHash { blob_num: 0, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn parse_rejects_missing_or_misplaced_terminator() {
        let mut sd = tiny();
        sd.blobs.pop();
        assert!(matches!(
            StreamDescriptor::parse(&bytes_of(sd)),
            Err(StreamError::MissingTerminator)
        ));

        let mut sd = tiny();
        sd.blobs.clear();
        assert!(matches!(
            StreamDescriptor::parse(&bytes_of(sd)),
            Err(StreamError::MissingTerminator)
        ));

        // Terminator first, content blob after it.
        let mut sd = tiny();
        sd.blobs.swap(0, 1);
        sd.blobs[0].blob_num = 0;
        sd.blobs[1].blob_num = 1;
        assert!(matches!(
            StreamDescriptor::parse(&bytes_of(sd)),
            Err(StreamError::TerminatorNotLast { blob_num: 0 })
        ));

        // Two terminators.
        let mut sd = tiny();
        let mut extra = sd.blobs[1].clone();
        extra.blob_num = 2;
        sd.blobs.push(extra);
        assert!(matches!(
            StreamDescriptor::parse(&bytes_of(sd)),
            Err(StreamError::TerminatorNotLast { blob_num: 1 })
        ));

        let mut sd = tiny();
        sd.blobs[1].blob_hash = Some(BlobHash::from_bytes([1; 48]));
        assert!(matches!(
            StreamDescriptor::parse(&bytes_of(sd)),
            Err(StreamError::TerminatorHasHash { blob_num: 1 })
        ));
    }

    #[test]
    fn parse_rejects_bad_iv_and_key() {
        for bad in ["00", "zz".repeat(16).as_str(), &"0".repeat(33), ""] {
            let mut sd = tiny();
            sd.blobs[1].iv = bad.to_owned();
            match StreamDescriptor::parse(&bytes_of(sd)) {
                Err(StreamError::BadIv {
                    blob_num: Some(1), ..
                }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
            let mut sd = tiny();
            sd.key = bad.to_owned();
            assert!(matches!(
                StreamDescriptor::parse(&bytes_of(sd)),
                Err(StreamError::BadKey { .. })
            ));
        }
    }

    #[test]
    fn parse_rejects_non_sequential_blob_num() {
        let mut sd = tiny();
        sd.blobs[1].blob_num = 2;
        assert!(matches!(
            StreamDescriptor::parse(&bytes_of(sd)),
            Err(StreamError::BlobNumOutOfOrder {
                position: 1,
                found: 2
            })
        ));
        let mut sd = tiny();
        sd.blobs[0].blob_num = 1;
        assert!(matches!(
            StreamDescriptor::parse(&bytes_of(sd)),
            Err(StreamError::BlobNumOutOfOrder {
                position: 0,
                found: 1
            })
        ));
    }

    #[test]
    fn parse_rejects_bad_content_length() {
        for bad in [0, MAX_BLOB_SIZE as u64 + 1, u64::MAX] {
            let mut sd = tiny();
            sd.blobs[0].length = bad;
            match StreamDescriptor::parse(&bytes_of(sd)) {
                Err(StreamError::BadContentLength {
                    blob_num: 0,
                    length,
                }) if length == bad => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        let mut sd = tiny();
        sd.blobs[0].length = MAX_BLOB_SIZE as u64;
        assert!(StreamDescriptor::parse(&bytes_of(sd)).is_ok());
    }

    #[test]
    fn parse_rejects_content_blob_without_hash() {
        let mut sd = tiny();
        sd.blobs[0].blob_hash = None;
        assert!(matches!(
            StreamDescriptor::parse(&bytes_of(sd)),
            Err(StreamError::MissingBlobHash { blob_num: 0, .. })
        ));
    }

    #[test]
    fn parse_rejects_wrong_stream_hash() {
        let mut sd = tiny();
        sd.stream_name = hex::encode("b.bin");
        // Not re-hashed: the declared hash is for the old name.
        assert!(matches!(
            StreamDescriptor::parse(&sd.to_bytes()),
            Err(StreamError::StreamHashMismatch { .. })
        ));
    }

    #[test]
    fn name_decoding_errors() {
        let mut sd = tiny();
        sd.stream_name = "zz".to_owned();
        sd.suggested_file_name = "ff".to_owned();
        assert!(matches!(
            sd.stream_name_utf8(),
            Err(StreamError::NotHex {
                field: "stream_name"
            })
        ));
        assert!(matches!(
            sd.suggested_file_name_utf8(),
            Err(StreamError::NotUtf8 {
                field: "suggested_file_name"
            })
        ));
    }

    #[test]
    fn decrypt_round_trip_and_wrong_key_fails_cleanly() {
        let key = [0x22u8; 16];
        let iv = [0x11u8; 16];
        let plain = b"hello, lbry stream";
        let ct = encrypt(&key, &iv, plain);
        assert_eq!(ct.len(), 32);
        let iv_hex = hex::encode(iv);
        assert_eq!(decrypt_blob(KEY, &iv_hex, &ct).unwrap(), plain);

        let wrong_key = "33333333333333333333333333333333";
        assert!(matches!(
            decrypt_blob(wrong_key, &iv_hex, &ct),
            Err(StreamError::Decrypt { blob_num: None, .. })
        ));
        assert!(matches!(
            decrypt_blob(KEY, &iv_hex, &ct[..31]),
            Err(StreamError::Decrypt { .. })
        ));
        assert!(matches!(
            decrypt_blob(KEY, &iv_hex, &[]),
            Err(StreamError::Decrypt { .. })
        ));
        assert!(matches!(
            decrypt_blob("nothex", &iv_hex, &ct),
            Err(StreamError::BadKey { .. })
        ));
        assert!(matches!(
            decrypt_blob(KEY, "00", &ct),
            Err(StreamError::BadIv { blob_num: None, .. })
        ));
    }

    #[test]
    fn decode_stream_verifies_then_decrypts() {
        let key = [0x22u8; 16];
        let iv = [0x00u8; 16];
        let plain = b"0123456789abcdef-tail";
        let ct = bytes::Bytes::from(encrypt(&key, &iv, plain));
        let mut sd = tiny();
        sd.blobs[0].blob_hash = Some(BlobHash::of(&ct));
        sd.blobs[0].length = ct.len() as u64;
        sd.stream_hash = sd.compute_stream_hash();

        let out = decode_stream(&sd, |_| Some(ct.clone())).unwrap();
        assert_eq!(out, plain);

        assert!(matches!(
            decode_stream(&sd, |_| None),
            Err(StreamError::MissingBlob { blob_num: 0, .. })
        ));
        let short = ct.slice(..16);
        assert!(matches!(
            decode_stream(&sd, |_| Some(short.clone())),
            Err(StreamError::BlobLengthMismatch {
                blob_num: 0,
                expected: 32,
                actual: 16,
                ..
            })
        ));
        let mut flipped = ct.to_vec();
        flipped[5] ^= 1;
        let flipped = bytes::Bytes::from(flipped);
        assert!(matches!(
            decode_stream(&sd, |_| Some(flipped.clone())),
            Err(StreamError::BlobHashMismatch { blob_num: 0, .. })
        ));

        // Right hash but wrong key in the descriptor: a clean decrypt error naming the blob.
        sd.key = "33".repeat(16);
        sd.stream_hash = sd.compute_stream_hash();
        assert!(matches!(
            decode_stream(&sd, |_| Some(ct.clone())),
            Err(StreamError::Decrypt {
                blob_num: Some(0),
                ..
            })
        ));

        // An invalid descriptor built in code is refused before any blob is fetched.
        sd.blobs.pop();
        let mut fetched = false;
        assert!(matches!(
            decode_stream(&sd, |_| {
                fetched = true;
                None
            }),
            Err(StreamError::MissingTerminator)
        ));
        assert!(!fetched);
    }
}
