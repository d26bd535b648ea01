//! Stream descriptor parsing, byte-exact re-serialization and content decoding against real
//! streams made by the reference LBRY SDK (`../shared/fixtures/streams`, see its README).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prism_lite::blob::BlobHash;
use prism_lite::stream::{decode_stream, StreamDescriptor, StreamError};
use serde_json::Value;

const STREAMS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/streams");

/// One fixture folder: its stream.json, sd blob bytes, every blob by name, and source.bin.
struct Fixture {
    name: String,
    meta: Value,
    sd_hash: BlobHash,
    sd_bytes: Vec<u8>,
    blobs: HashMap<BlobHash, Bytes>,
    source: Vec<u8>,
}

/// All fixture folders, or `None` (after saying so) when the shared fixtures are not checked out.
fn fixtures() -> Option<Vec<Fixture>> {
    let root = Path::new(STREAMS_DIR);
    if !root.is_dir() {
        println!("skipping: ../shared/fixtures not found (looked in {STREAMS_DIR})");
        return None;
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixture folders in {STREAMS_DIR}");
    Some(dirs.iter().map(|d| load(d)).collect())
}

fn load(dir: &Path) -> Fixture {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let meta: Value = serde_json::from_slice(&fs::read(dir.join("stream.json")).unwrap()).unwrap();
    let sd_hash = BlobHash::parse(meta["sd_hash"].as_str().unwrap()).unwrap();
    let mut blobs = HashMap::new();
    for entry in fs::read_dir(dir.join("blobs")).unwrap() {
        let path = entry.unwrap().path();
        let file_name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let hash = BlobHash::parse(&file_name)
            .unwrap_or_else(|e| panic!("{name}: blob file name {file_name:?}: {e}"));
        blobs.insert(hash, Bytes::from(fs::read(&path).unwrap()));
    }
    let sd_bytes = blobs
        .get(&sd_hash)
        .unwrap_or_else(|| panic!("{name}: sd blob {sd_hash} missing"))
        .to_vec();
    let source = fs::read(dir.join("source.bin")).unwrap();
    Fixture {
        name,
        meta,
        sd_hash,
        sd_bytes,
        blobs,
        source,
    }
}

#[test]
fn sd_blobs_parse_and_reserialize_byte_exactly() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        let sd = StreamDescriptor::parse(&f.sd_bytes)
            .unwrap_or_else(|e| panic!("{}: parse failed: {e}", f.name));
        let again = sd.to_bytes();
        assert!(
            again == f.sd_bytes,
            "{}: to_bytes differs from the sd blob\n got: {}\nwant: {}",
            f.name,
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&f.sd_bytes)
        );
        assert_eq!(BlobHash::of(&again), f.sd_hash, "{}", f.name);
        assert_eq!(sd.sd_hash(), f.sd_hash, "{}", f.name);
        assert_eq!(sd.compute_stream_hash(), sd.stream_hash, "{}", f.name);
    }
}

#[test]
fn sd_fields_match_stream_json() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        let sd = StreamDescriptor::parse(&f.sd_bytes).unwrap();
        let m = &f.meta;
        assert_eq!(sd.key, m["key"].as_str().unwrap(), "{}", f.name);
        assert_eq!(
            sd.stream_hash,
            m["stream_hash"].as_str().unwrap(),
            "{}",
            f.name
        );
        assert_eq!(sd.stream_type, "lbryfile", "{}", f.name);
        // stream.json carries the file name as plain text; the sd blob carries it hex-encoded.
        let file_name = m["suggested_file_name"].as_str().unwrap();
        assert_eq!(
            sd.suggested_file_name_utf8().unwrap(),
            file_name,
            "{}",
            f.name
        );
        assert_eq!(sd.stream_name_utf8().unwrap(), file_name, "{}", f.name);

        let want = m["blobs"].as_array().unwrap();
        assert_eq!(sd.blobs.len(), want.len(), "{}", f.name);
        for (got, want) in sd.blobs.iter().zip(want) {
            assert_eq!(
                got.blob_hash.map(|h| h.to_hex()).as_deref(),
                want.get("blob_hash").map(|v| v.as_str().unwrap()),
                "{}",
                f.name
            );
            assert_eq!(u64::from(got.blob_num), want["blob_num"].as_u64().unwrap());
            assert_eq!(got.iv, want["iv"].as_str().unwrap());
            assert_eq!(got.length, want["length"].as_u64().unwrap());
        }
        assert!(sd.blobs.last().unwrap().is_terminator(), "{}", f.name);
        let content: Vec<_> = sd.content_blobs().collect();
        assert_eq!(content.len(), want.len() - 1, "{}", f.name);
        for (i, (num, _, _)) in content.iter().enumerate() {
            assert_eq!(*num as usize, i);
        }
    }
}

