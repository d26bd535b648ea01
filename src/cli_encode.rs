//! `prism-lite encode FILE --out DIR [--key HEX --ivs FILE]`: make an LBRY stream from a file
//! (see [`prism_lite::encode`]) and print its sd hash.

use std::path::Path;

use anyhow::Context;
use prism_lite::encode::{self, Keys};

pub fn run(file: &Path, out: &Path, key: Option<&str>, ivs: Option<&Path>) -> anyhow::Result<()> {
    let keys = match (key, ivs) {
        (None, None) => Keys::Random,
        (Some(key), Some(ivs)) => {
            let text = std::fs::read_to_string(ivs)
                .with_context(|| format!("reading {}", ivs.display()))?;
            Keys::Given {
                key: encode::parse_hex16(key).context("--key")?,
                ivs: encode::parse_ivs(&text).with_context(|| format!("in {}", ivs.display()))?,
            }
        }
        _ => anyhow::bail!("--key and --ivs go together: give both or neither"),
    };
    let encoded = encode::encode_file(file, out, keys)?;
    eprintln!(
        "{} bytes -> {} content blobs + sd blob in {}",
        encoded.plaintext_size,
        encoded.content_blobs.len(),
        out.display()
    );
    println!("{}", encoded.sd_hash);
    Ok(())
}
