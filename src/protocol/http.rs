//! reflector.go's HTTP blob API (`servers.http`, default port 5569), spoken by `servers.http`
//! ([`crate::server::http`]) and asked by the `upstream` store ([`crate::store::upstream`]),
//! which talks to exactly this API of the next cache up the chain.
//!
//! - `GET /blob?hash=H[&edge_token=T]` -> 200 `application/octet-stream` with `Content-Length`;
//!   404 when no store in the chain has it; 403 for protected content without the right token.
//! - `HEAD /blob?hash=H` -> 204 when present, 404 when not.
//! - The answer carries a `Via` header with a JSON trace of which stores served the blob and how
//!   long each took ([`crate::trace`]); chained caches read and extend it.
//!
//! Only 404 means "not here". An upstream's 403 means our `edge_token` is missing or wrong: a
//! configuration error, not an absent blob.

use crate::blob::BlobHash;

/// The one route.
pub const BLOB_PATH: &str = "/blob";
/// Query parameter: the blob's hex hash.
pub const HASH_PARAM: &str = "hash";
/// Query parameter: the token that unlocks protected blobs.
pub const EDGE_TOKEN_PARAM: &str = "edge_token";
/// Query parameter (HTTP/3 routes only): `trace=true` asks for the `Via` trace.
pub const TRACE_PARAM: &str = "trace";

/// The path and query asking for `hash` (relative: no leading `/`), with `edge_token`
/// form-encoded when given.
pub fn blob_request(hash: &BlobHash, edge_token: Option<&str>) -> String {
    let mut target = format!("{}?{HASH_PARAM}={hash}", BLOB_PATH.trim_start_matches('/'));
    if let Some(token) = edge_token {
        target.push_str(&format!("&{EDGE_TOKEN_PARAM}="));
        target.extend(form_urlencoded::byte_serialize(token.as_bytes()));
    }
    target
}

/// The query parameters of `/blob` (and of the HTTP/3 routes, which take the hash in the path).
#[derive(Debug, Default)]
pub struct BlobQuery {
    pub hash: Option<String>,
    pub edge_token: Option<String>,
    /// `trace=true` (Go's `strconv.ParseBool` spellings): HTTP/3 only sends `Via` when asked.
    pub trace: bool,
}

impl BlobQuery {
    /// The parameters of a query string; the first of a repeated `hash` or `edge_token` wins.
    pub fn parse(query: Option<&str>) -> BlobQuery {
        let mut q = BlobQuery::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                HASH_PARAM if q.hash.is_none() => q.hash = Some(v.into_owned()),
                EDGE_TOKEN_PARAM if q.edge_token.is_none() => q.edge_token = Some(v.into_owned()),
                TRACE_PARAM => q.trace = parse_bool(&v),
                _ => {}
            }
        }
        q
    }
}

/// Go's `strconv.ParseBool` spellings of true, which reflector.go accepts for `trace`.
pub fn parse_bool(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_hash_and_encoded_token() {
        let h = BlobHash::of(b"x");
        assert_eq!(blob_request(&h, None), format!("blob?hash={h}"));
        assert_eq!(
            blob_request(&h, Some("a b&c")),
            format!("blob?hash={h}&edge_token=a+b%26c")
        );
    }
}
