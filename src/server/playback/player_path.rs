//! The URL shapes of Odysee's player-server (`player/http_routes.go`), parsed into the claim
//! they name and the sd hash prefix they pin, if any.
//!
//! | route | claim | sd prefix |
//! |---|---|---|
//! | `/content/claims/{name}/{claim_id}/{filename}` (v1) | `lbry://name#claim_id` | none |
//! | `/api/v2/streams/free/{name}/{claim_id}` | `lbry://name#claim_id` | none |
//! | `/api/v{3,4}/streams/free/{name}/{claim_id}/{sd_prefix}[.ext]` | `lbry://name#claim_id` | yes |
//! | `/v5/streams/{start,original}/{claim_id}/{sd_prefix}[.ext]` | claim id (40 hex) | yes |
//! | `/v6/streams/{claim_id}/{sd_prefix}[.ext]` | claim id (40 hex) | yes |
//!
//! Odysee's web player appends the file's extension (`{sd6}.mp4`) so that players pick a
//! demuxer by URL; it carries nothing and is dropped. Paid routes (`/streams/paid/...`) carry a
//! purchase token this cache cannot check, so they are refused, never served.
//!
//! Pure parsing, no I/O: the resolver ([`super::resolve`]) turns the claim into an sd hash.

/// Longest claim name accepted (LBRY names are short; this bounds the cache key and the URL).
const MAX_CLAIM_NAME: usize = 255;
/// A full claim id: 20 bytes in hex.
const CLAIM_ID_LEN: usize = 40;
/// An sd hash: 48 bytes in hex.
const SD_HASH_LEN: usize = 96;

/// Path prefixes that belong to player-server's routes (a path under one of them is answered
/// by playback, with a 4xx when it does not parse).
const PLAYER_PREFIXES: [&str; 6] = [
    "/content/claims/",
    "/api/v2/streams/",
    "/api/v3/streams/",
    "/api/v4/streams/",
    "/v5/streams/",
    "/v6/streams/",
];

/// How a route names its claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClaimRef {
    /// `lbry://{name}#{claim_id}`, resolved with `resolve`; the id may be a short prefix.
    Named { name: String, claim_id: String },
    /// A full claim id, looked up with `claim_search`.
    Id(String),
}

impl ClaimRef {
    /// The key this claim's resolution is cached under (also the `resolve` URL when named).
    pub fn key(&self) -> String {
        match self {
            ClaimRef::Named { name, claim_id } => format!("lbry://{name}#{claim_id}"),
            ClaimRef::Id(id) => id.clone(),
        }
    }
}

/// A parsed player route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerPath {
    pub claim: ClaimRef,
    /// The sd hash prefix the stream must have (lowercase hex), on routes that carry one.
    pub sd_prefix: Option<String>,
}

