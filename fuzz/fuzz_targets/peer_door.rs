//! The peer door's side of the LBRY peer protocol: framing of a client's bytes (several requests
//! may share one segment), reading each request, and the response header the door would write,
//! which the `peer` store must read back as the SDK does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_lite::protocol::peer::{
    next_frame, rate_answer, Answer, Frame, Incoming, IncomingBlob, Request, Response,
};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Frame::Complete(map, used) = next_frame(buf) {
        assert!(used > 0 && used <= buf.len());
        buf = &buf[used..];
        if let Ok(request) = Request::from_object(&map) {
            round_trip(&request);
            answer_reads_back(&request);
        }
    }
});

/// A request re-encoded reads back as the same request (the rate up to its answer: JSON floats
/// need not survive text exactly).
fn round_trip(request: &Request) {
    let bytes = request.to_bytes();
    let Frame::Complete(map, used) = next_frame(&bytes) else {
        panic!("an encoded request does not frame: {bytes:?}")
    };
    assert_eq!(used, bytes.len());
    let again = Request::from_object(&map).expect("an encoded request reads back");
    assert_eq!(again.requested_blobs, request.requested_blobs);
    assert_eq!(again.requested_blob, request.requested_blob);
    assert_eq!(again.lbrycrd_address, request.lbrycrd_address);
    assert_eq!(
        again.blob_data_payment_rate.map(rate_answer),
        request.blob_data_payment_rate.map(rate_answer)
    );
}

/// The header the door writes for a refused blob is one the `peer` store accepts.
fn answer_reads_back(request: &Request) {
    let header = Response {
        lbrycrd_address: request.lbrycrd_address.filter(|a| *a).map(|_| "addr"),
        available_blobs: request.requested_blobs.clone(),
        blob_data_payment_rate: request.blob_data_payment_rate.map(rate_answer),
        incoming_blob: request
            .requested_blob
            .as_ref()
            .map(|text| IncomingBlob::Error {
                error: format!("blob {text} not found"),
            }),
    };
    let bytes = serde_json::to_vec(&header).expect("a header serializes");
    let Frame::Complete(map, _) = next_frame(&bytes) else {
        panic!("a door header does not frame")
    };
    let answer = Answer::read(&map).expect("a door header uses only the SDK's keys");
    assert_eq!(answer.has_availability(), request.requested_blobs.is_some());
    for hash in request.requested_blobs.iter().flatten() {
        assert!(answer.lists(hash));
    }
    match answer.incoming() {
        Incoming::Absent => assert!(request.requested_blob.is_none()),
        Incoming::Refused(_) => assert!(request.requested_blob.is_some()),
        other => panic!("refusal read as {other:?}"),
    }
}
