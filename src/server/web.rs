//! What browsers and CDNs need from the two HTTP doors, written once for both: CORS on every
//! answer, the answer to a CORS preflight, and whether an answer may be cached.
//!
//! player-server sends `Access-Control-Allow-Origin: *` on every answer, so a web player on
//! another origin (`<video crossorigin>`, hls.js, `fetch`) can read ours too; the origin is
//! configurable (`cors_origin`). A player reads the range and length headers of a stream
//! answer, so they are exposed. Errors carry `Cache-Control: no-store`: a 404 or 503 cached by a
//! CDN in front would outlive the condition that caused it.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

/// Headers a player reads from a stream or blob answer.
const EXPOSED: &str = "Content-Range, Content-Length, Accept-Ranges, ETag";
/// What a preflight may ask for: the methods the doors answer and the request headers a player
/// sends.
const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";
const ALLOWED_HEADERS: &str = "Range, If-None-Match, If-Range, If-Modified-Since";
/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "86400";

/// The CORS rule of one HTTP door.
#[derive(Debug, Clone)]
pub struct Cors {
    allow_origin: HeaderValue,
}

impl Cors {
    /// A door's `cors_origin`. The config loader refuses a value a header cannot carry; one
    /// that got here anyway (a config built in code) falls back to `*`, player-server's rule,
    /// with a warning naming `section`.
    pub fn configured(section: &str, origin: &str) -> Cors {
        let allow_origin = HeaderValue::from_str(origin).unwrap_or_else(|_| {
            tracing::warn!(
                section,
                origin,
                "cors_origin is not a header value; using \"*\""
            );
            HeaderValue::from_static("*")
        });
        Cors { allow_origin }
    }

    /// Whether a request is a preflight the door answers itself ([`Cors::preflight`]).
    pub fn is_preflight(method: &Method) -> bool {
        method == Method::OPTIONS
    }

    /// The answer to an `OPTIONS` request on any route: 204 with what may be asked.
    pub fn preflight<B>(&self, body: B) -> Response<B> {
        let mut r = Response::new(body);
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
        r
    }

    /// Adds the headers every answer of the door carries: CORS, and `no-store` on an error.
    pub fn finish(&self, status: StatusCode, h: &mut HeaderMap) {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin.clone(),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
        if status.is_client_error() || status.is_server_error() {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

/// Whether an `If-None-Match` value names `etag` (or is `*`). Weak tags compare equal too
/// (RFC 9110's weak comparison, the one `If-None-Match` uses).
pub fn etag_matches(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// A blob answer is content named by its hash: any cache may keep it for a year.
const BLOB_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// The quoted `ETag` of a blob: its hash.
pub fn blob_etag(hash: &str) -> String {
    format!("\"{hash}\"")
}

/// What a blob answer (or its 304) says to caches: immutable, named by its hash.
pub fn blob_cache_headers(h: &mut HeaderMap, etag: &str) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(BLOB_CACHE_CONTROL),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
}

/// Whether `headers` carry an `If-None-Match` that names `etag`.
pub fn unchanged(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly() {
        let e = "\"abc\"";
        assert!(etag_matches("\"abc\"", e));
        assert!(etag_matches("W/\"abc\"", e));
        assert!(etag_matches("\"x\", \"abc\"", e));
        assert!(etag_matches("*", e));
        assert!(!etag_matches("\"abd\"", e));
    }

    #[test]
    fn every_answer_gets_cors_and_errors_are_not_cacheable() {
        let cors = Cors::configured("t", "*");
        let mut ok = HeaderMap::new();
        cors.finish(StatusCode::OK, &mut ok);
        assert_eq!(ok[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(ok[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .contains("Content-Range"));
        assert!(ok.get(header::CACHE_CONTROL).is_none());
        let mut err = HeaderMap::new();
        err.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
        cors.finish(StatusCode::SERVICE_UNAVAILABLE, &mut err);
        assert_eq!(err[header::CACHE_CONTROL], "no-store");
        let mut h = HeaderMap::new();
        Cors::configured("t", "https://odysee.com").finish(StatusCode::OK, &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://odysee.com");
        Cors::configured("t", "bad\nvalue").finish(StatusCode::OK, &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
