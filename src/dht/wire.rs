//! LBRY DHT datagrams: the envelope, the four RPCs, and the compact address formats.
//!
//! Facts from the LBRY SDK (`lbry/dht/serialization/datagram.py`, `protocol/protocol.py`):
//! a datagram is a bencoded dict keyed by integers: `0` packet type (0 request, 1 response,
//! 2 error), `1` rpc id (20 bytes), `2` sender node id (48 bytes), then `3` method / result /
//! exception type and `4` argument list / error message. A request's argument list ends with a
//! dict holding `protocolVersion: 1` (and `p`, the page, for `findValue`).
//!
//! The four RPCs and their answers:
//! - `ping` -> `pong`.
//! - `findNode(key)` -> a list of contacts `[node_id, ip, udp_port]` closest to `key`.
//! - `findValue(key[, {p: page}])` -> a dict with `token`, and either `contacts` (the closest
//!   nodes) or `key -> [compact peer, ...]` plus `p` (how many pages of announcers exist). A
//!   compact peer is a 4-byte IPv4 address, a 2-byte big-endian TCP port and a 48-byte node id.
//! - `store(blob_hash, token, tcp_port, original_publisher_id, age)` -> `OK`; the token must come
//!   from a recent `findValue` by the same IP (see [`super::store`]).
//!
//! Node ids, keys and tokens are 48 bytes (SHA-384 size), rpc ids 20 bytes, and a datagram is at
//! most 1,400 bytes ([`MAX_DATAGRAM`]).
//!
//! Decoding is split in two on purpose: a datagram whose *envelope* is bad is dropped (there is
//! nobody sensible to answer), while a well-formed request with bad *arguments* is answered with
//! an error datagram, as the SDK does.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::bencode::{Key, Value};

/// Largest datagram sent or accepted (the SDK's `MSG_SIZE_LIMIT`).
pub const MAX_DATAGRAM: usize = 1400;
/// Node ids, blob hashes and tokens are all 48 bytes (SHA-384 size).
pub const ID_LEN: usize = 48;
/// Request ids are 20 bytes.
pub const RPC_ID_LEN: usize = 20;
/// A compact peer: 4-byte IPv4, 2-byte big-endian TCP port, 48-byte node id.
pub const COMPACT_PEER_LEN: usize = 6 + ID_LEN;

const REQUEST: i64 = 0;
const RESPONSE: i64 = 1;
const ERROR: i64 = 2;
const PROTOCOL_VERSION: &[u8] = b"protocolVersion";
const PAGE: &[u8] = b"p";

/// A 48-byte identifier in the DHT's key space (node ids and blob hashes alike).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; ID_LEN]);

impl NodeId {
    pub fn from_slice(b: &[u8]) -> Option<NodeId> {
        b.try_into().ok().map(NodeId)
    }

    /// A fresh id: SHA-384 of random bytes, as the SDK makes them.
    pub fn random() -> NodeId {
        use sha2::Digest;
        NodeId(sha2::Sha384::digest(super::random::random_bytes::<32>()).into())
    }

    /// Kademlia's XOR metric; compare results bytewise (big-endian) to order by distance.
    pub fn distance(&self, other: &NodeId) -> [u8; ID_LEN] {
        let mut d = [0u8; ID_LEN];
        for (i, out) in d.iter_mut().enumerate() {
            *out = self.0[i] ^ other.0[i];
        }
        d
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn parse_hex(s: &str) -> Option<NodeId> {
        let bytes = hex::decode(s.trim()).ok()?;
        NodeId::from_slice(&bytes)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.to_hex()[..12])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A request id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RpcId(pub [u8; RPC_ID_LEN]);

impl RpcId {
    pub fn random() -> RpcId {
        RpcId(super::random::random_bytes::<RPC_ID_LEN>())
    }
}

/// A DHT node as findNode results name it: id plus UDP address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Contact {
    pub id: NodeId,
    pub addr: SocketAddrV4,
}

/// A blob announcer as findValue results name it: node id plus the *TCP* (peer protocol)
/// address where it serves blobs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CompactPeer {
    pub id: NodeId,
    pub addr: SocketAddrV4,
}

impl CompactPeer {
    pub fn encode(&self) -> [u8; COMPACT_PEER_LEN] {
        let mut out = [0u8; COMPACT_PEER_LEN];
        out[..4].copy_from_slice(&self.addr.ip().octets());
        out[4..6].copy_from_slice(&self.addr.port().to_be_bytes());
        out[6..].copy_from_slice(&self.id.0);
        out
    }

