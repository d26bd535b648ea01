//! player-server URL paths (`/api/v{3,4}/streams/free/{name}/{claim_id}/{sd_prefix}`): what
//! parses builds a `lbry://` URL that says exactly that claim, and re-encoding the name parses
//! back to the same path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use prism_lite::server::playback::resolve::ClaimPath;

fuzz_target!(|data: &[u8]| {
    let Ok(rest) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = ClaimPath::parse(rest) else {
        return;
    };
    let url = path.lbry_url();
    assert_eq!(url.matches('#').count(), 1, "{url}");
    assert!(
        !url["lbry://".len()..].contains(['/', '?', '&', ' ', ':']),
        "{url}"
    );
    let encoded = format!(
        "{}/{}/{}",
        utf8_percent_encode(&path.name, NON_ALPHANUMERIC),
        path.claim_id,
        path.sd_prefix
    );
    assert_eq!(ClaimPath::parse(&encoded), Ok(path));
});
