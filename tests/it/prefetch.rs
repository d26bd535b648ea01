//! Channel prefetch end to end: a local LBRY JSON-RPC server answering with the real response
//! shapes from `../shared/fixtures/lbry-api`, an origin holding real and generated streams, and
//! a `caching` store whose cache tier is checked directly.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prism_lite::blob::BlobHash;
use prism_lite::config::{self, BlobcacheConfig, StoreConfig};
use prism_lite::metrics::Metrics;
use prism_lite::prefetch::report::{RunReport, StatusHandle};
use prism_lite::prefetch::Prefetcher;
use prism_lite::store::announce::AnnouncingStore;
use prism_lite::store::caching::CachingStore;
use prism_lite::store::memory::MemoryStore;
use prism_lite::store::{BlobStore, BuildContext};
use prism_lite::stream::{BlobInfo, StreamDescriptor};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::common::{
    blob_bytes, fixture_blobs, http_client, metric, quoted, Cache, Store, TestOrigin, TEST_TIMEOUT,
};

const CHANNEL_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CHANNEL_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const CHANNEL_C: &str = "cccccccccccccccccccccccccccccccccccccccc";
/// 2023-01-01T00:00:00Z.
const JAN_2023: i64 = 1_672_531_200;
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// The fake LBRY API
// ---------------------------------------------------------------------------------------------

fn api_fixtures() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/lbry-api"
    ));
    if dir.is_dir() && crate::common::fixture_streams().is_some() {
        Some(dir)
    } else {
        eprintln!("skipping: ../shared/fixtures not found");
        None
    }
}

#[derive(Clone)]
struct FakeClaim {
    name: String,
    sd_hash: String,
    size: u64,
    release_time: i64,
}

/// Response templates taken from the SDK's published examples.
struct Templates {
    resolve_entry: Value,
    search_result: Value,
    search_item: Value,
}

impl Templates {
    fn load(dir: &Path) -> Templates {
        let read = |name: &str| -> Value {
            let text = std::fs::read_to_string(dir.join(name)).expect("read api fixture");
            serde_json::from_str(&text).expect("api fixture is JSON")
        };
        let resolve = read("resolve.json");
        let resolve_entry = resolve["response"]["result"]
            .as_object()
            .and_then(|m| m.values().next().cloned())
            .expect("resolve fixture has an entry");
        let search = read("claim_search.json");
        let search_result = search["response"]["result"].clone();
        let search_item = search_result["items"][0].clone();
        assert!(search_item["value"]["source"]["sd_hash"].is_string());
        Templates {
            resolve_entry,
            search_result,
            search_item,
        }
    }
}

struct ApiState {
    templates: Templates,
    /// channel URL -> claim id
    urls: Mutex<HashMap<String, String>>,
    /// claim id -> streams
    streams: Mutex<HashMap<String, Vec<FakeClaim>>>,
    /// How many of the next calls answer 500.
    fail_next: AtomicUsize,
    /// While set, every call answers 500.
    down: AtomicBool,
    calls: Mutex<Vec<(String, Value)>>,
    call_count: AtomicUsize,
}

struct FakeApi {
    url: String,
    state: Arc<ApiState>,
}

impl FakeApi {
    async fn start(dir: &Path) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let addr = listener.local_addr().expect("api addr");
        let state = Arc::new(ApiState {
            templates: Templates::load(dir),
            urls: Mutex::default(),
            streams: Mutex::default(),
            fail_next: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            calls: Mutex::default(),
            call_count: AtomicUsize::new(0),
        });
        let serving = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeApi {
            url: format!("http://{addr}/"),
            state,
        }
    }

    fn channel(&self, url: &str, id: &str, claims: Vec<FakeClaim>) {
        self.state
            .urls
            .lock()
            .unwrap()
            .insert(url.to_string(), id.to_string());
        self.state
            .streams
            .lock()
            .unwrap()
            .insert(id.to_string(), claims);
    }

    fn calls(&self, method: &str) -> Vec<Value> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

