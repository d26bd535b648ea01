//! The `Range` request header (RFC 9110 section 14), single ranges only.
//!
//! A `<video>` element asks for one range at a time (`bytes=0-`, then `bytes=N-` after a seek),
//! so one range is all playback needs. A multi-range request is answered with the whole body
//! (200), which the RFC allows: a server may ignore `Range`.

/// An inclusive byte range `first..=last` within a body of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// How many bytes the range covers (never zero).
    pub fn byte_count(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable single range: send the whole body with 200.
    Whole,
    /// Send these bytes with 206.
    Partial(ByteRange),
    /// The range starts at or past the end: 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Interprets a `Range` header value against a body of `size` bytes.
///
/// `bytes=a-b` (b clamped to the end), `bytes=a-`, and `bytes=-n` (the last n bytes) are
/// honoured. Anything malformed, another unit, or several ranges yields [`RangeRequest::Whole`],
/// as the RFC says a server should for a header it does not understand.
pub fn parse(header: &str, size: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (start, end) = (start.trim(), end.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Digits only, so the one failure left is overflow: treat it as "huge".
        Some(s.parse().unwrap_or(u64::MAX))
    };
    if start.is_empty() {
        // Suffix: the last n bytes.
        let Some(n) = number(end) else {
            return RangeRequest::Whole;
        };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Partial(ByteRange {
            first: size.saturating_sub(n),
            last: size - 1,
        });
    }
    let Some(first) = number(start) else {
        return RangeRequest::Whole;
    };
    let last = if end.is_empty() {
        u64::MAX
    } else {
        match number(end) {
            Some(last) if last >= first => last,
            _ => return RangeRequest::Whole,
        }
    };
    if first >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(ByteRange {
        first,
        last: last.min(size - 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(first: u64, last: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { first, last })
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-99", 1000), part(0, 99));
        assert_eq!(parse("bytes=10-", 1000), part(10, 999));
        assert_eq!(parse("bytes=-100", 1000), part(900, 999));
        assert_eq!(parse("bytes=-5000", 1000), part(0, 999));
        assert_eq!(parse("bytes=990-5000", 1000), part(990, 999));
        assert_eq!(parse("bytes=999-999", 1000), part(999, 999));
        assert_eq!(parse(" bytes= 5 - 6 ", 1000), part(5, 6));
        assert_eq!(parse("bytes=0-99999999999999999999999", 1000), part(0, 999));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse("bytes=1000-", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=1000-2000", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=-1", 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn ignored_headers_mean_whole_body() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=5-4",
            "bytes=a-b",
            "bytes=0-1,5-6",
            "bytes=+1-2",
            "bytes=1-2-3",
        ] {
            assert_eq!(parse(h, 1000), RangeRequest::Whole, "{h:?}");
        }
    }
}
