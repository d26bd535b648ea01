//! A connection's socket as a front door writes to it: writes that make no progress for
//! `limits.write_stall_timeout` fail (so hyper drops the connection and what it held), and
//! in-flight budget charges are given back once the bytes they cover have left the process.
//!
//! Why the flush: hyper queues a response's `Bytes` (no copy) and keeps them until they are
//! written, which can be long after it dropped the response body. It calls the socket's
//! `poll_flush` only once its own write queue is empty, so a charge handed over with
//! [`HandedOver::hold`] when a body is dropped (all its bytes queued) is released at the next
//! flush that reaches the socket (all queued bytes written to the kernel).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::server::budget::Charge;

/// Charges whose bytes hyper has queued but perhaps not yet written.
#[derive(Default)]
pub struct HandedOver(Mutex<Vec<Charge>>);

impl HandedOver {
    /// Keeps `charge` until the connection's next completed flush.
    pub fn hold(&self, charge: Charge) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(charge);
    }

    fn release(&self) {
        let released = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        drop(released);
    }
}

pub struct WatchedIo<T> {
    inner: T,
    stall_after: Duration,
    /// Armed when a write first returns `Pending`; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    handed_over: Arc<HandedOver>,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, stall_after: Duration, handed_over: Arc<HandedOver>) -> WatchedIo<T> {
        WatchedIo {
            inner,
            stall_after,
            stalled: None,
            handed_over,
        }
    }

    /// Passes a write's result through, failing it once writes have been pending too long.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Pending => {
                let after = self.stall_after;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading (write stalled)",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = poll {
            self.handed_over.release();
        }
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}
