//! Fetching one blob body over HTTP(S): the part the `http` origin and the `upstream` store
//! share.
//!
//! Both stores are "GET a URL, get a blob": what differs is only the URL and how a status is
//! read. The deadline and the verdict on the bytes are every remote's, in
//! [`origin`](super::origin); what is particular to HTTP lives here:
//!
//! - **One pooled client** per store, with keep-alive, so a busy cache's fills reuse
//!   connections.
//! - **Transport errors that mean something, and carry no secret.** reqwest's own deadline is
//!   reported as the store's timeout; any other failure is [`StoreError::Unavailable`] (502)
//!   with the whole cause chain, taken from the error *without its URL* (the URL holds the
//!   upstream's `edge_token` or a CDN's signed query). An error status is
//!   [`StoreError::OriginStatus`], the status alone: the remote's body is neither shown to a
//!   client nor logged, because an origin's error page is not ours to repeat.
//! - **Bounded memory.** A body larger than a blob can be is refused from its `Content-Length`,
//!   and the read itself stops one byte past the limit, so a lying or chunked response can never
//!   make us buffer more than [`MAX_BLOB_SIZE`] + one chunk.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, VIA};
use reqwest::{Client, Method, StatusCode, Url};

use crate::blob::MAX_BLOB_SIZE;
use crate::store::body::CappedBuffer;
use crate::store::origin::Origin;
use crate::store::{StoreError, StoreResult};

/// Idle keep-alive connections kept per remote host: enough for a busy cache's parallel fills.
const POOL_IDLE_PER_HOST: usize = 64;

/// What a store makes of a status the remote answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMeaning {
    /// 2xx: the body is the blob (GET) / the blob exists (HEAD).
    Found,
    /// The remote says it does not have the blob.
    Missing,
    /// Anything else: the remote is unwell or misconfigured.
    Failed,
}

/// A body (not yet verified: see [`Origin::verified_blob`]) and the response headers the caller
/// may want (e.g. `Via`).
pub struct Fetched {
    pub data: Bytes,
    pub via: Option<String>,
}

/// One pooled HTTP client plus the store's [`Origin`] (name, deadline, bytes-in counter).
pub struct HttpFetcher {
    origin: Origin,
    client: Client,
}

impl HttpFetcher {
    /// A fetcher with its own connection pool, connecting within `connect`. Fails only if the
    /// TLS backend cannot start.
    pub fn new(origin: Origin, connect: Duration) -> anyhow::Result<HttpFetcher> {
        let (name, timeout) = (origin.name(), origin.timeout());
        let client = Client::builder()
            .connect_timeout(connect)
            .timeout(timeout)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .user_agent(concat!("prism-lite/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("{name}: cannot create HTTP client: {e}"))?;
        Ok(HttpFetcher { origin, client })
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// GETs `url` and returns its body. `meaning` interprets the status.
    pub async fn get(
        &self,
        url: Url,
        meaning: impl Fn(StatusCode) -> StatusMeaning,
    ) -> StoreResult<Fetched> {
        self.origin
            .bounded(async {
                let response = self
                    .client
                    .request(Method::GET, url)
                    .send()
                    .await
                    .map_err(|e| self.transport_error(e))?;
                let status = response.status();
                match meaning(status) {
                    StatusMeaning::Found => {}
                    StatusMeaning::Missing => return Err(StoreError::NotFound),
                    StatusMeaning::Failed => return Err(self.origin.bad_status(status)),
                }
                let via = header_text(response.headers(), VIA);
                if let Some(len) = response.content_length() {
                    self.origin
                        .check_declared(usize::try_from(len).unwrap_or(usize::MAX))?;
                }
                let data = self.read_capped(response).await?;
                Ok(Fetched { data, via })
            })
            .await
    }

    /// HEADs `url`: `Ok(true)` when `meaning` says found, `Ok(false)` when missing.
    pub async fn head(
        &self,
        url: Url,
        meaning: impl Fn(StatusCode) -> StatusMeaning,
    ) -> StoreResult<bool> {
        self.origin
            .bounded(async {
                let response = self
                    .client
                    .request(Method::HEAD, url)
                    .send()
                    .await
                    .map_err(|e| self.transport_error(e))?;
                let status = response.status();
                match meaning(status) {
                    StatusMeaning::Found => Ok(true),
                    StatusMeaning::Missing => Ok(false),
                    StatusMeaning::Failed => Err(self.origin.bad_status(status)),
                }
            })
            .await
    }

    /// Reads the body, stopping as soon as it is larger than a blob may be.
    async fn read_capped(&self, mut response: reqwest::Response) -> StoreResult<Bytes> {
        let declared = response.content_length().map(|n| n as usize);
        let mut buf = CappedBuffer::new(MAX_BLOB_SIZE, declared);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            buf.push(&chunk)
                .map_err(|total| self.origin.too_large(total))?;
        }
        Ok(buf.freeze())
    }

    /// Maps a reqwest failure: deadline -> Timeout, everything else -> Unavailable with the
    /// whole cause chain (the innermost cause, e.g. "Connection refused", is the useful part).
    /// The URL is dropped first: reqwest prints it in its message, secrets and all.
    fn transport_error(&self, err: reqwest::Error) -> StoreError {
        let err = err.without_url();
        if err.is_timeout() {
            return self.origin.timed_out();
        }
        let what = if err.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        let mut message = format!("{what}: {err}");
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        self.origin.unavailable(message)
    }
}

fn header_text(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Joins a base URL and a path with exactly one `/` between them.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_has_exactly_one_slash() {
        for base in ["http://h/b", "http://h/b/", "http://h/b//"] {
            assert_eq!(join_url(base, "ab/abc"), "http://h/b/ab/abc");
            assert_eq!(join_url(base, "/ab/abc"), "http://h/b/ab/abc");
        }
    }
}
