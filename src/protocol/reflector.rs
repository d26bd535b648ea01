//! The reflector upload protocol (TCP 5566): how LBRY publishers push new streams to a
//! reflector. Message types and framing only; the door that speaks it is
//! [`crate::server::reflector`].
//!
//! Messages are bare JSON objects with no delimiter and no length prefix, so a message is
//! complete exactly when the bytes received so far parse as one JSON object ([`next_frame`]).
//! Blob bytes follow an accepted offer raw. The exchange, as the SDK's `StreamReflectorClient`
//! (lbry/stream/reflector/client.py) speaks it against reflector.go (reflector/server.go):
//!
//! ```text
//! C {"version": 1}                                   S {"version":1}
//! C {"sd_blob_hash": SD, "sd_blob_size": N}          S {"send_sd_blob":true}
//! C <N raw bytes>                                    S {"received_sd_blob":true}
//! C {"blob_hash": H, "blob_size": N}                 S {"send_blob":true}
//! C <N raw bytes>                                    S {"received_blob":true}
//! ```
//!
//! When the server already holds the sd blob it answers
//! `{"send_sd_blob":false,"needed_blobs":[...]}` and the client sends only those.
//! Version 0 ("v1") is reflector.go's own uploader: it offers lone blobs with no sd blob first.
//!
//! The SDK client reads each answer by parsing its whole receive buffer as one JSON document,
//! so a server must never send a second answer before the client's next message.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::blob::{BlobHash, InvalidHash};

/// `{"version": 0}`: reflector.go's uploader; lone blob offers are allowed.
pub const VERSION_1: u64 = 0;
/// `{"version": 1}`: the LBRY SDK; a stream starts with its sd blob.
pub const VERSION_2: u64 = 1;

pub use super::frame::{next_frame, Frame};

/// A message from the uploading client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{"version": N}`, the first message of a connection.
    Handshake { version: u64 },
    /// `{"sd_blob_hash": H, "sd_blob_size": N}`: a stream's descriptor is offered.
    SdOffer { hash: BlobHash, size: u64 },
    /// `{"blob_hash": H, "blob_size": N}`: a content blob (or, in v1, any blob) is offered.
    BlobOffer { hash: BlobHash, size: u64 },
}

/// Why a well-formed JSON object is not a request. Each maps to a
/// `reflector_error_total{direction="upload"}` label.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("invalid blob hash: {0}")]
    Hash(#[from] InvalidHash),
    #[error("{0}")]
    Shape(String),
}

impl BadRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            BadRequest::Hash(_) => "invalid_blob_hash",
            BadRequest::Shape(_) => "invalid_request",
        }
    }
}

impl Request {
    /// Classifies one received object. Unknown extra keys are ignored (as reflector.go's JSON
    /// decoder does); an object with both an sd and a blob offer is refused, as in reflector.go.
    pub fn from_object(map: &Map<String, Value>) -> Result<Request, BadRequest> {
        let sd = map.get("sd_blob_hash").filter(|v| !v.is_null());
        let blob = map.get("blob_hash").filter(|v| !v.is_null());
        match (sd, blob) {
            (Some(_), Some(_)) => Err(BadRequest::Shape(
                "both sd_blob_hash and blob_hash offered".into(),
            )),
            (Some(hash), None) => Ok(Request::SdOffer {
                hash: hash_field(hash, "sd_blob_hash")?,
                size: size_field(map, "sd_blob_size")?,
            }),
            (None, Some(hash)) => Ok(Request::BlobOffer {
                hash: hash_field(hash, "blob_hash")?,
                size: size_field(map, "blob_size")?,
            }),
            (None, None) => match map.get("version") {
                Some(v) => Ok(Request::Handshake {
                    version: v
                        .as_u64()
                        .ok_or_else(|| BadRequest::Shape(format!("version is {v}")))?,
                }),
                None => Err(BadRequest::Shape("no known request key".into())),
            },
        }
    }
}

fn hash_field(value: &Value, key: &str) -> Result<BlobHash, BadRequest> {
    match value {
        Value::String(text) => Ok(BlobHash::parse(text)?),
        other => Err(BadRequest::Shape(format!("{key} is {other}"))),
    }
}

fn size_field(map: &Map<String, Value>, key: &str) -> Result<u64, BadRequest> {
    match map.get(key) {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| BadRequest::Shape(format!("{key} is {v}"))),
        None => Err(BadRequest::Shape(format!("{key} is missing"))),
    }
}

