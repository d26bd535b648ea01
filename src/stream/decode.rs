//! Stream content decoding: AES-128-CBC with PKCS#7 padding, each blob checked against its
//! SHA-384 name and declared length before it is decrypted.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, KeyIvInit};

use crate::blob::BlobHash;

use super::error::{preview, StreamError};
use super::key::decode_hex16;
use super::sd::StreamDescriptor;

/// AES block size; CBC ciphertext is always a whole number of blocks.
const AES_BLOCK: usize = 16;

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

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
    use crate::stream::sd::tests::{tiny, KEY};
    use aes::cipher::BlockEncryptMut;

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
