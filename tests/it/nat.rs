//! Port mapping on a home router (`nat:`), against a stand-in router speaking SSDP, UPnP IGD
//! SOAP and NAT-PMP ([`crate::common::Gateway`]): the peer door's TCP port and the DHT's UDP
//! port are mapped, renewed at half the lease and removed at shutdown; the external address is
//! announced; a router that refuses or is absent costs a log line and a metric, not the start.

use std::path::Path;

use crate::common::*;

/// A cache with a peer door and a DHT node on a known UDP port, mapping through `nat`.
fn seeder(dht_dir: &Path, dht_port: u16, nat: String) -> Cache {
    Cache::new()
        .peer()
        .store(Store::mem().named("ram").max_size("16MiB"))
        .section(
            "dht",
            format!(
                "{{enabled: true, port: {dht_port}, address: 127.0.0.1, bootstrap: [], \
                 allow_private: true, data_dir: {}}}",
                quoted(dht_dir.display().to_string())
            ),
        )
        .section("nat", nat)
}

fn count(asked: &[(String, String)], action: &str, detail_prefix: &str) -> usize {
    asked
        .iter()
        .filter(|(a, d)| a == action && d.starts_with(detail_prefix))
        .count()
}

#[tokio::test]
async fn upnp_maps_renews_and_removes_the_peer_and_dht_ports() {
    let router = Gateway::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let dht_port = free_port();
    let nat = format!(
        "{{natpmp: false, discovery: {}, lease: 2s, timeout: 5s}}",
        quoted(router.ssdp.to_string())
    );
    let cache = seeder(dir.path(), dht_port, nat).start().await;
    let peer_port = cache.peer_addr.unwrap().port();

    let asked = router.asked("upnp");
    let tcp = format!("TCP {peer_port} -> 127.0.0.1:{peer_port} lease 2");
    let udp = format!("UDP {dht_port} -> 127.0.0.1:{dht_port} lease 2");
    // At least once: a renewal may already have followed on a slow start.
    assert!(count(&asked, "AddPortMapping", &tcp) >= 1, "{asked:?}");
    assert!(count(&asked, "AddPortMapping", &udp) >= 1, "{asked:?}");
    let status = cache.nat.as_ref().unwrap().status();
    assert_eq!(status.method, Some("upnp"));
    assert_eq!(status.external_ip, Some(EXTERNAL_IP.into()));
    assert_eq!(status.mappings.len(), 2);
    let dht = cache.dht.as_ref().unwrap().status();
    assert_eq!(dht["announce_address"], EXTERNAL_IP.to_string());
    let text = scrape(cache.metrics_addr).await;
    let mapped = |t| {
        metric(
            &text,
            "prism_nat_mapped",
            &[("transport", t), ("method", "upnp")],
        )
    };
    assert_eq!((mapped("tcp"), mapped("udp")), (1.0, 1.0));
    // The status page shows the mapping.
    let status = get_json(cache.metrics_addr, "/status.json").await;
    assert_eq!(status["nat"]["method"], "upnp", "{status}");
    assert_eq!(status["nat"]["external_ip"], EXTERNAL_IP.to_string());
    let page = get_text(cache.metrics_addr, "/").await;
    assert!(
        page.contains(&format!(
            "<tr><td>tcp {peer_port} (peer)<td>{peer_port}<td>2 s</tr>"
        )),
        "{page}"
    );

    // Renewed at half the 2 s lease.
    wait_until("the peer port's mapping is renewed", || {
        count(&router.asked("upnp"), "AddPortMapping", &tcp) >= 2
    })
    .await;
    cache.stop().await;
    let asked = router.asked("upnp");
    assert_eq!(
        count(&asked, "DeletePortMapping", &format!("TCP {peer_port}")),
        1,
        "{asked:?}"
    );
    assert_eq!(
        count(&asked, "DeletePortMapping", &format!("UDP {dht_port}")),
        1,
        "{asked:?}"
    );
}

#[tokio::test]
async fn natpmp_maps_when_no_upnp_router_answers() {
    let router = Gateway::start(false).await;
    // A UDP socket that never answers stands for a network without UPnP.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dht_port = free_port();
    let nat = format!(
        "{{discovery: {}, gateway: {}, lease: 2s, timeout: 1s}}",
        quoted(silent.local_addr().unwrap().to_string()),
        router.natpmp
    );
    let cache = seeder(dir.path(), dht_port, nat).start().await;
    let peer_port = cache.peer_addr.unwrap().port();

    let asked = router.asked("natpmp");
    assert!(
        count(&asked, "PCP", "") >= 1,
        "PCP is tried first: {asked:?}"
    );
    let tcp = format!("TCP {peer_port} -> {peer_port} lease 2");
    assert_eq!(count(&asked, "Map", &tcp), 1, "{asked:?}");
    assert_eq!(
        count(&asked, "Map", &format!("UDP {dht_port} -> {dht_port}")),
        1
    );
    let status = cache.nat.as_ref().unwrap().status();
    assert_eq!(status.method, Some("natpmp"));
    assert_eq!(status.external_ip, Some(EXTERNAL_IP.into()));
    assert!(status.error.is_none(), "{:?}", status.error);
    let dht = cache.dht.as_ref().unwrap().status();
    assert_eq!(dht["announce_address"], EXTERNAL_IP.to_string());

    wait_until("the peer port's mapping is renewed", || {
        count(&router.asked("natpmp"), "Map", &tcp) >= 2
    })
    .await;
    cache.stop().await;
    let asked = router.asked("natpmp");
    assert_eq!(
        count(&asked, "Unmap", &format!("TCP {peer_port}")),
        1,
        "{asked:?}"
    );
    assert_eq!(
        count(&asked, "Unmap", &format!("UDP {dht_port}")),
        1,
        "{asked:?}"
    );
}

#[tokio::test]
async fn a_router_that_refuses_costs_a_log_line_and_a_metric_not_the_start() {
    let router = Gateway::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let nat = format!(
        "{{discovery: {}, gateway: {}, timeout: 2s}}",
        quoted(router.ssdp.to_string()),
        router.natpmp
    );
    let cache = seeder(dir.path(), free_port(), nat).start().await;
    let status = cache.nat.as_ref().unwrap().status();
    assert_eq!(status.method, None);
    assert!(status.mappings.is_empty());
    let error = status.error.unwrap();
    assert!(
        error.contains("upnp") && error.contains("natpmp"),
        "{error}"
    );
    // Nothing learned, nothing announced as ours.
    let dht = cache.dht.as_ref().unwrap().status();
    assert!(dht["announce_address"].is_null(), "{dht}");
    let text = scrape(cache.metrics_addr).await;
    for method in ["upnp", "natpmp"] {
        let refused = metric(
            &text,
            "prism_nat_operations_total",
            &[
                ("method", method),
                ("operation", "map"),
                ("result", "error"),
            ],
        );
        assert_eq!(
            refused, 2.0,
            "{method}: the peer and DHT ports were both refused"
        );
    }
    // The cache serves all the same.
    assert!(cache.peer_addr.is_some());
    cache.stop().await;
}
