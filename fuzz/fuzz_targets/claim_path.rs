//! player-server URL paths (every shape, v1 to v6): what parses names a claim whose `lbry://`
//! URL says exactly that claim, carries an sd prefix of lowercase hex, and re-encoding the path
//! parses back to the same claim and prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use prism_lite::server::playback::player_path::{self, ClaimRef};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = player_path::parse(path) else {
        return;
    };
    assert!(player_path::is_player_path(path), "{path}");
    if let Some(prefix) = &parsed.sd_prefix {
        assert!(!prefix.is_empty() && prefix.len() <= 96, "{prefix}");
        assert!(prefix.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    let rebuilt = match &parsed.claim {
        ClaimRef::Named { name, claim_id } => {
            let url = parsed.claim.key();
            assert_eq!(url.matches('#').count(), 1, "{url}");
            assert!(
                !url["lbry://".len()..].contains(['/', '?', '&', ' ', ':']),
                "{url}"
            );
            let name = utf8_percent_encode(name, NON_ALPHANUMERIC);
            match &parsed.sd_prefix {
                Some(prefix) => format!("/api/v4/streams/free/{name}/{claim_id}/{prefix}"),
                None => format!("/api/v2/streams/free/{name}/{claim_id}"),
            }
        }
        ClaimRef::Id(id) => {
            assert_eq!(id.len(), 40, "{id}");
            let prefix = parsed.sd_prefix.as_deref().expect("v5/v6 routes carry a prefix");
            format!("/v6/streams/{id}/{prefix}.mp4")
        }
    };
    assert_eq!(player_path::parse(&rebuilt), Ok(parsed), "{rebuilt}");
});
