//! `s3`: blobs as objects in an S3-protocol bucket (AWS, Wasabi, MinIO, ...).
//!
//! Keys are `[prefix][hash[0:sharding_size]/]hash`, the same layout as the `http` origin, so one
//! bucket can be written here and read through a CDN with `http`.
//!
//! - **Bounded.** Every call (including its retries and, for `get`, reading the body) runs under
//!   `timeout`; retries back off exponentially from 100 ms. An object larger than a blob may be
//!   is refused from its `Content-Length` before a byte of the body is read.
//! - **Verified.** Every `get` checks the SHA-384, so a stray or damaged object is an origin
//!   error (502), never served and never cached.
//! - **Errors that mean something, and say nothing secret.** 404 / `NoSuchKey` / `NotFound` is
//!   [`StoreError::NotFound`]; deadlines are [`StoreError::Timeout`]; anything else (connection
//!   refused, 5xx, access denied) is [`StoreError::Unavailable`] whose detail is the operation,
//!   the status, the S3 error code and, for a failure to reach S3, the connector's cause chain.
//!   Never the SDK's debug dump nor the service's own message text: those can echo request
//!   details (the access key id) or whatever an S3-compatible server chose to say.
//! - **Keys stay secret.** `aws_id`/`aws_secret` are [`SecretString`](crate::secret::SecretString)s, exposed only to build the
//!   SDK's credentials (whose `Debug` is redacted too).
//! - **Client built lazily.** Loading the AWS default chain (env, profile, instance role) is
//!   async and may probe the network, so it happens on the first call, not during the
//!   synchronous tree build.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::blob::{BlobHash, MAX_BLOB_SIZE};
use crate::config::S3Config;
use crate::secret::ExposeSecret;
use crate::store::body::CappedBuffer;
use crate::store::origin::{check_base_url, Origin};
use crate::store::remote::Remote;
use crate::store::{Blob, BuildContext, StoreError, StoreResult};

/// First retry waits this long; each further one doubles (with jitter), up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct S3Store {
    origin: Origin,
    config: S3Config,
    client: OnceCell<Client>,
    /// reflector.go's `s3_out_bytes`: blob bytes put into the bucket.
    out_bytes: prometheus::IntCounter,
}

impl S3Store {
    pub fn new(config: &S3Config, ctx: &BuildContext) -> anyhow::Result<S3Store> {
        let name = config.name();
        if let Some(endpoint) = &config.endpoint {
            check_base_url(name, "endpoint", endpoint.expose())?;
        }
        match (&config.aws_id, &config.aws_secret) {
            (Some(_), None) | (None, Some(_)) => anyhow::bail!(
                "{name}: set both aws_id and aws_secret, or neither (to use the AWS environment/profile chain)"
            ),
            _ => {}
        }
        if config.bucket.is_empty() {
            anyhow::bail!("{name}: bucket must not be empty");
        }
        Ok(S3Store {
            origin: Origin::new(name, config.timeout, &ctx.store_metrics().s3_in_bytes),
            config: config.clone(),
            client: OnceCell::new(),
            out_bytes: ctx.store_metrics().s3_out_bytes.clone(),
        })
    }

    /// The object key for a blob.
    pub fn key_of(&self, hash: &BlobHash) -> String {
        format!(
            "{}{}",
            self.config.prefix(),
            hash.sharded_path(self.config.sharding_size)
        )
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(|| self.make_client()).await
    }

    async fn make_client(&self) -> Client {
        let c = &self.config;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(c.region().to_owned()));
        if let (Some(id), Some(secret)) = (&c.aws_id, &c.aws_secret) {
            loader = loader.credentials_provider(Credentials::new(
                id.expose_secret(),
                secret.expose_secret(),
                None,
                None,
                "blobcache.yaml",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(c.connect_deadline())
                    .operation_attempt_timeout(c.timeout)
                    .operation_timeout(c.timeout)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(c.retries.saturating_add(1))
                    .with_initial_backoff(INITIAL_BACKOFF)
                    .with_max_backoff(MAX_BACKOFF),
            )
            // Only when the operation needs it: many S3-compatible services reject the newer
            // default checksum headers. Blob integrity is checked by SHA-384 anyway.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &c.endpoint {
            builder = builder.endpoint_url(endpoint.expose());
        }
        builder = builder.force_path_style(c.path_style.unwrap_or(c.endpoint.is_some()));
        Client::from_conf(builder.build())
    }