/// Why a player route cannot be served; each maps to one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A malformed named route (v1 to v4): 400, saying what is wrong.
    #[error("{0}")]
    Malformed(&'static str),
    /// Nothing is at this path (a v5/v6 claim id that is not 40 hex, an unknown sub-route): 404,
    /// as player-server's router answers.
    #[error("{0}")]
    NoSuchStream(&'static str),
    /// A paid route: 402.
    #[error("paid streams are not served here")]
    Paid,
}

/// Whether `path` is under one of player-server's route prefixes.
pub fn is_player_path(path: &str) -> bool {
    PLAYER_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// Parses a player-server path (the whole URL path, without the query).
pub fn parse(path: &str) -> Result<PlayerPath, PathError> {
    if let Some(rest) = path.strip_prefix("/content/claims/") {
        let [name, claim_id, filename] = segments(rest).ok_or(PathError::Malformed(
            "expected /content/claims/{claim_name}/{claim_id}/{filename}",
        ))?;
        if filename.is_empty() {
            return Err(PathError::Malformed("empty file name"));
        }
        return Ok(PlayerPath {
            claim: named(name, claim_id)?,
            sd_prefix: None,
        });
    }
    if let Some(rest) = path.strip_prefix("/v5/streams/") {
        let [kind, claim_id, prefix] = segments(rest).ok_or(PathError::NoSuchStream(
            "expected /v5/streams/{start|original}/{claim_id}/{sd_hash_prefix}",
        ))?;
        if kind != "start" && kind != "original" {
            return Err(PathError::NoSuchStream("no such v5 route"));
        }
        return by_id(claim_id, prefix);
    }
    if let Some(rest) = path.strip_prefix("/v6/streams/") {
        let [claim_id, prefix] = segments(rest).ok_or(PathError::NoSuchStream(
            "expected /v6/streams/{claim_id}/{sd_hash_prefix}",
        ))?;
        return by_id(claim_id, prefix);
    }
    let (version, rest) = ["v2", "v3", "v4"]
        .into_iter()
        .find_map(|v| Some((v, path.strip_prefix(&format!("/api/{v}/streams/")[..])?)))
        .ok_or(PathError::NoSuchStream("not a player route"))?;
    if rest.starts_with("paid/") {
        return Err(PathError::Paid);
    }
    let rest = rest
        .strip_prefix("free/")
        .ok_or(PathError::NoSuchStream("no such streams route"))?;
    if version == "v2" {
        let [name, claim_id] = segments(rest).ok_or(PathError::Malformed(
            "expected /api/v2/streams/free/{claim_name}/{claim_id}",
        ))?;
        return Ok(PlayerPath {
            claim: named(name, claim_id)?,
            sd_prefix: None,
        });
    }
    let [name, claim_id, prefix] = segments(rest).ok_or(PathError::Malformed(
        "expected /{claim_name}/{claim_id}/{sd_hash_prefix}",
    ))?;
    Ok(PlayerPath {
        claim: named(name, claim_id)?,
        sd_prefix: Some(sd_prefix(prefix).ok_or(PathError::Malformed(
            "sd hash prefix must be 1 to 96 lowercase hex characters",
        ))?),
    })
}

/// Exactly `N` `/`-separated segments.
fn segments<const N: usize>(rest: &str) -> Option<[&str; N]> {
    let parts: Vec<&str> = rest.splitn(N + 1, '/').collect();
    parts.try_into().ok()
}

/// A v1 to v4 claim: a percent-encoded name and a (possibly short) claim id.
fn named(name: &str, claim_id: &str) -> Result<ClaimRef, PathError> {
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| PathError::Malformed("claim name is not UTF-8"))?;
    // Characters that would change the meaning of the lbry:// URL built from it.
    let forbidden = |c: char| c.is_control() || c.is_whitespace() || "#$:*/?&=%@".contains(c);
    if name.is_empty() || name.len() > MAX_CLAIM_NAME || name.contains(forbidden) {
        return Err(PathError::Malformed("invalid claim name"));
    }
    if !is_hex_up_to(claim_id, CLAIM_ID_LEN) {
        return Err(PathError::Malformed(
            "claim id must be 1 to 40 lowercase hex characters",
        ));
    }
    Ok(ClaimRef::Named {
        name: name.into_owned(),
        claim_id: claim_id.to_owned(),
    })
}

/// A v5/v6 route: a full claim id and an sd prefix; anything else is "no such stream".
fn by_id(claim_id: &str, prefix: &str) -> Result<PlayerPath, PathError> {
    if claim_id.len() != CLAIM_ID_LEN || !is_hex_up_to(claim_id, CLAIM_ID_LEN) {
        return Err(PathError::NoSuchStream(
            "claim id must be 40 lowercase hex characters",
        ));
    }
    let sd_prefix = sd_prefix(prefix).ok_or(PathError::NoSuchStream(
        "sd hash prefix must be 1 to 96 lowercase hex characters",
    ))?;
    Ok(PlayerPath {
        claim: ClaimRef::Id(claim_id.to_owned()),
        sd_prefix: Some(sd_prefix),
    })
}

/// The sd prefix of a segment, its `.ext` dropped.
fn sd_prefix(segment: &str) -> Option<String> {
    let prefix = segment.split_once('.').map_or(segment, |(p, _ext)| p);
    is_hex_up_to(prefix, SD_HASH_LEN).then(|| prefix.to_owned())
}

fn is_hex_up_to(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ad25e05aa7dc5e9994869040c6103f9a8728db46";

    fn named_ref(name: &str, id: &str) -> ClaimRef {
        ClaimRef::Named {
            name: name.into(),
            claim_id: id.into(),
        }
    }

    #[test]
    fn every_route_shape() {
        let cases = [
            (
                format!("/content/claims/clip/{ID}/video.mp4"),
                named_ref("clip", ID),
                None,
            ),
            (
                "/api/v2/streams/free/clip/ad25".into(),
                named_ref("clip", "ad25"),
                None,
            ),
            (
                format!("/api/v3/streams/free/clip/{ID}/449ab7.mp4"),
                named_ref("clip", ID),
                Some("449ab7"),
            ),
            (
                format!("/api/v4/streams/free/caf%C3%A9-clip/{ID}/449a"),
                named_ref("café-clip", ID),
                Some("449a"),
            ),
            (
                format!("/v5/streams/start/{ID}/449ab7.mp4"),
                ClaimRef::Id(ID.into()),
                Some("449ab7"),
            ),
            (
                format!("/v5/streams/original/{ID}/449ab7"),
                ClaimRef::Id(ID.into()),
                Some("449ab7"),
            ),
            (
                format!("/v6/streams/{ID}/449ab7.webm"),
                ClaimRef::Id(ID.into()),
                Some("449ab7"),
            ),
        ];
        for (path, claim, prefix) in cases {
            assert!(is_player_path(&path), "{path}");
            let parsed = parse(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(parsed.claim, claim, "{path}");
            assert_eq!(parsed.sd_prefix.as_deref(), prefix, "{path}");
        }
        assert_eq!(named_ref("a", "b1").key(), "lbry://a#b1");
        assert_eq!(ClaimRef::Id(ID.into()).key(), ID);
    }

    #[test]
    fn refusals_say_which_status() {
        let malformed = [
            "/api/v4/streams/free/my%20video/ad25e05a/449ab708".to_string(),
            "/api/v4/streams/free/a/b".into(),
            "/api/v4/streams/free/a/ab/cd/ef".into(),
            "/api/v4/streams/free//ab/cd".into(),
            "/api/v4/streams/free/a#b/ab/cd".into(),
            "/api/v4/streams/free/a/AB/cd".into(),
            "/api/v4/streams/free/a/ab/xyz".into(),
            "/api/v4/streams/free/a/ab/".into(),
            "/api/v4/streams/free/a/ab/.mp4".into(),
            format!("/api/v4/streams/free/a/{}/cd", "a".repeat(41)),
            format!("/api/v4/streams/free/{}/ab/cd", "n".repeat(256)),
            "/api/v4/streams/free/%ff/ab/cd".into(),
            "/api/v2/streams/free/a/ab/cd".into(),
            "/content/claims/a/ab/".into(),
            "/content/claims/a/ab".into(),
        ];
        for path in malformed {
            assert!(
                matches!(parse(&path), Err(PathError::Malformed(_))),
                "{path}: {:?}",
                parse(&path)
            );
        }
        let no_such = [
            "/v6/streams/ad25e05a/449ab7.mp4".to_string(),
            format!("/v6/streams/{}/449ab7", ID.to_uppercase()),
            format!("/v6/streams/{}0/449ab7", ID),
            format!("/v6/streams/{ID}/zz.mp4"),
            format!("/v6/streams/{ID}/449ab7/seg0.ts"),
            format!("/v6/streams/{ID}"),
            format!("/v5/streams/hls/{ID}/449ab7"),
            "/api/v4/streams/t/x".into(),
        ];
        for path in no_such {
            assert!(
                matches!(parse(&path), Err(PathError::NoSuchStream(_))),
                "{path}: {:?}",
                parse(&path)
            );
        }
        for path in [
            format!("/api/v2/streams/paid/clip/{ID}/token"),
            format!("/api/v3/streams/paid/clip/{ID}/449a/token"),
        ] {
            assert_eq!(parse(&path), Err(PathError::Paid), "{path}");
        }
        assert!(!is_player_path("/stream/abc"));
        assert!(!is_player_path("/api/v1/streams/free/a/b/c"));
    }
}
