//! The LBRY peer protocol: blob download over plain TCP (reflector.go default port 5567, LBRY
//! SDK default 3333). Answered by `servers.peer` ([`crate::server::peer`]) and asked by the
//! `peer` origin store ([`crate::store::peer`]).
//!
//! Wire facts (the reference is the LBRY SDK's `lbry/blob_exchange/`):
//!
//! - **No framing.** A message is one JSON object; the receiver knows it is complete when the
//!   bytes read so far parse as JSON ([`next_frame`]). Several requests may follow each other on
//!   one connection, even in one segment.
//! - **Request.** The SDK's standard download request carries four keys at once, in this order
//!   ([`Request::download`]): `{"requested_blobs":[H],"lbrycrd_address":true,
//!   "blob_data_payment_rate":0.0,"requested_blob":H}`. Any subset may come alone.
//! - **Response.** ONE JSON object whose top-level keys are only [`RESPONSE_KEYS`] (the SDK
//!   client drops a response with any other top-level key), followed immediately by exactly
//!   `incoming_blob.length` raw blob bytes. A blob that is not available gives
//!   `"incoming_blob":{"error":"..."}` and no bytes, and `available_blobs` without it. The SDK
//!   server itself answers a missing blob by not mentioning `incoming_blob` at all, which is why
//!   a client must ask `requested_blobs` too: with only `requested_blob` it would get nothing.
//! - **Rates** ([`rate_answer`]). [`RATE_ACCEPTED`] for any number >= 0, [`RATE_TOO_LOW`] for a
//!   negative number, [`RATE_UNSET`] for `null` or anything that is not a number.
//! - **What a client checks** (the SDK, in order): `available_blobs == [H]`, the rate accepted,
//!   `incoming_blob.blob_hash == H`, the length, then the SHA-384 of what arrived. The SDK server
//!   closes a connection whose pending request exceeds 1,200 bytes, idles 30 s, or stalls a
//!   transfer 60 s.
//!
//! The reflector upload protocol frames its messages the same way (bare JSON objects); both use
//! [`crate::protocol::frame`].

use serde::Serialize;
use serde_json::{Map, Value};

use crate::blob::BlobHash;

/// `blob_data_payment_rate` answers.
pub const RATE_ACCEPTED: &str = "RATE_ACCEPTED";
pub const RATE_TOO_LOW: &str = "RATE_TOO_LOW";
pub const RATE_UNSET: &str = "RATE_UNSET";

/// The only top-level keys a response may carry.
pub const RESPONSE_KEYS: [&str; 4] = [
    "lbrycrd_address",
    "available_blobs",
    "blob_data_payment_rate",
    "incoming_blob",
];

pub use super::frame::{next_frame, Frame};

/// A request. Serialized by a client (field order is the SDK's); read by a server with
/// [`Request::from_object`]. Absent keys were not asked about.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Request {
    /// Which of these blobs the peer has. A server skips entries that are not blob names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_blobs: Option<Vec<BlobHash>>,
    /// Whether to send the payment address (`false`/`null` from a client: do not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lbrycrd_address: Option<bool>,
    /// The rate offered; `Some(None)` = the key came without a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_data_payment_rate: Option<Option<f64>>,
    /// The blob to send, as sent (a server answers a malformed name in `incoming_blob.error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_blob: Option<String>,
}

