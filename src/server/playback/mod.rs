//! Stream playback: the video itself, decrypted from the cached blobs, with HTTP Range, so a
//! browser's `<video>` can play and seek without lbrynet or a separate player server.
//!
//! Routes (on the HTTP and HTTP/3 doors, GET and HEAD):
//! - `/stream/{sd_hash}[?download=1][&edge_token=T]`
//! - every URL shape of Odysee's player-server (`/v6/streams/{claim_id}/{sd6}.mp4` and the
//!   older ones; see [`player_path`]), whose claim is resolved to an sd hash ([`resolve`]).
//!
//! A request fetches the sd blob through the store tree (a cold stream fills from the origin,
//! verified like any blob), parses it, works out the plaintext layout ([`layout`]: the final
//! blob is fetched once per stream to learn its padding), then streams exactly the requested
//! bytes ([`body`]), fetching only the blobs the range touches. The same protections as `/blob`
//! apply: the blocklist and the protected list are checked for the sd blob and every content
//! blob, and every blob fetch holds one of the door's request slots (so playback shares the
//! door's concurrency limit; a slow viewer holds a connection, not a slot).
//!
//! Statuses: 200/206 (with `Content-Length`, `Accept-Ranges`, `ETag` = the sd hash, a
//! year-long `Cache-Control`, `immutable` where the URL names the sd hash, and `Last-Modified`
//! = the claim's timestamp on claim routes), 304 for a matching `If-None-Match` (or, without
//! one, `If-Modified-Since`), 416 with `Content-Range: bytes */SIZE`, 400 malformed hash or
//! path, 402 paid route or claim, 403 protected, 404 no such blob or claim, 422 a blob that is
//! not a stream descriptor, 502/504 origin or LBRY API failures, 503 at the door's request
//! limit. A content blob that fails mid-way cuts the response.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;

use crate::blob::BlobHash;
use crate::metrics::DIRECTION_DOWNLOAD;
use crate::protocol::http::EDGE_TOKEN_PARAM;
use crate::server::door::Door;
use crate::server::serve::{status_for, BlobService, Refusal};
use crate::server::web::etag_matches;
use crate::store::StoreError;

pub mod body;

pub mod hyper_body;
pub mod layout;
pub mod metrics;
pub mod plans;
pub mod player_path;
pub mod range;
pub mod resolve;

pub use crate::config::StreamConfig;

pub use body::Chunk;
use body::{BodyContext, StreamCut};
use plans::{PlanError, Plans};
use player_path::PathError;
use range::{ByteRange, RangeRequest};
use resolve::{ResolveError, Resolver};

/// `/stream/{sd_hash}` is immutable content named by its hash: cache it for a year.
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// A claim route: player-server's year (a claim update changes the ETag, the sd hash).
const CACHE_CLAIM: &str = "public, max-age=31536000";
const STREAM_PREFIX: &str = "/stream/";

/// The stream a playback path names, with what its cache headers say.
struct Target {
    sd_hash: BlobHash,
    /// `ETag`: the sd hash, quoted.
    etag: String,
    /// `Last-Modified`: the claim's timestamp, on claim routes.
    modified: Option<std::time::SystemTime>,
    cache_control: &'static str,
}

impl Target {
    /// `/stream/{sd_hash}`: named by its hash, so immutable.
    fn by_hash(sd_hash: BlobHash) -> Target {
        Target {
            etag: format!("\"{sd_hash}\""),
            sd_hash,
            modified: None,
            cache_control: CACHE_IMMUTABLE,
        }
    }

    /// A claim route's stream: the claim may later point elsewhere, so not `immutable`.
    fn of_claim(stream: resolve::ResolvedStream) -> Target {
        Target {
            modified: stream.modified,
            cache_control: CACHE_CLAIM,
            ..Target::by_hash(stream.sd_hash)
        }
    }

