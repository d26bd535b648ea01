//! A UDP socket for quinn that never hands the kernel a send larger than it accepts.
//!
//! quinn packs up to 10 QUIC packets of the path's MTU into one segmentation-offload (GSO)
//! send. Linux refuses (EMSGSIZE) any UDP send whose payload, all segments together, exceeds
//! 64 KiB, and quinn-udp drops such a send silently. With the MTU discovered on loopback or a
//! jumbo-frame link (up to ~64 KiB per packet), every batch of more than one packet would be
//! lost whole, so MTU discovery was capped at 6,500 bytes. This wrapper splits an oversized
//! batch into sends the kernel takes (whole segments each, a single 64 KiB packet on its own),
//! so packets can be as large as the path allows while 1,500-byte paths keep their 10-packet
//! GSO batches.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// The largest UDP payload one send may carry, all GSO segments together: 65,535 bytes of IP
/// packet minus the IPv6 header (40) and the UDP header (8). (IPv4 allows 65,507; one bound for
/// both keeps the rule simple and costs at most one extra send per batch on IPv4.)
pub const MAX_SEND_PAYLOAD: usize = 65_487;

/// Wraps the runtime's socket; only [`try_send`](AsyncUdpSocket::try_send) differs.
pub struct BoundedSendSocket {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl BoundedSendSocket {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>) -> Arc<BoundedSendSocket> {
        Arc::new(BoundedSendSocket { inner })
    }
}

impl fmt::Debug for BoundedSendSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSendSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

/// The byte ranges of `len` bytes of `segment`-sized packets to send one by one so that none
/// exceeds [`MAX_SEND_PAYLOAD`]: as many whole segments per send as fit, at least one.
pub fn send_ranges(len: usize, segment: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let segment = segment.max(1);
    let step = (MAX_SEND_PAYLOAD / segment).max(1) * segment;
    (0..len)
        .step_by(step)
        .map(move |start| start..(start + step).min(len))
}

impl AsyncUdpSocket for BoundedSendSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    /// Sends `transmit`, split when its segments together exceed [`MAX_SEND_PAYLOAD`].
    ///
    /// Only the first piece can report `WouldBlock` (quinn then retries the whole transmit,
    /// nothing was sent). If a later piece would block, the rest of the batch is dropped and
    /// `Ok` returned: re-sending the whole batch would duplicate what already left, and QUIC's
    /// loss recovery re-sends the dropped packets as it would after any network loss. (A UDP
    /// send rarely blocks: loopback and veth release the send buffer as soon as the packet is
    /// handed on.)
    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let segment = match transmit.segment_size {
            Some(s) if transmit.contents.len() > MAX_SEND_PAYLOAD => s,
            _ => return self.inner.try_send(transmit),
        };
        for (i, range) in send_ranges(transmit.contents.len(), segment).enumerate() {
            let contents = &transmit.contents[range];
            let piece = Transmit {
                destination: transmit.destination,
                ecn: transmit.ecn,
                segment_size: (contents.len() > segment).then_some(segment),
                contents,
                src_ip: transmit.src_ip,
            };
            match self.inner.try_send(&piece) {
                Ok(()) => {}
                Err(e) if i == 0 => return Err(e),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(len: usize, segment: usize) -> Vec<std::ops::Range<usize>> {
        send_ranges(len, segment).collect()
    }

    #[test]
    fn a_batch_under_the_limit_is_one_send() {
        assert_eq!(ranges(14_520, 1_452), vec![0..14_520]);
    }

    #[test]
    fn large_packets_go_one_per_send() {
        let s = 65_000;
        assert_eq!(
            ranges(3 * s - 10, s),
            vec![0..s, s..2 * s, 2 * s..3 * s - 10]
        );
    }

    #[test]
    fn mid_sized_packets_are_grouped_in_whole_segments_under_the_limit() {
        let s = 9_000; // 7 segments = 63,000 bytes fit, 8 do not
        let r = ranges(10 * s, s);
        assert_eq!(r, vec![0..7 * s, 7 * s..10 * s]);
        assert!(r
            .iter()
            .all(|r| r.len() <= MAX_SEND_PAYLOAD && r.len() % s == 0));
    }
}
