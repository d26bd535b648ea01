//! sd blobs as an origin, an uploader or a prefetched channel may hand them over: parsing and
//! validation, the re-encoding (whose hash is the sd blob's name), the playback plan built from
//! a valid descriptor, and the decryption of a content blob's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_lite::blob::BlobHash;
use prism_lite::server::playback::layout::StreamPlan;
use prism_lite::server::playback::range::ByteRange;
use prism_lite::stream::{decrypt_blob, StreamDescriptor};

fuzz_target!(|data: &[u8]| {
    // The same bytes as a content blob: AES-CBC with PKCS#7 padding to check.
    let _ = decrypt_blob(KEY, IV, data);
    let Ok(sd) = StreamDescriptor::parse(data) else {
        return;
    };
    let bytes = sd.to_bytes();
    let again = StreamDescriptor::parse(&bytes).expect("a re-encoded descriptor parses");
    assert_eq!(again, sd);
    assert_eq!(again.sd_hash(), BlobHash::of(&bytes));
    let _ = sd.stream_name_utf8();
    let _ = sd.suggested_file_name_utf8();
    plan(&sd);
});

const KEY: &str = "00112233445566778899aabbccddeeff";
const IV: &str = "0f0e0d0c0b0a09080706050403020100";

/// Every byte of the planned stream falls in one planned blob, in order.
fn plan(sd: &StreamDescriptor) {
    let last_len = sd.content_blobs().last().map_or(0, |(_, _, len)| len);
    let plan = StreamPlan::new(sd.sd_hash(), sd, Some(last_len.saturating_sub(1)));
    assert_eq!(plan.blobs.len(), sd.content_blobs().count());
    if plan.size == 0 {
        return;
    }
    for (first, last) in [
        (0, plan.size - 1),
        (plan.size / 2, plan.size / 2),
        (plan.size - 1, plan.size - 1),
    ] {
        let held = plan.blobs_for(ByteRange { first, last });
        assert!(held.start() <= held.end() && *held.end() < plan.blobs.len());
        let blob = &plan.blobs[*held.start()];
        assert!(blob.offset <= first);
    }
}
