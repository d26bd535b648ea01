//! Stream playback on a real socket: the shared fixture streams decoded through `/stream`, ranges
//! at blob boundaries and both ends, error statuses, a response cut by a bad blob, the
//! player-server v3/v4 routes through a stand-in LBRY API (every other shape is in
//! `player_routes`), and the encoder reproducing the fixtures.
//! Every cache here starts cold in front of a real HTTP origin, so streams fill through the tree.

use std::path::PathBuf;

use bytes::Bytes;
use prism_lite::blob::BlobHash;
use serde_json::Value;

use crate::common::*;

/// One shared fixture stream.
pub struct Fixture {
    pub sd_hash: String,
    pub source: Vec<u8>,
    pub blobs: Vec<(BlobHash, Bytes)>,
    pub meta: Value,
    pub dir: PathBuf,
}

impl Fixture {
    pub fn load(name: &str) -> Fixture {
        let dir = fixture_streams()
            .expect("the shared fixtures (../shared/fixtures) are required")
            .join(name);
        let meta: Value =
            serde_json::from_slice(&std::fs::read(dir.join("stream.json")).unwrap()).unwrap();
        let mut blobs = Vec::new();
        for f in std::fs::read_dir(dir.join("blobs")).unwrap() {
            let path = f.unwrap().path();
            let hash = BlobHash::parse(path.file_name().unwrap().to_str().unwrap()).unwrap();
            blobs.push((hash, Bytes::from(std::fs::read(&path).unwrap())));
        }
        Fixture {
            sd_hash: meta["sd_hash"].as_str().unwrap().to_owned(),
            source: std::fs::read(dir.join("source.bin")).unwrap(),
            blobs,
            meta,
            dir,
        }
    }