impl ApiState {
    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        self.call_count.fetch_add(1, Ordering::SeqCst);
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return respond(StatusCode::BAD_REQUEST, json!({})),
        };
        if self.down.load(Ordering::SeqCst)
            || self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return respond(StatusCode::INTERNAL_SERVER_ERROR, json!({"oops": "down"}));
        }
        let Ok(call) = serde_json::from_slice::<Value>(&body) else {
            return respond(StatusCode::BAD_REQUEST, json!({}));
        };
        let method = call["method"].as_str().unwrap_or_default().to_string();
        let params = call["params"].clone();
        self.calls
            .lock()
            .unwrap()
            .push((method.clone(), params.clone()));
        let result = match method.as_str() {
            "resolve" => self.resolve(&params),
            "claim_search" => self.claim_search(&params),
            _ => {
                return respond(
                    StatusCode::OK,
                    json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}}),
                )
            }
        };
        respond(StatusCode::OK, json!({"jsonrpc": "2.0", "result": result}))
    }

    fn resolve(&self, params: &Value) -> Value {
        let mut out = serde_json::Map::new();
        for url in params["urls"].as_array().cloned().unwrap_or_default() {
            let url = url.as_str().unwrap_or_default().to_string();
            let entry = match self.urls.lock().unwrap().get(&url) {
                Some(id) => {
                    let mut e = self.templates.resolve_entry.clone();
                    e["claim_id"] = json!(id);
                    e["name"] = json!(url.trim_start_matches("lbry://"));
                    e["value_type"] = json!("channel");
                    e
                }
                None => json!({"error": {"name": "NOT_FOUND",
                    "text": format!("Could not find claim at \"{url}\".")}}),
            };
            out.insert(url, entry);
        }
        Value::Object(out)
    }

    fn claim_search(&self, params: &Value) -> Value {
        let id = params["channel_ids"][0].as_str().unwrap_or_default();
        let page = params["page"].as_u64().unwrap_or(1) as usize;
        let page_size = params["page_size"].as_u64().unwrap_or(20) as usize;
        // Deliberately ignores `release_time`: the client must filter too.
        let mut claims = self
            .streams
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default();
        claims.sort_by_key(|c| -c.release_time);
        let items: Vec<Value> = claims
            .iter()
            .skip((page - 1) * page_size)
            .take(page_size)
            .enumerate()
            .map(|(i, c)| {
                let mut item = self.templates.search_item.clone();
                item["claim_id"] = json!(format!("{:040x}", page * 1000 + i));
                item["name"] = json!(c.name);
                item["timestamp"] = json!(c.release_time + 60);
                item["value"]["release_time"] = json!(c.release_time.to_string());
                item["value"]["source"]["sd_hash"] = json!(c.sd_hash);
                item["value"]["source"]["size"] = json!(c.size.to_string());
                item["signing_channel"]["claim_id"] = json!(id);
                item
            })
            .collect();
        let mut result = self.templates.search_result.clone();
        result["items"] = Value::Array(items);
        result["page"] = json!(page);
        result["page_size"] = json!(page_size);
        if let Some(map) = result.as_object_mut() {
            map.remove("total_pages");
            map.remove("total_items");
        }
        result
    }
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r
}

// ---------------------------------------------------------------------------------------------
// Streams and the cache under test
// ---------------------------------------------------------------------------------------------

/// A stream: its sd hash and every blob (sd blob first).
#[derive(Clone)]
struct TestStream {
    sd_hash: BlobHash,
    blobs: Vec<(BlobHash, Bytes)>,
}

impl TestStream {
    fn content(&self) -> &[(BlobHash, Bytes)] {
        &self.blobs[1..]
    }

    fn hashes(&self) -> Vec<BlobHash> {
        self.blobs.iter().map(|(h, _)| *h).collect()
    }

    fn claim(&self, name: &str, release_time: i64) -> FakeClaim {
        FakeClaim {
            name: name.to_string(),
            sd_hash: self.sd_hash.to_hex(),
            size: self.content().iter().map(|(_, b)| b.len() as u64).sum(),
            release_time,
        }
    }
}

/// A valid stream of `n` content blobs of `len` bytes (content is random, not real
/// ciphertext: prefetching never decrypts).
fn make_stream(seed: u64, n: usize, len: usize) -> TestStream {
    let content: Vec<(BlobHash, Bytes)> = (0..n)
        .map(|i| {
            let data = blob_bytes(seed * 1000 + i as u64, len);
            (BlobHash::of(&data), data)
        })
        .collect();
    let mut infos: Vec<BlobInfo> = content
        .iter()
        .enumerate()
        .map(|(i, (h, d))| BlobInfo {
            blob_hash: Some(*h),
            blob_num: i as u32,
            iv: format!("{:032x}", seed * 100 + i as u64),
            length: d.len() as u64,
        })
        .collect();
    infos.push(BlobInfo {
        blob_hash: None,
        blob_num: n as u32,
        iv: format!("{:032x}", seed * 100 + 99),
        length: 0,
    });
    let mut sd = StreamDescriptor {
        blobs: infos,
        key: format!("{:032x}", seed + 7),
        stream_hash: String::new(),
        stream_name: hex::encode(format!("stream-{seed}")),
        stream_type: "lbryfile".into(),
        suggested_file_name: hex::encode(format!("stream-{seed}.bin")),
    };
    sd.stream_hash = sd.compute_stream_hash();
    let sd_bytes = Bytes::from(sd.to_bytes());
    StreamDescriptor::parse(&sd_bytes).expect("generated sd blob is valid");
    let sd_hash = BlobHash::of(&sd_bytes);
    let mut blobs = vec![(sd_hash, sd_bytes)];
    blobs.extend(content);
    TestStream { sd_hash, blobs }
}

/// The two real SDK-made fixture streams (small, medium).
fn fixture_streams() -> Vec<TestStream> {
    let Some(dir) = crate::common::fixture_streams() else {
        return Vec::new();
    };
    let all: HashMap<BlobHash, Bytes> = fixture_blobs().into_iter().collect();
    ["small", "medium"]
        .iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(dir.join(name).join("stream.json")).expect("stream.json");
            let meta: Value = serde_json::from_str(&text).expect("stream.json is JSON");
            let sd_hash = BlobHash::parse(meta["sd_hash"].as_str().unwrap()).unwrap();
            let mut blobs = vec![(sd_hash, all[&sd_hash].clone())];
            for b in meta["blobs"].as_array().unwrap() {
                if let Some(h) = b["blob_hash"].as_str() {
                    let h = BlobHash::parse(h).unwrap();
                    blobs.push((h, all[&h].clone()));
                }
            }
            TestStream { sd_hash, blobs }
        })
        .collect()
}

/// `caching{cache: mem, origin: TestOrigin}` with the cache tier kept for inspection.
struct Harness {
    metrics: Arc<Metrics>,
    cache: Arc<dyn BlobStore>,
    origin: Arc<TestOrigin>,
    root: Arc<dyn BlobStore>,
}