    /// Whether the client's copy is current: `If-None-Match` names this stream, or (without
    /// one, RFC 9110 13.1.3) `If-Modified-Since` is not before the claim's timestamp.
    fn unchanged_for(&self, headers: &HeaderMap) -> bool {
        if let Some(tags) = header_str(headers, header::IF_NONE_MATCH) {
            return etag_matches(tags, &self.etag);
        }
        let since = header_str(headers, header::IF_MODIFIED_SINCE)
            .and_then(|v| httpdate::parse_http_date(v).ok());
        matches!((since, self.modified), (Some(since), Some(modified)) if since >= modified)
    }

    fn set_cache_headers(&self, h: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        if let Some(modified) = self.modified {
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
                h.insert(header::LAST_MODIFIED, v);
            }
        }
    }
}

/// A playback response body: short answers in full, streams chunk by chunk.
pub enum PlaybackBody {
    Full(Bytes),
    Stream(BoxStream<'static, Result<Chunk, StreamCut>>),
}

/// The playback routes, shared by the HTTP and HTTP/3 doors.
pub struct Playback {
    config: StreamConfig,
    /// The serving core: every blob of a stream is checked and fetched through it, under the
    /// slots of the door the request came through.
    service: Arc<BlobService>,
    stream_metrics: metrics::PlaybackMetrics,
    plans: Plans,
    resolver: Option<Resolver>,
    readahead_slots: Arc<Semaphore>,
}

impl Playback {
    /// Sets up playback over the serving core; registers the `prism_stream_*` metrics.
    pub fn new(config: StreamConfig, service: Arc<BlobService>) -> anyhow::Result<Arc<Playback>> {
        let stream_metrics = metrics::PlaybackMetrics::register(&service.metrics().registry)?;
        let resolver = config
            .api
            .as_deref()
            .map(|api| Resolver::new(api, &config, stream_metrics.clone()))
            .transpose()?;
        Ok(Arc::new(Playback {
            plans: Plans::new(Arc::clone(service.store()), config.descriptor_cache_blobs),
            readahead_slots: Arc::new(Semaphore::new(config.max_readahead)),
            resolver,
            stream_metrics,
            config,
            service,
        }))
    }

    /// Whether `path` is a playback route (the door then hands the request to [`Self::serve`]).
    pub fn claims(&self, path: &str) -> bool {
        self.config.enabled
            && (path.starts_with(STREAM_PREFIX) || player_path::is_player_path(path))
    }

    /// Answers one playback request from `client`, which came through `door` (its token
    /// unlocks protected streams, its request slots bound the blob fetches).
    pub async fn serve<B>(
        &self,
        req: &Request<B>,
        door: &Arc<Door>,
        client: IpAddr,
    ) -> Response<PlaybackBody> {
        let (uri, headers) = (req.uri(), req.headers());
        let is_head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "only GET and HEAD are allowed",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return r;
            }
        };
        let target = match self.target_of(uri.path()).await {
            Ok(target) => target,
            Err(response) => return response,
        };
        let sd_hash = target.sd_hash;
        let query = Query::parse(uri.query());
        let presented = query.edge_token.as_deref();
        if let Err(refusal) = self.service.check_listed(door, &sd_hash, presented) {
            return refused(door, refusal);
        }
        if target.unchanged_for(headers) {
            let mut r = empty(StatusCode::NOT_MODIFIED);
            target.set_cache_headers(r.headers_mut());
            return r;
        }
        let plan = {
            let _slot = match self.service.slot(door).await {
                Ok(slot) => slot,
                Err(refusal) => return refused(door, refusal),
            };
            match self.plans.get(&sd_hash).await {
                Ok(plan) => plan,
                Err(e) => return self.plan_error(&sd_hash, e),
            }
        };
        for planned in &plan.blobs {
            if let Err(refusal) = self.service.check_listed(door, &planned.hash, presented) {
                return refused(door, refusal);
            }
        }