    /// The hash of content blob `n`.
    pub fn content(&self, n: usize) -> String {
        self.meta["blobs"][n]["blob_hash"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// A real HTTP origin holding `fixtures`' blobs at `/bucket/<hash>`.
pub(crate) async fn origin_with(fixtures: &[&Fixture]) -> HttpOrigin {
    let origin = HttpOrigin::start().await;
    for f in fixtures {
        for (hash, data) in &f.blobs {
            origin
                .script
                .set(&format!("/bucket/{hash}"), 200, data.clone());
        }
    }
    origin
}

/// A cold cache: memory in front of the origin.
pub(crate) fn cold_cache(origin: &HttpOrigin) -> Cache {
    Cache::new()
        .http()
        .name("edge")
        .tier(Store::mem().named("edge_mem").max_size("64MiB"))
        .origin(
            Store::http(origin)
                .named("origin")
                .sharding(0)
                .timeout("5s"),
        )
}

/// How many times the origin was asked for `hash`.
fn origin_gets(origin: &HttpOrigin, hash: &str) -> usize {
    let want = format!("GET /bucket/{hash}");
    origin
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| **r == want)
        .count()
}

pub(crate) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

pub(crate) async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = http_client().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = within("playback request", req.send()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = within("playback body", resp.bytes()).await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn fixtures_decode_through_stream_from_a_cold_cache() {
    let (small, medium) = (Fixture::load("small"), Fixture::load("medium"));
    let origin = origin_with(&[&small, &medium]).await;
    let cache = cold_cache(&origin).start().await;
    let base = format!("http://{}", cache.http_addr.unwrap());
    for (f, content_type) in [(&small, "text/plain"), (&medium, "video/mp4")] {
        let a = request("GET", &format!("{base}/stream/{}", f.sd_hash), &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body.len(), f.source.len());
        assert!(a.body == f.source, "decoded stream equals source.bin");
        assert_eq!(header(&a, "content-length"), f.source.len().to_string());
        assert_eq!(header(&a, "content-type"), content_type);
        assert_eq!(header(&a, "accept-ranges"), "bytes");
        assert_eq!(header(&a, "etag"), format!("\"{}\"", f.sd_hash));
        assert!(header(&a, "cache-control").contains("max-age=31536000"));
        assert!(a.headers.get("content-disposition").is_none());

        let head = request("HEAD", &format!("{base}/stream/{}", f.sd_hash), &[]).await;
        assert_eq!(head.status, 200);
        assert_eq!(header(&head, "content-length"), f.source.len().to_string());
        assert!(head.body.is_empty());
    }
    let a = request(
        "GET",
        &format!("{base}/stream/{}?download=1", medium.sd_hash),
        &[],
    )
    .await;
    assert_eq!(
        header(&a, "content-disposition"),
        "attachment; filename=\"clip.mp4\""
    );
    let text = scrape(cache.metrics_addr).await;
    assert_eq!(metric(&text, "prism_stream_started_total", &[]), 3.0);
    assert_eq!(
        metric(&text, "prism_stream_bytes_served_total", &[]),
        (small.source.len() + 2 * medium.source.len()) as f64
    );
    // Full reads of medium: blobs 1 and 2 were fetched ahead while blob 0 was read.
    assert!(metric(&text, "prism_stream_readahead_hits_total", &[]) >= 2.0);
    cache.stop().await;
}

#[tokio::test]
async fn ranges_at_blob_boundaries_and_both_ends() {
    let medium = Fixture::load("medium");
    let origin = origin_with(&[&medium]).await;
    let cache = cold_cache(&origin).start().await;
    let url = format!(
        "http://{}/stream/{}",
        cache.http_addr.unwrap(),
        medium.sd_hash
    );
    let size = medium.source.len() as u64;
    let full = 2_097_151u64; // plaintext per non-final blob
    let cases: Vec<(String, u64, u64)> = vec![
        ("bytes=0-0".into(), 0, 0),
        ("bytes=0-99".into(), 0, 99),
        (format!("bytes={}-{}", full - 1, full), full - 1, full),
        (
            format!("bytes={}-{}", full, 2 * full - 1),
            full,
            2 * full - 1,
        ),
        (format!("bytes={}-", 2 * full - 1), 2 * full - 1, size - 1),
        (format!("bytes={}-", 2 * full), 2 * full, size - 1),
        ("bytes=-1".into(), size - 1, size - 1),
        ("bytes=-100".into(), size - 100, size - 1),
        (format!("bytes={}-99999999", size - 10), size - 10, size - 1),
        ("bytes=100-".into(), 100, size - 1),
    ];
    for (range, first, last) in cases {
        let a = request("GET", &url, &[("range", &range)]).await;
        assert_eq!(a.status, 206, "{range}");
        assert_eq!(
            header(&a, "content-range"),
            format!("bytes {first}-{last}/{size}"),
            "{range}"
        );
        assert_eq!(header(&a, "content-length"), (last - first + 1).to_string());
        assert!(
            a.body[..] == medium.source[first as usize..=last as usize],
            "{range}: wrong bytes"
        );
    }
    let a = request("GET", &url, &[("range", &format!("bytes={size}-"))]).await;
    assert_eq!(a.status, 416);
    assert_eq!(header(&a, "content-range"), format!("bytes */{size}"));

    // If-Range with our ETag honours the range; with another validator, the whole body.
    let etag = format!("\"{}\"", medium.sd_hash);
    let a = request("GET", &url, &[("range", "bytes=5-9"), ("if-range", &etag)]).await;
    assert_eq!(a.status, 206);
    let a = request(
        "GET",
        &url,
        &[("range", "bytes=5-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), medium.source.len());
    // If-None-Match with our ETag: 304, no body.
    let a = request("GET", &url, &[("if-none-match", &etag)]).await;
    assert_eq!(a.status, 304);
    assert!(a.body.is_empty());
    let text = scrape(cache.metrics_addr).await;
    assert_eq!(
        metric(&text, "prism_stream_range_requests_total", &[]),
        11.0
    );
    cache.stop().await;
}

#[tokio::test]
async fn a_range_fetches_only_the_blobs_it_touches() {
    let medium = Fixture::load("medium");
    let origin = origin_with(&[&medium]).await;
    let cache = cold_cache(&origin)
        .section("stream", "{readahead: 0}")
        .start()
        .await;
    let url = format!(
        "http://{}/stream/{}",
        cache.http_addr.unwrap(),
        medium.sd_hash
    );
    let a = request("GET", &url, &[("range", "bytes=0-99")]).await;
    assert_eq!(a.status, 206);
    assert!(a.body[..] == medium.source[..100]);
    // The sd blob, the final blob (its padding gives the exact size) and blob 0; never blob 1.
    assert_eq!(origin_gets(&origin, &medium.sd_hash), 1);
    assert_eq!(origin_gets(&origin, &medium.content(2)), 1);
    assert_eq!(origin_gets(&origin, &medium.content(0)), 1);
    assert_eq!(origin_gets(&origin, &medium.content(1)), 0);
    cache.stop().await;
}

#[tokio::test]
async fn error_statuses() {
    let (small, medium) = (Fixture::load("small"), Fixture::load("medium"));
    let origin = origin_with(&[&small, &medium]).await;
    let cache = cold_cache(&origin).start().await;
    let base = format!("http://{}", cache.http_addr.unwrap());
    for (path, status) in [
        ("/stream/nothex".to_owned(), 400),
        (format!("/stream/{}", &medium.sd_hash[..90]), 400),
        (format!("/stream/{}", BlobHash::of(b"absent")), 404),
        // A content blob's hash: a blob, but not a stream descriptor.
        (format!("/stream/{}", medium.content(2)), 422),
    ] {
        let a = request("GET", &format!("{base}{path}"), &[]).await;
        assert_eq!(a.status, status, "{path}");
        assert!(a.body.len() < 200, "short error body for {path}");
    }
    let a = request("POST", &format!("{base}/stream/{}", small.sd_hash), &[]).await;
    assert_eq!(a.status, 405);
    let a = request("GET", &format!("{base}/stream/{}", small.sd_hash), &[]).await;
    assert_eq!(a.status, 200);
    cache.stop().await;
}

#[tokio::test]
async fn blocked_and_protected_streams() {
    let medium = Fixture::load("medium");
    let origin = origin_with(&[&medium]).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("protected.txt");
    std::fs::write(&list, format!("{}\n", medium.content(1))).unwrap();
    let cache = cold_cache(&origin)
        .door(Door::http().token("sesame"))
        .protected_list(&list)
        .start()
        .await;
    let url = format!(
        "http://{}/stream/{}",
        cache.http_addr.unwrap(),
        medium.sd_hash
    );
    // One protected content blob protects the stream.
    assert_eq!(request("GET", &url, &[]).await.status, 403);
    assert_eq!(
        request("GET", &format!("{url}?edge_token=wrong"), &[])
            .await
            .status,
        403
    );
    let a = request("GET", &format!("{url}?edge_token=sesame"), &[]).await;
    assert_eq!(a.status, 200);
    assert!(a.body == medium.source);
    cache.stop().await;

    // One blocked content blob blocks the stream.
    let blocked = dir.path().join("blocked.txt");
    std::fs::write(&blocked, format!("{}\n", medium.content(0))).unwrap();
    let cache = cold_cache(&origin).blocklist_file(&blocked).start().await;
    let url = format!(
        "http://{}/stream/{}",
        cache.http_addr.unwrap(),
        medium.sd_hash
    );
    assert_eq!(request("GET", &url, &[]).await.status, 404);
    cache.stop().await;
}

/// Reads a response chunk by chunk until it ends or fails; returns what arrived.
async fn read_until_cut(url: &str) -> (u16, Vec<u8>, bool) {
    let mut resp = within("GET", http_client().get(url).send()).await.unwrap();
    let status = resp.status().as_u16();
    let mut got = Vec::new();
    loop {
        match within("chunk", resp.chunk()).await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => return (status, got, false),
            Err(_) => return (status, got, true),
        }
    }
}

#[tokio::test]
async fn a_bad_content_blob_cuts_the_response_never_wrong_bytes() {
    let medium = Fixture::load("medium");
    let origin = origin_with(&[&medium]).await;
    // Blob 1 comes back corrupt from the origin (the cache's verification rejects it).
    let (_, good) = medium
        .blobs
        .iter()
        .find(|(h, _)| h.to_hex() == medium.content(1))
        .unwrap();
    let mut bad = good.to_vec();
    bad[1000] ^= 0xff;
    origin
        .script
        .set(&format!("/bucket/{}", medium.content(1)), 200, bad);
    let cache = cold_cache(&origin).start().await;
    let url = format!(
        "http://{}/stream/{}",
        cache.http_addr.unwrap(),
        medium.sd_hash
    );
    let (status, got, failed) = read_until_cut(&url).await;
    assert_eq!(status, 200);
    assert!(
        failed,
        "the response must end in an error, not look complete"
    );
    assert!(got.len() < medium.source.len());
    assert!(got[..] == medium.source[..got.len()], "only correct bytes");

    // Missing instead of corrupt: the same.
    origin
        .script
        .set(&format!("/bucket/{}", medium.content(1)), 404, "gone");
    let cache2 = cold_cache(&origin).start().await;
    let url = format!(
        "http://{}/stream/{}",
        cache2.http_addr.unwrap(),
        medium.sd_hash
    );
    let (_, got, failed) = read_until_cut(&url).await;
    assert!(failed);
    assert!(got[..] == medium.source[..got.len()]);
    let text = scrape(cache.metrics_addr).await;
    assert_eq!(
        metric(
            &text,
            "prism_stream_cut_total",
            &[("reason", "origin_error")]
        ),
        1.0
    );
    let text = scrape(cache2.metrics_addr).await;
    assert_eq!(
        metric(
            &text,
            "prism_stream_cut_total",
            &[("reason", "blob_missing")]
        ),
        1.0
    );
    cache.stop().await;
    cache2.stop().await;
}

#[tokio::test]
async fn player_server_routes_resolve_through_the_lbry_api() {
    let medium = Fixture::load("medium");
    let origin = origin_with(&[&medium]).await;
    let claim_id = "ad25e05aa7dc5e9994869040c6103f9a8728db46";
    let api = LbryApiStandIn::start(vec![stream_claim("clip", claim_id, &medium.sd_hash, 1)]).await;
    let cache = cold_cache(&origin)
        .section("stream", format!("{{api: {}}}", quoted(api.url())))
        .start()
        .await;
    let base = format!("http://{}", cache.http_addr.unwrap());
    let prefix = &medium.sd_hash[..8];
    for version in ["v4", "v3"] {
        let url = format!("{base}/api/{version}/streams/free/clip/{claim_id}/{prefix}");
        let a = request("GET", &url, &[("range", "bytes=10-")]).await;
        assert_eq!(a.status, 206, "{version}");
        assert!(a.body[..] == medium.source[10..]);
    }
    assert_eq!(api.calls(), 1, "resolution is cached");
    let wrong_prefix = format!("{base}/api/v4/streams/free/clip/{claim_id}/0000");
    assert_eq!(request("GET", &wrong_prefix, &[]).await.status, 404);
    let unknown = format!("{base}/api/v4/streams/free/nosuch/{claim_id}/{prefix}");
    assert_eq!(request("GET", &unknown, &[]).await.status, 404);
    let bad = format!("{base}/api/v4/streams/free/clip/NOTHEX/{prefix}");
    assert_eq!(request("GET", &bad, &[]).await.status, 400);
    let text = scrape(cache.metrics_addr).await;
    assert_eq!(
        metric(
            &text,
            "prism_stream_resolve_total",
            &[("result", "resolved")]
        ),
        1.0
    );
    cache.stop().await;

    // The API down: 502 with a short body.
    // A port nobody listens on (and no client takes: see `free_port`).
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cache = cold_cache(&origin)
        .section(
            "stream",
            format!(
                "{{api: {}, api_timeout: 5s}}",
                quoted(format!("http://{dead}/"))
            ),
        )
        .start()
        .await;
    let url = format!(
        "http://{}/api/v4/streams/free/clip/{claim_id}/{prefix}",
        cache.http_addr.unwrap()
    );
    let a = request("GET", &url, &[]).await;
    assert_eq!(a.status, 502);
    assert!(a.body.len() < 100);
    cache.stop().await;
}

#[test]
fn encoder_reproduces_the_sdk_streams_byte_for_byte() {
    for name in ["small", "medium"] {
        let f = Fixture::load(name);
        let work = tempfile::tempdir().unwrap();
        // The stream is named after the file, as the SDK names it.
        let suggested = f.meta["suggested_file_name"].as_str().unwrap();
        let input = work.path().join(suggested);
        std::fs::copy(f.dir.join("source.bin"), &input).unwrap();
        let ivs: String = f.meta["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| format!("{}\n", b["iv"].as_str().unwrap()))
            .collect();
        let ivs_file = work.path().join("ivs.txt");
        std::fs::write(&ivs_file, ivs).unwrap();
        let out = work.path().join("out");
        let result = std::process::Command::new(env!("CARGO_BIN_EXE_prism-lite"))
            .arg("encode")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(["--key", f.meta["key"].as_str().unwrap()])
            .arg("--ivs")
            .arg(&ivs_file)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert_eq!(String::from_utf8(result.stdout).unwrap().trim(), f.sd_hash);
        let mut written: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        written.sort();
        let mut expected: Vec<String> = f.blobs.iter().map(|(h, _)| h.to_hex()).collect();
        expected.sort();
        assert_eq!(written, expected, "{name}: the same blob names");
        for (hash, data) in &f.blobs {
            let mine = std::fs::read(out.join(hash.to_hex())).unwrap();
            assert!(mine == data[..], "{name}: blob {hash} differs");
        }
    }
}
