//! The reflector door's side of the upload protocol: framing of a publisher's bytes and the
//! classification of each message (handshake, sd blob offer, blob offer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_lite::protocol::reflector::{next_frame, Frame, Request};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Frame::Complete(map, used) = next_frame(buf) {
        assert!(used > 0 && used <= buf.len());
        buf = &buf[used..];
        match Request::from_object(&map) {
            Ok(Request::SdOffer { hash, .. } | Request::BlobOffer { hash, .. }) => {
                // The hash came as text (96 lowercase hex characters): it is that text.
                let text = map
                    .get("sd_blob_hash")
                    .filter(|v| !v.is_null())
                    .or_else(|| map.get("blob_hash"))
                    .and_then(|v| v.as_str())
                    .expect("an offer names its hash");
                assert_eq!(hash.to_hex(), text);
            }
            Ok(Request::Handshake { .. }) => {}
            Err(e) => {
                let _ = e.kind();
            }
        }
    }
});
