//! The `peer` store's side of the LBRY peer protocol: a response header as an untrusted peer may
//! send it (followed by blob bytes), read as the store reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_lite::blob::BlobHash;
use prism_lite::protocol::peer::{next_frame, Answer, Frame, Incoming};

fuzz_target!(|data: &[u8]| {
    let Frame::Complete(header, used) = next_frame(data) else {
        return;
    };
    assert!(used <= data.len());
    let Ok(answer) = Answer::read(&header) else {
        return;
    };
    let asked = BlobHash::of(b"fuzz");
    let _ = answer.has_availability();
    let listed = answer.lists(&asked);
    if listed {
        assert!(answer.has_availability());
    }
    match answer.incoming() {
        Incoming::Blob {
            blob_hash,
            length: Some(length),
        } => {
            // What the store compares before reading `length` raw bytes.
            let _ = blob_hash == Some(asked.to_hex().as_str());
            let _ = usize::try_from(length).unwrap_or(usize::MAX);
        }
        Incoming::Absent | Incoming::Malformed | Incoming::Refused(_) | Incoming::Blob { .. } => {}
    }
});
