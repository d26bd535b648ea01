//! What every remote origin store (`http`, `upstream`, `s3`, `peer`, `http3`) shares: its name,
//! its deadline, its bytes-in counter, and the rules for turning received bytes into a blob.
//!
//! Each remote store differs only in how it asks (a URL, an S3 call, a peer request, an HTTP/3
//! stream). What happens around the asking is the same for all of them and lives here once, so
//! the copies cannot drift:
//!
//! - **One deadline.** [`Origin::bounded`] runs a whole call (connect, request, body) under the
//!   store's `timeout`; running out of it is [`StoreError::Timeout`] carrying the *configured*
//!   timeout, whichever store it was (504 at the front door). Not "not found": no negative cache
//!   remembers it, and the next request after the remote recovers simply works.
//! - **One verdict on bytes.** [`Origin::check_declared`] refuses a declared length a blob cannot
//!   have before a byte is buffered; [`Origin::verified_blob`] counts what arrived, checks size
//!   and SHA-384, and only then makes a [`Blob`] (marked verified, so no layer above hashes it
//!   again). A mismatch is [`StoreError::Corrupt`]: never served, never cached.
//! - **One bytes-in rule.** Every blob body a remote store receives is counted once, on arrival
//!   (whatever the verdict), into the reflector.go counter of its protocol, as reflector.go
//!   counts: `reflector_s3_in_bytes` (`s3`), `reflector_upstream_in_bytes` (`upstream`),
//!   `reflector_http_in_bytes` (`http`), `reflector_tcp_in_bytes` (`peer`) and
//!   `reflector_udp_in_bytes` (`http3`).
//!
//! The rest of a remote's store contract (read-only, not a cache, cannot list) is
//! [`remote`](super::remote)'s; the retry of a dead reused connection is
//! [`reconnect`](super::reconnect)'s.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::IntCounter;

use crate::blob::{check_size, verify, BlobHash, VerifyError};
use crate::store::{Blob, StoreError, StoreResult};
use crate::trace::BlobTrace;

/// A remote store's identity and limits.
pub struct Origin {
    name: Arc<str>,
    timeout: Duration,
    in_bytes: IntCounter,
}

impl Origin {
    /// `in_bytes` is the counter this store's received bytes go to (see the module docs).
    pub fn new(name: &str, timeout: Duration, in_bytes: &IntCounter) -> Origin {
        Origin {
            name: Arc::from(name),
            timeout,
            in_bytes: in_bytes.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured deadline of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `work` under the store's deadline. Client libraries have deadlines of their own;
    /// this one also covers a body that trickles in forever and time spent waiting for a slot.
    pub async fn bounded<T>(&self, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out()),
        }
    }

    /// The error for running out of the deadline (also for a client library's own timeout).
    pub fn timed_out(&self) -> StoreError {
        StoreError::Timeout {
            store: Arc::clone(&self.name),
            after: self.timeout,
        }
    }

    pub fn unavailable(&self, message: impl Into<String>) -> StoreError {
        StoreError::unavailable(&self.name, message)
    }

    /// The remote answered with an error status (the status only: its body is the origin's
    /// own words, which we neither show a client nor log).
    pub fn bad_status(&self, status: http::StatusCode) -> StoreError {
        StoreError::OriginStatus {
            store: Arc::clone(&self.name),
            status,
        }
    }

    /// A body that grew past what a blob may be while being read.
    pub fn too_large(&self, len: usize) -> StoreError {
        StoreError::too_large(&self.name, len)
    }

    /// Refuses a length the remote announced (`Content-Length`, `incoming_blob.length`) that no
    /// blob can have, before any byte of it is buffered.
    pub fn check_declared(&self, len: usize) -> StoreResult<()> {
        check_size(len).map_err(|source| self.corrupt(source))
    }

    /// The blob `hash` from the bytes a remote sent: counts them, checks size and SHA-384, and
    /// stacks this store's hop (taking `since.elapsed()`) on the remote's `Via` trace, if any.
    pub fn verified_blob(
        &self,
        hash: &BlobHash,
        data: Bytes,
        since: Instant,
        remote_trace: Option<&str>,
    ) -> StoreResult<Blob> {
        self.in_bytes.inc_by(data.len() as u64);
        verify(&data, hash).map_err(|source| self.corrupt(source))?;
        Ok(Blob {
            data,
            trace: BlobTrace::from_header(remote_trace).stack(since.elapsed(), &self.name),
            verified: true,
            from_origin: true,
        })
    }

    /// `put`/`delete` on a store that cannot write.
    pub fn read_only(&self, operation: &str) -> StoreError {
        StoreError::Refused {
            store: Arc::clone(&self.name),
            message: format!("{operation} is not supported: this origin is read-only"),
        }
    }

    fn corrupt(&self, source: VerifyError) -> StoreError {
        StoreError::Corrupt {
            store: Arc::clone(&self.name),
            source,
        }
    }
}

/// Checks that `url` is an absolute http(s) URL, for a config error at start-up rather than a
/// failure on every request, and returns it parsed. The error shows the URL redacted (it may
/// carry a password or a signed query).
pub fn check_base_url(store: &str, key: &str, url: &str) -> anyhow::Result<reqwest::Url> {
    let shown = crate::secret::redact_url(url);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("{store}: {key} {shown:?} is not a valid URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => anyhow::bail!("{store}: {key} {shown:?} has scheme {other:?}; use http or https"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> (Origin, IntCounter) {
        let counter = IntCounter::new("t", "t").unwrap();
        (
            Origin::new("o", Duration::from_millis(20), &counter),
            counter,
        )
    }

    #[test]
    fn base_urls_are_checked() {
        assert!(check_base_url("s", "endpoint", "https://x.example/b/").is_ok());
        let e = check_base_url("s", "endpoint", "ftp://x").unwrap_err();
        assert!(e.to_string().contains("use http or https"), "{e}");
        let e = check_base_url("s", "endpoint", "ftp://u:SECRET@x/?sig=SECRET").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(check_base_url("s", "endpoint", "not a url").is_err());
    }

    #[test]
    fn received_bytes_are_counted_then_judged() {
        let (o, counter) = origin();
        let (hash, data) = crate::blob::named(&b"hello"[..]);
        let blob = o
            .verified_blob(&hash, data.clone(), Instant::now(), None)
            .unwrap();
        assert!(blob.verified);
        let wrong = BlobHash::of(b"other");
        let err = o
            .verified_blob(&wrong, data, Instant::now(), None)
            .unwrap_err();
        assert_eq!(err.kind(), "hash_mismatch");
        assert_eq!(counter.get(), 10, "both bodies arrived, both are counted");
        assert_eq!(o.check_declared(0).unwrap_err().kind(), "zero_byte_blob");
        assert_eq!(
            o.check_declared(crate::blob::MAX_BLOB_SIZE + 1)
                .unwrap_err()
                .kind(),
            "blob_too_big"
        );
    }

    #[tokio::test]
    async fn deadline_reports_the_configured_timeout() {
        let (o, _) = origin();
        let err = o
            .bounded(std::future::pending::<StoreResult<()>>())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Timeout { after, .. } if after == Duration::from_millis(20)),
            "{err}"
        );
    }
}
