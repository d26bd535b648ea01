//! How the doors answer: the status for a store error, the fixed text for a protected blob, the
//! `/blob` query, one-line texts. A leaf module, so the doors and the playback routes they
//! host share it without importing the doors' parent.

use ::http::StatusCode;

use crate::protocol::http::{parse_bool, EDGE_TOKEN_PARAM, HASH_PARAM, TRACE_PARAM};
use crate::store::StoreError;

/// The answer body for a protected blob requested without the right token.
pub const PROTECTED_MESSAGE: &str = "requested blob is protected; a valid edge_token is required";

/// The HTTP status for a store error: what an operator and a client can act on.
pub fn status_for(err: &StoreError) -> StatusCode {
    match err {
        StoreError::NotFound => StatusCode::NOT_FOUND,
        StoreError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        StoreError::Corrupt { .. }
        | StoreError::Unavailable { .. }
        | StoreError::OriginStatus { .. } => StatusCode::BAD_GATEWAY,
        StoreError::Io { .. } | StoreError::Refused { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The query parameters of `/blob` (and of the HTTP/3 routes, which take the hash in the path).
#[derive(Debug, Default)]
pub(crate) struct BlobQuery {
    pub(crate) hash: Option<String>,
    pub(crate) edge_token: Option<String>,
    /// `trace=true` (Go's `strconv.ParseBool` spellings): HTTP/3 only sends `Via` when asked.
    pub(crate) trace: bool,
}

impl BlobQuery {
    pub(crate) fn parse(query: Option<&str>) -> BlobQuery {
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

/// An error text as one line (answers and `incoming_blob.error` must not carry line breaks).
pub(crate) fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
