//! The status page on the metrics port (`GET /`, `GET /status.json`), in headless Chromium:
//! tiers with their fill, what was served, the inline SVG chart, DHT/trackers/pins sections,
//! no external assets, and no horizontal scrolling on a phone-sized window.

use serde_json::Value;

use crate::common::{blob, get_json, Browser, Cache, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium_and_matches_status_json() {
    let dir = tempfile::tempdir().unwrap();
    let running = Cache::new()
        .http()
        .tier(
            Store::disk(dir.path().join("tier"))
                .named("tier")
                .max_size("10MB"),
        )
        .origin(Store::disk(dir.path().join("origin")).named("origin"))
        .dht(dir.path().join("dht"))
        .start()
        .await;
    let (hash, data) = blob(11, 30_000);
    running.store.put(&hash, data).await.unwrap();
    for _ in 0..2 {
        let (status, _, _) =
            crate::common::get_blob(running.http_addr.unwrap(), &hash.to_string()).await;
        assert_eq!(status, 200);
    }
    let base = format!("http://{}", running.metrics_addr);

    let status: Value = get_json(running.metrics_addr, "/status.json").await;
    assert_eq!(status["served"]["blobs_total"], 2.0);
    assert_eq!(status["served"]["bytes_total"], 60_000.0);
    let tier = &status["tiers"]["tier"];
    assert_eq!(tier["size_bytes"], 30_000.0);
    assert_eq!(tier["blobs"], 1.0);
    assert!(tier["fill"].as_f64().unwrap() > 0.0);
    assert!(status["dht"]["tcp_port"].is_null() || status["dht"].is_object());
    assert!(status["trackers"].is_null(), "trackers are off");

    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::start(profile.path()).await;
    let client = &browser.client;
    client.set_window_size(390, 844).await.unwrap();
    client.goto(&format!("{base}/")).await.unwrap();
    let page = client
        .execute(
            "return {title: document.title, \
             served: document.getElementById('served').textContent, \
             tiers: [...document.querySelectorAll('#tiers tr td:first-child')].map(t => t.textContent), \
             svg: document.querySelectorAll('svg#chart polyline').length, \
             external: [...document.querySelectorAll('[src],link[href],script')].length, \
             headings: [...document.querySelectorAll('h2')].map(h => h.textContent), \
             fits: document.documentElement.scrollWidth <= window.innerWidth, \
             too_wide: [...document.querySelectorAll('body *')] \
               .filter(e => e.getBoundingClientRect().right > window.innerWidth) \
               .map(e => e.tagName + (e.id ? '#' + e.id : '') + ': ' + e.textContent.slice(0, 60))};",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(page["title"], "prism-lite status", "{page}");
    assert!(
        page["served"]
            .as_str()
            .unwrap()
            .contains("in 2 blobs since start"),
        "{page}"
    );
    assert_eq!(
        page["tiers"],
        serde_json::json!(["origin", "tier"]),
        "{page}"
    );
    assert_eq!(page["svg"], 1, "{page}");
    assert_eq!(page["external"], 0, "no external assets: {page}");
    for heading in [
        "Served",
        "Cache tiers",
        "Channels",
        "DHT",
        "Trackers",
        "Reachable from outside",
        "Pinned",
    ] {
        assert!(
            page["headings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h == heading),
            "{page}"
        );
    }
    assert_eq!(
        page["fits"], true,
        "no horizontal scroll on a phone: {page}"
    );
    browser.client.clone().close().await.unwrap();
    running.stop().await;
}

/// Blobs of a stream served through a door count toward that stream (once its sd blob was
/// seen), in `/status.json` and `prism_served_stream_bytes`; a blob of no known stream counts
/// toward none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_bytes_are_counted_per_stream() {
    let Some(dir) = crate::common::fixture_streams() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("small/stream.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let sd = prism_lite::blob::BlobHash::parse(json["sd_hash"].as_str().unwrap()).unwrap();
    let running = Cache::new().http().store(Store::mem()).start().await;
    let blobs = crate::common::fixture_blobs();
    for (hash, data) in &blobs {
        running.store.put(hash, data.clone()).await.unwrap();
    }
    let http = running.http_addr.unwrap();
    let mut expected = 0.0;
    let stream_blobs = std::iter::once(sd.to_string()).chain(
        json["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["blob_hash"].as_str().map(String::from)),
    );
    for hash in stream_blobs {
        let (status, _, body) = crate::common::get_blob(http, &hash).await;
        assert_eq!(status, 200);
        expected += body.len() as f64;
    }
    let (lone, data) = blob(12, 1000);
    running.store.put(&lone, data).await.unwrap();
    crate::common::get_blob(http, &lone.to_string()).await;

    let status: Value = get_json(running.metrics_addr, "/status.json").await;
    assert_eq!(status["streams"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["streams"][0]["sd_hash"], sd.to_string());
    assert_eq!(status["streams"][0]["served_bytes"], expected);
    let text = crate::common::scrape(running.metrics_addr).await;
    let sd_text = sd.to_string();
    assert_eq!(
        crate::common::metric(&text, "prism_served_stream_bytes", &[("sd_hash", &sd_text)]),
        expected
    );
    running.stop().await;
}
