//! Framing by parsing: the LBRY peer protocol and the reflector upload protocol send bare JSON
//! objects with no delimiter and no length prefix, so a message is complete exactly when the
//! bytes received so far parse as one JSON object. Both protocols (and both sides of each) use
//! this one rule.

use serde_json::{Map, Value};

/// What the bytes received so far hold.
#[derive(Debug)]
pub enum Frame {
    /// A whole JSON object, and how many bytes of the buffer it used (leading whitespace
    /// included). Bytes after it belong to the next message (or are blob bytes).
    Complete(Map<String, Value>, usize),
    /// Nothing but whitespace, or the beginning of an object: read more.
    Incomplete,
    /// The first non-whitespace byte is not `{`: this can never become a message.
    NotAnObject,
    /// The bytes are not a prefix of any JSON document.
    Invalid(serde_json::Error),
}

/// Finds the JSON object at the start of `buf` (the only framing rule of the peer and reflector protocols).
///
/// serde_json's streaming deserializer parses exactly one value and reports where it ended, and
/// tells "ran out of input" (`is_eof`) apart from a syntax error; so this needs no hand-written
/// JSON scanner. Parsing is only attempted once a `}` has arrived, since no object can be
/// complete without one.
pub fn next_frame(buf: &[u8]) -> Frame {
    let Some(start) = buf.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Frame::Incomplete;
    };
    if buf[start] != b'{' {
        return Frame::NotAnObject;
    }
    if !buf[start..].contains(&b'}') {
        return Frame::Incomplete;
    }
    let mut values = serde_json::Deserializer::from_slice(&buf[start..]).into_iter::<Value>();
    match values.next() {
        Some(Ok(Value::Object(map))) => Frame::Complete(map, start + values.byte_offset()),
        Some(Ok(_)) => Frame::NotAnObject,
        Some(Err(e)) if e.is_eof() => Frame::Incomplete,
        Some(Err(e)) => Frame::Invalid(e),
        None => Frame::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_finds_one_object_and_leaves_blob_bytes() {
        let mut buf = br#"{"blob_hash": "x}", "blob_size": 3}"#.to_vec();
        buf.extend_from_slice(&[b'{', 0xff, b'}']);
        let Frame::Complete(map, used) = next_frame(&buf) else {
            panic!("expected a complete object")
        };
        assert_eq!(map["blob_size"], 3);
        assert_eq!(&buf[used..], &[b'{', 0xff, b'}']);
        for cut in 0..used {
            assert!(
                matches!(next_frame(&buf[..cut]), Frame::Incomplete),
                "prefix of {cut} bytes"
            );
        }
        assert!(matches!(next_frame(b"\x00\x01"), Frame::NotAnObject));
        assert!(matches!(next_frame(b"{\"a\" 1}"), Frame::Invalid(_)));
    }
}
