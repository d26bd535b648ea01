//! The admin API on the metrics port and pinning: every route with and without the token,
//! purges that reach every cache tier and never the origin, warming, pins that hold under
//! churn beyond the disk tier's size and across a restart.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::{blob, metric, quoted, scrape, Cache, Store};
use prism_lite::blob::BlobHash;

const TOKEN: &str = "s3cret-admin-token";

/// (status, body) of an admin request; `token` None sends no Authorization header.
async fn call(metrics: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let url = format!("http://{metrics}{path}");
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = crate::common::http_client().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = crate::common::within("admin call", request.send())
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A memory tier over a disk tier (`tier_size`) over a disk origin, admin on.
fn cache(dir: &Path, tier_size: &str) -> Cache {
    Cache::new()
        .http()
        .tier(Store::mem().named("ram"))
        .tier(
            Store::disk(dir.join("tier"))
                .named("tier")
                .max_size(tier_size),
        )
        .origin(Store::disk(dir.join("origin")).named("origin"))
        .section("admin", format!("{{token: {}}}", quoted(TOKEN)))
}

/// Every fixture blob.
type Blobs = Vec<(BlobHash, bytes::Bytes)>;

/// The small fixture stream: sd hash, content hashes, and every fixture blob.
fn small_stream() -> Option<(BlobHash, Vec<BlobHash>, Blobs)> {
    let dir = crate::common::fixture_streams()?;
    let text = std::fs::read_to_string(dir.join("small/stream.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sd = BlobHash::parse(json["sd_hash"].as_str().unwrap()).unwrap();
    let content = json["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["blob_hash"].as_str())
        .map(|h| BlobHash::parse(h).unwrap())
        .collect();
    Some((sd, content, crate::common::fixture_blobs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_needs_the_token_and_refusals_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path(), "10MB").start().await;
    let m = running.metrics_addr;
    let hash = BlobHash::of(b"x").to_string();
    let routes = [
        ("DELETE", format!("/admin/blob/{hash}")),
        ("DELETE", format!("/admin/stream/{hash}")),
        ("POST", format!("/admin/stream/{hash}/warm")),
        ("POST", format!("/admin/stream/{hash}/pin")),
        ("DELETE", format!("/admin/stream/{hash}/pin")),
        ("GET", "/admin/pins".to_string()),
        ("GET", "/admin/nothing-here".to_string()),
    ];
    for (method, path) in &routes {
        for token in [None, Some("wrong"), Some("s3cret-admin-token-but-longer")] {
            let (status, body) = call(m, method, path, token).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert!(!body.contains(TOKEN));
        }
    }
    let text = scrape(m).await;
    let refused = (routes.len() * 3) as f64;
    assert_eq!(
        metric(
            &text,
            "prism_admin_requests_total",
            &[("result", "unauthorized")]
        ),
        refused
    );
    assert!(!text.contains(TOKEN), "the token never reaches /metrics");
    // With the token: the routes answer (here: nothing to find, or a listing).
    let (status, _) = call(m, "GET", "/admin/pins", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        m,
        "POST",
        &format!("/admin/stream/{hash}/warm"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 404, "an unknown stream");
    let (status, _) = call(m, "POST", "/admin/blob/zz", Some(TOKEN)).await;
    assert_eq!(status, 405);
    let (status, _) = call(m, "DELETE", "/admin/blob/zz", Some(TOKEN)).await;
    assert_eq!(status, 400);
    running.stop().await;

    // Without `admin:` the routes do not exist.
    let running = Cache::new().http().store(Store::mem()).start().await;
    let (status, _) = call(running.metrics_addr, "GET", "/admin/pins", Some(TOKEN)).await;
    assert_eq!(status, 404);
    running.stop().await;
}

/// `DELETE /admin/blob/H` drops H from the memory and disk tiers and leaves the origin alone:
/// the next request fills the tiers again from the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_blob_empties_every_cache_tier_but_not_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path(), "10MB").start().await;
    let (hash, data) = blob(7, 5000);
    running.store.put(&hash, data).await.unwrap();
    assert!(running.store.has_cached(&hash).await.unwrap());
    let tier_file = |h: &BlobHash| walk_has(&dir.path().join("tier"), &h.to_string());
    assert!(tier_file(&hash));

    let (status, body) = call(
        running.metrics_addr,
        "DELETE",
        &format!("/admin/blob/{hash}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !running.store.has_cached(&hash).await.unwrap(),
        "no tier holds it"
    );
    assert!(!tier_file(&hash));
    assert!(
        walk_has(&dir.path().join("origin"), &hash.to_string()),
        "origin keeps it"
    );
    let (status, _, _) =
        crate::common::get_blob(running.http_addr.unwrap(), &hash.to_string()).await;
    assert_eq!(status, 200, "served again from the origin");
    running.stop().await;
}

/// Warm fetches a whole stream into the tiers (a JSON summary), deleting the stream empties
/// them again, pin/unpin/list work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_routes_warm_delete_pin_and_list() {
    let Some((sd, content, blobs)) = small_stream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = cache(dir.path(), "10MB").start().await;
    let m = running.metrics_addr;
    for (hash, data) in &blobs {
        running.store.put(hash, data.clone()).await.unwrap();
    }
    for hash in std::iter::once(&sd).chain(&content) {
        running.store.delete_cached(hash).await.unwrap();
        assert!(!running.store.has_cached(hash).await.unwrap());
    }

    let (status, body) = call(m, "POST", &format!("/admin/stream/{sd}/warm"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["content_blobs"], content.len());
    assert_eq!(summary["fetched"], content.len());
    assert_eq!(summary["failed"], 0);
    for hash in std::iter::once(&sd).chain(&content) {
        assert!(
            running.store.has_cached(hash).await.unwrap(),
            "{hash} warmed"
        );
    }

    let (status, body) = call(m, "DELETE", &format!("/admin/stream/{sd}"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["deleted_blobs"], content.len() + 1);
    for hash in std::iter::once(&sd).chain(&content) {
        assert!(
            !running.store.has_cached(hash).await.unwrap(),
            "{hash} deleted"
        );
    }

    let (status, body) = call(m, "POST", &format!("/admin/stream/{sd}/pin"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["pinned"], true);
    assert_eq!(answer["fetched"], content.len(), "pinning warms");
    let (_, body) = call(m, "GET", "/admin/pins", Some(TOKEN)).await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["streams"][0]["sd_hash"], sd.to_string());
    assert!(metric(&scrape(m).await, "prism_pinned_bytes", &[]) > 0.0);
    let (status, body) = call(m, "DELETE", &format!("/admin/stream/{sd}/pin"), Some(TOKEN)).await;
    assert_eq!((status, body.contains("true")), (200, true), "{body}");
    let (_, body) = call(m, "GET", "/admin/pins", Some(TOKEN)).await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["streams"].as_array().unwrap().len(), 0);
    assert_eq!(metric(&scrape(m).await, "prism_pinned_bytes", &[]), 0.0);
    running.stop().await;
}

/// A pinned stream stays in the disk tier while many times the tier's size passes through it,
/// the tier stays within `max_size`, and after a restart the pin (and the stream) is still there
/// and still holds under more churn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_streams_survive_churn_beyond_the_tier_size_and_a_restart() {
    let Some((sd, content, blobs)) = small_stream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tier_size: u64 = 200_000;
    let cache = cache(dir.path(), &tier_size.to_string());
    let running = cache.start().await;
    let stream: Vec<BlobHash> = std::iter::once(sd).chain(content.iter().copied()).collect();
    for (hash, data) in blobs.iter().filter(|(h, _)| stream.contains(h)) {
        running.store.put(hash, data.clone()).await.unwrap();
    }
    let (status, body) = call(
        running.metrics_addr,
        "POST",
        &format!("/admin/stream/{sd}/pin"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let in_tier = |h: &BlobHash| walk_has(&dir.path().join("tier"), &h.to_string());
    assert!(stream.iter().all(in_tier));

    churn(&running, 0, tier_size * 4).await;
    assert!(
        stream.iter().all(in_tier),
        "pinned blobs evicted under churn"
    );
    assert_tier_within(&running, tier_size).await;
    running.stop().await;

    let running = cache.start().await;
    let (_, body) = call(running.metrics_addr, "GET", "/admin/pins", Some(TOKEN)).await;
    assert!(
        body.contains(&sd.to_string()),
        "pins survive a restart: {body}"
    );
    churn(&running, 1_000, tier_size * 4).await;
    assert!(
        stream.iter().all(in_tier),
        "pinned blobs evicted after restart"
    );
    assert_tier_within(&running, tier_size).await;
    running.stop().await;
}

/// Passes `bytes` of new 20 kB blobs through the cache (put at the origin, then requested).
async fn churn(running: &prism_lite::app::Running, seed: u64, bytes: u64) {
    let http = running.http_addr.unwrap();
    for i in 0..bytes / 20_000 {
        let (hash, data) = blob(seed + i + 100, 20_000);
        running.store.put(&hash, data).await.unwrap();
        let (status, _, _) = crate::common::get_blob(http, &hash.to_string()).await;
        assert_eq!(status, 200);
    }
}

async fn assert_tier_within(running: &prism_lite::app::Running, max: u64) {
    let text = scrape(running.metrics_addr).await;
    let size = metric(&text, "prism_store_size_bytes", &[("component", "tier")]);
    assert!(
        size > 0.0 && size <= max as f64,
        "tier holds {size} bytes, max {max}"
    );
}

/// Whether a file named `name` is anywhere under `dir`.
fn walk_has(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            walk_has(&path, name)
        } else {
            e.file_name().to_string_lossy() == name
        }
    })
}
