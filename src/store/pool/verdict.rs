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

/// The verdict on an error from one endpoint's store.
pub fn of(err: &StoreError) -> Verdict {
    match err {
        StoreError::NotFound => Verdict::Answer,
        StoreError::Unavailable { message, .. } => match answered_status(message) {
            Some(502 | 504) => Verdict::GatewayError,
            Some(429) => Verdict::Failed,
            Some(400..=499) => Verdict::Answer,
            _ => Verdict::Failed,
        },
        StoreError::Timeout { .. }
        | StoreError::Corrupt { .. }
        | StoreError::Io { .. }
        | StoreError::Refused { .. } => Verdict::Failed,
    }
}

/// The HTTP status a remote answered with, from the store's error text: the HTTP stores say
/// "remote answered 503 Service Unavailable..." (`http_fetch`) or "host:port answered 503 ..."
/// (`http3`). Reading it back from the text is the one place that depends on those words; a
/// typed status on [`StoreError`] would replace it.
fn answered_status(message: &str) -> Option<u16> {
    let (_, after) = message.split_once("answered ")?;
    let code = after.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit())
        || after[3..].starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn unavailable(message: &str) -> StoreError {
        StoreError::unavailable("up", message)
    }

    #[test]
    fn statuses_and_failures() {
        assert_eq!(of(&StoreError::NotFound), Verdict::Answer);
        for (message, verdict) in [
            (
                "remote answered 403 Forbidden: no (check edge_token)",
                Verdict::Answer,
            ),
            ("remote answered 400 Bad Request", Verdict::Answer),
            ("remote answered 429 Too Many Requests", Verdict::Failed),
            ("remote answered 500 Internal Server Error", Verdict::Failed),
            ("remote answered 503 Service Unavailable", Verdict::Failed),
            (
                "remote answered 502 Bad Gateway: s3: down",
                Verdict::GatewayError,
            ),
            (
                "r1:5568 answered 504 Gateway Timeout: x",
                Verdict::GatewayError,
            ),
            (
                "cannot connect: error sending request: Connection refused",
                Verdict::Failed,
            ),
            ("remote answered 5000", Verdict::Failed),
            ("peer answered invalid JSON", Verdict::Failed),
        ] {
            assert_eq!(of(&unavailable(message)), verdict, "{message}");
        }
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
