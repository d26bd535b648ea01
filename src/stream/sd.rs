//! The sd blob: a JSON stream descriptor, its parsing and the SDK's validation rules.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::blob::{BlobHash, MAX_BLOB_SIZE};

use super::error::{preview, StreamError};
use super::json::PythonFormatter;
use super::key::decode_hex16;

/// The only stream type LBRY has ever written.
pub const STREAM_TYPE_LBRYFILE: &str = "lbryfile";

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
    /// the same way, and [`super::decode_stream`] checks it before trusting it.
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

    /// The first content blob's hash: a stored stream is announced by its sd blob and this one
    /// (a peer that finds both can start playback).
    pub fn first_content_blob(&self) -> Option<BlobHash> {
        self.content_blobs().next().map(|(_, hash, _)| hash)
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) const KEY: &str = "22222222222222222222222222222222";

    /// A two-entry descriptor (one content blob + terminator) with a correct stream hash.
    pub(crate) fn tiny() -> StreamDescriptor {
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
}
