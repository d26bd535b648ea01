//! The HTTP/3 door's zero-copy send path (`prism_lite::quic::h3_transport`): bodies of every
//! size around the frame and view boundaries arrive byte for byte, the in-flight budget charge
//! lent with a body is held while the client has not taken it and given back once it has, and
//! a client that abandons a stream mid-body (QUIC STOP_SENDING) frees it at once, not only
//! after the stall timeout, and a body that is never acknowledged frees it after the stall
//! timeout, not only when the connection closes.
//! (Stalled readers are reset after `write_stall_timeout`: `hostile.rs`.)

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Buf;
use prism_lite::app;
use prism_lite::blob::BlobHash;
use prism_lite::quic;

use crate::common::{blob_bytes, wait_until, within, Families, H3Client, H3Stream, UdpRelay};
use crate::http3::mem_server;

/// A memory-store cache with an HTTP/3 door and the given `limits:`.
async fn server(limits: &str) -> app::Running {
    mem_server().limits(limits).start().await
}

#[tokio::test]
async fn bodies_of_every_size_arrive_intact_and_their_charges_are_given_back() {
    let running = server("{write_stall_timeout: 10s}").await;
    // Around the copy threshold (1 KiB), the door's 256 KiB DATA frames and the largest blob.
    let sizes = [
        1,
        1023,
        1024,
        1025,
        256 * 1024 - 1,
        256 * 1024,
        256 * 1024 + 7,
        2 * 1024 * 1024,
    ];
    let mut hashes = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let data = blob_bytes(900 + i as u64, *len);
        let hash = BlobHash::of(&data);
        running.store.put(&hash, data).await.unwrap();
        hashes.push((hash, *len));
    }
    let client = H3Client::connect(running.http3_addr.unwrap(), &[quic::ALPN_H3])
        .await
        .unwrap();
    for (hash, len) in &hashes {
        let (resp, body) = client.get(&format!("/get/{hash}")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(body.len(), *len);
        assert_eq!(BlobHash::of(&body), *hash, "{len}-byte body differs");
        let stored = running.store.get(hash).await.unwrap().data;
        assert_eq!(body, stored);
    }
    // Every body was read: each charge goes back once the client's acknowledgements arrive.
    let inflight = running.metrics.doors().inflight_bytes.clone();
    wait_until("every charge to be given back", || inflight.get() == 0).await;
    assert_eq!(
        running.metrics.doors().http3_blob_download_total.get(),
        sizes.len() as u64
    );
    within("stop", running.stop()).await;
}

/// One request from a client whose receive windows are small (64 KiB), so the server cannot
/// hand a 2 MiB body to QUIC until the client reads: the stream and its connection.
async fn slow_reader(addr: SocketAddr, hash: &BlobHash) -> (H3Stream, H3Client) {
    let h3 = H3Client::options(&[quic::ALPN_H3])
        .receive_windows(64 * 1024, 256 * 1024)
        .connect(addr)
        .await
        .unwrap();
    let mut stream = h3.send_get(&format!("/get/{hash}")).await;
    let resp = within("response", stream.recv_response()).await.unwrap();
    assert_eq!(resp.status(), 200);
    (stream, h3)
}

#[tokio::test]
async fn a_client_that_abandons_a_stream_mid_body_frees_its_charge_before_the_stall_timeout() {
    // The stall timeout is far beyond the test's deadline: only the client's STOP_SENDING can
    // free the charge.
    let running = server("{write_stall_timeout: 120s}").await;
    let data = blob_bytes(77, 2 * 1024 * 1024);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data.clone()).await.unwrap();
    let (mut stream, _held) = slow_reader(running.http3_addr.unwrap(), &hash).await;

    // Part of the body arrives (and matches); the rest waits for the client to read.
    let mut first = within("first chunk", stream.recv_data())
        .await
        .unwrap()
        .unwrap();
    let first = first.copy_to_bytes(first.remaining());
    assert!(!first.is_empty());
    assert_eq!(&data[..first.len()], &first[..]);
    let inflight = running.metrics.doors().inflight_bytes.clone();
    assert!(inflight.get() > 0, "the unsent body is charged");

    // The client gives up on the stream but keeps its connection: dropping an unfinished quinn
    // receive stream sends STOP_SENDING. (h3-quinn's own `stop_sending` panics while a read is
    // pending, so the test does not call it.)
    drop(stream);
    wait_until("the stopped stream's charge to be given back", || {
        inflight.get() == 0
    })
    .await;
    within("stop", running.stop()).await;
}

/// A client whose path goes dead right after it asked for a blob: nothing the server sends is
/// acknowledged, yet the connection stays open (the client's retransmissions keep arriving and
/// both idle timeouts are 30 s, beyond this test's 20 s bound). The 100 KiB body fits the
/// 256 KiB send window, so the door hands it to QUIC whole and no send ever stalls: only the
/// bounded wait for acknowledgements (`write_stall_timeout`, then a reset) can free the charge.
#[tokio::test]
async fn a_body_never_acknowledged_frees_its_charge_after_the_stall_timeout() {
    let running = server("{write_stall_timeout: 3s}").await;
    let data = blob_bytes(78, 100 * 1024);
    let hash = BlobHash::of(&data);
    running.store.put(&hash, data).await.unwrap();
    let relay = UdpRelay::start(running.http3_addr.unwrap()).await;
    let h3 = H3Client::connect(relay.addr, &[quic::ALPN_H3])
        .await
        .unwrap();

    relay.cut_server_to_client();
    let asked = std::time::Instant::now();
    let _stream = h3.send_get(&format!("/get/{hash}")).await;
    // Counted once the whole body is handed to QUIC; its charge is held from before that.
    let downloads = running.metrics.doors().http3_blob_download_total.clone();
    wait_until("the body to be handed to QUIC", || downloads.get() == 1).await;
    let inflight = running.metrics.doors().inflight_bytes.clone();
    wait_until("the unacknowledged body's charge to be given back", || {
        inflight.get() == 0
    })
    .await;
    // Held until the wait for acknowledgements ran out, not given back at the hand-over.
    let held = asked.elapsed();
    assert!(
        held >= Duration::from_millis(2900),
        "given back after {held:?}"
    );
    within("stop", running.stop()).await;
}
