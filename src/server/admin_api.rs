//! The admin API on the metrics port (off unless `admin.token` is set): act on one thing
//! without editing YAML and restarting.
//!
//! - `DELETE /admin/blob/{hash}`: drop a blob from every cache tier (never from an origin);
//! - `DELETE /admin/stream/{sd_hash}`: the same for a stream's sd blob and content blobs;
//! - `POST /admin/stream/{sd_hash}/warm`: fetch the whole stream through the root store, as a
//!   client would, and answer a JSON summary once every blob is cached;
//! - `POST|DELETE /admin/stream/{sd_hash}/pin`, `GET /admin/pins`: pinning (when a pin
//!   registry exists, see [`crate::store::pins`]).
//!
//! Every request needs `Authorization: Bearer TOKEN`; anything else is 401, whatever the
//! route (so routes cannot be probed without it), and counted in
//! `prism_admin_requests_total{result="unauthorized"}`. The token is compared in constant
//! time (SHA-256 of both sides, compared with `subtle`, so not even its length leaks), and
//! never logged. Bounds: `max_concurrent` operations at once (more get 503), a warm fetches
//! `warm_concurrency` blobs at a time, request bodies are never read, and a client that
//! disconnects cancels its operation.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use prometheus::{IntCounterVec, Registry};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::blob::BlobHash;
use crate::config::AdminConfig;
use crate::metrics::{Family, Registrar};
use crate::secret::ExposeSecret;
use crate::store::pins::Pins;
use crate::store::BlobStore;
use crate::stream::StreamDescriptor;

/// `prism_admin_requests_total{result}` values.
const RESULTS: [&str; 7] = [
    "ok",
    "unauthorized",
    "not_found",
    "bad_request",
    "method_not_allowed",
    "busy",
    "error",
];

pub struct AdminMetrics {
    pub requests: IntCounterVec,
}

impl Family for AdminMetrics {
    fn register(registry: &Registry) -> AdminMetrics {
        let requests = Registrar::new(registry, "prism").counter_vec(
            "admin_requests_total",
            "Requests to the admin API, by result",
            &["result"],
        );
        for result in RESULTS {
            requests.with_label_values(&[result]);
        }
        AdminMetrics { requests }
    }
}

/// The admin API; see the module docs.
pub struct AdminApi {
    /// SHA-256 of the token: what requests are compared against.
    token_digest: [u8; 32],
    root: Arc<dyn BlobStore>,
    pins: Option<Arc<Pins>>,
    ops: Semaphore,
    warm_concurrency: usize,
    metrics: Arc<AdminMetrics>,
}

type Answer = Response<Full<Bytes>>;

/// A refusal: status, `result` label, short body.
type Refusal = (StatusCode, &'static str, &'static str);

impl AdminApi {
    pub fn new(
        config: &AdminConfig,
        root: Arc<dyn BlobStore>,
        pins: Option<Arc<Pins>>,
        metrics: Arc<AdminMetrics>,
    ) -> AdminApi {
        AdminApi {
            token_digest: Sha256::digest(config.token.expose_secret().as_bytes()).into(),
            root,
            pins,
            ops: Semaphore::new(config.max_concurrent.max(1)),
            warm_concurrency: config.warm_concurrency.max(1),
            metrics,
        }
    }

    /// Answers one request under `/admin/`.
    pub async fn handle(&self, method: &Method, path: &str, headers: &HeaderMap) -> Answer {
        let (answer, result) = match self.authorized_answer(method, path, headers).await {
            Ok(body) => (json(StatusCode::OK, body), "ok"),
            Err((status, result, body)) => (plain(status, body), result),
        };
        self.metrics.requests.with_label_values(&[result]).inc();
        answer
    }

