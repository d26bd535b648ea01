//! Cache clusters: regional caches over one origin, and edges whose `upstream` store is a pool
//! of them (`upstreams: [...]`), each blob going to its rendezvous-hashed home.
//!
//! The big test runs everything as real `prism-lite blobcache` processes on 127.0.0.1 over one
//! in-test HTTP origin that counts every request: the homes split the keyspace, a second edge
//! agrees with the first, a killed regional is skipped after a few failures, a returning one is
//! used again, and a fourth regional takes over about a quarter of the homes. The second test
//! puts an endpoint that never answers (and one that answers 500) in a pool and measures that
//! they cost a few timeouts in total, not one per blob.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prism_lite::blob::BlobHash;
use prism_lite::config::pool::url_name;
use prism_lite::store::pool::rendezvous::Ranking;

use crate::common::*;

/// The edges' per-endpoint deadline.
const EDGE_TIMEOUT: Duration = Duration::from_secs(2);
const BLOBS: usize = 300;
const LATER_BLOBS: usize = 60;

/// Regional `n` (from 1): a memory tier over the origin, named so `Via` and its metrics say which.
fn regional(n: usize, origin: &HttpOrigin) -> Cache {
    Cache::new()
        .http()
        .name(&format!("regional-{n}"))
        .tier(
            Store::mem()
                .named(&format!("regional-{n}-mem"))
                .max_size("64MiB"),
        )
        .origin(Store::http(origin).named("origin").timeout("5s"))
}

/// An edge: a memory tier over the pool of `regionals` (URLs, in this order).
fn edge(regionals: &[String]) -> Cache {
    Cache::new()
        .http()
        .name("edge")
        .tier(Store::mem().named("edge-mem").max_size("64MiB"))
        .origin(
            Store::upstreams(regionals)
                .named("regionals")
                .timeout(&format!("{}ms", EDGE_TIMEOUT.as_millis()))
                .set("health", "{failures: 3, cooldown: 200ms, max_cooldown: 1s}"),
        )
}

/// The cluster's processes and the test's view of them.
struct Cluster {
    dir: tempfile::TempDir,
    origin: HttpOrigin,
    /// Index i is `regional-{i+1}`; `None` while killed.
    regionals: Vec<Option<Blobcache>>,
    ports: Vec<u16>,
    edges: usize,
}

impl Cluster {
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    async fn start_regional(&mut self, i: usize) {
        let conf = self.dir.path().join(format!("regional-{}", i + 1));
        let process = regional(i + 1, &self.origin)
            .door(Door::http().port(self.ports[i]))
            .spawn(&conf)
            .await;
        if i == self.regionals.len() {
            self.regionals.push(Some(process));
        } else {
            self.regionals[i] = Some(process);
        }
    }

    /// A fresh edge over the regionals `order` (indexes, in the order its list names them).
    async fn start_edge(&mut self, order: &[usize]) -> Blobcache {
        self.edges += 1;
        let urls: Vec<String> = order.iter().map(|&i| self.url(i)).collect();
        let conf = self.dir.path().join(format!("edge-{}", self.edges));
        edge(&urls).spawn(&conf).await
    }

    /// The ranking the edges use for the regionals `members`, as the library documents it.
    fn ranking(&self, members: &[usize]) -> (Ranking, Vec<usize>) {
        let ranking = Ranking::new(members.iter().map(|&i| (url_name(&self.url(i)), 1.0)));
        (ranking, members.to_vec())
    }

    fn origin_gets(&self) -> HashMap<String, usize> {
        let mut count = HashMap::new();
        for line in self.origin.requests.lock().unwrap().iter() {
            if let Some(path) = line.strip_prefix("GET /bucket/") {
                *count.entry(path.to_string()).or_insert(0) += 1;
            }
        }
        count
    }

    async fn regional_misses(&self) -> f64 {
        let mut total = 0.0;
        for (i, r) in self.regionals.iter().enumerate() {
            if let Some(r) = r {
                let text = scrape(r.metrics).await;
                let component = format!("regional-{}", i + 1);
                total += metric(
                    &text,
                    "reflector_cache_miss_total",
                    &[("component", &component)],
                );
            }
        }
        total
    }
}

fn home(ranking: &(Ranking, Vec<usize>), hash: &BlobHash) -> usize {
    ranking.1[ranking.0.home(hash).unwrap()]
}

