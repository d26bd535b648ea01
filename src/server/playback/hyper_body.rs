//! Playback bodies as hyper bodies (the HTTP/1.1 door), and the door's own full bodies in the
//! same type so one connection serves both.

use std::convert::Infallible;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

use super::PlaybackBody;
use crate::server::watched_io::HandedOver;

/// Any error a response body can end with (only playback bodies can fail).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP door's response body.
pub type HyperBody = UnsyncBoxBody<Bytes, BodyError>;

/// A body that cannot fail (the door's own answers, a whole blob), boxed.
pub fn infallible<B>(body: B) -> HyperBody
where
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    body.map_err(|never| match never {}).boxed_unsync()
}

/// A playback body; a failing stream makes hyper abort the response (the client sees it end
/// short of `Content-Length`). Each chunk's budget charge goes to the connection's
/// `handed_over` as hyper takes the chunk, and is given back once its bytes are written.
pub fn playback(body: PlaybackBody, handed_over: Arc<HandedOver>) -> HyperBody {
    match body {
        PlaybackBody::Full(bytes) => infallible(Full::new(bytes)),
        PlaybackBody::Stream(chunks) => StreamBody::new(
            chunks
                .map_ok(move |chunk| {
                    handed_over.hold(chunk.charge);
                    Frame::data(chunk.bytes)
                })
                .map_err(|cut| -> BodyError { Box::new(cut) }),
        )
        .boxed_unsync(),
    }
}
