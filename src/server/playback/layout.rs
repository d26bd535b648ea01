//! Where each byte of a stream's plaintext lives, and turning one encrypted content blob into
//! its plaintext.
//!
//! # Knowing the plaintext size before the first byte
//!
//! `Content-Length` and `Content-Range` need the exact plaintext size, but an sd blob only lists
//! each blob's *encrypted* length `L`; the plaintext is `L - p` where `p` (1..=16) is the PKCS#7
//! padding, which only decryption reveals. Two facts make this cheap:
//!
//! - The LBRY SDK cuts a file into chunks of `MAX_BLOB_SIZE - 1` (2,097,151) bytes
//!   (`file_reader` in `lbry/stream/descriptor.py`), and 2,097,151 is 15 mod 16, so every
//!   non-final blob is exactly 2 MiB encrypted with exactly 1 byte of padding. The SDK's own
//!   range serving relies on the same rule (`lower_bound_decrypted_length` counts `length - 1`
//!   for every blob but the last). The fixtures agree: 5,000,000 bytes = 2 x 2,097,151 +
//!   805,698, encrypted as 2 MiB, 2 MiB and 805,712 bytes.
//! - The final blob's padding is in its last 16-byte block, and in CBC the last block decrypts
//!   on its own, with the previous ciphertext block (or the IV) as its IV.
//!
//! So a stream's size is `sum(L - 1 for non-final blobs) + L_last - p_last`, which costs one
//! fetch of the final blob (which players ask for early anyway: MP4 keeps its index at the
//! end), done once per stream and remembered with the parsed descriptor. A stream not laid out
//! this way (another writer) is caught when a blob decrypts to a different length than planned:
//! the response is cut there, never continued with shifted bytes.

use std::ops::RangeInclusive;

use aes::cipher::{BlockDecrypt, KeyInit};
use bytes::Bytes;

use crate::blob::BlobHash;
use crate::store::Blob;
use crate::stream::key::decode_hex16;
use crate::stream::{decrypt_blob, StreamDescriptor, StreamError};

use super::range::ByteRange;

/// AES block size.
const BLOCK: usize = 16;

/// One content blob's place in the plaintext.
#[derive(Debug, Clone)]
pub struct PlannedBlob {
    pub num: u32,
    pub hash: BlobHash,
    /// The blob's IV as written in the sd blob (32 hex characters).
    pub iv: String,
    pub encrypted_len: u64,
    /// Where this blob's plaintext starts in the stream.
    pub offset: u64,
    pub plain_len: u64,
}

/// A stream ready to serve: what to fetch, how to decrypt it, and where its bytes go.
#[derive(Debug)]
pub struct StreamPlan {
    pub sd_hash: BlobHash,
    /// The stream key as written in the sd blob (32 hex characters).
    pub key: String,
    pub blobs: Vec<PlannedBlob>,
    /// Exact plaintext size.
    pub size: u64,
    /// `suggested_file_name`, decoded; `None` if it is not valid hex/UTF-8.
    pub file_name: Option<String>,
}

/// Why a blob could not be turned into the planned plaintext.
#[derive(Debug, thiserror::Error)]
pub enum BlobFault {
    #[error("blob {num} is {actual} bytes, the sd blob says {expected}")]
    Length {
        num: u32,
        expected: u64,
        actual: u64,
    },
    #[error("blob {num} does not hash to its name")]
    Hash { num: u32 },
    #[error("blob {num}: {source}")]
    Decrypt {
        num: u32,
        #[source]
        source: StreamError,
    },
    #[error("blob {num} decrypts to {actual} bytes, the stream layout needs {expected}")]
    Layout {
        num: u32,
        expected: u64,
        actual: u64,
    },
}

impl BlobFault {
    /// A short label for the `reason` of `prism_stream_cut_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            BlobFault::Length { .. } | BlobFault::Hash { .. } => "corrupt_blob",
            BlobFault::Decrypt { .. } => "decrypt_failed",
            BlobFault::Layout { .. } => "layout_mismatch",
        }
    }
}