fn second(ranking: &(Ranking, Vec<usize>), hash: &BlobHash) -> usize {
    ranking.1[ranking.0.rank(hash)[1]]
}

/// Which regional (index) served a blob, from the `Via` trace the edge returned.
fn served_by(via: &str) -> Option<usize> {
    (1..=4)
        .find(|n| via.contains(&format!("\"regional-{n}\"")))
        .map(|n| n - 1)
}

/// GETs every blob through `edge` (8 at a time): asserts 200 and the bytes, returns which
/// regional served each (None = the edge's own cache).
async fn fetch_all(edge: SocketAddr, blobs: &[(BlobHash, Bytes)]) -> Vec<Option<usize>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (hash, data)) in blobs.iter().enumerate() {
        let (gate, hash, data) = (Arc::clone(&gate), *hash, data.clone());
        tasks.spawn(async move {
            let _slot = gate.acquire().await.unwrap();
            let (status, via, body) = get_blob(edge, &hash.to_hex()).await;
            assert_eq!(status, 200, "{hash}: {}", String::from_utf8_lossy(&body));
            assert_eq!(body, data, "{hash}: wrong bytes");
            (i, via.as_deref().and_then(served_by))
        });
    }
    let mut served = vec![None; blobs.len()];
    while let Some(done) = within("fetching blobs", tasks.join_next()).await {
        let (i, by) = done.unwrap();
        served[i] = by;
    }
    served
}

async fn endpoint_metric(edge: &Blobcache, name: &str, endpoint: &str) -> f64 {
    let text = scrape(edge.metrics).await;
    metric(
        &text,
        name,
        &[("store", "regionals"), ("endpoint", endpoint)],
    )
}

