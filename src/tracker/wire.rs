//! BEP-15 (UDP tracker protocol) messages as the LBRY SDK sends them
//! (`lbry/torrent/tracker.py`), on top of the `aquatic_udp_protocol` crate, which encodes and
//! decodes both sides (tests use its server half to check what we send).
//!
//! What the SDK puts in an announce, and so what we put:
//! - info hash: the first 20 bytes of the stream's sd hash ([`info_hash`]);
//! - `downloaded`, `left`, `uploaded`: 0; `ip`: 0 (the tracker uses the source address) unless
//!   an announce address is configured; `num_want`: -1 (the tracker's default);
//! - `event`: 1 (completed: we hold the stream) or 3 (stopped, at shutdown);
//! - `key`: the first 4 bytes of the info hash XOR the first 4 of the peer id XOR the port;
//! - `port`: the peer (TCP) port blobs are downloaded from; 0 for a lookup that offers nothing.
//!
//! A connection id is asked for with the protocol magic `0x41727101980` and is good for a
//! minute (the SDK reuses it for 50 s, as we do: [`CONNECTION_ID_LIFETIME`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU16;
use std::time::Duration;

use aquatic_udp_protocol as bep15;

use crate::blob::BlobHash;

/// How long a connection id is reused (the SDK's `CONNECTION_EXPIRES_AFTER_SECONDS`; BEP-15
/// allows a minute).
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(50);

/// Largest answer read: 20 bytes of header and 6 per peer; trackers send at most a few hundred
/// peers (opentracker: 200), and anything longer is cut and then fails to parse.
pub const MAX_ANSWER: usize = 4096;

/// A BEP-15 info hash.
pub type InfoHash = [u8; 20];

/// The info hash LBRY clients use for a stream: the first 20 bytes of its sd hash.
pub fn info_hash(sd_hash: &BlobHash) -> InfoHash {
    let mut out = [0u8; 20];
    out.copy_from_slice(&sd_hash.as_bytes()[..20]);
    out
}

/// One announce, as the SDK fills it in.
#[derive(Debug, Clone, Copy)]
pub struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    /// The TCP port peers download from; 0 offers nothing (a lookup).
    pub port: u16,
    /// The announced address; unspecified lets the tracker use the datagram's source.
    pub ip: Ipv4Addr,
    /// `stopped` (event 3) rather than `completed` (event 1).
    pub stopped: bool,
}

/// What a tracker answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Connected(i64),
    Announced {
        interval: Duration,
        peers: Vec<SocketAddrV4>,
    },
    /// An error message (action 3); trackers send it for unknown info hashes (whitelists),
    /// expired connection ids and bans. At most [`MAX_MESSAGE`] characters, escaped.
    Refused(String),
}

/// Longest refusal message kept (it reaches the log).
pub const MAX_MESSAGE: usize = 120;

/// The datagram asking for a connection id.
pub fn connect_request(transaction: u32) -> Vec<u8> {
    let request = bep15::ConnectRequest {
        transaction_id: bep15::TransactionId::new(transaction as i32),
    };
    let mut out = Vec::with_capacity(16);
    request.write_bytes(&mut out).expect("writing to a Vec");
    out
}

/// The announce datagram (98 bytes).
pub fn announce_request(connection: i64, transaction: u32, a: &Announce) -> Vec<u8> {
    let head = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let key = head(&a.info_hash) ^ head(&a.peer_id) ^ u32::from(a.port);
    let request = bep15::AnnounceRequest {
        connection_id: bep15::ConnectionId::new(connection),
        action_placeholder: Default::default(),
        transaction_id: bep15::TransactionId::new(transaction as i32),
        info_hash: bep15::InfoHash(a.info_hash),
        peer_id: bep15::PeerId(a.peer_id),
        bytes_downloaded: bep15::NumberOfBytes::new(0),
        bytes_left: bep15::NumberOfBytes::new(0),
        bytes_uploaded: bep15::NumberOfBytes::new(0),
        event: if a.stopped {
            bep15::AnnounceEvent::Stopped
        } else {
            bep15::AnnounceEvent::Completed
        }
        .into(),
        ip_address: a.ip.into(),
        key: bep15::PeerKey::new(key as i32),
        peers_wanted: bep15::NumberOfPeers::new(-1),
        port: bep15::Port::new(NonZeroU16::new(a.port).unwrap_or(NonZeroU16::MIN)),
    };
    let mut out = Vec::with_capacity(98);
    request.write_bytes(&mut out).expect("writing to a Vec");
    if a.port == 0 {
        // The crate's Port cannot be 0; the port is the datagram's last two bytes.
        let len = out.len();
        out[len - 2..].fill(0);
    }
    out
}