/// A server answer. Each variant serializes to the one-key (or two-key) object the SDK client
/// and reflector.go's client look for, and an uploading client reads one back with
/// [`Response::from_object`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Version {
        version: u64,
    },
    /// Whether to send the offered sd blob. `needed_blobs` accompanies `false`: the content
    /// blobs of a stream we already know that are still missing (empty: nothing to send).
    SendSdBlob {
        send_sd_blob: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        needed_blobs: Option<Vec<BlobHash>>,
    },
    ReceivedSdBlob {
        received_sd_blob: bool,
    },
    SendBlob {
        send_blob: bool,
    },
    ReceivedBlob {
        received_blob: bool,
    },
}

impl Response {
    /// The bytes on the wire (compact JSON, as reflector.go writes).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Every variant is booleans, integers and hashes (whose Display cannot fail).
        serde_json::to_vec(self).expect("serializing a reflector answer cannot fail")
    }

    /// Reads a received answer (the uploading client's side): the first variant whose keys it
    /// has, extra keys ignored; `None` when it is none of them.
    pub fn from_object(map: &Map<String, Value>) -> Option<Response> {
        Response::deserialize(map).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Map<String, Value> {
        match next_frame(text.as_bytes()) {
            Frame::Complete(map, _) => map,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn requests_as_the_sdk_and_reflector_go_write_them() {
        let h = BlobHash::of(b"x");
        assert_eq!(
            Request::from_object(&object(r#"{"version": 1}"#)).unwrap(),
            Request::Handshake { version: 1 }
        );
        assert_eq!(
            Request::from_object(&object(&format!(
                r#"{{"sd_blob_hash": "{h}", "sd_blob_size": 1313}}"#
            )))
            .unwrap(),
            Request::SdOffer {
                hash: h,
                size: 1313
            }
        );
        // reflector.go's client writes compact JSON.
        assert_eq!(
            Request::from_object(&object(&format!(r#"{{"blob_hash":"{h}","blob_size":7}}"#)))
                .unwrap(),
            Request::BlobOffer { hash: h, size: 7 }
        );
    }

    #[test]
    fn malformed_requests_are_named() {
        let h = BlobHash::of(b"x");
        for (text, kind) in [
            (
                r#"{"blob_hash": "abc", "blob_size": 1}"#.to_string(),
                "invalid_blob_hash",
            ),
            (
                format!(r#"{{"blob_hash": "{h}", "blob_size": -1}}"#),
                "invalid_request",
            ),
            (format!(r#"{{"blob_hash": "{h}"}}"#), "invalid_request"),
            (
                format!(r#"{{"blob_hash": "{h}", "sd_blob_hash": "{h}", "blob_size": 1}}"#),
                "invalid_request",
            ),
            (r#"{"version": "1"}"#.to_string(), "invalid_request"),
            (r#"{"hello": 1}"#.to_string(), "invalid_request"),
        ] {
            let err = Request::from_object(&object(&text)).expect_err(&text);
            assert_eq!(err.kind(), kind, "{text}");
        }
    }

    #[test]
    fn responses_use_the_wire_keys() {
        let h = BlobHash::of(b"x");
        let cases = [
            (
                Response::Version { version: 0 },
                r#"{"version":0}"#.to_string(),
            ),
            (
                Response::SendSdBlob {
                    send_sd_blob: true,
                    needed_blobs: None,
                },
                r#"{"send_sd_blob":true}"#.to_string(),
            ),
            (
                Response::SendSdBlob {
                    send_sd_blob: false,
                    needed_blobs: Some(vec![h]),
                },
                format!(r#"{{"send_sd_blob":false,"needed_blobs":["{h}"]}}"#),
            ),
            (
                Response::ReceivedSdBlob {
                    received_sd_blob: true,
                },
                r#"{"received_sd_blob":true}"#.to_string(),
            ),
            (
                Response::SendBlob { send_blob: false },
                r#"{"send_blob":false}"#.to_string(),
            ),
            (
                Response::ReceivedBlob {
                    received_blob: false,
                },
                r#"{"received_blob":false}"#.to_string(),
            ),
        ];
        for (response, want) in cases {
            assert_eq!(String::from_utf8(response.to_bytes()).unwrap(), want);
            assert_eq!(Response::from_object(&object(&want)), Some(response));
        }
        assert_eq!(Response::from_object(&object(r#"{"send_blob":1}"#)), None);
    }
}