    /// Maps an SDK failure to what the rest of the tree acts on.
    fn map_err<E>(
        &self,
        op: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        if status == Some(404) || matches!(code.as_deref(), Some("NoSuchKey" | "NotFound")) {
            return StoreError::NotFound;
        }
        let timed_out = match &err {
            SdkError::TimeoutError(_) => true,
            SdkError::DispatchFailure(f) => f.is_timeout(),
            _ => false,
        };
        if timed_out {
            return self.origin.timed_out();
        }
        let detail = match (&err, status) {
            (SdkError::DispatchFailure(_), _) => format!("cannot reach S3: {}", error_chain(&err)),
            (_, Some(s)) => match code.as_deref().filter(|c| is_plain_code(c)) {
                Some(code) => format!("S3 answered {s} ({code})"),
                None => format!("S3 answered {s}"),
            },
            (SdkError::ConstructionFailure(_), None) => "request could not be built".into(),
            _ => "S3 call failed without a response".into(),
        };
        self.origin.unavailable(format!("{op}: {detail}"))
    }

    /// Reads an object body, stopping as soon as it is larger than a blob may be.
    async fn read_capped(&self, mut body: ByteStream, expected: usize) -> StoreResult<Bytes> {
        let mut buf = CappedBuffer::new(MAX_BLOB_SIZE, Some(expected));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                self.origin
                    .unavailable(format!("reading object body: {}", error_chain(&e)))
            })?;
            buf.push(&chunk)
                .map_err(|total| self.origin.too_large(total))?;
        }
        Ok(buf.freeze())
    }
}

/// An error and its causes, `: `-joined (connector errors name no URL).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An S3 error code as S3 defines them (`AccessDenied`, `SlowDown`, ...): short and alphanumeric.
/// Anything else a server put there is not repeated, even in the log.
fn is_plain_code(code: &str) -> bool {
    code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
}

/// The one remote that writes: `put` and `delete` are its own, not refusals.
impl Remote for S3Store {
    fn origin(&self) -> &Origin {
        &self.origin
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.origin
            .bounded(async {
                let result = self
                    .client()
                    .await
                    .head_object()
                    .bucket(&self.config.bucket)
                    .key(self.key_of(hash))
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(true),
                    Err(e) => match self.map_err("HeadObject", e) {
                        StoreError::NotFound => Ok(false),
                        other => Err(other),
                    },
                }
            })
            .await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        let start = Instant::now();
        self.origin
            .bounded(async {
                let out = self
                    .client()
                    .await
                    .get_object()
                    .bucket(&self.config.bucket)
                    .key(self.key_of(hash))
                    .send()
                    .await
                    .map_err(|e| self.map_err("GetObject", e))?;
                let declared = out
                    .content_length()
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
                if let Some(len) = declared {
                    self.origin.check_declared(len)?;
                }
                let data = self.read_capped(out.body, declared.unwrap_or(0)).await?;
                self.origin.verified_blob(hash, data, start, None)
            })
            .await
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        if data.len() > MAX_BLOB_SIZE {
            return Err(StoreError::Refused {
                store: Arc::from(self.origin.name()),
                message: format!("blob is {} bytes, more than {MAX_BLOB_SIZE}", data.len()),
            });
        }
        self.origin
            .bounded(async {
                let len = data.len() as i64;
                self.client()
                    .await
                    .put_object()
                    .bucket(&self.config.bucket)
                    .key(self.key_of(hash))
                    .content_type("application/octet-stream")
                    .content_length(len)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| match self.map_err("PutObject", e) {
                        // A 404 on put means the bucket is missing, not the blob.
                        StoreError::NotFound => self.origin.unavailable(format!(
                            "PutObject: bucket {:?} not found",
                            self.config.bucket
                        )),
                        other => other,
                    })?;
                self.out_bytes.inc_by(len.unsigned_abs());
                Ok(())
            })
            .await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.origin
            .bounded(async {
                match self
                    .client()
                    .await
                    .delete_object()
                    .bucket(&self.config.bucket)
                    .key(self.key_of(hash))
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => match self.map_err("DeleteObject", e) {
                        StoreError::NotFound => Ok(()),
                        other => Err(other),
                    },
                }
            })
            .await
    }
}