        let Some((status, range)) = chosen_range(headers, &target.etag, plan.size) else {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", plan.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        };
        let download = query.download.then_some(&sd_hash);
        let mut response = stream_head(&plan, &target, status, range, download);
        let (Some(range), false) = (range, is_head) else {
            return response;
        };
        self.stream_metrics.started.inc();
        if status == StatusCode::PARTIAL_CONTENT {
            self.stream_metrics.range_requests.inc();
        }
        let ctx = BodyContext {
            service: Arc::clone(&self.service),
            door: Arc::clone(door),
            metrics: self.stream_metrics.clone(),
            readahead_slots: Arc::clone(&self.readahead_slots),
            readahead: self.config.readahead,
            client,
        };
        *response.body_mut() = PlaybackBody::Stream(body::body(ctx, plan, range));
        response
    }

    /// The stream a playback path names (resolving a claim for the player-server routes), or
    /// the error response.
    async fn target_of(&self, path: &str) -> Result<Target, Response<PlaybackBody>> {
        if let Some(hex) = path.strip_prefix(STREAM_PREFIX) {
            return match BlobHash::parse(hex) {
                Ok(hash) => Ok(Target::by_hash(hash)),
                Err(e) => {
                    self.service
                        .metrics()
                        .error(DIRECTION_DOWNLOAD, "invalid_blob_hash");
                    let message = format!("bad sd hash in path: {e}");
                    Err(text(StatusCode::BAD_REQUEST, &message))
                }
            };
        }
        let route = player_path::parse(path).map_err(|e| match e {
            PathError::Malformed(m) => text(StatusCode::BAD_REQUEST, m),
            PathError::NoSuchStream(m) => text(StatusCode::NOT_FOUND, m),
            PathError::Paid => paid(),
        })?;
        let Some(resolver) = &self.resolver else {
            return Err(text(
                StatusCode::NOT_FOUND,
                "claim resolution is not configured (stream.api)",
            ));
        };
        match resolver.stream(&route).await {
            Ok(stream) => Ok(Target::of_claim(stream)),
            Err(ResolveError::NotFound(m)) => Err(text(StatusCode::NOT_FOUND, &m)),
            Err(ResolveError::Paid) => Err(paid()),
            Err(ResolveError::Api(m)) => Err(text(StatusCode::BAD_GATEWAY, &m)),
        }
    }

    fn plan_error(&self, sd_hash: &BlobHash, err: PlanError) -> Response<PlaybackBody> {
        let (status, message) = match &err {
            PlanError::Store(StoreError::NotFound) => {
                return text(StatusCode::NOT_FOUND, "stream not found")
            }
            PlanError::Store(e) => {
                self.service.metrics().error(DIRECTION_DOWNLOAD, e.kind());
                (status_for(e), "the sd blob could not be fetched")
            }
            PlanError::NotADescriptor(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "blob is not a stream descriptor",
            ),
            PlanError::FinalBlob(StoreError::NotFound) => (
                StatusCode::NOT_FOUND,
                "the stream's last content blob is not available",
            ),
            PlanError::FinalBlob(e) => {
                self.service.metrics().error(DIRECTION_DOWNLOAD, e.kind());
                (
                    status_for(e),
                    "the stream's last content blob could not be fetched",
                )
            }
            PlanError::FinalBlobFault(_) => (
                StatusCode::BAD_GATEWAY,
                "the stream's last content blob is corrupt",
            ),
            PlanError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        tracing::warn!(%sd_hash, error = %err, status = status.as_u16(), "stream request failed");
        text(status, message)
    }
}

/// The query parameters of the playback routes.
#[derive(Debug, Default)]
struct Query {
    edge_token: Option<String>,
    download: bool,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut q = Query::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                EDGE_TOKEN_PARAM if q.edge_token.is_none() => q.edge_token = Some(v.into_owned()),
                "download" => q.download = matches!(&*v, "1" | "true" | "t" | "yes"),
                _ => {}
            }
        }
        q
    }
}