impl Harness {
    fn new() -> Harness {
        let metrics = Arc::new(Metrics::new());
        let ctx = BuildContext {
            metrics: Arc::clone(&metrics),
        };
        let cfg = Store::caching(Store::mem().named("ram").max_size("256MiB"), Store::noop())
            .named("edge")
            .config();
        let StoreConfig::Caching(caching) = &cfg else {
            panic!("caching root expected")
        };
        let StoreConfig::Mem(mem) = &caching.cache else {
            panic!("mem cache expected")
        };
        let cache: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(mem, &ctx));
        let origin = TestOrigin::new(false);
        let root: Arc<dyn BlobStore> = Arc::new(CachingStore::new(
            caching,
            Arc::clone(&cache),
            Arc::clone(&origin) as Arc<dyn BlobStore>,
            &ctx,
        ));
        Harness {
            metrics,
            cache,
            origin,
            root,
        }
    }

    fn add(&self, stream: &TestStream) {
        for (_, data) in &stream.blobs {
            self.origin.insert(data.clone());
        }
    }

    fn prefetcher(&self, api: &str, extra: &str) -> Prefetcher {
        self.prefetcher_over(Arc::clone(&self.root), api, extra)
    }

    /// A prefetcher that fetches through `store` instead of the root.
    fn prefetcher_over(&self, store: Arc<dyn BlobStore>, api: &str, extra: &str) -> Prefetcher {
        Prefetcher::new(
            prefetch_config(api, extra),
            store,
            &self.metrics.registry,
            StatusHandle::new(true, api),
        )
        .expect("prefetcher")
    }

    /// Asserts the cache tier itself holds every hash. No waiting: the prefetcher waits for each
    /// cache fill before it counts a blob as fetched.
    async fn assert_cached(&self, hashes: &[BlobHash]) {
        let mut missing = Vec::new();
        for h in hashes {
            if !self.cache.has(h).await.unwrap() {
                missing.push(*h);
            }
        }
        assert!(
            missing.is_empty(),
            "cache tier misses {} of {} blobs, e.g. {}",
            missing.len(),
            hashes.len(),
            missing[0]
        );
    }

    async fn cached(&self, hash: &BlobHash) -> bool {
        self.cache.has(hash).await.unwrap()
    }
}

fn prefetch_config(api: &str, extra: &str) -> prism_lite::prefetch::config::PrefetchConfig {
    let text = format!(
        "store: {{noop: {{}}}}\nprefetch:\n  api: {api}\n  retry_backoff: 10ms\n  api_timeout: 5s\n{extra}"
    );
    let cfg: BlobcacheConfig = config::parse(&text, "test.yaml").expect("prefetch config");
    cfg.prefetch.expect("prefetch section")
}

async fn run(prefetcher: &Prefetcher) -> RunReport {
    tokio::time::timeout(
        TEST_TIMEOUT,
        prefetcher.run_once(&CancellationToken::new(), indicatif::ProgressBar::hidden()),
    )
    .await
    .expect("prefetch run finished in time")
}

fn channel<'a>(
    report: &'a RunReport,
    name: &str,
) -> &'a prism_lite::prefetch::report::ChannelReport {
    report
        .channels
        .iter()
        .find(|c| c.channel == name)
        .unwrap_or_else(|| panic!("no report for {name}: {report:#?}"))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn one_run_warms_every_blob_of_every_channel_across_pages() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    let real = fixture_streams();
    let generated: Vec<TestStream> = (1..=7).map(|s| make_stream(s, 2, 1000)).collect();
    let shared = make_stream(50, 1, 500);
    for s in real.iter().chain(&generated).chain([&shared]) {
        h.add(s);
    }
    api.channel(
        "@real:a",
        CHANNEL_A,
        vec![
            real[0].claim("small", JAN_2023),
            real[1].claim("medium", JAN_2023 + DAY),
            shared.claim("shared", JAN_2023 + 2 * DAY),
        ],
    );
    let b: Vec<FakeClaim> = generated
        .iter()
        .enumerate()
        .map(|(i, s)| s.claim(&format!("gen{i}"), JAN_2023 + i as i64 * DAY))
        .chain([shared.claim("shared-again", JAN_2023)])
        .collect();
    api.channel("lbry://@gen#b", CHANNEL_B, b);
    let p = h.prefetcher(
        &api.url,
        "  page_size: 3\n  channels:\n    - '@real:a'\n    - lbry://@gen#b\n",
    );

    let report = run(&p).await;
    assert!(report.succeeded(), "{report:#?}");
    assert!(!report.budget_hit);
    let a = channel(&report, "@real:a");
    assert_eq!(a.claim_id.as_deref(), Some(CHANNEL_A));
    assert_eq!((a.streams_selected, a.streams_complete), (3, 3), "{a:#?}");
    let gb = channel(&report, "lbry://@gen#b");
    // 8 listed over pages of 3 (3+3+2); the stream shared with @real:a is warmed once.
    assert_eq!(gb.streams_listed, 8, "{gb:#?}");
    assert_eq!(
        (gb.streams_selected, gb.streams_complete),
        (7, 7),
        "{gb:#?}"
    );
    assert_eq!(gb.blobs_fetched, 7 * 3);
    assert_eq!(gb.streams_failed + a.streams_failed, 0);

    let all: Vec<BlobHash> = real
        .iter()
        .chain(&generated)
        .chain([&shared])
        .flat_map(TestStream::hashes)
        .collect();
    h.assert_cached(&all).await;

    // The requests have the documented shape, and paging went page 1, 2, 3 for @gen.
    let searches = api.calls("claim_search");
    let gen_pages: Vec<u64> = searches
        .iter()
        .filter(|p| p["channel_ids"][0] == CHANNEL_B)
        .map(|p| p["page"].as_u64().unwrap())
        .collect();
    assert_eq!(gen_pages, [1, 2, 3]);
    let first = &searches[0];
    assert_eq!(first["claim_type"], "stream");
    assert_eq!(first["order_by"], json!(["release_time"]));
    assert_eq!(first["no_totals"], true);
    assert_eq!(first["page_size"], 3);
    assert!(first.get("release_time").is_none());

    let text = String::from_utf8(h.metrics.render()).unwrap();
    assert_eq!(
        metric(
            &text,
            "prism_prefetch_blobs_total",
            &[("channel", "lbry://@gen#b"), ("result", "fetched")]
        ),
        21.0
    );
    assert_eq!(
        metric(
            &text,
            "prism_prefetch_streams_total",
            &[("channel", "@real:a"), ("result", "complete")]
        ),
        3.0
    );

    // A second run resolves from memory and finds everything cached: nothing is fetched.
    let gets_before = h.origin.get_count();
    let again = run(&p).await;
    assert_eq!(api.calls("resolve").len(), 2, "resolutions are cached");
    let gb = channel(&again, "lbry://@gen#b");
    assert_eq!((gb.blobs_fetched, gb.blobs_cached), (0, 21), "{gb:#?}");
    assert_eq!(again.bytes_fetched, 0);
    assert_eq!(h.origin.get_count(), gets_before);
}

