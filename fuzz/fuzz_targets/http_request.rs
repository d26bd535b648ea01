//! What the HTTP and HTTP/3 doors read from a request line and headers: the `/blob` query, the
//! HTTP/3 paths, `Range` with `If-Range` and `If-None-Match`, and an upstream's `Via` trace.
//! Input: 8 bytes of body size, then newline-separated fields (range, if-range, if-none-match,
//! query, path, via).
#![no_main]

use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use prism_lite::protocol::http::BlobQuery;
use prism_lite::protocol::http3::parse_path;
use prism_lite::server::playback::chosen_range;
use prism_lite::server::playback::range::{self, RangeRequest};
use prism_lite::server::web::etag_matches;
use prism_lite::trace::{BlobTrace, MAX_TRACE_HEADER};

const ETAG: &str = "\"0123abcd\"";

fuzz_target!(|data: &[u8]| {
    let Some((size, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    // Sizes up to 2^40 keep "huge" and "small" bodies both likely.
    let size = u64::from_le_bytes(*size) >> 24;
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\n');
    let mut next = || fields.next().unwrap_or("");
    let (range_value, if_range, if_none_match) = (next(), next(), next());
    let (query, path, via) = (next(), next(), next());

    check_range(range_value, size);
    check_chosen(range_value, if_range, size);
    let _ = etag_matches(if_none_match, ETAG);
    let q = BlobQuery::parse(Some(query));
    let _ = (q.hash, q.edge_token, q.trace);
    if let Some((_, hash)) = parse_path(path) {
        assert!(path.ends_with(hash));
    }
    let trace = BlobTrace::from_header(Some(via));
    let header = trace.to_header();
    if header.len() <= MAX_TRACE_HEADER {
        assert_eq!(BlobTrace::from_header(Some(&header)), trace);
    }
});

/// A partial range lies inside the body and is never empty.
fn check_range(value: &str, size: u64) {
    match range::parse(value, size) {
        RangeRequest::Partial(r) => {
            assert!(
                r.first <= r.last && r.last < size,
                "{value:?} of {size}: {r:?}"
            );
            assert!(r.byte_count() >= 1);
        }
        RangeRequest::Whole | RangeRequest::Unsatisfiable => {}
    }
}

/// The status and range the playback door answers with agree with each other and the body.
fn check_chosen(range_value: &str, if_range: &str, size: u64) {
    let mut headers = HeaderMap::new();
    for (name, value) in [(header::RANGE, range_value), (header::IF_RANGE, if_range)] {
        if let Ok(v) = HeaderValue::from_str(value) {
            if !value.is_empty() {
                headers.insert(name, v);
            }
        }
    }
    match chosen_range(&headers, ETAG, size) {
        None => assert!(headers.contains_key(header::RANGE)),
        Some((status, range)) => {
            if let Some(r) = range {
                assert!(r.first <= r.last && r.last < size);
            }
            match status {
                StatusCode::OK => assert_eq!(range.is_some(), size > 0),
                StatusCode::PARTIAL_CONTENT => assert!(range.is_some()),
                other => panic!("unexpected status {other}"),
            }
        }
    }
}
