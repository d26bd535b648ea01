//! A real browser plays a stream the way Odysee's web player does: ffmpeg makes a short
//! H.264/MP4 video, `prism-lite encode` turns it into an LBRY stream, a real origin blobcache
//! holds the blobs, and a cold edge cache in front of it serves the claim's
//! `/v6/streams/{claim_id}/{sd6}.mp4` (resolved through a stand-in LBRY API) to headless
//! Chromium (driven through chromedriver), from a page on another origin, with
//! `<video crossorigin="anonymous">`. The video must play past 1 s with its frames readable by
//! the page (CORS worked), and a seek near the end must complete.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `ffmpeg` (tests/run.sh installs them); a
//! missing one fails the test with a message saying so.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;

use crate::common::*;

/// Bound on each browser-side wait (a cold start of Chromium on a busy box is slow).
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

fn require_tool(tool: &str, version_flag: &str, package: &str) {
    let ok = std::process::Command::new(tool)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{tool}` is not installed: the browser test needs the Debian package `{package}` \
         (tests/run.sh installs chromium, chromium-driver and ffmpeg)"
    );
}

/// Runs a command to completion within `BROWSER_DEADLINE`, failing the test with its stderr.
async fn run(cmd: &mut Command, what: &str) -> String {
    let out = tokio::time::timeout(BROWSER_DEADLINE, cmd.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BROWSER_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls a script in the page until `done` accepts its value; fails on a media error or
/// after the deadline.
async fn poll_page(
    client: &fantoccini::Client,
    what: &str,
    script: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + BROWSER_DEADLINE;
    loop {
        let state = client
            .execute(script, vec![])
            .await
            .expect("execute script");
        assert!(
            state["error"].is_null(),
            "the video failed while waiting for {what}: {state}"
        );
        if done(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last state {state}"
        );
        // Poll interval between checks of the page's state, not a synchronisation delay.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const STATE_JS: &str = "const v = document.getElementById('v'); return {t: v.currentTime, \
    d: v.duration, seeking: v.seeking, seeked: window.__seeked, ready: v.readyState, \
    error: v.error ? (v.error.code + ': ' + v.error.message) : (window.__playError || null)};";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_plays_and_seeks_a_v6_url_cross_origin_from_a_cold_cache() {
    require_tool("chromium", "--version", "chromium");
    require_tool("chromedriver", "--version", "chromium-driver");
    require_tool("ffmpeg", "-version", "ffmpeg");
    let work = tempfile::tempdir().unwrap();

    // ~4 s of noisy 360p at 8 Mbit/s: about 4 MB, so the stream spans several 2 MiB blobs.
    // The MP4 index stays at the end (no faststart): the browser must range-request the tail.
    let video = work.path().join("clip.mp4");
    run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
            .args(["-vf", "noise=alls=60:allf=t", "-t", "4"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-b:v", "8M", "-maxrate", "8M", "-bufsize", "4M", "-g", "25"])
            .arg(&video),
        "ffmpeg",
    )
    .await;
    let size = std::fs::metadata(&video).unwrap().len();
    assert!(
        size > 2 * 1024 * 1024,
        "test video is {size} bytes, want several blobs"
    );

    let blobs = work.path().join("blobs");
    let sd_hash = run(
        Command::new(env!("CARGO_BIN_EXE_prism-lite"))
            .arg("encode")
            .arg(&video)
            .arg("--out")
            .arg(&blobs),
        "prism-lite encode",
    )
    .await
    .trim()
    .to_owned();

    // A real origin holding the blobs, and a cold edge cache in front of it.
    let origin = Cache::new()
        .http()
        .store(Store::mem().named("origin_mem").max_size("64MiB"))
        .start()
        .await;
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let hash =
            prism_lite::blob::BlobHash::parse(path.file_name().unwrap().to_str().unwrap()).unwrap();
        let data = bytes::Bytes::from(std::fs::read(&path).unwrap());
        origin.store.put(&hash, data).await.unwrap();
    }
    let claim_id = "ad25e05aa7dc5e9994869040c6103f9a8728db46";
    let api = LbryApiStandIn::start(vec![stream_claim("clip", claim_id, &sd_hash, 1)]).await;
    let edge = Cache::new()
        .http()
        .name("edge")
        .section("stream", format!("{{api: {}}}", quoted(api.url())))
        .tier(Store::mem().named("edge_mem").max_size("64MiB"))
        .origin(
            Store::upstream(&format!("http://{}", origin.http_addr.unwrap()))
                .named("to_origin")
                .timeout("10s"),
        )
        .start()
        .await;
    let edge_base = format!("http://{}", edge.http_addr.unwrap());

    let profile = work.path().join("profile");
    let browser =
        Browser::start_with(&profile, &["--autoplay-policy=no-user-gesture-required"]).await;
    let client = browser.client.clone();

    // A page on another origin (the origin cache's door), with a muted CORS-mode <video>
    // pointed at the edge's v6 URL.
    client
        .goto(&format!("http://{}/", origin.http_addr.unwrap()))
        .await
        .unwrap();
    let v6 = format!("{edge_base}/v6/streams/{claim_id}/{}.mp4", &sd_hash[..6]);
    client
        .execute(
            "const v = document.createElement('video'); v.id = 'v'; v.muted = true; \
             v.crossOrigin = 'anonymous'; v.preload = 'auto'; window.__seeked = false; \
             v.addEventListener('seeked', () => { window.__seeked = true; }); \
             v.src = arguments[0]; document.body.appendChild(v); \
             v.play().catch(e => { window.__playError = String(e); }); return true;",
            vec![json!(v6)],
        )
        .await
        .unwrap();
    let state = poll_page(&client, "currentTime > 1 s", STATE_JS, |s| {
        s["t"].as_f64().unwrap_or(0.0) > 1.0
    })
    .await;
    let duration = state["d"].as_f64().expect("a known duration");
    assert!(duration > 3.5, "duration {duration}");
    // A cross-origin frame is readable only when the answers carried CORS headers.
    let pixels = client
        .execute(
            "const c = document.createElement('canvas'); c.width = 8; c.height = 8; \
             const g = c.getContext('2d'); g.drawImage(document.getElementById('v'), 0, 0, 8, 8); \
             try { g.getImageData(0, 0, 1, 1); return 'readable'; } catch (e) { return String(e); }",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(pixels, json!("readable"), "the frame is tainted: no CORS");

    let target = duration - 0.5;
    client
        .execute(
            "const v = document.getElementById('v'); window.__seeked = false; \
             v.currentTime = arguments[0]; return true;",
            vec![json!(target)],
        )
        .await
        .unwrap();
    let state = poll_page(&client, "the seek near the end", STATE_JS, |s| {
        s["seeked"] == json!(true) && s["seeking"] == json!(false)
    })
    .await;
    let now = state["t"].as_f64().unwrap();
    assert!(
        now >= target - 0.5,
        "after seeking to {target}, currentTime is {now}"
    );

    client.close().await.unwrap();
    let text = scrape(edge.metrics_addr).await;
    assert!(metric(&text, "prism_stream_started_total", &[]) >= 1.0);
    assert!(metric(&text, "prism_stream_range_requests_total", &[]) >= 1.0);
    edge.stop().await;
    origin.stop().await;
}
