//! One HTTP origin for `http` and `upstream`: GET a URL, get a blob.
//!
//! The two stores differ only in where a blob is (object storage's
//! `endpoint/[shard/]hash` against a cache's `/blob?hash=H&edge_token=T`), in what a status
//! means (a bucket's 403 is "not here", a cache's 403 is a rejected token), and in whether the
//! remote's `Via` is a blob trace to extend. That is their [`Addressing`]; everything else is
//! this one [`HttpOrigin`]. The deadline, the verdict on the bytes and the read-only contract are
//! every remote's ([`origin`](super::origin), [`remote`](super::remote)); what is particular to
//! HTTP lives here:
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
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::VIA;
use reqwest::{Client, Method, Response, StatusCode, Url};

use crate::blob::{BlobHash, MAX_BLOB_SIZE};
use crate::store::body::CappedBuffer;
use crate::store::origin::Origin;
use crate::store::remote::Remote;
use crate::store::{Blob, StoreError, StoreResult};

/// Idle keep-alive connections kept per remote host: enough for a busy cache's parallel fills.
const POOL_IDLE_PER_HOST: usize = 64;

/// What a store makes of a status the remote answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMeaning {
    /// The body is the blob (GET) / the blob exists (HEAD).
    Found,
    /// The remote says it does not have the blob.
    Missing,
    /// Anything else: the remote is unwell or misconfigured.
    Failed,
}

/// What makes one kind of HTTP origin itself (see the module docs).
pub trait Addressing: Send + Sync + 'static {
    /// Whether the remote's `Via` header is a blob trace (another cache's, extended with our
    /// hop) rather than whatever a CDN or proxy put there (ignored).
    const VIA_IS_A_TRACE: bool;

    /// The URL `hash` is asked at. It may carry a secret (a token, a signature): it goes to
    /// reqwest and nowhere else.
    fn url_of(&self, hash: &BlobHash) -> Url;

    /// What `status` means, for a GET and a HEAD alike.
    fn meaning(status: StatusCode) -> StatusMeaning;
}

/// A read-only HTTP(S) origin: one pooled client, the store's [`Origin`], and where to ask.
pub struct HttpOrigin<A> {
    origin: Origin,
    client: Client,
    addressing: A,
}

impl<A: Addressing> HttpOrigin<A> {
    /// An origin with its own connection pool. Fails only if the TLS backend cannot start.
    pub fn new(origin: Origin, connect: Duration, addressing: A) -> anyhow::Result<HttpOrigin<A>> {
        let client = Client::builder()
            .connect_timeout(connect)
            .timeout(origin.timeout())
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .user_agent(concat!("prism-lite/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("{}: cannot create HTTP client: {e}", origin.name()))?;
        Ok(HttpOrigin {
            origin,
            client,
            addressing,
        })
    }

    /// Sends `method` for `hash` and reads the status: the response when it is `Found`,
    /// `NotFound` when `Missing`, the status as an error when `Failed`.
    async fn ask(&self, method: Method, hash: &BlobHash) -> StoreResult<Response> {
        let response = self
            .client
            .request(method, self.addressing.url_of(hash))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        match A::meaning(status) {
            StatusMeaning::Found => Ok(response),
            StatusMeaning::Missing => Err(StoreError::NotFound),
            StatusMeaning::Failed => Err(self.origin.bad_status(status)),
        }
    }

    /// Reads the body, stopping as soon as it is larger than a blob may be.
    async fn read_capped(&self, mut response: Response) -> StoreResult<Bytes> {
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

impl<A: Addressing> Remote for HttpOrigin<A> {
    fn origin(&self) -> &Origin {
        &self.origin
    }

    /// HEAD: `true` when the status means found, `false` when missing.
    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.origin
            .bounded(async {
                match self.ask(Method::HEAD, hash).await {
                    Ok(_) => Ok(true),
                    Err(StoreError::NotFound) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        let (data, via) = self
            .origin
            .bounded(async {
                let response = self.ask(Method::GET, hash).await?;
                // A cheap clone (the header's bytes are shared), kept past the body read.
                let via = A::VIA_IS_A_TRACE
                    .then(|| response.headers().get(VIA).cloned())
                    .flatten();
                if let Some(len) = response.content_length() {
                    self.origin
                        .check_declared(usize::try_from(len).unwrap_or(usize::MAX))?;
                }
                Ok((self.read_capped(response).await?, via))
            })
            .await?;
        let via = via.as_ref().and_then(|v| v.to_str().ok());
        self.origin.verified_blob(hash, data, start, via)
    }
}