#[tokio::test]
async fn since_max_streams_and_max_bytes_select_the_newest_streams() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    // Six streams, one per day from 2023-01-01; each 2 blobs of 1000 bytes (size 2000).
    let streams: Vec<TestStream> = (1..=6).map(|s| make_stream(100 + s, 2, 1000)).collect();
    for s in &streams {
        h.add(s);
    }
    let claims: Vec<FakeClaim> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| s.claim(&format!("s{i}"), JAN_2023 + i as i64 * DAY))
        .collect();
    api.channel("@since:a", CHANNEL_A, claims.clone());
    api.channel("@max:b", CHANNEL_B, claims.clone());
    api.channel("@bytes:c", CHANNEL_C, claims);
    let since = h.prefetcher(
        &api.url,
        "  page_size: 2\n  channels:\n    - {channel: '@since:a', since: 2023-01-03}\n",
    );
    let report = run(&since).await;
    let c = channel(&report, "@since:a");
    // Released on days 3..6 (2023-01-03 itself included).
    assert_eq!(c.streams_selected, 4, "{c:#?}");
    h.assert_cached(
        &streams[2..]
            .iter()
            .flat_map(TestStream::hashes)
            .collect::<Vec<_>>(),
    )
    .await;
    for s in &streams[..2] {
        for hash in s.hashes() {
            assert!(!h.cached(&hash).await, "older stream must not be fetched");
        }
    }
    let search = &api.calls("claim_search")[0];
    assert_eq!(
        search["release_time"],
        json!(format!(">{}", JAN_2023 + 2 * DAY - 1))
    );

    // max_streams 2: the two newest, and paging stops once the limit is reached.
    let h2 = Harness::new();
    for s in &streams {
        h2.add(s);
    }
    let max = h2.prefetcher(
        &api.url,
        "  page_size: 2\n  channels:\n    - {channel: '@max:b', max_streams: 2}\n",
    );
    let report = run(&max).await;
    assert_eq!(channel(&report, "@max:b").streams_selected, 2);
    let b_pages = api
        .calls("claim_search")
        .iter()
        .filter(|p| p["channel_ids"][0] == CHANNEL_B)
        .count();
    assert_eq!(b_pages, 1, "no page is asked for beyond the limit");
    h2.assert_cached(
        &streams[4..]
            .iter()
            .flat_map(TestStream::hashes)
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(!h2.cached(&streams[3].sd_hash).await);

    // max_bytes 5000: two streams of 2000 fit, the third would not.
    let h3 = Harness::new();
    for s in &streams {
        h3.add(s);
    }
    let bytes = h3.prefetcher(
        &api.url,
        "  channels:\n    - {channel: '@bytes:c', max_bytes: 5000}\n",
    );
    let report = run(&bytes).await;
    assert_eq!(channel(&report, "@bytes:c").streams_selected, 2);
    h3.assert_cached(
        &streams[4..]
            .iter()
            .flat_map(TestStream::hashes)
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(!h3.cached(&streams[3].sd_hash).await);
}

#[tokio::test]
async fn head_n_fetches_exactly_the_sd_blob_and_the_first_n_blobs() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    let s = make_stream(200, 4, 700);
    h.add(&s);
    api.channel("@head:a", CHANNEL_A, vec![s.claim("four", JAN_2023)]);
    let p = h.prefetcher(
        &api.url,
        "  channels:\n    - {channel: '@head:a', blobs: 'head:2'}\n",
    );
    let report = run(&p).await;
    let c = channel(&report, "@head:a");
    assert_eq!((c.blobs_fetched, c.streams_complete), (3, 1), "{c:#?}");
    h.assert_cached(&s.hashes()[..3]).await;
    for (hash, _) in &s.content()[2..] {
        assert!(
            !h.cached(hash).await,
            "blobs past head:2 must not be fetched"
        );
    }
    assert_eq!(h.origin.get_count(), 3);
}

