//! The HTTP/3 server's QUIC transport: h3's `quic` traits over quinn, sending response bodies
//! without copying them.
//!
//! Why this exists beside h3-quinn: h3 hands its transport each DATA frame as an opaque
//! `WriteBuf` (frame header + payload, readable only as byte slices), and h3-quinn copies those
//! slices into quinn's send buffer -- a second copy of every 2 MiB blob, held until the client
//! acknowledges it. quinn itself can take a `Bytes` without copying (`write_chunks`). Here the
//! server *lends* a stream the blob it is about to send ([`Lent::lend`]); when a slice h3 hands
//! over lies inside the lent blob it goes to quinn as a `Bytes` view of it (no copy), anything
//! else (frame headers, small bodies) is copied as before. Everything else -- control and QPACK
//! streams, errors -- is h3-quinn's own code.
//!
//! Memory: quinn's views keep the lent blob alive until the client has acknowledged them (or
//! the stream is reset), so the lender's `keep` (the server's in-flight budget charge) is held
//! that long too, not just until the bytes were handed to quinn: a send stream that ends with
//! unacknowledged lent data waits (bounded by `ack_wait`, then resets the stream) before
//! letting go of it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use tokio_util::sync::ReusableBoxFuture;

/// Whatever the lender wants held until quinn no longer needs the lent bytes.
pub type Keep = Box<dyn Send + Sync>;

/// Slices shorter than this are copied: a view costs a reference count and a quinn chunk.
const MIN_VIEW: usize = 1024;

/// A body lent to one send stream: the bytes, what to hold while quinn has views of them, and
/// how long a finished stream may wait for their acknowledgement (given per loan, so a reloaded
/// `write_stall_timeout` applies to long-lived connections too).
struct Loan {
    body: Bytes,
    /// Only held: dropped with the loan.
    _keep: Keep,
    ack_wait: Duration,
}

/// Bodies lent to one connection's send streams, by stream id.
#[derive(Clone, Default)]
pub struct Lent(Arc<Mutex<HashMap<u64, Loan>>>);

/// Returned by [`Lent::lend`]: takes the loan back on drop if the stream never claimed it.
pub struct LendGuard {
    lent: Lent,
    id: u64,
}

impl Lent {
    /// Lends `body` to send stream `id`; `keep` is dropped once quinn holds no view of it, and
    /// a finished stream waits at most `ack_wait` for the client's acknowledgement before it is
    /// reset.
    pub fn lend(&self, id: StreamId, body: Bytes, keep: Keep, ack_wait: Duration) -> LendGuard {
        let id = id.into_inner();
        self.lock().insert(
            id,
            Loan {
                body,
                _keep: keep,
                ack_wait,
            },
        );
        LendGuard {
            lent: self.clone(),
            id,
        }
    }

    fn take(&self, id: u64) -> Option<Loan> {
        self.lock().remove(&id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Loan>> {
        // A panic while holding this lock leaves a plain map behind: still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for LendGuard {
    fn drop(&mut self) {
        self.lent.take(self.id);
    }
}

/// `part` as a view of `whole` when it lies inside it (no copy).
fn view_of(whole: &Bytes, part: &[u8]) -> Option<Bytes> {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let p = part.as_ptr() as usize;
    (part.len() >= MIN_VIEW && p >= start && p + part.len() <= end).then(|| whole.slice_ref(part))
}

/// The accept of the next request stream: one allocation per connection, reused per stream.
type AcceptBi = ReusableBoxFuture<
    'static,
    Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>,
>;

/// A server-side HTTP/3 connection over quinn (see the module docs).
pub struct Connection {
    conn: quinn::Connection,
    /// Unidirectional streams (control, QPACK) and closing: h3-quinn's.
    uni: h3_quinn::Connection,
    accepting: AcceptBi,
    lent: Lent,
}

impl Connection {
    /// `lent` is where the server lends bodies (see [`Lent::lend`]).
    pub fn new(conn: quinn::Connection, lent: Lent) -> Connection {
        Connection {
            uni: h3_quinn::Connection::new(conn.clone()),
            accepting: ReusableBoxFuture::new(accept_bi(conn.clone())),
            conn,
            lent,
        }
    }
}

async fn accept_bi(
    conn: quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
    conn.accept_bi().await
}

fn connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ConnectionErrorIncoming::ApplicationClose {
                error_code: close.error_code.into_inner(),
            }
        }
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        other => ConnectionErrorIncoming::Undefined(Arc::new(other)),
    }
}

