//! Odysee's player-server URLs on a real cache (HTTP and HTTP/3 doors) in front of a real HTTP
//! origin, with claims answered by a stand-in LBRY API: every route shape, reposts (embedded,
//! looked up, five deep and one too many), a claim that is not a stream, paid claims and
//! routes, wrong prefixes and claim ids, and the headers a CDN or a cross-origin player reads.

use prism_lite::app::Running;
use prism_lite::blob::BlobHash;
use serde_json::Value;

use crate::common::*;
use crate::playback::{cold_cache, header, origin_with, request, Answer, Fixture};

const CLIP: &str = "ad25e05aa7dc5e9994869040c6103f9a8728db46";
/// The stream claim's timestamp, and as `Last-Modified` writes it.
const CLIP_TIME: u64 = 1_655_141_671;
const CLIP_MODIFIED: &str = "Mon, 13 Jun 2022 17:34:31 GMT";

/// A 40-hex claim id made from a small number.
fn claim_id(n: u32) -> String {
    format!("{n:040x}")
}

/// The claims the stand-in API knows: the stream `clip`, reposts of it, a chain of six reposts
/// each only naming the previous one, a channel and a paid stream.
fn claims(sd_hash: &str) -> Vec<Value> {
    let clip = stream_claim("clip", CLIP, sd_hash, CLIP_TIME);
    let embedded = repost_claim("repost", &claim_id(1), &clip, true);
    let of_repost = repost_claim("repost-of-repost", &claim_id(2), &embedded, false);
    let mut all = vec![clip.clone(), embedded, of_repost];
    let mut previous = clip;
    for depth in 1..=6 {
        let repost = repost_claim("chain", &claim_id(100 + depth), &previous, false);
        all.push(repost.clone());
        previous = repost;
    }
    all.push(channel_claim("@channel", &claim_id(3)));
    let mut paid = stream_claim("paid", &claim_id(4), sd_hash, CLIP_TIME);
    paid["value"]["fee"] = serde_json::json!({"amount": "1.5", "currency": "LBC"});
    all.push(paid);
    all
}

/// A successful ranged answer: the right bytes and every header a player or CDN reads.
/// The medium fixture behind an HTTP origin, the stand-in API naming it as [`CLIP`] (and its
/// reposts), and a cold cache resolving through them (with an HTTP/3 door when asked).
async fn player_cache(http3: bool) -> (Fixture, HttpOrigin, LbryApiStandIn, Running) {
    let medium = Fixture::load("medium");
    let origin = origin_with(&[&medium]).await;
    let api = LbryApiStandIn::start(claims(&medium.sd_hash)).await;
    let mut cache = cold_cache(&origin);
    if http3 {
        cache = cache.http3();
    }
    let cache = cache
        .section("stream", format!("{{api: {}}}", quoted(api.url())))
        .start()
        .await;
    (medium, origin, api, cache)
}

fn assert_stream_answer(a: &Answer, medium: &Fixture, what: &str) {
    assert_eq!(a.status, 206, "{what}: {:?}", a.body);
    assert!(a.body[..] == medium.source[10..], "{what}: wrong bytes");
    assert_eq!(
        header(a, "cache-control"),
        "public, max-age=31536000",
        "{what}"
    );
    assert_eq!(header(a, "last-modified"), CLIP_MODIFIED, "{what}");
    assert_eq!(
        header(a, "etag"),
        format!("\"{}\"", medium.sd_hash),
        "{what}"
    );
    assert_eq!(header(a, "access-control-allow-origin"), "*", "{what}");
    assert_eq!(header(a, "accept-ranges"), "bytes", "{what}");
}

/// An error answer: its status, never cacheable, still readable cross-origin, short.
fn assert_error(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {:?}", a.body);
    assert_eq!(header(a, "cache-control"), "no-store", "{what}");
    assert_eq!(header(a, "access-control-allow-origin"), "*", "{what}");
    assert!(a.body.len() < 120, "{what}: long error body");
}

