//! Making an LBRY stream from a file, byte-compatible with the LBRY SDK's encoder
//! (`StreamDescriptor.create_stream` in `lbry/stream/descriptor.py`).
//!
//! The SDK reads the file in chunks of `MAX_BLOB_SIZE - 1` bytes (so each padded blob is at most
//! 2 MiB), encrypts each chunk with AES-128-CBC under the stream key and the next IV, PKCS#7
//! padded, and names the blob by the SHA-384 of the ciphertext. One more IV goes to the
//! zero-length terminator. The sd blob names the stream after the file's base name and suggests
//! the same name cleaned by `sanitize_file_name`. With the same key and IVs, this module writes
//! the same blobs and the same sd blob (hence the same sd hash) as the SDK.
//!
//! Memory stays at one chunk: the file is read, encrypted and written blob by blob.

use std::io::Read;
use std::path::Path;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use anyhow::{bail, Context};

use crate::blob::{BlobHash, MAX_BLOB_SIZE};
use crate::stream::{BlobInfo, StreamDescriptor, STREAM_TYPE_LBRYFILE};

/// Plaintext bytes per blob: one less than a blob so the PKCS#7 padded ciphertext fits.
pub const CHUNK: usize = MAX_BLOB_SIZE - 1;

/// Where the key and IVs come from.
pub enum Keys {
    /// Fresh random key and IVs (what the SDK does).
    Random,
    /// A given key and IVs (one per content blob plus one for the terminator, in order), to
    /// reproduce an existing stream.
    Given { key: [u8; 16], ivs: Vec<[u8; 16]> },
}

/// The result of encoding: the sd hash and every blob written.
#[derive(Debug)]
pub struct Encoded {
    pub sd_hash: BlobHash,
    pub content_blobs: Vec<BlobHash>,
    pub plaintext_size: u64,
}

/// How many IVs a file of `size` bytes needs: one per content blob plus the terminator's.
pub fn ivs_needed(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64) + 1
}

/// Encodes `file` as an LBRY stream, writing `out_dir/<hash>` for every content blob and for
/// the sd blob.
pub fn encode_file(file: &Path, out_dir: &Path, keys: Keys) -> anyhow::Result<Encoded> {
    let base_name = file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no UTF-8 file name", file.display()))?
        .to_owned();
    let mut input =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = input.metadata()?.len();
    let needed = ivs_needed(size);
    let (key, mut ivs): (_, Box<dyn Iterator<Item = [u8; 16]>>) = match keys {
        Keys::Random => (
            random16()?,
            Box::new(std::iter::from_fn(|| random16().ok())),
        ),
        Keys::Given { key, ivs } => {
            if ivs.len() as u64 != needed {
                bail!(
                    "{} bytes make {} content blobs, so {needed} IVs are needed (one per blob plus \
                     the terminator's); {} given",
                    size,
                    needed - 1,
                    ivs.len()
                );
            }
            (key, Box::new(ivs.into_iter()))
        }
    };
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut next_iv = || ivs.next().context("could not draw a random IV");

    let mut infos = Vec::new();
    let mut content_blobs = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < size {
        let want = (size - done).min(CHUNK as u64) as usize;
        input
            .read_exact(&mut chunk[..want])
            .with_context(|| format!("reading {}", file.display()))?;
        done += want as u64;
        let iv = next_iv()?;
        let encrypted = encrypt(&key, &iv, &chunk[..want]);
        let hash = write_blob(out_dir, &encrypted)?;
        infos.push(BlobInfo {
            blob_hash: Some(hash),
            blob_num: infos.len() as u32,
            iv: hex::encode(iv),
            length: encrypted.len() as u64,
        });
        content_blobs.push(hash);
    }
    infos.push(BlobInfo {
        blob_hash: None,
        blob_num: infos.len() as u32,
        iv: hex::encode(next_iv()?),
        length: 0,
    });
    let mut sd = StreamDescriptor {
        blobs: infos,
        key: hex::encode(key),
        stream_hash: String::new(),
        stream_name: hex::encode(&base_name),
        stream_type: STREAM_TYPE_LBRYFILE.to_owned(),
        suggested_file_name: hex::encode(sanitize_file_name(&base_name)),
    };
    sd.stream_hash = sd.compute_stream_hash();
    let sd_hash = write_blob(out_dir, &sd.to_bytes())?;
    Ok(Encoded {
        sd_hash,
        content_blobs,
        plaintext_size: size,
    })
}

/// Reads an IVs file: one 32-hex-character IV per line; blank lines and `#` comments ignored.
pub fn parse_ivs(text: &str) -> anyhow::Result<Vec<[u8; 16]>> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            parse_hex16(line).with_context(|| format!("line {}: not a 32-hex-character IV", i + 1))
        })
        .collect()
}

