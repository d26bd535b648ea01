//! The client address of an HTTP request that came through trusted proxies: `Forwarded`
//! (RFC 7239) or `X-Forwarded-For`, believed only when the connection's peer is in the door's
//! `trusted_proxies`.
//!
//! Every proxy appends the address it received the request from, so the list reads client
//! first, nearest proxy last, and only its right end is trustworthy: a client can write
//! anything on the left. We walk from the right, skipping our own trusted proxies, and take the
//! first address that is not one of them (the "rightmost untrusted hop"). A hop that is not an
//! address (`unknown`, an obfuscated `_name`, garbage) stops the walk: the client is then the
//! last trusted hop we reached, which vouched for nothing further. `Forwarded` wins when both
//! headers are present (it is the standard one; proxies that send it keep it current).

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, FORWARDED};

use crate::config::Proxies;

/// The `X-Forwarded-For` header name.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// At most this many hops are looked at (a longer chain ends at the last one looked at).
const MAX_HOPS: usize = 32;

/// The client of a request that arrived from `peer` with `headers`: `peer` itself unless it
/// is a trusted proxy that forwarded the request.
pub fn client(proxies: &Proxies, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if proxies.trusted.is_empty() || !proxies.trusts(peer) {
        return peer;
    }
    let hops: Vec<&str> = if headers.contains_key(FORWARDED) {
        hops_right_to_left(headers, FORWARDED.as_str(), forwarded_for)
    } else {
        hops_right_to_left(headers, X_FORWARDED_FOR, |element| Some(element.trim()))
    };
    let mut client = peer;
    for hop in hops {
        let Some(address) = parse_hop(hop) else {
            break;
        };
        client = address;
        if !proxies.trusts(address) {
            break;
        }
    }
    client
}

/// The hops a header lists, nearest proxy first (header lines in reverse, elements of each in
/// reverse), at most [`MAX_HOPS`]; `pick` takes the address text out of one element.
fn hops_right_to_left<'a>(
    headers: &'a HeaderMap,
    name: &str,
    pick: fn(&'a str) -> Option<&'a str>,
) -> Vec<&'a str> {
    let mut hops = Vec::new();
    for line in headers.get_all(name).iter().rev() {
        // A line that is not text cannot be read: stop at it, believing nothing beyond.
        let Ok(text) = line.to_str() else {
            hops.push("");
            break;
        };
        for element in text.rsplit(',') {
            if hops.len() == MAX_HOPS {
                return hops;
            }
            hops.push(pick(element).unwrap_or(""));
        }
    }
    hops
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`),
/// without its quotes.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `192.0.2.60`, `192.0.2.60:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> Proxies {
        Proxies {
            trusted: nets.iter().map(|n| n.parse().unwrap()).collect(),
            proxy_protocol: false,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(client(&p, ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(client(&proxies(&[]), ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn x_forwarded_for_gives_the_rightmost_untrusted_hop() {
        let p = proxies(&["10.0.0.0/8"]);
        // The client wrote a fake hop on the left; our two proxies appended on the right.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(client(&p, ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Several header lines read as one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7:5555, 10.0.0.2"),
        ]);
        assert_eq!(client(&p, ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            client(&p, ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // Every hop trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.2")]);
        assert_eq!(client(&p, ip("10.0.0.1"), &h), ip("10.1.1.1"));
        // Garbage stops the walk at the last trusted hop.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, nonsense, 10.0.0.2")]);
        assert_eq!(client(&p, ip("10.0.0.1"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_is_read_as_rfc_7239_writes_it_and_wins() {
        let p = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::17]:4711\";proto=https, For=\"[2001:db8:ffff::1]\"",
            ),
        ]);
        assert_eq!(client(&p, ip("10.0.0.1"), &h), ip("2001:db8::17"));
        let h = headers(&[("forwarded", "by=10.0.0.1;for=192.0.2.60;proto=http")]);
        assert_eq!(client(&p, ip("10.0.0.1"), &h), ip("192.0.2.60"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client(&p, ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers(&[("forwarded", "for=_hidden, for=10.0.0.3")]);
        assert_eq!(client(&p, ip("10.0.0.1"), &h), ip("10.0.0.3"));
    }

    #[test]
    fn a_mapped_ipv6_peer_counts_as_its_ipv4_address() {
        let p = proxies(&["127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "::ffff:192.0.2.1")]);
        assert_eq!(client(&p, ip("::ffff:127.0.0.1"), &h), ip("192.0.2.1"));
    }
}
