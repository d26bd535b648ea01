//! Collecting a response body from a remote origin without ever holding more than a limit.
//!
//! A misbehaving origin (or one serving something that is not a blob) must not make us buffer
//! an unbounded body: the buffer refuses the chunk that would take it past the limit, before
//! copying it, and the caller turns that into an error.

use bytes::{Bytes, BytesMut};

/// Bytes arriving in chunks, capped at `limit`.
pub struct CappedBuffer {
    buf: BytesMut,
    limit: usize,
}

impl CappedBuffer {
    /// `expected` (a declared `Content-Length`) sizes the first allocation, never beyond `limit`.
    pub fn new(limit: usize, expected: Option<usize>) -> CappedBuffer {
        CappedBuffer {
            buf: BytesMut::with_capacity(expected.unwrap_or(64 * 1024).min(limit)),
            limit,
        }
    }

    /// Appends `chunk`, or returns the total it would have reached when that exceeds the limit
    /// (nothing is appended then).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), usize> {
        let total = self.buf.len() + chunk.len();
        if total > self.limit {
            return Err(total);
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn freeze(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_chunk_that_crosses_the_limit() {
        let mut b = CappedBuffer::new(10, Some(1_000_000));
        assert!(b.push(b"12345").is_ok());
        assert!(b.push(b"67890").is_ok());
        assert_eq!(b.push(b"x"), Err(11));
        assert_eq!(b.len(), 10);
        assert_eq!(&b.freeze()[..], b"1234567890");
    }
}