fn blobs(seed: u64, n: usize) -> Vec<(BlobHash, Bytes)> {
    (0..n as u64)
        .map(|i| {
            let data = blob_bytes(seed + i, 4096 + (i as usize % 7) * 512);
            (BlobHash::of(&data), data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regionals_split_the_keyspace_survive_a_death_and_take_a_fourth() {
    let origin = HttpOrigin::start().await;
    let blobs = blobs(1_000, BLOBS);
    let later = blobs_for_later();
    for (hash, data) in blobs.iter().chain(&later) {
        origin
            .script
            .set(&format!("/bucket/{hash}"), 200, data.clone());
    }
    let mut c = Cluster {
        dir: tempfile::tempdir().unwrap(),
        origin,
        regionals: Vec::new(),
        ports: (0..4).map(|_| free_port()).collect(),
        edges: 0,
    };
    for i in 0..3 {
        c.start_regional(i).await;
    }
    let three = c.ranking(&[0, 1, 2]);

    // 1. One edge: every blob comes from its home, the homes split the keyspace, and each
    //    blob is fetched from the origin exactly once.
    //    Every blob is asked for twice, concurrently: still one upstream request per miss.
    let edge_a = c.start_edge(&[0, 1, 2]).await;
    let twice: Vec<_> = blobs.iter().chain(&blobs).cloned().collect();
    let served_twice = fetch_all(edge_a.http, &twice).await;
    // The two copies of a blob run in no fixed order: whichever came first went to a regional,
    // the other either shared that fetch or hit the edge's cache. Both never name different
    // regionals.
    let served: Vec<Option<usize>> = served_twice[..BLOBS]
        .iter()
        .zip(&served_twice[BLOBS..])
        .enumerate()
        .map(|(i, (first, again))| {
            assert!(
                first.is_none() || again.is_none() || first == again,
                "{i}: served by {first:?} and by {again:?}"
            );
            first.or(*again)
        })
        .collect();
    let mut share = [0usize; 3];
    for ((hash, _), by) in blobs.iter().zip(&served) {
        assert_eq!(
            *by,
            Some(home(&three, hash)),
            "{hash} not served by its home"
        );
        share[by.unwrap()] += 1;
    }
    eprintln!("homes over 3 regionals of {BLOBS} blobs: {share:?}");
    for (i, n) in share.iter().enumerate() {
        let fraction = *n as f64 / BLOBS as f64;
        assert!(
            (0.20..=0.47).contains(&fraction),
            "regional-{} holds {fraction:.2} of the blobs",
            i + 1
        );
    }
    let gets = c.origin_gets();
    for (hash, _) in &blobs {
        assert_eq!(gets.get(&hash.to_hex()), Some(&1), "origin GETs of {hash}");
    }
    assert_eq!(c.regional_misses().await, BLOBS as f64);
    // A blob nobody has: the home's 404 is the answer, no other regional asks the origin.
    for i in 0..5u64 {
        let missing = BlobHash::of(&i.to_be_bytes());
        assert_eq!(get_blob(edge_a.http, &missing.to_hex()).await.0, 404);
        assert_eq!(c.origin_gets().get(&missing.to_hex()), Some(&1));
    }

    let upstream_requests = metric(
        &scrape(edge_a.metrics).await,
        "prism_upstream_endpoint_requests_total",
        &[("store", "regionals")],
    );
    assert_eq!(
        upstream_requests,
        BLOBS as f64 + 5.0,
        "one upstream request per miss"
    );

    // 2. A second edge, its list in another order: same homes, no new origin fetch.
    let edge_b = c.start_edge(&[2, 0, 1]).await;
    let served_b = fetch_all(edge_b.http, &blobs).await;
    assert_eq!(served_b, served, "the second edge picked other homes");
    assert_eq!(c.origin_gets().values().sum::<usize>(), BLOBS + 5);
    assert_eq!(c.regional_misses().await, BLOBS as f64 + 5.0);
    edge_a.kill().await;
    edge_b.kill().await;

    // 3. regional-2 dies. A fresh edge still serves every blob, from the next-ranked regional,
    //    and stops asking the dead one after a few failures.
    c.regionals[1].take().unwrap().kill().await;
    let edge_c = c.start_edge(&[0, 1, 2]).await;
    let started = Instant::now();
    let served_c = fetch_all(edge_c.http, &blobs).await;
    let took = started.elapsed();
    let homed_at_dead = blobs.iter().filter(|(h, _)| home(&three, h) == 1).count();
    for ((hash, _), by) in blobs.iter().zip(&served_c) {
        let expected = if home(&three, hash) == 1 {
            second(&three, hash)
        } else {
            home(&three, hash)
        };
        assert_eq!(*by, Some(expected), "{hash}");
    }
    let dead = url_name(&c.url(1));
    let asked_dead =
        endpoint_metric(&edge_c, "prism_upstream_endpoint_requests_total", &dead).await;
    let ejections =
        endpoint_metric(&edge_c, "prism_upstream_endpoint_ejections_total", &dead).await;
    eprintln!(
        "regional-2 dead: {BLOBS} blobs in {took:?} ({homed_at_dead} homed there); \
         the edge asked it {asked_dead} times, ejected it {ejections} times"
    );
    let bound = EDGE_TIMEOUT * BLOBS as u32 / 4;
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    assert!(ejections >= 1.0);
    assert!(
        asked_dead >= 3.0 && asked_dead < homed_at_dead as f64 / 2.0,
        "asked the dead regional {asked_dead} times for {homed_at_dead} blobs"
    );
    // The stand-ins fetched the dead one's blobs once each; nobody else fetched anything.
    let gets = c.origin_gets();
    for (hash, _) in &blobs {
        let expected = 1 + usize::from(home(&three, hash) == 1);
        assert_eq!(gets.get(&hash.to_hex()), Some(&expected), "{hash}");
    }

    // 4. regional-2 comes back (same port, empty cache): once a request probes it, the edge
    //    uses it again for its blobs.
    c.start_regional(1).await;
    let deadline = Instant::now() + TEST_TIMEOUT;
    let mut probe = 0u64;
    while endpoint_metric(&edge_c, "prism_upstream_endpoint_state", &dead).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "regional-2 never back in rotation"
        );
        // Fresh hashes (404s): some are homed at regional-2, the first after the cool-down
        // is the probe.
        probe += 1;
        let missing = BlobHash::of(format!("probe-{probe}").as_bytes());
        let status = get_blob(edge_c.http, &missing.to_hex()).await.0;
        assert!(status == 404 || status == 502, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served_later = fetch_all(edge_c.http, &later).await;
    let mut back = 0;
    for ((hash, _), by) in later.iter().zip(&served_later) {
        assert_eq!(*by, Some(home(&three, hash)), "{hash}");
        back += usize::from(home(&three, hash) == 1);
    }
    assert!(back > 0, "no later blob is homed at regional-2");
    eprintln!("regional-2 back after {probe} probe requests; it served {back} new blobs");
    edge_c.kill().await;

    // 5. A fourth regional: about a quarter of the homes move, all of them to it.
    c.start_regional(3).await;
    let four = c.ranking(&[0, 1, 2, 3]);
    let edge_d = c.start_edge(&[0, 1, 2, 3]).await;
    let served_d = fetch_all(edge_d.http, &blobs).await;
    let mut moved = 0;
    for ((hash, _), by) in blobs.iter().zip(&served_d) {
        assert_eq!(*by, Some(home(&four, hash)), "{hash}");
        if *by != Some(home(&three, hash)) {
            assert_eq!(*by, Some(3), "{hash} moved to an old regional");
            moved += 1;
        }
    }
    let fraction = moved as f64 / BLOBS as f64;
    eprintln!("adding a 4th regional moved {moved} of {BLOBS} homes ({fraction:.3})");
    assert!((0.15..=0.35).contains(&fraction), "moved {fraction}");
    edge_d.kill().await;
    for r in c.regionals.iter_mut() {
        if let Some(r) = r.take() {
            r.kill().await;
        }
    }
}

fn blobs_for_later() -> Vec<(BlobHash, Bytes)> {
    blobs(50_000, LATER_BLOBS)
}

/// A regional cache in this process over `origin`.
async fn in_process_regional(n: usize, origin: &HttpOrigin) -> prism_lite::app::Running {
    regional(n, origin).start().await
}

#[tokio::test]
async fn endpoints_that_hang_or_fail_cost_a_few_timeouts_not_one_per_blob() {
    const N: usize = 100;
    const TIMEOUT: Duration = Duration::from_secs(1);
    let origin = HttpOrigin::start().await;
    let blobs = blobs(7_000, N);
    for (hash, data) in &blobs {
        origin
            .script
            .set(&format!("/bucket/{hash}"), 200, data.clone());
    }
    let a = in_process_regional(1, &origin).await;
    let b = in_process_regional(2, &origin).await;
    let hanging = HangingOrigin::start().await;
    let broken = HttpOrigin::start().await;
    broken.script.set("/blob", 500, "broken");
    let urls = [
        format!("http://{}", hanging.addr),
        format!("http://{}", broken.addr),
        format!("http://{}", a.http_addr.unwrap()),
        format!("http://{}", b.http_addr.unwrap()),
    ];
    let metrics = Arc::new(prism_lite::metrics::Metrics::new());
    let store = Store::upstreams(&urls)
        .named("pool")
        .timeout(&format!("{}ms", TIMEOUT.as_millis()))
        .build_with(&metrics);
    let started = Instant::now();
    for (hash, data) in &blobs {
        let blob = within("pool get", store.get(hash)).await.unwrap();
        assert_eq!(&blob.data, data);
    }
    let took = started.elapsed();
    let text = String::from_utf8(metrics.render()).unwrap();
    let requests = |url: &str| {
        metric(
            &text,
            "prism_upstream_endpoint_requests_total",
            &[("endpoint", &url_name(url))],
        )
    };
    let ranking = Ranking::new(urls.iter().map(|u| (url_name(u), 1.0)));
    let homed = |i: usize| {
        blobs
            .iter()
            .filter(|(h, _)| ranking.home(h) == Some(i))
            .count()
    };
    eprintln!(
        "{N} blobs with a hanging and a broken endpoint in the pool: {took:?}; \
         hanging asked {} times ({} homed there), broken asked {} times ({} homed there)",
        requests(&urls[0]),
        homed(0),
        requests(&urls[1]),
        homed(1)
    );
    let bound = TIMEOUT * N as u32 / 4;
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    for (i, url) in urls[..2].iter().enumerate() {
        assert!(
            requests(url) < (homed(i) as f64 / 2.0).max(10.0),
            "{url} asked {} times",
            requests(url)
        );
        assert!(
            metric(
                &text,
                "prism_upstream_endpoint_ejections_total",
                &[("endpoint", &url_name(url))]
            ) >= 1.0
        );
    }
    a.stop().await;
    b.stop().await;
}