/// The transaction id an answer carries (bytes 4..8), when it is long enough to have one.
pub fn transaction_of(datagram: &[u8]) -> Option<u32> {
    let bytes = datagram.get(4..8)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Decodes an answer; `None` when it is not a well-formed BEP-15 answer (IPv4 peers).
///
/// One short form is read as a refusal: opentracker in whitelist mode answers an announce for
/// an info hash it does not list with the action and transaction id alone (8 bytes).
pub fn parse_answer(datagram: &[u8]) -> Option<Answer> {
    if datagram.len() == 8 && datagram[..4] == 1u32.to_be_bytes() {
        return Some(Answer::Refused(
            "not allowed (a bare announce answer)".into(),
        ));
    }
    Some(match bep15::Response::parse_bytes(datagram, true).ok()? {
        bep15::Response::Connect(c) => Answer::Connected(c.connection_id.0.get()),
        bep15::Response::AnnounceIpv4(a) => Answer::Announced {
            interval: Duration::from_secs(a.fixed.announce_interval.0.get().max(0) as u64),
            peers: a
                .peers
                .iter()
                .map(|p| SocketAddrV4::new(p.ip_address.into(), p.port.0.get()))
                .collect(),
        },
        bep15::Response::Error(e) => Answer::Refused(
            e.message
                .chars()
                .take(MAX_MESSAGE)
                .flat_map(char::escape_debug)
                .collect(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_is_the_sdks_98_bytes() {
        let a = Announce {
            info_hash: [0x11; 20],
            peer_id: *b"-PL0001-abcdefghijkl",
            port: 3333,
            ip: Ipv4Addr::UNSPECIFIED,
            stopped: false,
        };
        let bytes = announce_request(7, 9, &a);
        assert_eq!(bytes.len(), 98);
        assert_eq!(&bytes[0..8], &7i64.to_be_bytes());
        assert_eq!(&bytes[8..12], &1u32.to_be_bytes(), "action announce");
        assert_eq!(&bytes[12..16], &9u32.to_be_bytes());
        assert_eq!(&bytes[80..84], &1u32.to_be_bytes(), "event completed");
        assert_eq!(&bytes[84..88], &[0; 4], "ip 0");
        let key = 0x1111_1111u32 ^ u32::from_be_bytes(*b"-PL0") ^ 3333;
        assert_eq!(&bytes[88..92], &key.to_be_bytes());
        assert_eq!(&bytes[92..96], &(-1i32).to_be_bytes(), "num_want -1");
        assert_eq!(&bytes[96..98], &3333u16.to_be_bytes());
        let lookup = announce_request(7, 9, &Announce { port: 0, ..a });
        assert_eq!(&lookup[96..98], &[0, 0]);
        let stop = announce_request(7, 9, &Announce { stopped: true, ..a });
        assert_eq!(&stop[80..84], &3u32.to_be_bytes());
    }

    #[test]
    fn connect_carries_the_magic() {
        let bytes = connect_request(5);
        assert_eq!(&bytes[0..8], &0x41727101980u64.to_be_bytes());
        assert_eq!(&bytes[8..16], &[0, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn answers_decode_and_garbage_does_not() {
        let mut connect = vec![0, 0, 0, 0, 0, 0, 0, 5];
        connect.extend_from_slice(&42i64.to_be_bytes());
        assert_eq!(parse_answer(&connect), Some(Answer::Connected(42)));
        assert_eq!(transaction_of(&connect), Some(5));
        let mut announce = vec![0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1];
        announce.extend_from_slice(&[127, 0, 0, 1, 0x0d, 0x05]);
        assert_eq!(
            parse_answer(&announce),
            Some(Answer::Announced {
                interval: Duration::from_secs(0x0708),
                peers: vec!["127.0.0.1:3333".parse().unwrap()],
            })
        );
        announce.push(1);
        assert_eq!(parse_answer(&announce), None, "a partial peer");
        let mut error = vec![0, 0, 0, 3, 0, 0, 0, 5];
        error.extend_from_slice(b"bad\n");
        assert_eq!(parse_answer(&error), Some(Answer::Refused("bad\\n".into())));
        assert_eq!(parse_answer(&[0, 0, 0, 9, 1, 2, 3, 4]), None);
        assert!(matches!(
            parse_answer(&[0, 0, 0, 1, 1, 2, 3, 4]),
            Some(Answer::Refused(_))
        ));
        assert_eq!(parse_answer(&[1, 2]), None);
    }
}