#[tokio::test]
async fn every_player_server_url_shape_plays_the_claims_stream() {
    let (medium, _origin, api, cache) = player_cache(false).await;
    let base = format!("http://{}", cache.http_addr.unwrap());
    let sd6 = &medium.sd_hash[..6];
    let shapes = [
        format!("/content/claims/clip/{CLIP}/video.mp4"),
        format!("/api/v2/streams/free/clip/{CLIP}"),
        format!("/api/v3/streams/free/clip/{CLIP}/{sd6}.mp4"),
        format!("/api/v4/streams/free/clip/{}/{sd6}", &CLIP[..8]),
        format!("/v5/streams/start/{CLIP}/{sd6}.mp4"),
        format!("/v5/streams/original/{CLIP}/{sd6}"),
        format!("/v6/streams/{CLIP}/{sd6}.mp4"),
        // Reposts: embedded, a repost of a repost (looked up by id), five deep.
        format!("/v6/streams/{}/{sd6}.mp4", claim_id(1)),
        format!("/v6/streams/{}/{sd6}", claim_id(2)),
        format!("/v6/streams/{}/{sd6}.mp4", claim_id(105)),
    ];
    for path in &shapes {
        let a = request("GET", &format!("{base}{path}"), &[("range", "bytes=10-")]).await;
        assert_stream_answer(&a, &medium, path);
    }
    let calls = api.calls();
    for path in &shapes {
        let a = request("GET", &format!("{base}{path}"), &[("range", "bytes=10-")]).await;
        assert_eq!(a.status, 206, "{path} again");
    }
    assert_eq!(api.calls(), calls, "every resolution is cached");

    let v6 = format!("{base}/v6/streams/{CLIP}/{sd6}.mp4");
    let head = request("HEAD", &v6, &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        header(&head, "content-length"),
        medium.source.len().to_string()
    );
    assert_eq!(header(&head, "last-modified"), CLIP_MODIFIED);
    let stream = request("GET", &format!("{base}/stream/{}", medium.sd_hash), &[]).await;
    assert_eq!(
        header(&stream, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(stream.headers.get("last-modified").is_none());

    // Conditional requests: the ETag, else the claim's time.
    let etag = format!("\"{}\"", medium.sd_hash);
    for (name, value, status) in [
        ("if-none-match", etag.as_str(), 304),
        ("if-modified-since", CLIP_MODIFIED, 304),
        ("if-modified-since", "Mon, 13 Jun 2022 17:34:30 GMT", 200),
    ] {
        let a = request("GET", &v6, &[(name, value)]).await;
        assert_eq!(a.status, status, "{name}: {value}");
    }
    let a = request(
        "GET",
        &v6,
        &[
            ("if-none-match", "\"x\""),
            ("if-modified-since", CLIP_MODIFIED),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "If-None-Match decides when both are sent");
    cache.stop().await;
}

#[tokio::test]
async fn player_routes_refuse_what_they_cannot_serve() {
    let (medium, origin, _api, cache) = player_cache(false).await;
    let base = format!("http://{}", cache.http_addr.unwrap());
    let sd6 = &medium.sd_hash[..6];
    let refusals = [
        (
            format!("/v6/streams/{CLIP}/000000.mp4"),
            404,
            "wrong sd prefix",
        ),
        (
            format!("/v6/streams/{}/{sd6}", &CLIP[..39]),
            404,
            "short claim id",
        ),
        (
            format!("/v6/streams/{}/{sd6}", CLIP.to_uppercase()),
            404,
            "upper-case claim id",
        ),
        (
            format!("/v6/streams/{}x/{sd6}", &CLIP[..39]),
            404,
            "non-hex claim id",
        ),
        (
            format!("/v6/streams/{}/{sd6}", claim_id(9)),
            404,
            "no such claim",
        ),
        (
            format!("/v6/streams/{}/{sd6}", claim_id(106)),
            404,
            "six reposts deep",
        ),
        (
            format!("/v6/streams/{}/{sd6}", claim_id(3)),
            404,
            "a channel",
        ),
        (
            format!("/v6/streams/{CLIP}/{sd6}/seg0.ts"),
            404,
            "a transcoded fragment",
        ),
        (
            format!("/v6/streams/{}/{sd6}", claim_id(4)),
            402,
            "a paid claim",
        ),
        (
            format!("/api/v3/streams/paid/clip/{CLIP}/{sd6}/tok"),
            402,
            "a paid route",
        ),
        (
            format!("/api/v2/streams/paid/clip/{CLIP}/tok"),
            402,
            "a v2 paid route",
        ),
        (
            format!("/api/v4/streams/free/clip/{CLIP}/xyz.mp4"),
            400,
            "a non-hex prefix",
        ),
    ];
    for (path, status, what) in &refusals {
        let a = request("GET", &format!("{base}{path}"), &[]).await;
        assert_error(&a, *status, what);
    }
    // Nothing refused reached the origin beyond the stream's own blobs.
    let sd = BlobHash::parse(&medium.sd_hash).unwrap();
    assert!(origin
        .requests
        .lock()
        .unwrap()
        .iter()
        .all(|r| r == &format!("GET /bucket/{sd}")));
    cache.stop().await;
}

#[tokio::test]
async fn player_routes_on_the_http3_door() {
    let (medium, _origin, _api, cache) = player_cache(true).await;
    let client = H3Client::connect(cache.http3_addr.unwrap(), &[b"h3"])
        .await
        .unwrap();
    let sd6 = &medium.sd_hash[..6];
    for path in [
        format!("/v6/streams/{CLIP}/{sd6}.mp4"),
        format!("/v6/streams/{}/{sd6}.mp4", claim_id(2)),
        format!("/api/v3/streams/free/clip/{CLIP}/{sd6}.mp4"),
    ] {
        let (head, body) = client.get(&path).await;
        assert_eq!(head.status(), 200, "{path}");
        assert!(body[..] == medium.source[..], "{path}: wrong bytes");
        let h = head.headers();
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["last-modified"], CLIP_MODIFIED);
        let (head, body) = client.request(http::Method::HEAD, &path).await;
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert!(body.is_empty());
    }
    let (head, _) = client.get(&format!("/v6/streams/{CLIP}/000000.mp4")).await;
    assert_eq!(head.status(), 404);
    assert_eq!(head.headers()["cache-control"], "no-store");
    cache.stop().await;
}
