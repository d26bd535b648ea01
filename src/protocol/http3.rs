//! reflector.go's HTTP/3 blob API (`servers.http3`, default port 5568), spoken by
//! `servers.http3` ([`crate::server::http3`]) and asked by the `http3` store
//! ([`crate::store::http3`]).
//!
//! - QUIC + HTTP/3. reflector.go's server offers ALPN `http3-reflector-server` with a
//!   self-signed certificate and its client does not verify the certificate; we offer `h3` too
//!   for standard clients (the ALPN names live in [`crate::quic`]).
//! - `GET /get/{hash}` -> the blob bytes (404 missing, 403 protected); `?trace=true` adds the
//!   `Via` trace; `&edge_token=T` unlocks protected blobs.
//! - `GET /has/{hash}` -> JSON [`Availability`], status 200 when present, 404 when absent.

use serde::{Deserialize, Serialize};

use crate::blob::BlobHash;
use crate::protocol::http::TRACE_PARAM;

/// Prefix of the blob route.
pub const GET_PREFIX: &str = "/get/";
/// Prefix of the availability route.
pub const HAS_PREFIX: &str = "/has/";
/// The payment address reflector.go answers in `/has/` (payments are not implemented there
/// either; clients only check that the key exists).
pub const LBRYCRD_ADDRESS: &str = "bJxKvpD96kaJLriqVajZ7SaQTsWWyrGQct";

/// The two routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Get,
    Has,
}

/// Splits a request path into its route and the (unparsed) hash text; `None` for other paths.
pub fn parse_path(path: &str) -> Option<(Route, &str)> {
    if let Some(hash) = path.strip_prefix(GET_PREFIX) {
        Some((Route::Get, hash))
    } else {
        path.strip_prefix(HAS_PREFIX).map(|hash| (Route::Has, hash))
    }
}

/// The path (with query) of a blob request. The `http3` store always asks for the trace, so
/// the edge's `Via` header names every tier.
pub fn get_path(hash: &BlobHash, trace: bool) -> String {
    if trace {
        format!("{GET_PREFIX}{hash}?{TRACE_PARAM}=true")
    } else {
        format!("{GET_PREFIX}{hash}")
    }
}

/// The path of an availability request.
pub fn has_path(hash: &BlobHash) -> String {
    format!("{HAS_PREFIX}{hash}")
}

/// The `/has/` body, field order as reflector.go writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub lbrycrd_address: String,
    pub is_available: bool,
}

/// Ending a request's send side: a server may send its whole answer before reading the
/// request's end and then stop that side with `H3_NO_ERROR` (RFC 9114, section 4.1: "clients
/// MUST NOT discard complete responses as a result of having their requests terminated
/// abruptly"). `finish` then fails although the answer is on its way; that failure is not one.
pub fn request_sent(
    finished: Result<(), h3::error::StreamError>,
) -> Result<(), h3::error::StreamError> {
    match finished {
        Err(h3::error::StreamError::RemoteTerminate { code, .. })
            if code == h3::error::Code::H3_NO_ERROR =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        let h = BlobHash::of(b"x");
        assert_eq!(get_path(&h, true), format!("/get/{h}?trace=true"));
        assert_eq!(
            parse_path(&get_path(&h, false)),
            Some((Route::Get, &*h.to_hex()))
        );
        assert_eq!(parse_path(&has_path(&h)), Some((Route::Has, &*h.to_hex())));
        assert_eq!(parse_path("/blob"), None);
    }

    #[test]
    fn availability_has_reflector_field_order() {
        let a = Availability {
            lbrycrd_address: LBRYCRD_ADDRESS.into(),
            is_available: true,
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            format!(r#"{{"lbrycrd_address":"{LBRYCRD_ADDRESS}","is_available":true}}"#)
        );
    }
}