impl quic::Connection<Bytes> for Connection {
    type RecvStream = h3_quinn::RecvStream;
    type OpenStreams = OpenStreams;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::RecvStream, ConnectionErrorIncoming>> {
        quic::Connection::<Bytes>::poll_accept_recv(&mut self.uni, cx)
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, ConnectionErrorIncoming>> {
        let accepted = ready!(self.accepting.poll(cx));
        self.accepting.set(accept_bi(self.conn.clone()));
        let (send, recv) = accepted.map_err(connection_error)?;
        Poll::Ready(Ok(BidiStream {
            send: SendStream::new(send, self.lent.clone()),
            recv: RecvStream::new(recv),
        }))
    }

    fn opener(&self) -> Self::OpenStreams {
        OpenStreams(quic::Connection::<Bytes>::opener(&self.uni))
    }
}

/// The server opens only unidirectional streams (control, QPACK: h3-quinn's); HTTP/3 servers
/// never open request streams, so `poll_open_bidi` refuses.
fn no_bidi() -> StreamErrorIncoming {
    StreamErrorIncoming::Unknown("an HTTP/3 server does not open request streams".into())
}

impl quic::OpenStreams<Bytes> for Connection {
    type BidiStream = BidiStream;
    type SendStream = h3_quinn::SendStream<Bytes>;

    fn poll_open_bidi(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<Result<BidiStream, StreamErrorIncoming>> {
        Poll::Ready(Err(no_bidi()))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<Bytes>::poll_open_send(&mut self.uni, cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        quic::OpenStreams::<Bytes>::close(&mut self.uni, code, reason)
    }
}

/// The connection's stream opener (see `Connection`'s `OpenStreams`).
pub struct OpenStreams(h3_quinn::OpenStreams);

impl quic::OpenStreams<Bytes> for OpenStreams {
    type BidiStream = BidiStream;
    type SendStream = h3_quinn::SendStream<Bytes>;

    fn poll_open_bidi(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<Result<BidiStream, StreamErrorIncoming>> {
        Poll::Ready(Err(no_bidi()))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<Bytes>::poll_open_send(&mut self.0, cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        quic::OpenStreams::<Bytes>::close(&mut self.0, code, reason)
    }
}

/// A request stream: our send half, a plain receive half.
pub struct BidiStream {
    send: SendStream,
    recv: RecvStream,
}

impl quic::BidiStream<Bytes> for BidiStream {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream, RecvStream) {
        (self.send, self.recv)
    }
}

impl quic::RecvStream for BidiStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code)
    }

    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

impl quic::SendStream<Bytes> for BidiStream {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }

    fn send_data<T: Into<WriteBuf<Bytes>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }

    fn reset(&mut self, reset_code: u64) {
        self.send.reset(reset_code)
    }

    fn send_id(&self) -> StreamId {
        self.send.send_id()
    }
}

/// The send half of a request stream (see the module docs).
pub struct SendStream {
    /// `None` only once dropped (moved into the acknowledgement wait).
    stream: Option<quinn::SendStream>,
    /// What h3 handed over and quinn has not taken yet.
    pending: Vec<Bytes>,
    lent: Lent,
    /// The body lent to this stream, once claimed from `lent`.
    body: Option<Loan>,
    /// Whether `lent` was asked for this stream's body (on the first write).
    claimed: bool,
}

impl SendStream {
    fn new(stream: quinn::SendStream, lent: Lent) -> SendStream {
        SendStream {
            stream: Some(stream),
            pending: Vec::new(),
            lent,
            body: None,
            claimed: false,
        }
    }

    fn stream(&mut self) -> &mut quinn::SendStream {
        self.stream.as_mut().expect("present until dropped")
    }
}

fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
    match e {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::WriteError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        },
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

impl quic::SendStream<Bytes> for SendStream {
    fn send_data<T: Into<WriteBuf<Bytes>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        if !self.pending.is_empty() {
            // h3 waits for poll_ready between writes; anything else is a bug in the stack.
            return Err(StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: ConnectionErrorIncoming::InternalError(
                    "send_data called while send stream is not ready".into(),
                ),
            });
        }
        // A body is lent before its response head is sent, so the first write (the HEADERS
        // frame) is the one chance to claim it; later writes do not take the lock again.
        if !self.claimed {
            self.claimed = true;
            let id = u64::from(self.stream().id());
            self.body = self.lent.take(id);
        }
        let mut buf: WriteBuf<Bytes> = data.into();
        while buf.has_remaining() {
            let part = buf.chunk();
            let bytes = self
                .body
                .as_ref()
                .and_then(|loan| view_of(&loan.body, part))
                .unwrap_or_else(|| Bytes::copy_from_slice(part));
            buf.advance(bytes.len());
            self.pending.push(bytes);
        }
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        while !self.pending.is_empty() {
            let stream = self.stream.as_mut().expect("present until dropped");
            // Cancel-safe: when it does not resolve, nothing was written (and the waker is
            // registered with quinn).
            let write = stream.write_chunks(&mut self.pending);
            let written = ready!(std::pin::pin!(write).poll(cx)).map_err(write_error)?;
            self.pending.drain(..written.chunks);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_finish(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        Poll::Ready(
            self.stream()
                .finish()
                .map_err(|e| StreamErrorIncoming::Unknown(Box::new(e))),
        )
    }

    fn reset(&mut self, reset_code: u64) {
        let code = quinn::VarInt::from_u64(reset_code).unwrap_or(quinn::VarInt::MAX);
        let _ = self.stream().reset(code);
        // Reset discards what quinn buffered, and what quinn had not taken yet goes too: the
        // lent body is no longer referenced, so its charge can go.
        self.pending.clear();
        self.body = None;
    }

    fn send_id(&self) -> StreamId {
        let id = u64::from(self.stream.as_ref().expect("present until dropped").id());
        StreamId::try_from(id).expect("a quinn stream id is a valid HTTP/3 stream id")
    }
}

