//! The DHT's UDP datagrams (bencode) as any host on the internet may send them: the envelope,
//! request arguments, and the findNode / findValue results a lookup reads. Everything that
//! decodes re-encodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_lite::dht::bencode::Value;
use prism_lite::dht::wire::{
    decode_contacts, encode_contacts, Body, Datagram, FindValueResult, NodeId,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = Value::decode(data) {
        let bytes = value.encode();
        assert_eq!(Value::decode(&bytes).as_ref(), Ok(&value));
        results_round_trip(&value);
    }
    let Ok(datagram) = Datagram::decode(data) else {
        return;
    };
    if !matches!(datagram.body, Body::Request(Err(_))) {
        let again = Datagram::decode(&datagram.encode()).expect("an encoded datagram decodes");
        assert_eq!(again, datagram);
    }
    if let Body::Response(value) = &datagram.body {
        results_round_trip(value);
    }
});

/// A response value read as a findNode and as a findValue result, re-encoded, reads the same.
fn results_round_trip(value: &Value) {
    if let Some(contacts) = decode_contacts(value) {
        assert_eq!(decode_contacts(&encode_contacts(&contacts)), Some(contacts));
    }
    let key = NodeId([7; 48]);
    if let Some(result) = FindValueResult::decode(value, &key) {
        assert_eq!(
            FindValueResult::decode(&result.encode(&key), &key),
            Some(result)
        );
    }
}