/// A 32-hex-character key or IV.
pub fn parse_hex16(text: &str) -> anyhow::Result<[u8; 16]> {
    crate::stream::key::decode_hex16(text.trim())
        .with_context(|| format!("{text:?} is not 32 hex characters"))
}

/// The SDK's `sanitize_file_name`: illegal characters (`<>:"/\|?*`, control characters),
/// trailing dots and surrounding blanks removed from the stem and the extension separately;
/// an empty stem becomes `lbry_download`; an extension of just `.` is dropped.
pub fn sanitize_file_name(name: &str) -> String {
    let (stem, ext) = split_ext(name);
    let stem = clean(stem);
    let ext = clean(ext);
    let mut out = if stem.is_empty() {
        "lbry_download".to_owned()
    } else {
        stem
    };
    if ext.chars().count() > 1 {
        out.push_str(&ext);
    }
    out
}

/// Python's `os.path.splitext`: the extension starts at the last dot, unless every character
/// before that dot is a dot (so `.bashrc` has no extension).
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if name[..dot].chars().any(|c| c != '.') => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    }
}

/// One `re.sub` pass of the SDK's `RE_ILLEGAL_FILENAME_CHARS` (reserved device names included).
fn clean(text: &str) -> String {
    static ILLEGAL: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = ILLEGAL.get_or_init(|| {
        regex::Regex::new(concat!(
            r#"([<>:"/\\|?*]+|"#,
            r"[\x00-\x1F]+|",
            r"[ \t]*(\.)+[ \t]*$|",
            r"(^[ \t]+|[ \t]+$)|",
            r"^CON$|^PRN$|^AUX$|",
            r"^NUL$|^COM[1-9]$|^LPT[1-9]$)",
        ))
        .expect("a valid pattern")
    });
    re.replace_all(text, "").into_owned()
}

/// AES-128-CBC with PKCS#7 padding (always 1..=16 bytes added).
pub fn encrypt(key: &[u8; 16], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; plain.len() + 16];
    buf[..plain.len()].copy_from_slice(plain);
    let len = cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buf, plain.len())
        .expect("the buffer has room for a full padding block")
        .len();
    buf.truncate(len);
    buf
}

fn write_blob(dir: &Path, data: &[u8]) -> anyhow::Result<BlobHash> {
    let hash = BlobHash::of(data);
    let path = dir.join(hash.to_hex());
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    Ok(hash)
}

fn random16() -> anyhow::Result<[u8; 16]> {
    let mut out = [0u8; 16];
    getrandom::getrandom(&mut out).map_err(|e| anyhow::anyhow!("reading OS randomness: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_like_the_sdk() {
        assert_eq!(sanitize_file_name("clip.mp4"), "clip.mp4");
        assert_eq!(sanitize_file_name("a<b>:c.mp4"), "abc.mp4");
        assert_eq!(sanitize_file_name("  name .mp4"), "name.mp4");
        assert_eq!(sanitize_file_name("name."), "name");
        assert_eq!(sanitize_file_name("CON.txt"), "lbry_download.txt");
        assert_eq!(sanitize_file_name("???"), "lbry_download");
        assert_eq!(sanitize_file_name(".bashrc"), ".bashrc");
        assert_eq!(sanitize_file_name("noext"), "noext");
    }

    #[test]
    fn ivs_file_and_count() {
        assert_eq!(ivs_needed(0), 1);
        assert_eq!(ivs_needed(CHUNK as u64), 2);
        assert_eq!(ivs_needed(CHUNK as u64 + 1), 3);
        let ivs = parse_ivs(
            "# ivs\n00112233445566778899aabbccddeeff\n\n ffeeddccbbaa99887766554433221100 \n",
        )
        .unwrap();
        assert_eq!(ivs.len(), 2);
        assert_eq!(ivs[0][1], 0x11);
        let e = parse_ivs("0011\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn encodes_and_decodes_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.bin");
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &plain).unwrap();
        let out = dir.path().join("blobs");
        let encoded = encode_file(&file, &out, Keys::Random).unwrap();
        assert_eq!(encoded.content_blobs.len(), 1);
        let sd_bytes = std::fs::read(out.join(encoded.sd_hash.to_hex())).unwrap();
        let sd = StreamDescriptor::parse(&sd_bytes).unwrap();
        assert_eq!(sd.stream_name_utf8().unwrap(), "x.bin");
        let decoded = crate::stream::decode_stream(&sd, |h| {
            std::fs::read(out.join(h.to_hex()))
                .ok()
                .map(bytes::Bytes::from)
        })
        .unwrap();
        assert_eq!(decoded, plain);
        let wrong = Keys::Given {
            key: [0; 16],
            ivs: vec![[0; 16]],
        };
        let e = encode_file(&file, &out, wrong).unwrap_err().to_string();
        assert!(e.contains("2 IVs are needed"), "{e}");
    }
}
