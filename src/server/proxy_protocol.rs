//! The PROXY protocol header (v1 text, v2 binary) a load balancer puts before a connection's
//! first byte to say whose connection it is (haproxy's `send-proxy` / `send-proxy-v2`, AWS NLB,
//! ...). Parsed by the `ppp` crate; this module reads exactly the header's bytes off the socket
//! (nothing of the protocol after it), at most [`MAX_V2_PAYLOAD`] + 16 bytes, within
//! [`HEADER_TIMEOUT`]. It is read only from peers in the door's `trusted_proxies`
//! ([`accept`](super::accept) decides): anyone else could name any address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::v1::Addresses as V1Addresses;
use ppp::v2::{Addresses as V2Addresses, Command};
use ppp::HeaderResult;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A trusted proxy sends its header at once; one that does not within this time is cut off.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A v1 header is at most 107 bytes, CRLF included (the specification's bound).
const MAX_V1: usize = 107;

/// The v2 header's fixed part: 12 bytes of signature, version/command, family, length.
const V2_FIXED: usize = 16;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Largest v2 address + TLV part accepted (addresses take at most 216 bytes; the rest is
/// room for TLVs such as a unique id or TLS details).
pub const MAX_V2_PAYLOAD: usize = 2048;

/// Why a connection's PROXY header was not accepted; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY header within {HEADER_TIMEOUT:?}")]
    Timeout,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection does not start with a PROXY header")]
    Missing,
    #[error("PROXY header longer than allowed")]
    TooLong,
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
}

/// Reads the PROXY header at the start of `stream` and returns the client it names, or `None`
/// when it names none (v2 `LOCAL`, v1 `UNKNOWN`, a unix socket: the proxy's own connection,
/// such as a health check, which then counts as the proxy's).
pub async fn read_client<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    match tokio::time::timeout(HEADER_TIMEOUT, read_header(stream)).await {
        Ok(header) => client_of(&header?),
        Err(_) => Err(ProxyHeaderError::Timeout),
    }
}

/// The header's bytes, exactly.
async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, ProxyHeaderError> {
    // Both versions are told apart by their first 6 bytes, and no header is shorter.
    let mut header = vec![0u8; 6];
    stream.read_exact(&mut header).await?;
    if header == b"PROXY " {
        // Text up to CRLF: read a byte at a time so nothing after it is consumed.
        while header.last() != Some(&b'\n') {
            if header.len() == MAX_V1 {
                return Err(ProxyHeaderError::TooLong);
            }
            header.push(stream.read_u8().await?);
        }
    } else if header[..] == V2_SIGNATURE[..6] {
        header.resize(V2_FIXED, 0);
        stream.read_exact(&mut header[6..]).await?;
        let payload = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if payload > MAX_V2_PAYLOAD {
            return Err(ProxyHeaderError::TooLong);
        }
        header.resize(V2_FIXED + payload, 0);
        stream.read_exact(&mut header[V2_FIXED..]).await?;
    } else {
        return Err(ProxyHeaderError::Missing);
    }
    Ok(header)
}

/// The source address a complete header names.
fn client_of(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let socket = |ip: IpAddr, port: u16| Some(SocketAddr::new(ip.to_canonical(), port));
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            V1Addresses::Tcp4(a) => socket(a.source_address.into(), a.source_port),
            V1Addresses::Tcp6(a) => socket(a.source_address.into(), a.source_port),
            V1Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) if h.command == Command::Local => Ok(None),
        HeaderResult::V2(Ok(h)) => Ok(match h.addresses {
            V2Addresses::IPv4(a) => socket(a.source_address.into(), a.source_port),
            V2Addresses::IPv6(a) => socket(a.source_address.into(), a.source_port),
            V2Addresses::Unspecified | V2Addresses::Unix(_) => None,
        }),
        HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::Malformed(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut input = bytes;
        let client = read_client(&mut input).await;
        (client, input.to_vec())
    }

    #[tokio::test]
    async fn v1_names_the_client_and_leaves_what_follows() {
        let (client, rest) =
            read(b"PROXY TCP4 192.0.2.1 10.0.0.1 4711 80\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(client.unwrap(), Some("192.0.2.1:4711".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (client, rest) = read(b"PROXY UNKNOWN\r\n{").await;
        assert_eq!(client.unwrap(), None);
        assert_eq!(rest, b"{");
    }

    #[tokio::test]
    async fn v2_names_the_client_and_local_names_none() {
        let proxied = ppp::v2::Builder::with_addresses(
            0x21,
            ppp::v2::Protocol::Stream,
            (
                "[2001:db8::5]:4711".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:80".parse::<SocketAddr>().unwrap(),
            ),
        )
        .write_tlv(0x05, b"unique-id")
        .unwrap()
        .build()
        .unwrap();
        let mut input = proxied.clone();
        input.extend_from_slice(b"after");
        let (client, rest) = read(&input).await;
        assert_eq!(client.unwrap(), Some("[2001:db8::5]:4711".parse().unwrap()));
        assert_eq!(rest, b"after");
        let local = ppp::v2::Builder::new(0x20, 0x00).build().unwrap();
        assert_eq!(read(&local).await.0.unwrap(), None);
    }

    #[tokio::test]
    async fn anything_else_is_refused_within_bounds() {
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\n").await.0,
            Err(ProxyHeaderError::Missing)
        ));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(
            read(long.as_bytes()).await.0,
            Err(ProxyHeaderError::TooLong)
        ));
        assert!(matches!(
            read(b"PROXY TCP4 not an address\r\n").await.0,
            Err(ProxyHeaderError::Malformed(_))
        ));
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(read(&big).await.0, Err(ProxyHeaderError::TooLong)));
    }
}
