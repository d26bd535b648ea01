//! Answers of the LBRY JSON-RPC API (a public proxy or an SDK, either may be hostile): the HTTP
//! answer read as `resolve` and as `claim_search` results, as the prefetcher and the player
//! routes read them. Input: one status byte, then the body text.
#![no_main]

use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use prism_lite::prefetch::api::{
    channel_claim_id, claim_page, read_answer, resolve_entry_in, Attempt,
};

const URL: &str = "lbry://@channel#1";

fuzz_target!(|data: &[u8]| {
    let Some((&code, body)) = data.split_first() else {
        return;
    };
    let status = match code % 6 {
        0 | 1 | 2 => StatusCode::OK,
        3 => StatusCode::NOT_FOUND,
        4 => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_GATEWAY,
    };
    let text = String::from_utf8_lossy(body);
    for method in ["resolve", "claim_search"] {
        let result = match read_answer(method, status, &text) {
            Ok(result) => result,
            Err(Attempt::Retry(why)) => {
                assert!(!status.is_success() || why.contains("not JSON"), "{why}");
                continue;
            }
            Err(Attempt::Final(_)) => continue,
        };
        assert!(status.is_success());
        if let Ok(entry) = resolve_entry_in(&result, URL) {
            if let Ok(id) = channel_claim_id(entry, URL) {
                assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
        if let Ok(page) = claim_page(&result) {
            assert!(page.items.len() <= page.returned);
        }
    }
});