#[tokio::test]
async fn broken_streams_are_reported_and_the_rest_complete() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    let good = make_stream(300, 2, 800);
    let missing_sd = make_stream(301, 1, 800); // never added to the origin
    let garbage = Bytes::from_static(b"{\"this is\": \"not an sd blob\"}");
    let garbage_hash = h.origin.insert(garbage);
    let lost_blob = make_stream(302, 2, 800);
    h.add(&good);
    h.add(&lost_blob);
    h.origin.delete(&lost_blob.content()[1].0).await.unwrap();
    api.channel(
        "@broken:a",
        CHANNEL_A,
        vec![
            missing_sd.claim("missing", JAN_2023 + 3 * DAY),
            FakeClaim {
                name: "garbage".into(),
                sd_hash: garbage_hash.to_hex(),
                size: 10,
                release_time: JAN_2023 + 2 * DAY,
            },
            lost_blob.claim("lost", JAN_2023 + DAY),
            good.claim("good", JAN_2023),
        ],
    );
    let p = h.prefetcher(&api.url, "  channels: ['@broken:a']\n");
    let report = run(&p).await;
    assert!(report.succeeded(), "{report:#?}");
    let c = channel(&report, "@broken:a");
    assert_eq!(c.streams_selected, 4);
    assert_eq!((c.streams_complete, c.streams_failed), (1, 3), "{c:#?}");
    let errors = c.errors.join("\n");
    assert!(errors.contains(&missing_sd.sd_hash.to_hex()), "{errors}");
    assert!(errors.contains("not a valid stream descriptor"), "{errors}");
    assert!(
        errors.contains(&lost_blob.content()[1].0.to_hex()),
        "{errors}"
    );
    h.assert_cached(&good.hashes()).await;
    h.assert_cached(&lost_blob.hashes()[..2]).await;
}

#[tokio::test]
async fn api_errors_are_retried_with_backoff() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    let s = make_stream(400, 1, 300);
    h.add(&s);
    api.channel("@flaky:a", CHANNEL_A, vec![s.claim("one", JAN_2023)]);
    api.state.fail_next.store(3, Ordering::SeqCst);
    let p = h.prefetcher(&api.url, "  retries: 4\n  channels: ['@flaky:a']\n");
    let report = run(&p).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(channel(&report, "@flaky:a").streams_complete, 1);
    // 3 failures + resolve + one claim_search page.
    assert_eq!(api.state.call_count.load(Ordering::SeqCst), 5);
    h.assert_cached(&s.hashes()).await;

    // Down for good: bounded retries, then a report saying so (no panic, no hang).
    api.state.down.store(true, Ordering::SeqCst);
    let h2 = Harness::new();
    let down = h2.prefetcher(&api.url, "  retries: 2\n  channels: ['@other:b']\n");
    let report = run(&down).await;
    assert!(report.api_unreachable && !report.succeeded(), "{report:#?}");
    let c = channel(&report, "@other:b");
    assert!(
        c.errors[0].contains("unreachable after 3 attempts"),
        "{c:#?}"
    );
}

#[tokio::test]
async fn channel_list_file_is_reread_every_run() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    let first = make_stream(500, 1, 400);
    let second = make_stream(501, 1, 400);
    let old = make_stream(502, 1, 400);
    for s in [&first, &second, &old] {
        h.add(s);
    }
    api.channel("@one:a", CHANNEL_A, vec![first.claim("first", JAN_2023)]);
    api.channel(
        "@two:b",
        CHANNEL_B,
        vec![
            second.claim("second", JAN_2023 + 10 * DAY),
            old.claim("old", JAN_2023),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("channel_list.txt");
    std::fs::write(&list, "# channels to keep warm\n@one:a\n").unwrap();
    let p = h.prefetcher(
        &api.url,
        &format!("  channel_list_file: {}\n", list.display()),
    );
    let report = run(&p).await;
    assert_eq!(report.channels.len(), 1);
    h.assert_cached(&first.hashes()).await;
    assert!(!h.cached(&second.sd_hash).await);

    std::fs::write(
        &list,
        "# channels to keep warm\n@one:a\n@two:b,2023-01-05\nnot a channel\n",
    )
    .unwrap();
    let report = run(&p).await;
    assert_eq!(report.channels.len(), 2, "{report:#?}");
    assert_eq!(channel(&report, "@two:b").streams_selected, 1);
    assert!(
        report.errors.iter().any(|e| e.contains("line 4")),
        "{:?}",
        report.errors
    );
    h.assert_cached(&second.hashes()).await;
    assert!(!h.cached(&old.sd_hash).await, "the file's date applies");
}

#[tokio::test]
async fn byte_budget_stops_a_run_and_the_next_run_resumes() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    // Four streams of 3 x 10,000 bytes.
    let streams: Vec<TestStream> = (1..=4).map(|s| make_stream(600 + s, 3, 10_000)).collect();
    for s in &streams {
        h.add(s);
    }
    let claims = streams
        .iter()
        .enumerate()
        .map(|(i, s)| s.claim(&format!("b{i}"), JAN_2023 + i as i64 * DAY))
        .collect();
    api.channel("@big:a", CHANNEL_A, claims);
    let p = h.prefetcher(
        &api.url,
        "  concurrency: 2\n  run_byte_budget: 50000\n  channels: ['@big:a']\n",
    );
    let report = run(&p).await;
    assert!(report.budget_hit, "{report:#?}");
    // Never more than the budget plus the (small) sd blobs.
    let sd_bytes: u64 = streams.iter().map(|s| s.blobs[0].1.len() as u64).sum();
    assert!(report.bytes_fetched <= 50_000 + sd_bytes, "{report:#?}");
    let c = channel(&report, "@big:a");
    assert!(c.blobs_fetched >= 4 && c.blobs_fetched < 16, "{c:#?}");
    assert!(
        c.streams_incomplete >= 1 && c.streams_complete < 4,
        "{c:#?}"
    );
    let text = String::from_utf8(h.metrics.render()).unwrap();
    assert_eq!(
        metric(&text, "prism_prefetch_budget_exhausted_total", &[]),
        1.0
    );

    // Next run (new budget): what is cached is skipped, the rest is fetched.
    let fetched_first = c.blobs_fetched;
    let p2 = Prefetcher::new(
        prefetch_config(&api.url, "  channels: ['@big:a']\n"),
        Arc::clone(&h.root),
        &Metrics::new().registry,
        StatusHandle::new(true, &api.url),
    )
    .unwrap();
    let mut cached_after_first = 0;
    for s in &streams {
        for hash in s.hashes() {
            cached_after_first += usize::from(h.cached(&hash).await);
        }
    }
    assert_eq!(cached_after_first as u64, fetched_first);
    let report = run(&p2).await;
    assert!(!report.budget_hit);
    let c = channel(&report, "@big:a");
    assert_eq!(c.streams_complete, 4, "{c:#?}");
    assert_eq!(c.blobs_fetched + c.blobs_cached, 16, "{c:#?}");
    assert_eq!(c.blobs_cached, fetched_first, "{c:#?}");
    h.assert_cached(
        &streams
            .iter()
            .flat_map(TestStream::hashes)
            .collect::<Vec<_>>(),
    )
    .await;
}