/// A file name safe inside a quoted `Content-Disposition` parameter: ASCII letters, digits and
/// `.-_ ` only, at most 100 characters; the sd hash prefix when nothing usable is left.
pub fn attachment_name(suggested: Option<&str>, sd_hash: &BlobHash) -> String {
    let cleaned: String = suggested
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| c == ' ' || c == '.');
    if cleaned.chars().any(|c| c.is_ascii_alphanumeric()) {
        cleaned.to_owned()
    } else {
        format!("{}.bin", &sd_hash.to_hex()[..16])
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A paid route or claim: refused plainly (this cache cannot check a purchase).
fn paid() -> Response<PlaybackBody> {
    text(
        StatusCode::PAYMENT_REQUIRED,
        "paid streams are not served here",
    )
}

/// The status and byte range to send: the `Range` asked for (while `If-Range`, if any, names
/// this stream), else the whole stream (no range for an empty one); `None` when the range is
/// outside it (416).
pub fn chosen_range(
    headers: &HeaderMap,
    etag: &str,
    size: u64,
) -> Option<(StatusCode, Option<ByteRange>)> {
    let range_header = header_str(headers, header::RANGE).filter(|_| {
        // If-Range: honour Range only while the client's copy is this one.
        header_str(headers, header::IF_RANGE).is_none_or(|v| v.trim() == etag)
    });
    let wanted = match range_header {
        Some(h) => range::parse(h, size),
        None => RangeRequest::Whole,
    };
    match wanted {
        RangeRequest::Unsatisfiable => None,
        RangeRequest::Partial(range) => Some((StatusCode::PARTIAL_CONTENT, Some(range))),
        RangeRequest::Whole => Some((
            StatusCode::OK,
            (size > 0).then(|| ByteRange {
                first: 0,
                last: size - 1,
            }),
        )),
    }
}

/// The head of a stream answer (its body is set by the caller): cache headers, type, length,
/// the range sent, and an attachment name when `download` names the stream's sd hash.
fn stream_head(
    plan: &layout::StreamPlan,
    target: &Target,
    status: StatusCode,
    range: Option<ByteRange>,
    download: Option<&BlobHash>,
) -> Response<PlaybackBody> {
    let mut response = Response::new(PlaybackBody::Full(Bytes::new()));
    *response.status_mut() = status;
    let h = response.headers_mut();
    target.set_cache_headers(h);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let content_type = plan
        .file_name
        .as_deref()
        .and_then(|name| mime_guess::from_path(name).first_raw())
        .unwrap_or("application/octet-stream");
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(sd_hash) = download {
        let name = attachment_name(plan.file_name.as_deref(), sd_hash);
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    let length = range.map_or(0, |r| r.byte_count());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let (StatusCode::PARTIAL_CONTENT, Some(r)) = (status, range) {
        let value = format!("bytes {}-{}/{}", r.first, r.last, plan.size);
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// A refusal from the serving core on the playback routes: a blocked stream is "not found"
/// (its existence is not confirmed), a busy door adds `Retry-After`.
fn refused(door: &Door, refusal: Refusal) -> Response<PlaybackBody> {
    if matches!(refusal, Refusal::Blocked) {
        return text(StatusCode::NOT_FOUND, "stream not found");
    }
    let mut r = text(refusal.status(), &refusal.message(door.kind()));
    if refusal.is_busy() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn text(status: StatusCode, message: &str) -> Response<PlaybackBody> {
    let mut r = Response::new(PlaybackBody::Full(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn empty(status: StatusCode) -> Response<PlaybackBody> {
    let mut r = Response::new(PlaybackBody::Full(Bytes::new()));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_header_safe() {
        let h = BlobHash::of(b"x");
        assert_eq!(attachment_name(Some("clip.mp4"), &h), "clip.mp4");
        assert_eq!(
            attachment_name(Some("a\"b\r\nc/../é.mp4"), &h),
            "a_b__c_..__.mp4"
        );
        let fallback = format!("{}.bin", &h.to_hex()[..16]);
        assert_eq!(attachment_name(Some("\"\"\""), &h), fallback);
        assert_eq!(attachment_name(None, &h), fallback);
        assert_eq!(attachment_name(Some(&"a".repeat(500)), &h).len(), 100);
    }
}
