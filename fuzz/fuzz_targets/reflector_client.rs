//! The uploading side of the reflector protocol: a server's answers as an untrusted reflector
//! may send them. Every answer that reads back re-encodes to the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_lite::protocol::reflector::{next_frame, Frame, Response};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Frame::Complete(map, used) = next_frame(buf) {
        assert!(used > 0 && used <= buf.len());
        buf = &buf[used..];
        let Some(response) = Response::from_object(&map) else {
            continue;
        };
        let bytes = response.to_bytes();
        let Frame::Complete(again, _) = next_frame(&bytes) else {
            panic!("an encoded answer does not frame")
        };
        assert_eq!(Response::from_object(&again), Some(response));
    }
});