/// A request that is well-formed JSON but cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl Request {
    /// The SDK's standard download request: availability, address, rate and the blob at once.
    pub fn download(hash: &BlobHash) -> Request {
        Request {
            requested_blobs: Some(vec![*hash]),
            lbrycrd_address: Some(true),
            blob_data_payment_rate: Some(Some(0.0)),
            requested_blob: Some(hash.to_string()),
        }
    }

    /// Asks only whether the peer has `hash`.
    pub fn availability(hash: &BlobHash) -> Request {
        Request {
            requested_blobs: Some(vec![*hash]),
            lbrycrd_address: Some(true),
            ..Request::default()
        }
    }

    /// The bytes to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a request always serializes")
    }

    /// Reads a received object. Unknown keys are ignored (newer clients may send more); a known
    /// key with the wrong type, or no known key at all, is a [`BadRequest`].
    pub fn from_object(object: &Map<String, Value>) -> Result<Request, BadRequest> {
        let mut request = Request::default();
        if let Some(wanted) = object.get("lbrycrd_address") {
            request.lbrycrd_address = Some(match wanted {
                Value::Bool(b) => *b,
                Value::Null => false,
                other => return Err(BadRequest(format!("lbrycrd_address is {other}"))),
            });
        }
        if let Some(list) = object.get("requested_blobs") {
            let Value::Array(list) = list else {
                return Err(BadRequest("requested_blobs is not a list".into()));
            };
            request.requested_blobs = Some(
                list.iter()
                    .filter_map(|item| item.as_str().and_then(|s| BlobHash::parse(s).ok()))
                    .collect(),
            );
        }
        if let Some(rate) = object.get("blob_data_payment_rate") {
            request.blob_data_payment_rate = Some(rate.as_f64());
        }
        if let Some(requested) = object.get("requested_blob") {
            let Value::String(text) = requested else {
                return Err(BadRequest("requested_blob is not a string".into()));
            };
            request.requested_blob = Some(text.clone());
        }
        if request == Request::default() {
            return Err(BadRequest("no known request key".into()));
        }
        Ok(request)
    }
}

/// The answer to an offered rate (`None`: the key came without a number).
pub fn rate_answer(offer: Option<f64>) -> &'static str {
    match offer {
        Some(r) if r < 0.0 => RATE_TOO_LOW,
        Some(_) => RATE_ACCEPTED,
        None => RATE_UNSET,
    }
}

/// A response header as a server writes it. Field order follows reflector.go; absent parts are
/// omitted so only keys that were asked about appear.
#[derive(Debug, Default, Serialize)]
pub struct Response<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lbrycrd_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_blobs: Option<Vec<BlobHash>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_data_payment_rate: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incoming_blob: Option<IncomingBlob>,
}

/// `incoming_blob`: the blob's name and length (its bytes follow the header), or why not.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum IncomingBlob {
    Blob { blob_hash: BlobHash, length: usize },
    Error { error: String },
}

/// A response header as a client reads it: lenient where the SDK is, strict where it is.
#[derive(Debug)]
pub struct Answer<'a> {
    header: &'a Map<String, Value>,
}

/// What a response says about the requested blob.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// No `incoming_blob` key (the SDK server's way of saying it does not have the blob).
    Absent,
    /// `incoming_blob` is not an object.
    Malformed,
    /// `incoming_blob.error`: the peer does not have (or will not send) the blob.
    Refused(&'a Value),
    /// The announced blob name (if a string) and length (if a non-negative integer).
    Blob {
        blob_hash: Option<&'a str>,
        length: Option<u64>,
    },
}

