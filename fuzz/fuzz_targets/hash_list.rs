//! Lists of blob hashes: the protected list file and the blocklist, which may be fetched from a
//! URL (plain text, one hash a line, or a JSON array). What parses is a set of valid hashes that
//! reads back from its plain-text form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_lite::hashlist;

fuzz_target!(|data: &[u8]| {
    // As the blocklist fetcher reads a body.
    let text = String::from_utf8_lossy(data);
    let Ok(hashes) = hashlist::parse(&text) else {
        return;
    };
    let plain: String = hashes.iter().map(|h| format!("{h}\n")).collect();
    assert_eq!(
        hashlist::parse(&plain).expect("a written list parses"),
        hashes
    );
});
