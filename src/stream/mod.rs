//! LBRY stream descriptors (sd blobs) and stream content decoding.
//!
//! A stream is one *sd blob* (a JSON stream descriptor) plus N AES-128-CBC encrypted content
//! blobs. The cache mostly treats blobs as opaque bytes, but it has to read sd blobs to know which
//! content blobs belong to a stream (prefetching, announcing head blobs, checking a stream is
//! complete), and it has to write them byte-exactly, because an sd blob's name is the SHA-384 of
//! its bytes: a descriptor re-serialized with a different key order or spacing would be a
//! different blob that no LBRY client asks for.
//!
//! Parsing goes through a permissive wire struct (so every problem can be reported as a specific
//! [`StreamError`] naming the offending blob, rather than as an opaque JSON error), then through
//! [`StreamDescriptor::validate`], which applies the same rules the reference LBRY SDK applies
//! when it loads an sd blob (terminator last and hash-less, blob numbers in order, no empty
//! content blob, stream hash consistent with the contents), plus the size limits of the network.
//!
//! One file per idea: [`sd`] (the descriptor types, parsing and validation), [`json`] (the
//! byte-exact writer), [`decode`] (AES-128-CBC decoding of content blobs), [`key`] (the key and
//! IV format) and `error` ([`StreamError`]).

pub mod decode;
mod error;
pub mod json;
pub mod key;
pub mod sd;

pub use self::decode::{decode_stream, decrypt_blob};
pub use self::error::StreamError;
pub use self::key::KEY_HEX_LEN;
pub use self::sd::{BlobInfo, StreamDescriptor, STREAM_TYPE_LBRYFILE};
