//! A small, strict bencode codec for exactly what LBRY DHT datagrams hold.
//!
//! Why not a crate: LBRY datagrams are dicts keyed by bencoded *integers* (`d1:0...` is not
//! it; it is `di0ei0e...`), which the common bencode crates (serde_bencode, bendy) refuse, as
//! their dict keys must be byte strings. The values here are tiny (a datagram is at most
//! [`super::MAX_DATAGRAM`] bytes), so the decoder works on a borrowed slice, checks every
//! length against the bytes actually present, limits nesting, and never panics or allocates
//! more than the input could describe.

use std::collections::BTreeMap;

/// Deepest nesting accepted. Real datagrams nest at most 4 deep (dict > list > list > bytes).
const MAX_DEPTH: usize = 16;

/// A dict key: LBRY uses integers for the datagram envelope and byte strings inside results.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Int(i64),
    Bytes(Vec<u8>),
}

/// A decoded (or to-be-encoded) bencode value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Keys are kept sorted (integers numerically, byte strings bytewise), which is the order
    /// the SDK writes them in, so encoding is canonical.
    Dict(BTreeMap<Key, Value>),
}

/// Why a byte string is not acceptable bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unexpected end of input at byte {0}")]
    Eof(usize),
    #[error("unexpected byte {byte:#04x} at {at}")]
    Unexpected { byte: u8, at: usize },
    #[error("bad integer at byte {0}")]
    BadInt(usize),
    #[error("string length at byte {0} runs past the end of the input")]
    BadLength(usize),
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("dict key at byte {0} is neither an integer nor a byte string")]
    BadKey(usize),
    #[error("duplicate dict key at byte {0}")]
    DuplicateKey(usize),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

impl Value {
    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&BTreeMap<Key, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    match k {
                        Key::Int(i) => Value::Int(*i).encode_into(out),
                        Key::Bytes(b) => encode_bytes(b, out),
                    }
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes exactly one value spanning all of `input`.
    pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
        let mut pos = 0;
        let value = decode_at(input, &mut pos, 0)?;
        if pos != input.len() {
            return Err(DecodeError::Trailing(input.len() - pos));
        }
        Ok(value)
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fn decode_at(input: &[u8], pos: &mut usize, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let start = *pos;
    let &first = input.get(start).ok_or(DecodeError::Eof(start))?;
    match first {
        b'i' => {
            *pos += 1;
            let n = read_int_until(input, pos, b'e')?;
            Ok(Value::Int(n))
        }
        b'0'..=b'9' => Ok(Value::Bytes(read_bytes(input, pos)?.to_vec())),
        b'l' => {
            *pos += 1;
            let mut items = Vec::new();
            loop {
                match input.get(*pos) {
                    None => return Err(DecodeError::Eof(*pos)),
                    Some(b'e') => {
                        *pos += 1;
                        return Ok(Value::List(items));
                    }
                    Some(_) => items.push(decode_at(input, pos, depth + 1)?),
                }
            }
        }
        b'd' => {
            *pos += 1;
            let mut map = BTreeMap::new();
            loop {
                let key_at = *pos;
                let key = match input.get(key_at) {
                    None => return Err(DecodeError::Eof(key_at)),
                    Some(b'e') => {
                        *pos += 1;
                        return Ok(Value::Dict(map));
                    }
                    Some(b'i') => {
                        *pos += 1;
                        Key::Int(read_int_until(input, pos, b'e')?)
                    }
                    Some(b'0'..=b'9') => Key::Bytes(read_bytes(input, pos)?.to_vec()),
                    Some(_) => return Err(DecodeError::BadKey(key_at)),
                };
                let value = decode_at(input, pos, depth + 1)?;
                if map.insert(key, value).is_some() {
                    return Err(DecodeError::DuplicateKey(key_at));
                }
            }
        }
        byte => Err(DecodeError::Unexpected { byte, at: start }),
    }
}

/// Reads a canonical decimal integer (no leading zeros, no `-0`) up to `end`, consuming `end`.
fn read_int_until(input: &[u8], pos: &mut usize, end: u8) -> Result<i64, DecodeError> {
    let start = *pos;
    // i64 has at most 19 digits plus a sign; look no further than that for the terminator.
    let window = &input[start..input.len().min(start + 21)];
    let len = window
        .iter()
        .position(|&b| b == end)
        .ok_or(DecodeError::BadInt(start))?;
    let digits = &window[..len];
    let (negative, body) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    let canonical = !body.is_empty()
        && body.iter().all(u8::is_ascii_digit)
        && (body.len() == 1 || body[0] != b'0')
        && !(negative && body == b"0");
    if !canonical {
        return Err(DecodeError::BadInt(start));
    }
    let text = std::str::from_utf8(digits).map_err(|_| DecodeError::BadInt(start))?;
    let n = text
        .parse::<i64>()
        .map_err(|_| DecodeError::BadInt(start))?;
    *pos = start + len + 1;
    Ok(n)
}

fn read_bytes<'a>(input: &'a [u8], pos: &mut usize) -> Result<&'a [u8], DecodeError> {
    let start = *pos;
    let len = read_int_until(input, pos, b':')?;
    let len = usize::try_from(len).map_err(|_| DecodeError::BadLength(start))?;
    let from = *pos;
    let to = from
        .checked_add(len)
        .filter(|&to| to <= input.len())
        .ok_or(DecodeError::BadLength(start))?;
    *pos = to;
    Ok(&input[from..to])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_int_keyed_dicts() {
        let mut d = BTreeMap::new();
        d.insert(Key::Int(1), Value::bytes(b"ab".to_vec()));
        d.insert(Key::Int(0), Value::Int(-12));
        d.insert(
            Key::Bytes(b"x".to_vec()),
            Value::List(vec![Value::Int(0), Value::List(vec![])]),
        );
        let v = Value::Dict(d);
        let enc = v.encode();
        assert_eq!(enc, b"di0ei-12ei1e2:ab1:xli0eleee".to_vec());
        assert_eq!(Value::decode(&enc).unwrap(), v);
    }

    #[test]
    fn rejects_malformed_input_without_panicking() {
        let bad: &[&[u8]] = &[
            b"",
            b"i",
            b"i12",
            b"i-0e",
            b"i012e",
            b"ie",
            b"i99999999999999999999e",
            b"5:abc",
            b"99999999999999999999:x",
            b"l",
            b"d",
            b"di1e",
            b"dli0eei1ee",
            b"di1ei2ei1ei3ee",
            b"i1ei2e",
            b"x",
            b"-1:a",
        ];
        for input in bad {
            assert!(Value::decode(input).is_err(), "{:?} decoded", input);
        }
        let deep = [vec![b'l'; 64], vec![b'e'; 64]].concat();
        assert_eq!(Value::decode(&deep), Err(DecodeError::TooDeep));
    }
}