    /// Port 0 and wrong lengths are rejected, as the SDK's `decode_compact_address` does.
    pub fn decode(b: &[u8]) -> Option<CompactPeer> {
        if b.len() != COMPACT_PEER_LEN {
            return None;
        }
        let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let port = u16::from_be_bytes([b[4], b[5]]);
        if port == 0 {
            return None;
        }
        Some(CompactPeer {
            id: NodeId::from_slice(&b[6..])?,
            addr: SocketAddrV4::new(ip, port),
        })
    }
}

/// The RPC names as they travel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    Ping,
    Store,
    FindNode,
    FindValue,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Ping,
        Method::Store,
        Method::FindNode,
        Method::FindValue,
    ];

    pub fn wire_name(self) -> &'static [u8] {
        match self {
            Method::Ping => b"ping",
            Method::Store => b"store",
            Method::FindNode => b"findNode",
            Method::FindValue => b"findValue",
        }
    }

    /// For metric labels and logs.
    pub fn label(self) -> &'static str {
        match self {
            Method::Ping => "ping",
            Method::Store => "store",
            Method::FindNode => "findNode",
            Method::FindValue => "findValue",
        }
    }

    fn from_wire(b: &[u8]) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.wire_name() == b)
    }
}

/// A request with its arguments checked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Request {
    Ping,
    /// `store(blob_hash, token, tcp_port, original_publisher_id, age)`.
    Store {
        blob_hash: NodeId,
        token: Vec<u8>,
        port: u16,
    },
    FindNode {
        key: NodeId,
    },
    FindValue {
        key: NodeId,
        page: u32,
    },
}

impl Request {
    pub fn method(&self) -> Method {
        match self {
            Request::Ping => Method::Ping,
            Request::Store { .. } => Method::Store,
            Request::FindNode { .. } => Method::FindNode,
            Request::FindValue { .. } => Method::FindValue,
        }
    }

    /// The argument list, ending with the `protocolVersion` dict (as the SDK sends it).
    fn args(&self, sender: &NodeId) -> Value {
        let mut options = BTreeMap::new();
        options.insert(Key::Bytes(PROTOCOL_VERSION.to_vec()), Value::Int(1));
        let mut args = match self {
            Request::Ping => vec![],
            Request::Store {
                blob_hash,
                token,
                port,
            } => vec![
                Value::bytes(blob_hash.0.to_vec()),
                Value::bytes(token.clone()),
                Value::Int(i64::from(*port)),
                Value::bytes(sender.0.to_vec()),
                Value::Int(0),
            ],
            Request::FindNode { key } => vec![Value::bytes(key.0.to_vec())],
            Request::FindValue { key, page } => {
                options.insert(Key::Bytes(PAGE.to_vec()), Value::Int(i64::from(*page)));
                vec![Value::bytes(key.0.to_vec())]
            }
        };
        args.push(Value::Dict(options));
        Value::List(args)
    }

    /// Checks a request's arguments; the error text goes back to the sender.
    fn parse(method: &[u8], args: Option<&Value>) -> Result<Request, String> {
        let method = Method::from_wire(method)
            .ok_or_else(|| format!("Invalid method: {}", String::from_utf8_lossy(method)))?;
        let args = match args {
            Some(v) => v.as_list().ok_or("arguments are not a list")?,
            None => &[],
        };
        let (positional, options) = match args.split_last() {
            Some((Value::Dict(d), rest)) => (rest, Some(d)),
            _ => (args, None),
        };
        let id_arg = |i: usize, what: &str| {
            positional
                .get(i)
                .and_then(Value::as_bytes)
                .and_then(NodeId::from_slice)
                .ok_or_else(|| format!("invalid {what}: expected {ID_LEN} bytes"))
        };
        Ok(match method {
            Method::Ping => Request::Ping,
            Method::FindNode => Request::FindNode {
                key: id_arg(0, "key")?,
            },
            Method::FindValue => {
                let page = options
                    .and_then(|o| o.get(&Key::Bytes(PAGE.to_vec())))
                    .and_then(Value::as_int)
                    .unwrap_or(0);
                Request::FindValue {
                    key: id_arg(0, "key")?,
                    // Negative pages mean page 0, as in the SDK.
                    page: u32::try_from(page.max(0)).unwrap_or(u32::MAX),
                }
            }
            Method::Store => {
                let token = positional
                    .get(1)
                    .and_then(Value::as_bytes)
                    .ok_or("invalid token")?
                    .to_vec();
                let port = positional
                    .get(2)
                    .and_then(Value::as_int)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|&p| p != 0 && p != u16::MAX)
                    .ok_or("invalid tcp port")?;
                Request::Store {
                    blob_hash: id_arg(0, "blob hash")?,
                    token,
                    port,
                }
            }
        })
    }
}