#[test]
fn every_blob_file_matches_its_name_and_sd_length() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        for (hash, data) in &f.blobs {
            assert_eq!(
                prism_lite::blob::verify(data, hash),
                Ok(()),
                "{}: {hash}",
                f.name
            );
        }
        let sd = StreamDescriptor::parse(&f.sd_bytes).unwrap();
        for (num, hash, len) in sd.content_blobs() {
            let data = f
                .blobs
                .get(&hash)
                .unwrap_or_else(|| panic!("{}: content blob {num} ({hash}) missing", f.name));
            assert_eq!(data.len() as u64, len, "{}: blob {num}", f.name);
        }
        // sd blob + content blobs, nothing else.
        assert_eq!(f.blobs.len(), sd.content_blobs().count() + 1, "{}", f.name);
    }
}

#[test]
fn decode_stream_yields_source_bin() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        let sd = StreamDescriptor::parse(&f.sd_bytes).unwrap();
        let mut asked = Vec::new();
        let plain = decode_stream(&sd, |h| {
            asked.push(*h);
            f.blobs.get(h).cloned()
        })
        .unwrap_or_else(|e| panic!("{}: decode failed: {e}", f.name));
        assert_eq!(plain.len(), f.source.len(), "{}", f.name);
        assert!(plain == f.source, "{}: plaintext differs", f.name);
        assert_eq!(
            plain.len() as u64,
            f.meta["plaintext_size"].as_u64().unwrap(),
            "{}",
            f.name
        );
        let order: Vec<BlobHash> = sd.content_blobs().map(|(_, h, _)| h).collect();
        assert_eq!(asked, order, "{}: blobs fetched out of order", f.name);
    }
}

#[test]
fn tampered_content_blob_fails_with_hash_error() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        let sd = StreamDescriptor::parse(&f.sd_bytes).unwrap();
        let (last_num, last_hash, _) = sd.content_blobs().last().unwrap();
        let mut bad = f.blobs[&last_hash].to_vec();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x01;
        let bad = Bytes::from(bad);
        let result = decode_stream(&sd, |h| {
            if *h == last_hash {
                Some(bad.clone())
            } else {
                f.blobs.get(h).cloned()
            }
        });
        match result {
            Err(StreamError::BlobHashMismatch {
                blob_num,
                expected,
                actual,
            }) => {
                assert_eq!(blob_num, last_num, "{}", f.name);
                assert_eq!(expected, last_hash, "{}", f.name);
                assert_eq!(actual, BlobHash::of(&bad), "{}", f.name);
            }
            other => panic!("{}: expected a hash mismatch, got {other:?}", f.name),
        }
    }
}

#[test]
fn missing_content_blob_is_reported() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        let sd = StreamDescriptor::parse(&f.sd_bytes).unwrap();
        let (first_num, first_hash, _) = sd.content_blobs().next().unwrap();
        let result = decode_stream(&sd, |h| {
            (*h != first_hash)
                .then(|| f.blobs.get(h).cloned())
                .flatten()
        });
        assert!(
            matches!(result, Err(StreamError::MissingBlob { blob_num, hash })
                if blob_num == first_num && hash == first_hash),
            "{}: {result:?}",
            f.name
        );
    }
}

/// Older SDK versions wrote the same descriptor with another key order (stream_name first;
/// blob entries as length, blob_num, blob_hash, iv). It must parse to the same descriptor, whose
/// `to_bytes` is then the current-format sd blob.
#[test]
fn old_key_order_parses_to_the_same_descriptor() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        let sd = StreamDescriptor::parse(&f.sd_bytes).unwrap();
        let blobs: Vec<String> = sd
            .blobs
            .iter()
            .map(|b| match b.blob_hash {
                Some(h) => format!(
                    r#"{{"length": {}, "blob_num": {}, "blob_hash": "{h}", "iv": "{}"}}"#,
                    b.length, b.blob_num, b.iv
                ),
                None => format!(
                    r#"{{"length": {}, "blob_num": {}, "iv": "{}"}}"#,
                    b.length, b.blob_num, b.iv
                ),
            })
            .collect();
        let old = format!(
            r#"{{"stream_name": "{}", "blobs": [{}], "stream_type": "lbryfile", "key": "{}", "suggested_file_name": "{}", "stream_hash": "{}"}}"#,
            sd.stream_name,
            blobs.join(", "),
            sd.key,
            sd.suggested_file_name,
            sd.stream_hash
        );
        assert_ne!(old.as_bytes(), &f.sd_bytes[..]);
        let parsed = StreamDescriptor::parse(old.as_bytes())
            .unwrap_or_else(|e| panic!("{}: old order: {e}", f.name));
        assert_eq!(parsed, sd, "{}", f.name);
        assert_eq!(parsed.to_bytes(), f.sd_bytes, "{}", f.name);
    }
}