/// The blobcache process keeps serving while the API is down, the prefetcher keeps trying, and
/// `/prefetch/status` shows the run once the API is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_serves_during_api_outage_and_status_reports_the_run() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    api.state.down.store(true, Ordering::SeqCst);
    let real = fixture_streams();
    api.channel(
        "@real:a",
        CHANNEL_A,
        vec![
            real[0].claim("small", JAN_2023),
            real[1].claim("medium", JAN_2023 + DAY),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let origin_dir = fill_origin_dir(tmp.path(), &real);
    let running = Cache::new()
        .http()
        .name("edge")
        .tier(Store::mem().named("ram"))
        .origin(Store::disk(&origin_dir).named("origin"))
        .section(
            "prefetch",
            format!(
                "{{api: {}, interval: 100ms, retries: 1, retry_backoff: 10ms, channels: ['@real:a']}}",
                quoted(&api.url)
            ),
        )
        .conf_dir(tmp.path())
        .start()
        .await;
    let http = running.http_addr.unwrap();
    let admin = running.metrics_addr;
    let client = http_client();

    // The prefetcher is hitting the dead API (observable: the server counts calls).
    crate::common::wait_until("prefetcher calls the API", || {
        api.state.call_count.load(Ordering::SeqCst) >= 3
    })
    .await;
    let status = crate::common::get_json(admin, "/prefetch/status").await;
    assert_eq!(status["runs_succeeded"], 0, "{status}");
    let small = real[0].blobs[1].0;
    let resp = client
        .get(format!("http://{http}/blob?hash={small}"))
        .send()
        .await
        .expect("blob GET during outage");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), real[0].blobs[1].1);
    // Again, now from the cache tier, still during the outage.
    let resp = client
        .get(format!("http://{http}/blob?hash={small}"))
        .send()
        .await
        .expect("cached blob GET during outage");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), real[0].blobs[1].1);
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metric(&text, "reflector_cache_hit_total", &[("component", "edge")]) >= 1.0);

    // The API comes back: a later run succeeds and the status says what it did.
    api.state.down.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    let status = loop {
        let s = crate::common::get_json(admin, "/prefetch/status").await;
        if s["runs_succeeded"].as_u64().unwrap_or(0) >= 1 && s["running"] == false {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful run: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["enabled"], true);
    assert!(
        status["last_success_at"].as_f64().unwrap() > 0.0,
        "{status}"
    );
    let last = &status["last_run"];
    assert_eq!(last["budget_hit"], false, "{status}");
    assert_eq!(last["api_unreachable"], false, "{status}");
    let ch = &last["channels"][0];
    assert_eq!(ch["channel"], "@real:a", "{status}");
    assert_eq!(ch["claim_id"], CHANNEL_A, "{status}");
    assert_eq!(ch["streams_selected"], 2, "{status}");
    assert_eq!(ch["blobs_failed"], 0, "{status}");
    // Every blob: fetched in this run or an earlier one, or cached by the GET above.
    let total = ch["blobs_fetched"].as_u64().unwrap() + ch["blobs_cached"].as_u64().unwrap();
    assert!(total >= 1, "{status}");
    // The status page's channel table says the same, once a run has finished (with a 100 ms
    // interval, the next run may be in progress: its partial row has no finish time yet).
    let row = crate::common::within("a finished run on the status page", async {
        loop {
            let page = crate::common::get_json(admin, "/status.json").await;
            let row = page["channels"]
                .as_array()
                .and_then(|rows| rows.iter().find(|c| c["channel"] == "@real:a").cloned());
            if let Some(row) = row.filter(|r| r["last_prefetch_unix"].is_u64()) {
                break row;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(row["streams_selected"], 2, "{row}");
    assert_eq!(row["streams_complete"], 2, "{row}");
    let held: u64 = real
        .iter()
        .flat_map(|s| &s.blobs)
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(row["held_bytes"], held, "every blob of both streams: {row}");
    let held = bytesize::ByteSize(held).to_string();
    crate::common::within("the channel row in the page", async {
        loop {
            let html = crate::common::get_text(admin, "/").await;
            if html.contains(&format!("<tr><td>@real:a<td>2 of 2, {held}<td>–<td>")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let metrics = String::from_utf8(
        client
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        metric(
            &metrics,
            "prism_prefetch_last_success_timestamp_seconds",
            &[]
        ) > 0.0
    );
    assert!(
        metric(
            &metrics,
            "prism_prefetch_runs_total",
            &[("result", "api_unreachable")]
        ) >= 1.0
    );
    tokio::time::timeout(TEST_TIMEOUT, running.stop())
        .await
        .expect("blobcache stops with the prefetcher running");
}

/// A flat `disk` directory holding the streams' blob files.
fn fill_origin_dir(root: &Path, streams: &[TestStream]) -> PathBuf {
    let dir = root.join("origin");
    std::fs::create_dir_all(&dir).unwrap();
    for s in streams {
        for (hash, data) in &s.blobs {
            std::fs::write(dir.join(hash.to_hex()), data).unwrap();
        }
    }
    dir
}

/// `prism-lite prefetch --once` as an operator runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prefetch_once_fills_the_disk_cache_and_prints_a_summary() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let real = fixture_streams();
    api.channel(
        "@real:a",
        CHANNEL_A,
        vec![
            real[0].claim("small", JAN_2023),
            real[1].claim("medium", JAN_2023 + DAY),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let origin_dir = fill_origin_dir(tmp.path(), &real);
    let cache_dir = tmp.path().join("cache");
    Cache::new()
        .tier(Store::disk(&cache_dir).named("local").max_size("1GB"))
        .origin(Store::disk(&origin_dir).named("origin"))
        .section(
            "prefetch",
            format!("{{api: {}, channels: ['@real:a']}}", quoted(&api.url)),
        )
        .write_to(tmp.path());
    let out = run_cli(tmp.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let header = stdout.lines().next().unwrap_or_default();
    for col in ["channel", "streams", "fetched", "cached", "bytes fetched"] {
        assert!(header.contains(col), "{stdout}");
    }
    let row = stdout
        .lines()
        .find(|l| l.starts_with("@real:a"))
        .unwrap_or_else(|| panic!("no row for the channel:\n{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // channel, streams 2, complete 2, failed 0, fetched 6 (2 sd + 4 content)...
    assert_eq!(&cells[1..5], ["2", "2", "0", "6"], "{stdout}");
    for s in &real {
        for hash in s.hashes() {
            assert!(
                cache_dir.join(hash.to_hex()).is_file(),
                "cache dir misses {hash}"
            );
        }
    }

    // The API unreachable: exit non-zero, saying so.
    Cache::new()
        .store(Store::disk(&cache_dir))
        .section(
            "prefetch",
            "{api: \"http://127.0.0.1:9/\", retries: 0, api_timeout: 2s, channels: ['@real:a']}",
        )
        .write_to(tmp.path());
    let out = run_cli(tmp.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("unreachable"), "{stderr}");
}

async fn run_cli(conf_dir: &Path) -> std::process::Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prism-lite"))
        .args([
            "--conf-dir",
            conf_dir.to_str().unwrap(),
            "prefetch",
            "--once",
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(TEST_TIMEOUT, child)
        .await
        .expect("prefetch --once finished in time")
        .expect("run prism-lite")
}

/// A cache tier whose writes wait at a gate, to observe a fill that has answered its client
/// but not yet landed.
struct GatedCache {
    inner: Arc<dyn BlobStore>,
    gate: Arc<tokio::sync::Semaphore>,
    put_arrived: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl BlobStore for GatedCache {
    fn name(&self) -> &str {
        "gated"
    }
    async fn has(&self, hash: &BlobHash) -> prism_lite::store::StoreResult<bool> {
        self.inner.has(hash).await
    }
    async fn get(
        &self,
        hash: &BlobHash,
    ) -> prism_lite::store::StoreResult<prism_lite::store::Blob> {
        self.inner.get(hash).await
    }
    async fn put(&self, hash: &BlobHash, data: Bytes) -> prism_lite::store::StoreResult<()> {
        self.put_arrived.notify_one();
        let _permit = self.gate.acquire().await.expect("gate");
        self.inner.put(hash, data).await
    }
    async fn delete(&self, hash: &BlobHash) -> prism_lite::store::StoreResult<()> {
        self.inner.delete(hash).await
    }
    async fn has_cached(&self, hash: &BlobHash) -> prism_lite::store::StoreResult<bool> {
        self.inner.has_cached(hash).await
    }
    async fn wait_for_fill(&self, hash: &BlobHash) {
        self.inner.wait_for_fill(hash).await
    }
    fn list(&self) -> Option<Vec<BlobHash>> {
        self.inner.list()
    }
}

/// `wait_for_fill` (what the prefetcher waits on before counting a blob) returns only once the cache
/// write is done, not when the client got its bytes.
#[tokio::test]
async fn wait_for_fill_waits_for_the_cache_write() {
    let h = Harness::new();
    let gated = Arc::new(GatedCache {
        inner: Arc::clone(&h.cache),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        put_arrived: tokio::sync::Notify::new(),
    });
    let cfg = Store::caching(Store::mem(), Store::noop()).config();
    let StoreConfig::Caching(caching) = &cfg else {
        panic!("caching root expected")
    };
    let ctx = BuildContext {
        metrics: Arc::clone(&h.metrics),
    };
    let root: Arc<dyn BlobStore> = Arc::new(CachingStore::new(
        caching,
        Arc::clone(&gated) as Arc<dyn BlobStore>,
        Arc::clone(&h.origin) as Arc<dyn BlobStore>,
        &ctx,
    ));
    let hash = h.origin.insert(blob_bytes(9, 1000));
    let arrived = gated.put_arrived.notified();
    tokio::time::timeout(TEST_TIMEOUT, root.get(&hash))
        .await
        .expect("get in time")
        .expect("origin has the blob");
    tokio::time::timeout(TEST_TIMEOUT, arrived)
        .await
        .expect("the fill reaches the cache write");
    assert!(
        !h.cached(&hash).await,
        "the write is still held at the gate"
    );
    let settling = {
        let root = Arc::clone(&root);
        tokio::spawn(async move { root.wait_for_fill(&hash).await })
    };
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !settling.is_finished(),
        "wait_for_fill returned before the write"
    );
    gated.gate.add_permits(1);
    tokio::time::timeout(TEST_TIMEOUT, settling)
        .await
        .expect("wait_for_fill returns once the write is done")
        .unwrap();
    assert!(h.cached(&hash).await);
    assert!(root.has_cached(&hash).await.unwrap());
}

#[tokio::test]
async fn warmed_streams_are_announced_to_the_dht() {
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    let s = make_stream(300, 3, 500);
    h.add(&s);
    api.channel("@dht:a", CHANNEL_A, vec![s.claim("announced", JAN_2023)]);
    let data = tempfile::tempdir().expect("tempdir");
    let dht_cfg = prism_lite::dht::DhtConfig {
        enabled: true,
        port: 0,
        address: Some("127.0.0.1".into()),
        bootstrap: vec![],
        allow_private: true,
        data_dir: data.path().to_path_buf(),
        ..Default::default()
    };
    let dht = prism_lite::dht::Dht::bind(
        &dht_cfg,
        Some(3333),
        prism_lite::dht::NodeId::random(),
        &prometheus::Registry::new(),
    )
    .await
    .expect("dht binds");
    let announcer = dht.announcer();
    // As the blobcache runs it: the prefetcher fetches through the root's announcing layer.
    let announcing = Arc::new(AnnouncingStore::new(Arc::clone(&h.root)));
    announcing.attach(Arc::new(announcer.clone()));
    let p = h.prefetcher_over(announcing, &api.url, "  channels: ['@dht:a']\n");
    let report = run(&p).await;
    assert_eq!(channel(&report, "@dht:a").streams_complete, 1);
    let hashes = s.hashes();
    // The sd blob and the first content blob, nothing else.
    assert!(announcer.is_announced(&s.sd_hash));
    assert!(announcer.is_announced(&hashes[1]));
    assert!(!announcer.is_announced(&hashes[2]));
    assert_eq!(dht.status()["announced_blobs"], 2);
}

/// `pin: true` on a channel pins each stream it warms (with the claim's release time, so the
/// oldest lose their pin first past `pin_max`); other channels' streams are not pinned.
#[tokio::test]
async fn pin_true_channels_pin_what_they_warm() {
    use prism_lite::metrics::Family;
    use prism_lite::store::pins::{PinSlot, Pins};
    use prism_lite::store::served::ServedStreams;
    let Some(dir) = api_fixtures() else { return };
    let api = FakeApi::start(&dir).await;
    let h = Harness::new();
    let (pinned, plain) = (make_stream(300, 2, 500), make_stream(301, 2, 500));
    h.add(&pinned);
    h.add(&plain);
    api.channel("@pin:a", CHANNEL_A, vec![pinned.claim("kept", JAN_2023)]);
    api.channel("@plain:b", CHANNEL_B, vec![plain.claim("other", JAN_2023)]);
    let files = tempfile::tempdir().unwrap();
    let slot = PinSlot::register(&prometheus::Registry::new());
    let pins = Arc::new(Pins::open(&files.path().join("pins.json"), u64::MAX, &slot).unwrap());
    let served = Arc::new(ServedStreams::register(&prometheus::Registry::new()));
    let p = h
        .prefetcher(
            &api.url,
            "  channels:\n    - {channel: '@pin:a', pin: true}\n    - '@plain:b'\n",
        )
        .with_pins(Some(Arc::clone(&pins)))
        .with_served_streams(Arc::clone(&served));
    run(&p).await;
    for hash in pinned.hashes() {
        assert!(pins.is_pinned(&hash), "{hash} of the pin: true channel");
    }
    for hash in plain.hashes() {
        assert!(!pins.is_pinned(&hash), "{hash} of a plain channel");
    }
    let listed = pins.to_json();
    assert_eq!(listed["streams"][0]["source"], "channel @pin:a");
    assert_eq!(listed["streams"][0]["released"], JAN_2023);
    let bytes: u64 = pinned.blobs.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(pins.pinned_bytes(), bytes);

    // The prefetcher told which channel each warmed stream is from: bytes served of its blobs
    // add up per channel.
    served.served(&pinned.content()[0].0, 500);
    served.served(&plain.sd_hash, 100);
    served.served(&BlobHash::of(b"unknown"), 7);
    assert_eq!(
        served.channels(),
        vec![("@pin:a".to_string(), 500), ("@plain:b".to_string(), 100)]
    );
}
