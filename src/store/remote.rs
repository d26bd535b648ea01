//! Fetching one verified blob over HTTP: the part the `http` origin and the `upstream` store
//! share.
//!
//! Both stores are "GET a URL, get a blob": what differs is only the URL and how a status is
//! read. Everything that keeps a slow or broken remote from hurting us lives here once:
//!
//! - **Bounded time.** The whole request (connect, headers, body) runs under one deadline, so a
//!   remote that accepts and never answers costs `timeout`, not forever; running out of it is a
//!   [`StoreError::Timeout`] (504 at the front door), any other transport failure is
//!   [`StoreError::Unavailable`] (502). Neither is "not found", so no negative cache remembers it
//!   and the next request after the remote recovers simply works.
//! - **Bounded memory.** A body larger than a blob can be is refused from its `Content-Length`,
//!   and the read itself stops one byte past the limit, so a lying or chunked response can never
//!   make us buffer more than [`MAX_BLOB_SIZE`] + one chunk.
//! - **Never a wrong byte.** The bytes are SHA-384-verified here, before any composite sees them.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, VIA};
use reqwest::{Client, Method, StatusCode};

use crate::blob::{verify, BlobHash, MAX_BLOB_SIZE};
use crate::store::body::CappedBuffer;
use crate::store::{StoreError, StoreResult};

/// Default connect deadline (capped by the whole-request `timeout`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
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

/// A verified body and the response headers the caller may want (e.g. `Via`).
pub struct Fetched {
    pub data: Bytes,
    pub via: Option<String>,
}

/// One pooled HTTP client plus the store's name and deadline.
pub struct HttpFetcher {
    name: Arc<str>,
    client: Client,
    timeout: Duration,
}

impl HttpFetcher {
    /// A fetcher with its own connection pool. Fails only if the TLS backend cannot start.
    pub fn new(
        name: &str,
        timeout: Duration,
        connect_timeout: Option<Duration>,
    ) -> anyhow::Result<HttpFetcher> {
        let connect = connect_timeout
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
            .min(timeout);
        let client = Client::builder()
            .connect_timeout(connect)
            .timeout(timeout)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .user_agent(concat!("prism-lite/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("{name}: cannot create HTTP client: {e}"))?;
        Ok(HttpFetcher {
            name: Arc::from(name),
            client,
            timeout,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// GETs `url` and returns the verified blob `hash`. `meaning` interprets the status.
    pub async fn get(
        &self,
        url: &str,
        hash: &BlobHash,
        meaning: impl Fn(StatusCode) -> StatusMeaning,
    ) -> StoreResult<Fetched> {
        self.bounded(async {
            let response = self
                .client
                .request(Method::GET, url)
                .send()
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = response.status();
            match meaning(status) {
                StatusMeaning::Found => {}
                StatusMeaning::Missing => return Err(StoreError::NotFound),
                StatusMeaning::Failed => return Err(self.status_error(status, response).await),
            }
            let via = header_text(response.headers(), VIA);
            if let Some(len) = response.content_length() {
                if len > MAX_BLOB_SIZE as u64 {
                    return Err(StoreError::too_large(
                        &self.name,
                        usize::try_from(len).unwrap_or(usize::MAX),
                    ));
                }
            }
            let data = self.read_capped(response).await?;
            verify(&data, hash).map_err(|source| StoreError::Corrupt {
                store: Arc::clone(&self.name),
                source,
            })?;
            Ok(Fetched { data, via })
        })
        .await
    }

    /// HEADs `url`: `Ok(true)` when `meaning` says found, `Ok(false)` when missing.
    pub async fn head(
        &self,
        url: &str,
        meaning: impl Fn(StatusCode) -> StatusMeaning,
    ) -> StoreResult<bool> {
        self.bounded(async {
            let response = self
                .client
                .request(Method::HEAD, url)
                .send()
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = response.status();
            match meaning(status) {
                StatusMeaning::Found => Ok(true),
                StatusMeaning::Missing => Ok(false),
                StatusMeaning::Failed => Err(self.status_error(status, response).await),
            }
        })
        .await
    }

    /// Runs `work` under the store's deadline. reqwest enforces the same deadline; this outer
    /// one guarantees it even for a body that trickles in forever.
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout_error()),
        }
    }

    /// Reads the body, stopping as soon as it is larger than a blob may be.
    async fn read_capped(&self, mut response: reqwest::Response) -> StoreResult<Bytes> {
        let declared = response.content_length().map(|n| n as usize);
        let mut buf = CappedBuffer::new(MAX_BLOB_SIZE, declared);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            buf.push(&chunk)
                .map_err(|total| StoreError::too_large(&self.name, total))?;
        }
        Ok(buf.freeze())
    }

    fn timeout_error(&self) -> StoreError {
        StoreError::Timeout {
            store: Arc::clone(&self.name),
            after: self.timeout,
        }
    }

    /// Maps a reqwest failure: deadline -> Timeout, everything else -> Unavailable with the
    /// whole cause chain (the innermost cause, e.g. "Connection refused", is the useful part).
    fn transport_error(&self, err: &reqwest::Error) -> StoreError {
        if err.is_timeout() {
            return self.timeout_error();
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
        StoreError::unavailable(&self.name, message)
    }

    /// An error status, with the start of the body (remotes often explain themselves there).
    async fn status_error(&self, status: StatusCode, response: reqwest::Response) -> StoreError {
        const SNIPPET: usize = 200;
        let mut body = String::new();
        let mut response = response;
        while body.len() < SNIPPET {
            match response.chunk().await {
                Ok(Some(chunk)) => body.push_str(&String::from_utf8_lossy(&chunk)),
                _ => break,
            }
        }
        let body: String = body
            .chars()
            .take(SNIPPET)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let body = body.trim();
        let message = if body.is_empty() {
            format!("remote answered {status}")
        } else {
            format!("remote answered {status}: {body}")
        };
        StoreError::unavailable(&self.name, message)
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

/// Checks that `url` is an absolute http(s) URL, for a config error at start-up rather than a
/// failure on every request.
pub fn check_base_url(store: &str, key: &str, url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("{store}: {key} {url:?} is not a valid URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => anyhow::bail!("{store}: {key} {url:?} has scheme {other:?}; use http or https"),
    }
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

    #[test]
    fn base_urls_are_checked() {
        assert!(check_base_url("s", "endpoint", "https://x.example/b/").is_ok());
        let e = check_base_url("s", "endpoint", "ftp://x").unwrap_err();
        assert!(e.to_string().contains("use http or https"), "{e}");
        assert!(check_base_url("s", "endpoint", "not a url").is_err());
    }
}