impl StreamPlan {
    /// The plan for `sd`, given the final blob's plaintext length (from [`final_plain_len`]);
    /// `None` for a stream without content blobs.
    pub fn new(sd_hash: BlobHash, sd: &StreamDescriptor, final_plain_len: Option<u64>) -> Self {
        let content: Vec<_> = sd
            .blobs
            .iter()
            .filter_map(|b| b.blob_hash.map(|h| (b, h)))
            .collect();
        let mut blobs = Vec::with_capacity(content.len());
        let mut offset = 0u64;
        for (i, (info, hash)) in content.iter().enumerate() {
            let plain_len = if i + 1 == content.len() {
                final_plain_len.unwrap_or(0)
            } else {
                info.length - 1
            };
            blobs.push(PlannedBlob {
                num: info.blob_num,
                hash: *hash,
                iv: info.iv.clone(),
                encrypted_len: info.length,
                offset,
                plain_len,
            });
            offset += plain_len;
        }
        StreamPlan {
            sd_hash,
            key: sd.key.clone(),
            blobs,
            size: offset,
            file_name: sd.suggested_file_name_utf8().ok(),
        }
    }

    /// Indexes (into [`StreamPlan::blobs`]) of the blobs holding `range`, in order.
    pub fn blobs_for(&self, range: ByteRange) -> RangeInclusive<usize> {
        let holding = |pos: u64| {
            // The last blob whose offset is <= pos; offsets are sorted.
            self.blobs
                .partition_point(|b| b.offset <= pos)
                .saturating_sub(1)
        };
        holding(range.first)..=holding(range.last)
    }

    /// Checks `blob` against the plan (length, and hash unless a store already verified it),
    /// decrypts it and checks the plaintext has the planned length.
    pub fn decrypt(&self, index: usize, blob: &Blob) -> Result<Bytes, BlobFault> {
        let planned = &self.blobs[index];
        let num = planned.num;
        let actual = blob.data.len() as u64;
        if actual != planned.encrypted_len {
            return Err(BlobFault::Length {
                num,
                expected: planned.encrypted_len,
                actual,
            });
        }
        if !blob.verified && BlobHash::of(&blob.data) != planned.hash {
            return Err(BlobFault::Hash { num });
        }
        let plain = decrypt_blob(&self.key, &planned.iv, &blob.data)
            .map_err(|source| BlobFault::Decrypt { num, source })?;
        if plain.len() as u64 != planned.plain_len {
            return Err(BlobFault::Layout {
                num,
                expected: planned.plain_len,
                actual: plain.len() as u64,
            });
        }
        Ok(Bytes::from(plain))
    }
}