/// What a datagram carries after the envelope.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    /// A request; `Err` holds why its method or arguments are unacceptable (answer with an
    /// error datagram).
    Request(Result<Request, String>),
    Response(Value),
    Error {
        kind: Vec<u8>,
        message: Vec<u8>,
    },
}

/// One datagram.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Datagram {
    pub rpc_id: RpcId,
    pub node_id: NodeId,
    pub body: Body,
}

/// Why a datagram was dropped (also the `reason` label of the dropped counter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not bencode: {0}")]
    Bencode(#[from] super::bencode::DecodeError),
    #[error("bad envelope: {0}")]
    Envelope(&'static str),
}

impl Datagram {
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        let packet_type = match &self.body {
            Body::Request(_) => REQUEST,
            Body::Response(_) => RESPONSE,
            Body::Error { .. } => ERROR,
        };
        d.insert(Key::Int(0), Value::Int(packet_type));
        d.insert(Key::Int(1), Value::bytes(self.rpc_id.0.to_vec()));
        d.insert(Key::Int(2), Value::bytes(self.node_id.0.to_vec()));
        match &self.body {
            Body::Request(Ok(req)) => {
                d.insert(Key::Int(3), Value::bytes(req.method().wire_name().to_vec()));
                d.insert(Key::Int(4), req.args(&self.node_id));
            }
            // Never sent; encoding it as an empty ping keeps `encode` total.
            Body::Request(Err(_)) => {
                d.insert(Key::Int(3), Value::bytes(b"ping".to_vec()));
            }
            Body::Response(v) => {
                d.insert(Key::Int(3), v.clone());
            }
            Body::Error { kind, message } => {
                d.insert(Key::Int(3), Value::bytes(kind.clone()));
                d.insert(Key::Int(4), Value::bytes(message.clone()));
            }
        }
        Value::Dict(d).encode()
    }

    pub fn decode(input: &[u8]) -> Result<Datagram, WireError> {
        let value = Value::decode(input)?;
        let d = value.as_dict().ok_or(WireError::Envelope("not a dict"))?;
        let get = |k: i64| d.get(&Key::Int(k));
        let packet_type = get(0)
            .and_then(Value::as_int)
            .ok_or(WireError::Envelope("no packet type"))?;
        let rpc_id = get(1)
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; RPC_ID_LEN]>::try_from(b).ok())
            .map(RpcId)
            .ok_or(WireError::Envelope("bad rpc id"))?;
        let node_id = get(2)
            .and_then(Value::as_bytes)
            .and_then(NodeId::from_slice)
            .ok_or(WireError::Envelope("bad node id"))?;
        let body = match packet_type {
            REQUEST => {
                let method = get(3)
                    .and_then(Value::as_bytes)
                    .ok_or(WireError::Envelope("request without a method"))?;
                Body::Request(Request::parse(method, get(4)))
            }
            RESPONSE => Body::Response(
                get(3)
                    .cloned()
                    .ok_or(WireError::Envelope("response without a result"))?,
            ),
            ERROR => Body::Error {
                kind: get(3).and_then(Value::as_bytes).unwrap_or(b"").to_vec(),
                message: get(4).and_then(Value::as_bytes).unwrap_or(b"").to_vec(),
            },
            _ => return Err(WireError::Envelope("unknown packet type")),
        };
        Ok(Datagram {
            rpc_id,
            node_id,
            body,
        })
    }
}

/// A `findNode` result: `[[node_id, "a.b.c.d", udp_port], ...]`.
pub fn encode_contacts(contacts: &[Contact]) -> Value {
    Value::List(
        contacts
            .iter()
            .map(|c| {
                Value::List(vec![
                    Value::bytes(c.id.0.to_vec()),
                    Value::bytes(c.addr.ip().to_string().into_bytes()),
                    Value::Int(i64::from(c.addr.port())),
                ])
            })
            .collect(),
    )
}

