//! What one endpoint's result means for a pool request (go on to the next endpoint or not) and
//! for the endpoint's health (does it count against it).
//!
//! | result                                   | request            | endpoint health |
//! |------------------------------------------|--------------------|-----------------|
//! | a blob, "has", or not found (404)        | answered: done     | up              |
//! | another 4xx (403 wrong `edge_token`, 400)| answered: done     | up              |
//! | 502 / 504 (the endpoint's *origin* failed)| try the next      | up              |
//! | connection error, timeout, 429, other 5xx, bad blob | try the next | **failure** |
//!
//! A 404 is authoritative (the home is the home unless it is down): it does not fan a miss out
//! to every regional. Other 4xx answers are about our request (every endpoint would say the
//! same), so they neither fail over nor count. A 502 or 504 means the endpoint is up but *its*
//! origin is not answering: another endpoint may have the blob cached, so the request moves on,
//! but the endpoint is not ejected for it, or an origin outage would eject every regional and
//! take the blobs they do hold out of reach too.

use crate::store::StoreError;

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The endpoint answered: the request is done.
    Answer,
    /// The endpoint is up but could not get the blob from its own origin: try the next.
    GatewayError,
    /// The endpoint failed: try the next, and count it against the endpoint.
    Failed,
}

impl Verdict {
    /// Whether the endpoint showed it is up (for its health).
    pub fn endpoint_is_up(self) -> bool {
        self != Verdict::Failed
    }
}

/// The verdict on an error from one endpoint's store. The HTTP stores (`upstream`, `http3`)
/// report a remote's error status as [`StoreError::OriginStatus`], so this reads the number,
/// never error text.
pub fn of(err: &StoreError) -> Verdict {
    match err {
        StoreError::NotFound => Verdict::Answer,
        StoreError::OriginStatus { status, .. } => match status.as_u16() {
            502 | 504 => Verdict::GatewayError,
            429 => Verdict::Failed,
            400..=499 => Verdict::Answer,
            _ => Verdict::Failed,
        },
        StoreError::Unavailable { .. }
        | StoreError::Timeout { .. }
        | StoreError::Corrupt { .. }
        | StoreError::Io { .. }
        | StoreError::Refused { .. } => Verdict::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(code: u16) -> StoreError {
        StoreError::OriginStatus {
            store: "up".into(),
            status: ::http::StatusCode::from_u16(code).unwrap(),
        }
    }

    #[test]
    fn statuses_and_failures() {
        assert_eq!(of(&StoreError::NotFound), Verdict::Answer);
        for (code, verdict) in [
            (403, Verdict::Answer),
            (400, Verdict::Answer),
            (429, Verdict::Failed),
            (500, Verdict::Failed),
            (503, Verdict::Failed),
            (502, Verdict::GatewayError),
            (504, Verdict::GatewayError),
        ] {
            assert_eq!(of(&status(code)), verdict, "{code}");
        }
        // A connection error, or a peer that answered nonsense, says nothing about the blob.
        assert_eq!(
            of(&StoreError::unavailable("up", "cannot connect")),
            Verdict::Failed
        );
        let timeout = StoreError::Timeout {
            store: "up".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(of(&timeout), Verdict::Failed);
        assert_eq!(of(&StoreError::too_large("up", 3 << 20)), Verdict::Failed);
        assert!(Verdict::GatewayError.endpoint_is_up());
        assert!(!Verdict::Failed.endpoint_is_up());
    }
}