/// The plaintext length of the final content blob, from its last block alone (see the module
/// docs). `blob` must be the blob `info` describes; length and hash are checked here.
pub fn final_plain_len(
    key_hex: &str,
    planned: &PlannedBlob,
    blob: &Blob,
) -> Result<u64, BlobFault> {
    let num = planned.num;
    let data = &blob.data;
    if data.len() as u64 != planned.encrypted_len {
        return Err(BlobFault::Length {
            num,
            expected: planned.encrypted_len,
            actual: data.len() as u64,
        });
    }
    if !blob.verified && BlobHash::of(data) != planned.hash {
        return Err(BlobFault::Hash { num });
    }
    let decrypt_error = |reason| BlobFault::Decrypt {
        num,
        source: StreamError::Decrypt {
            blob_num: Some(num),
            reason,
        },
    };
    if data.is_empty() || !data.len().is_multiple_of(BLOCK) {
        return Err(decrypt_error("ciphertext is not whole 16-byte blocks"));
    }
    let (Some(key), Some(iv)) = (decode_hex16(key_hex), decode_hex16(&planned.iv)) else {
        return Err(decrypt_error("key or iv is not 32 hex characters"));
    };
    let last_start = data.len() - BLOCK;
    let chain: [u8; BLOCK] = if last_start == 0 {
        iv
    } else {
        data[last_start - BLOCK..last_start]
            .try_into()
            .expect("a 16-byte slice")
    };
    let mut block = aes::Block::clone_from_slice(&data[last_start..]);
    aes::Aes128::new(&key.into()).decrypt_block(&mut block);
    for (b, c) in block.iter_mut().zip(chain) {
        *b ^= c;
    }
    let pad = block[BLOCK - 1];
    let valid = (1..=BLOCK as u8).contains(&pad)
        && block[BLOCK - usize::from(pad)..].iter().all(|&b| b == pad);
    if !valid {
        return Err(decrypt_error(
            "invalid PKCS#7 padding (wrong key or iv, or corrupt data)",
        ));
    }
    Ok(data.len() as u64 - u64::from(pad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::BlobInfo;
    use std::time::Duration;

    const KEY: [u8; 16] = [7; 16];

    fn encrypt(iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
        crate::encode::encrypt(&KEY, iv, plain)
    }

    /// A stream of the given plaintext chunk lengths (as the SDK would cut them), its plan,
    /// and its encrypted blobs.
    fn stream(chunks: &[usize]) -> (StreamPlan, Vec<Blob>, Vec<u8>) {
        let mut infos = Vec::new();
        let mut blobs = Vec::new();
        let mut plain_all = Vec::new();
        for (i, &n) in chunks.iter().enumerate() {
            let plain: Vec<u8> = (0..n).map(|j| (j * 7 + i) as u8).collect();
            let iv = [i as u8 + 1; 16];
            let enc = encrypt(&iv, &plain);
            plain_all.extend_from_slice(&plain);
            infos.push(BlobInfo {
                blob_hash: Some(BlobHash::of(&enc)),
                blob_num: i as u32,
                iv: hex::encode(iv),
                length: enc.len() as u64,
            });
            blobs.push(Blob::served_by(Bytes::from(enc), Duration::ZERO, "t"));
        }
        infos.push(BlobInfo {
            blob_hash: None,
            blob_num: chunks.len() as u32,
            iv: "00".repeat(16),
            length: 0,
        });
        let mut sd = StreamDescriptor {
            blobs: infos,
            key: hex::encode(KEY),
            stream_hash: String::new(),
            stream_name: hex::encode("v.mp4"),
            stream_type: "lbryfile".into(),
            suggested_file_name: hex::encode("v.mp4"),
        };
        sd.stream_hash = sd.compute_stream_hash();
        let sd_hash = sd.sd_hash();
        let provisional = StreamPlan::new(sd_hash, &sd, None);
        let last = provisional.blobs.last().map(|planned| {
            final_plain_len(&provisional.key, planned, blobs.last().unwrap()).unwrap()
        });
        (StreamPlan::new(sd_hash, &sd, last), blobs, plain_all)
    }

    #[test]
    fn final_padding_is_read_from_the_last_block_for_every_length() {
        // One-block and multi-block final blobs, every padding length.
        for n in [1usize, 15, 16, 17, 31, 32, 100, 4095] {
            let (plan, _, plain) = stream(&[n]);
            assert_eq!(plan.size, plain.len() as u64, "{n}");
        }
    }

    #[test]
    fn sdk_layout_plans_and_decrypts() {
        let full = crate::blob::MAX_BLOB_SIZE - 1;
        let (plan, blobs, plain) = stream(&[full, full, 805_698]);
        assert_eq!(plan.size, 5_000_000);
        assert_eq!(plan.blobs[1].offset, full as u64);
        assert_eq!(plan.file_name.as_deref(), Some("v.mp4"));
        let mut out = Vec::new();
        for (i, b) in blobs.iter().enumerate() {
            out.extend_from_slice(&plan.decrypt(i, b).unwrap());
        }
        assert_eq!(out, plain);
        let r = |first, last| ByteRange { first, last };
        let f = full as u64;
        assert_eq!(plan.blobs_for(r(0, 0)), 0..=0);
        assert_eq!(plan.blobs_for(r(0, f - 1)), 0..=0);
        assert_eq!(plan.blobs_for(r(f - 1, f)), 0..=1);
        assert_eq!(plan.blobs_for(r(f, 2 * f)), 1..=2);
        assert_eq!(plan.blobs_for(r(4_999_999, 4_999_999)), 2..=2);
    }

    #[test]
    fn faults_are_named() {
        // A non-SDK layout: a first blob with 16 bytes of padding.
        let (plan, blobs, _) = stream(&[32, 5]);
        assert!(matches!(
            plan.decrypt(0, &blobs[0]),
            Err(BlobFault::Layout {
                num: 0,
                expected: 47,
                actual: 32
            })
        ));
        let (plan, blobs, _) = stream(&[100, 5]);
        let mut bad = blobs[0].data.to_vec();
        bad[3] ^= 1;
        let bad = Blob::served_by(Bytes::from(bad), Duration::ZERO, "t");
        assert!(matches!(
            plan.decrypt(0, &bad),
            Err(BlobFault::Hash { num: 0 })
        ));
        let short = Blob::served_by(blobs[0].data.slice(..16), Duration::ZERO, "t");
        assert!(matches!(
            plan.decrypt(0, &short),
            Err(BlobFault::Length { num: 0, .. })
        ));
        // A wrong key: with this key and blob the padding check fails (a wrong key passes it
        // about 1 time in 256, which is why blobs are hash-checked first).
        assert!(matches!(
            final_plain_len(&"11".repeat(16), &plan.blobs[1], &blobs[1]),
            Err(BlobFault::Decrypt { num: 1, .. })
        ));
    }
}