/// Parses a contact list, skipping malformed entries (a bad entry is not a bad response).
pub fn decode_contacts(v: &Value) -> Option<Vec<Contact>> {
    let list = v.as_list()?;
    Some(
        list.iter()
            .filter_map(|entry| {
                let triple = entry.as_list()?;
                let [id, ip, port] = triple else { return None };
                let id = NodeId::from_slice(id.as_bytes()?)?;
                let ip: Ipv4Addr = std::str::from_utf8(ip.as_bytes()?).ok()?.parse().ok()?;
                let port = u16::try_from(port.as_int()?).ok().filter(|&p| p != 0)?;
                Some(Contact {
                    id,
                    addr: SocketAddrV4::new(ip, port),
                })
            })
            .collect(),
    )
}

/// A `findValue` result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FindValueResult {
    pub token: Vec<u8>,
    /// Closer nodes (page 0 only).
    pub contacts: Vec<Contact>,
    /// Announcers of the key on this page.
    pub peers: Vec<CompactPeer>,
    /// How many pages of announcers the responder has (`p`).
    pub pages: u32,
}

impl FindValueResult {
    pub fn encode(&self, key: &NodeId) -> Value {
        let mut d = BTreeMap::new();
        d.insert(
            Key::Bytes(b"token".to_vec()),
            Value::bytes(self.token.clone()),
        );
        d.insert(Key::Bytes(PROTOCOL_VERSION.to_vec()), Value::Int(1));
        d.insert(Key::Bytes(PAGE.to_vec()), Value::Int(i64::from(self.pages)));
        if !self.contacts.is_empty() {
            d.insert(
                Key::Bytes(b"contacts".to_vec()),
                encode_contacts(&self.contacts),
            );
        }
        if !self.peers.is_empty() {
            d.insert(
                Key::Bytes(key.0.to_vec()),
                Value::List(
                    self.peers
                        .iter()
                        .map(|p| Value::bytes(p.encode().to_vec()))
                        .collect(),
                ),
            );
        }
        Value::Dict(d)
    }

    pub fn decode(v: &Value, key: &NodeId) -> Option<FindValueResult> {
        let d = v.as_dict()?;
        let token = d.get(&Key::Bytes(b"token".to_vec()))?.as_bytes()?.to_vec();
        let contacts = match d.get(&Key::Bytes(b"contacts".to_vec())) {
            Some(c) => decode_contacts(c)?,
            None => vec![],
        };
        let peers = match d.get(&Key::Bytes(key.0.to_vec())) {
            Some(list) => list
                .as_list()?
                .iter()
                .filter_map(|p| CompactPeer::decode(p.as_bytes()?))
                .collect(),
            None => vec![],
        };
        let pages = d
            .get(&Key::Bytes(PAGE.to_vec()))
            .and_then(Value::as_int)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0);
        Some(FindValueResult {
            token,
            contacts,
            peers,
            pages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (RpcId, NodeId) {
        (RpcId([b'r'; RPC_ID_LEN]), NodeId([b'n'; ID_LEN]))
    }

    #[test]
    fn ping_request_bytes() {
        let (rpc_id, node_id) = ids();
        let dg = Datagram {
            rpc_id,
            node_id,
            body: Body::Request(Ok(Request::Ping)),
        };
        // The SDK's `RequestDatagram.make_ping(...).bencode()` for the same ids.
        let expected = [
            b"di0ei0ei1e20:".as_slice(),
            &[b'r'; 20],
            b"i2e48:",
            &[b'n'; 48],
            b"i3e4:pingi4eld15:protocolVersioni1eeee",
        ]
        .concat();
        assert_eq!(dg.encode(), expected);
        assert_eq!(Datagram::decode(&expected).unwrap(), dg);
    }

    #[test]
    fn pong_and_compact_peer_bytes() {
        let (rpc_id, node_id) = ids();
        let dg = Datagram {
            rpc_id,
            node_id,
            body: Body::Response(Value::bytes(b"pong".to_vec())),
        };
        let expected = [
            b"di0ei1ei1e20:".as_slice(),
            &[b'r'; 20],
            b"i2e48:",
            &[b'n'; 48],
            b"i3e4:ponge",
        ]
        .concat();
        assert_eq!(dg.encode(), expected);

        let peer = CompactPeer {
            id: node_id,
            addr: "10.1.2.3:3333".parse().unwrap(),
        };
        let enc = peer.encode();
        assert_eq!(&enc[..6], &[10, 1, 2, 3, 0x0d, 0x05]);
        assert_eq!(CompactPeer::decode(&enc), Some(peer));
    }
}