    async fn authorized_answer(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<serde_json::Value, Refusal> {
        if !self.authorized(headers) {
            return Err((StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized\n"));
        }
        let _op = self.ops.try_acquire().map_err(|_| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "busy; retry later\n",
            )
        })?;
        let segments: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::DELETE, ["blob", hash]) => self.delete_blob(parse(hash)?).await,
            (&Method::DELETE, ["stream", sd]) => self.delete_stream(parse(sd)?).await,
            (&Method::POST, ["stream", sd, "warm"]) => self.warm(parse(sd)?).await,
            (&Method::POST, ["stream", sd, "pin"]) => self.pin(parse(sd)?).await,
            (&Method::DELETE, ["stream", sd, "pin"]) => self.unpin(parse(sd)?),
            (&Method::GET, ["pins"]) => self.list_pins(),
            (_, ["blob", _] | ["stream", _] | ["stream", _, "warm" | "pin"] | ["pins"]) => Err((
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed\n",
            )),
            _ => Err((StatusCode::NOT_FOUND, "not_found", "no such admin route\n")),
        }
    }

    /// `Authorization: Bearer TOKEN`, compared in constant time.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given).into();
        digest.ct_eq(&self.token_digest).into()
    }

    async fn delete_blob(&self, hash: BlobHash) -> Result<serde_json::Value, Refusal> {
        self.root.delete_cached(&hash).await.map_err(|e| {
            tracing::warn!(%hash, error = %e, "admin: deleting a blob from the caches failed");
            internal()
        })?;
        tracing::info!(%hash, "admin: blob deleted from every cache tier");
        Ok(serde_json::json!({"deleted": [hash.to_string()]}))
    }

    async fn delete_stream(&self, sd: BlobHash) -> Result<serde_json::Value, Refusal> {
        let descriptor = self.descriptor(&sd).await?;
        if let Some(pins) = &self.pins {
            pins.unpin(&sd);
        }
        let mut deleted = Vec::new();
        let hashes = std::iter::once(sd).chain(descriptor.content_blobs().map(|(_, h, _)| h));
        for hash in hashes {
            self.root.delete_cached(&hash).await.map_err(|e| {
                tracing::warn!(%hash, error = %e, "admin: deleting a blob from the caches failed");
                internal()
            })?;
            deleted.push(hash.to_string());
        }
        tracing::info!(%sd, blobs = deleted.len(), "admin: stream deleted from every cache tier");
        Ok(serde_json::json!({"sd_hash": sd.to_string(), "deleted_blobs": deleted.len()}))
    }

    /// Fetches the sd blob and every content blob through the root store, then waits until
    /// every fill is written.
    async fn warm(&self, sd: BlobHash) -> Result<serde_json::Value, Refusal> {
        let started = Instant::now();
        let descriptor = self.descriptor(&sd).await?;
        let hashes: Vec<BlobHash> = descriptor.content_blobs().map(|(_, h, _)| h).collect();
        let root = &self.root;
        // Owned values in the futures: borrowed ones make the handler's future not `Send` for
        // every lifetime (hyper needs that).
        let results: Vec<Result<usize, ()>> = futures_util::stream::iter(hashes.clone())
            .map(|hash| {
                let root = Arc::clone(root);
                async move { fetch_one(root, hash).await }
            })
            .buffer_unordered(self.warm_concurrency)
            .collect()
            .await;

        root.wait_for_fill(&sd).await;
        let fetched = results.iter().filter(|r| r.is_ok()).count();
        let bytes: usize = results.iter().filter_map(|r| r.as_ref().ok()).sum();
        tracing::info!(%sd, fetched, failed = hashes.len() - fetched, "admin: stream warmed");
        Ok(serde_json::json!({
            "sd_hash": sd.to_string(),
            "content_blobs": hashes.len(),
            "fetched": fetched,
            "failed": hashes.len() - fetched,
            "bytes": bytes,
            "seconds": started.elapsed().as_secs_f64(),
        }))
    }

    /// Pins the stream, then warms it (pinning keeps what the tier holds).
    async fn pin(&self, sd: BlobHash) -> Result<serde_json::Value, Refusal> {
        let pins = self.pins.as_ref().ok_or(no_pins())?;
        let descriptor = self.descriptor(&sd).await?;
        let (blobs, bytes) = pinned_parts(&descriptor);
        let pinned = pins.pin(&sd, &blobs, bytes, "admin", None);
        let mut summary = self.warm(sd).await?;
        summary["pinned"] = pinned.into();
        Ok(summary)
    }

    fn unpin(&self, sd: BlobHash) -> Result<serde_json::Value, Refusal> {
        let pins = self.pins.as_ref().ok_or(no_pins())?;
        let was = pins.unpin(&sd);
        Ok(serde_json::json!({"sd_hash": sd.to_string(), "unpinned": was}))
    }

    fn list_pins(&self) -> Result<serde_json::Value, Refusal> {
        let pins = self.pins.as_ref().ok_or(no_pins())?;
        Ok(pins.to_json())
    }

    /// The stream's descriptor, read through the root store.
    async fn descriptor(&self, sd: &BlobHash) -> Result<StreamDescriptor, Refusal> {
        let blob = self.root.get(sd).await.map_err(|e| {
            if e.is_not_found() {
                (StatusCode::NOT_FOUND, "not_found", "stream not found\n")
            } else {
                tracing::warn!(%sd, error = %e, "admin: fetching an sd blob failed");
                (
                    StatusCode::BAD_GATEWAY,
                    "error",
                    "fetching the sd blob failed\n",
                )
            }
        })?;
        StreamDescriptor::parse(&blob.data)
            .map_err(|_| (StatusCode::BAD_REQUEST, "bad_request", "not an sd blob\n"))
    }
}

/// Fetches one blob through the root store and waits until it is cached; its size.
async fn fetch_one(root: Arc<dyn BlobStore>, hash: BlobHash) -> Result<usize, ()> {
    let got = root.get(&hash).await;
    root.wait_for_fill(&hash).await;
    got.map(|blob| blob.data.len()).map_err(|e| {
        tracing::info!(%hash, error = %e, "admin warm: a content blob failed");
    })
}

/// A stream's content blobs and its size by the descriptor (content lengths plus the sd blob).
pub fn pinned_parts(descriptor: &StreamDescriptor) -> (Vec<BlobHash>, u64) {
    let blobs = descriptor.content_blobs().map(|(_, h, _)| h).collect();
    let bytes = descriptor
        .content_blobs()
        .map(|(_, _, len)| len)
        .sum::<u64>()
        + descriptor.to_bytes().len() as u64;
    (blobs, bytes)
}

fn parse(hash: &str) -> Result<BlobHash, Refusal> {
    BlobHash::parse(hash).map_err(|_| (StatusCode::BAD_REQUEST, "bad_request", "bad hash\n"))
}

fn internal() -> Refusal {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "error",
        "failed; see the log\n",
    )
}

fn no_pins() -> Refusal {
    (
        StatusCode::NOT_FOUND,
        "not_found",
        "pinning needs a disk tier\n",
    )
}

fn json(status: StatusCode, body: serde_json::Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn plain(status: StatusCode, body: &'static str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}