impl Drop for SendStream {
    /// With a lent body, waits (bounded by the loan's `ack_wait`) until the client has
    /// acknowledged everything or the stream ended otherwise, then lets go of the body and its
    /// `keep`; past the bound the stream is reset, which discards quinn's views.
    fn drop(&mut self) {
        let (Some(loan), Some(mut stream)) = (self.body.take(), self.stream.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: nothing to wait on; quinn drops its views with the connection
        };
        runtime.spawn(async move {
            if tokio::time::timeout(loan.ack_wait, stream.stopped())
                .await
                .is_err()
            {
                let _ = stream.reset(quinn::VarInt::from_u32(0x10c)); // H3_REQUEST_CANCELLED
            }
            drop(loan);
        });
    }
}

/// The receive half of a request stream (the request head; reads as h3-quinn does).
pub struct RecvStream {
    stream: Option<quinn::RecvStream>,
    reading: ReusableBoxFuture<
        'static,
        (
            quinn::RecvStream,
            Result<Option<quinn::Chunk>, quinn::ReadError>,
        ),
    >,
}

impl RecvStream {
    fn new(stream: quinn::RecvStream) -> RecvStream {
        RecvStream {
            stream: Some(stream),
            reading: ReusableBoxFuture::new(async { unreachable!("replaced before first poll") }),
        }
    }

    fn id(&self) -> u64 {
        u64::from(self.stream.as_ref().expect("present between reads").id())
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        if let Some(mut stream) = self.stream.take() {
            self.reading.set(async move {
                let chunk = stream.read_chunk(usize::MAX, true).await;
                (stream, chunk)
            });
        }
        let (stream, chunk) = ready!(self.reading.poll(cx));
        self.stream = Some(stream);
        Poll::Ready(match chunk {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(quinn::ReadError::Reset(code)) => Err(StreamErrorIncoming::StreamTerminated {
                error_code: code.into_inner(),
            }),
            Err(quinn::ReadError::ConnectionLost(e)) => {
                Err(StreamErrorIncoming::ConnectionErrorIncoming {
                    connection_error: connection_error(e),
                })
            }
            Err(other) => Err(StreamErrorIncoming::Unknown(Box::new(other))),
        })
    }

    fn stop_sending(&mut self, error_code: u64) {
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.stop(quinn::VarInt::from_u64(error_code).unwrap_or(quinn::VarInt::MAX));
        }
    }

    fn recv_id(&self) -> StreamId {
        StreamId::try_from(self.id()).expect("a quinn stream id is a valid HTTP/3 stream id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_inside_the_body_is_a_view_without_copy() {
        let body = Bytes::from(vec![7u8; 64 * 1024]);
        let part = &body[1000..40_000];
        let view = view_of(&body, part).expect("inside");
        assert_eq!(view.as_ptr(), part.as_ptr());
        assert_eq!(view.len(), 39_000);
    }

    #[test]
    fn foreign_and_tiny_slices_are_not_views() {
        let body = Bytes::from(vec![7u8; 64 * 1024]);
        let other = vec![7u8; 8 * 1024];
        assert!(view_of(&body, &other).is_none());
        assert!(view_of(&body, &body[10..20]).is_none(), "tiny: copied");
        // Straddling the end is not inside.
        let wider = Bytes::from(vec![1u8; 128 * 1024]);
        let body = wider.slice(0..64 * 1024);
        assert!(view_of(&body, &wider[60 * 1024..70 * 1024]).is_none());
    }

    #[test]
    fn an_unclaimed_loan_is_taken_back_when_its_guard_drops() {
        let lent = Lent::default();
        let id = StreamId::try_from(4u64).expect("valid id");
        let guard = lent.lend(
            id,
            Bytes::from_static(b"x"),
            Box::new(()),
            Duration::from_secs(1),
        );
        drop(guard);
        assert!(lent.take(4).is_none());
    }
}
