//! Stalled viewers of `/stream`: a playback response holds about one decrypted blob, charged to
//! the same in-flight budget as `/blob` answers, so stalled viewers on HTTP and HTTP/3 stay
//! within it while another address watches the whole stream.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::{
    connect_from, server_process, stalled_h3_streams, wait_for_inflight, PeakRss, ATTACKER,
    BYSTANDER, MIB,
};
use crate::common::{client_from_within, metric, scrape, within, TEST_TIMEOUT};
use crate::playback::Fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_viewers_stay_within_the_budget_while_another_address_watches() {
    let fixture = Fixture::load("medium");
    let blobs: Vec<_> = fixture.blobs.iter().map(|(_, b)| b.clone()).collect();
    let server = server_process(
        &blobs,
        "{max_inflight_bytes: 16MiB, max_inflight_bytes_per_ip: 8MiB, inflight_wait: 200ms, write_stall_timeout: 3s}",
    )
    .await;
    let pid = server.child.id();
    let path = format!("/stream/{}", fixture.sd_hash);
    let url = format!("http://{}{path}", server.http);
    // Whole streams read during the flood: the bound is generous, because what this test
    // asserts is that the bystander is served in full, and a box busy with other work is slow.
    let bystander = client_from_within(BYSTANDER, Duration::from_secs(60));
    let warm = within("warm-up", bystander.get(&url).send()).await.unwrap();
    assert_eq!(warm.bytes().await.unwrap(), fixture.source);
    let rss = PeakRss::track(pid);

    // 60 HTTP connections asking for the stream three times each and never reading, and two
    // QUIC connections with 16 unread stream requests each.
    let mut held_tcp = Vec::new();
    let get = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(3);
    for _ in 0..60 {
        let mut s = connect_from(ATTACKER, server.http).await;
        s.write_all(get.as_bytes()).await.unwrap();
        held_tcp.push(s);
    }
    let mut held_h3 = Vec::new();
    for _ in 0..2 {
        held_h3.push(stalled_h3_streams(server.http3, &path, 16).await);
    }

    // The budget holds them to the attacker's share: some responses are cut for want of room.
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let m = scrape(server.metrics).await;
        let inflight = metric(&m, "prism_inflight_bytes", &[]);
        assert!(inflight <= (16 * MIB) as f64, "budget exceeded: {inflight}");
        if inflight > 0.0 && metric(&m, "prism_stream_cut_total", &[("reason", "busy")]) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stream response was charged and refused:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another address watches the whole stream meanwhile.
    let resp = bystander.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), fixture.source);

    // Once the stall timeout passes, the stalled responses are dropped although the clients
    // keep their connections open: nothing stays charged.
    wait_for_inflight(&server, |b| b == 0.0, "the stalled responses to be dropped").await;
    let grown = rss.growth("stalled stream viewers");
    drop((held_tcp, held_h3));
    // Budget (16 MiB) + QUIC send buffers (2 connections) + ciphertext being decrypted + slack.
    assert!(grown < 160 * MIB, "rss grew {} MiB", grown / MIB);
}