impl<'a> Answer<'a> {
    /// Checks that the header uses only [`RESPONSE_KEYS`] (as the SDK client does); the error
    /// names the first other key.
    pub fn read(header: &'a Map<String, Value>) -> Result<Answer<'a>, String> {
        match header.keys().find(|k| !RESPONSE_KEYS.contains(&k.as_str())) {
            Some(k) => Err(format!("peer response has unexpected key {k:?}")),
            None => Ok(Answer { header }),
        }
    }

    /// Whether the response answers an availability question at all.
    pub fn has_availability(&self) -> bool {
        self.header.contains_key("available_blobs")
    }

    /// Whether `available_blobs` lists `hash`.
    pub fn lists(&self, hash: &BlobHash) -> bool {
        let want = hash.to_string();
        self.header
            .get("available_blobs")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(want.as_str())))
    }

    pub fn incoming(&self) -> Incoming<'a> {
        match self.header.get("incoming_blob") {
            None => Incoming::Absent,
            Some(Value::Object(o)) => match o.get("error") {
                Some(error) => Incoming::Refused(error),
                None => Incoming::Blob {
                    blob_hash: o.get("blob_hash").and_then(Value::as_str),
                    length: o.get("length").and_then(Value::as_u64),
                },
            },
            Some(_) => Incoming::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_finds_one_object_and_leaves_the_rest() {
        let buf = br#"  {"a":"}{","b":[1,{"c":2}]}{"next":1}"#;
        let Frame::Complete(map, used) = next_frame(buf) else {
            panic!("expected a complete object")
        };
        assert_eq!(map["a"], "}{");
        assert_eq!(&buf[used..], br#"{"next":1}"#);
        // Every strict prefix is incomplete, never an error.
        let first = &buf[..used];
        for cut in 0..first.len() {
            assert!(
                matches!(next_frame(&first[..cut]), Frame::Incomplete),
                "prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn framing_rejects_garbage_early() {
        assert!(matches!(next_frame(b"GET / HTTP/1.1"), Frame::NotAnObject));
        assert!(matches!(next_frame(b"[1]"), Frame::NotAnObject));
        assert!(matches!(next_frame(b"{\"a\" 1}"), Frame::Invalid(_)));
        assert!(matches!(next_frame(b" \n"), Frame::Incomplete));
    }

    #[test]
    fn framing_accepts_binary_after_the_object() {
        let mut buf = br#"{"incoming_blob":{"length":3}}"#.to_vec();
        buf.extend_from_slice(&[0xff, 0x00, b'}']);
        let Frame::Complete(_, used) = next_frame(&buf) else {
            panic!("expected a complete object")
        };
        assert_eq!(&buf[used..], &[0xff, 0x00, b'}']);
    }

    #[test]
    fn requests_are_the_sdks_bytes_and_read_back() {
        let h = BlobHash::of(b"x");
        let sdk = format!(
            r#"{{"requested_blobs":["{h}"],"lbrycrd_address":true,"blob_data_payment_rate":0.0,"requested_blob":"{h}"}}"#
        );
        assert_eq!(
            String::from_utf8(Request::download(&h).to_bytes()).unwrap(),
            sdk
        );
        assert_eq!(
            String::from_utf8(Request::availability(&h).to_bytes()).unwrap(),
            format!(r#"{{"requested_blobs":["{h}"],"lbrycrd_address":true}}"#)
        );
        let Frame::Complete(map, _) = next_frame(sdk.as_bytes()) else {
            panic!()
        };
        assert_eq!(Request::from_object(&map).unwrap(), Request::download(&h));
    }

    #[test]
    fn bad_requests_are_named() {
        let read = |text: &str| {
            let Frame::Complete(map, _) = next_frame(text.as_bytes()) else {
                panic!()
            };
            Request::from_object(&map)
        };
        assert!(read(r#"{"lbrycrd_address":1}"#).is_err());
        assert!(read(r#"{"requested_blobs":"x"}"#).is_err());
        assert!(read(r#"{"requested_blob":1}"#).is_err());
        assert!(read(r#"{"other":1}"#).is_err());
        let r = read(r#"{"blob_data_payment_rate":null,"requested_blobs":["nope"]}"#).unwrap();
        assert_eq!(r.blob_data_payment_rate, Some(None));
        assert_eq!(r.requested_blobs, Some(vec![]));
        assert_eq!(rate_answer(Some(-0.5)), RATE_TOO_LOW);
        assert_eq!(rate_answer(None), RATE_UNSET);
    }

    #[test]
    fn header_has_reflector_field_order_and_omits_unasked_parts() {
        let h = Response {
            lbrycrd_address: Some("addr"),
            available_blobs: Some(vec![]),
            blob_data_payment_rate: Some(RATE_ACCEPTED),
            incoming_blob: Some(IncomingBlob::Error {
                error: "blob not found".into(),
            }),
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"lbrycrd_address":"addr","available_blobs":[],"blob_data_payment_rate":"RATE_ACCEPTED","incoming_blob":{"error":"blob not found"}}"#
        );
        let h = Response {
            blob_data_payment_rate: Some(RATE_TOO_LOW),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"blob_data_payment_rate":"RATE_TOO_LOW"}"#
        );
    }

    #[test]
    fn answers_are_read_as_the_sdk_reads_them() {
        let h = BlobHash::of(b"x");
        let text = format!(
            r#"{{"available_blobs":["{h}"],"incoming_blob":{{"blob_hash":"{h}","length":3}}}}"#
        );
        let Frame::Complete(map, _) = next_frame(text.as_bytes()) else {
            panic!()
        };
        let a = Answer::read(&map).unwrap();
        assert!(a.has_availability() && a.lists(&h));
        assert!(matches!(
            a.incoming(),
            Incoming::Blob {
                length: Some(3),
                ..
            }
        ));
        let Frame::Complete(map, _) = next_frame(br#"{"extra":1}"#) else {
            panic!()
        };
        assert!(Answer::read(&map).unwrap_err().contains("extra"));
    }
}
