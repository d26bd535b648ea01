//! The failover loop over scripted endpoint stores (the network versions are in
//! `tests/it/cluster.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::metrics::Metrics;

/// How a scripted endpoint answers every request.
#[derive(Clone)]
enum Script {
    Serve,
    Missing,
    Fail(&'static str),
    /// The remote answered with this HTTP status.
    Status(u16),
    TimeOut,
}

struct Scripted {
    script: Mutex<Script>,
    calls: AtomicUsize,
}

impl Scripted {
    fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl BlobStore for Scripted {
    fn name(&self) -> &str {
        "pool"
    }
    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.get(hash).await.map(|_| true).or_else(|e| {
            if e.is_not_found() {
                Ok(false)
            } else {
                Err(e)
            }
        })
    }
    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let script = self.script.lock().unwrap().clone();
        match script {
            Script::Serve => Ok(Blob::verified(
                Bytes::from(hash.to_hex()),
                Duration::ZERO,
                "pool",
            )),
            Script::Missing => Err(StoreError::NotFound),
            Script::Fail(message) => Err(StoreError::unavailable("pool", message)),
            Script::Status(code) => Err(StoreError::OriginStatus {
                store: "pool".into(),
                status: ::http::StatusCode::from_u16(code).expect("a status code"),
            }),
            Script::TimeOut => Err(StoreError::Timeout {
                store: "pool".into(),
                after: Duration::from_secs(1),
            }),
        }
    }
    async fn put(&self, _: &BlobHash, _: Bytes) -> StoreResult<()> {
        Err(StoreError::Refused {
            store: "pool".into(),
            message: "read-only".into(),
        })
    }
    async fn delete(&self, _: &BlobHash) -> StoreResult<()> {
        Ok(())
    }
    async fn has_cached(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }
    async fn wait_for_fill(&self, _: &BlobHash) {}
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}

struct Fixture {
    pool: PoolStore,
    ends: Vec<Arc<Scripted>>,
    metrics: Arc<Metrics>,
}

const NAMES: [&str; 3] = ["a:1", "b:1", "c:1"];

fn fixture(n: usize, cooldown: Duration) -> Fixture {
    let metrics = Arc::new(Metrics::new());
    let ctx = BuildContext {
        metrics: Arc::clone(&metrics),
    };
    let endpoints: Vec<Endpoint> = NAMES[..n].iter().map(|a| Endpoint::new(*a)).collect();
    let health = PoolHealthConfig {
        failures: 2,
        cooldown,
        max_cooldown: cooldown,
    };
    let ends: Vec<Arc<Scripted>> = (0..n)
        .map(|_| {
            Arc::new(Scripted {
                script: Mutex::new(Script::Serve),
                calls: AtomicUsize::new(0),
            })
        })
        .collect();
    let mut next = ends.iter();
    let pool = build(
        PoolSpec {
            store: "pool",
            endpoints: &endpoints,
            health: &health,
            name_of: crate::config::pool::address_name,
        },
        &ctx,
        |_| Ok(Arc::clone(next.next().unwrap()) as Arc<dyn BlobStore>),
    )
    .unwrap();
    Fixture {
        pool,
        ends,
        metrics,
    }
}

impl Fixture {
    /// A blob whose home is endpoint `home` (by the pool's own ranking).
    fn blob_homed_at(&self, home: usize, skip: usize) -> BlobHash {
        (0u32..)
            .map(|i| BlobHash::of(&i.to_le_bytes()))
            .filter(|h| self.pool.ranked(h)[0] == NAMES[home])
            .nth(skip)
            .unwrap()
    }
    fn series(&self, name: &str, endpoint: &str) -> f64 {
        let text = String::from_utf8(self.metrics.render()).unwrap();
        let prefix = format!("{name}{{endpoint=\"{endpoint}\",store=\"pool\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing"))
            .parse()
            .unwrap()
    }
}

#[tokio::test]
async fn the_home_serves_and_the_ranking_is_the_failover_order() {
    let f = fixture(3, Duration::from_secs(3600));
    for home in 0..3 {
        let h = f.blob_homed_at(home, 0);
        let before: Vec<usize> = f.ends.iter().map(|e| e.calls()).collect();
        f.pool.get(&h).await.unwrap();
        for (i, e) in f.ends.iter().enumerate() {
            assert_eq!(e.calls() - before[i], usize::from(i == home));
        }
    }
    assert_eq!(
        f.series("prism_upstream_endpoint_requests_total", "a:1"),
        1.0
    );
}

#[tokio::test]
async fn failures_fail_over_but_not_found_is_authoritative() {
    let f = fixture(3, Duration::from_secs(3600));
    let h = f.blob_homed_at(0, 0);
    let second = NAMES
        .iter()
        .position(|n| *n == f.pool.ranked(&h)[1])
        .unwrap();
    f.ends[0].set(Script::Fail("cannot connect: refused"));
    assert!(f.pool.get(&h).await.is_ok(), "failed over");
    assert_eq!(f.ends[second].calls(), 1);

    f.ends[0].set(Script::Missing);
    assert!(f.pool.get(&h).await.unwrap_err().is_not_found());
    assert!(!f.pool.has(&h).await.unwrap());
    assert_eq!(
        f.ends[second].calls(),
        1,
        "a 404 from the home does not fan out"
    );

    // A 4xx is an answer too; a 502 moves on without counting against the home.
    f.ends[0].set(Script::Status(403));
    assert!(f.pool.get(&h).await.is_err());
    assert_eq!(f.ends[second].calls(), 1);
    f.ends[0].set(Script::Status(502));
    for _ in 0..5 {
        assert!(f.pool.get(&h).await.is_ok());
    }
    assert_eq!(f.ends[second].calls(), 6);
    assert_eq!(
        f.series("prism_upstream_endpoint_state", "a:1"),
        0.0,
        "gateway errors do not eject"
    );
    assert_eq!(f.series("prism_upstream_endpoint_errors_total", "a:1"), 1.0);
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_then_skipped_without_a_request() {
    let f = fixture(3, Duration::from_secs(3600));
    f.ends[0].set(Script::TimeOut);
    for skip in 0..2 {
        assert!(f.pool.get(&f.blob_homed_at(0, skip)).await.is_ok());
    }
    assert_eq!(f.ends[0].calls(), 2);
    assert_eq!(f.series("prism_upstream_endpoint_state", "a:1"), 1.0);
    assert_eq!(
        f.series("prism_upstream_endpoint_ejections_total", "a:1"),
        1.0
    );
    for skip in 2..20 {
        assert!(f.pool.get(&f.blob_homed_at(0, skip)).await.is_ok());
    }
    assert_eq!(f.ends[0].calls(), 2, "ejected: not asked at all");
    assert_eq!(
        f.series("prism_upstream_endpoint_requests_total", "a:1"),
        2.0
    );
}

#[tokio::test]
async fn all_ejected_fails_fast_and_a_probe_brings_an_endpoint_back() {
    let f = fixture(2, Duration::ZERO);
    for e in &f.ends {
        e.set(Script::Status(500));
    }
    let h = f.blob_homed_at(0, 0);
    for _ in 0..2 {
        assert!(f.pool.get(&h).await.is_err());
    }
    assert_eq!(f.series("prism_upstream_endpoint_state", "a:1"), 1.0);
    assert_eq!(f.series("prism_upstream_endpoint_state", "b:1"), 1.0);
    // Cool-down zero: the next request probes; the endpoint answers and is back.
    f.ends[0].set(Script::Serve);
    assert!(f.pool.get(&h).await.is_ok());
    assert_eq!(f.series("prism_upstream_endpoint_state", "a:1"), 0.0);
}

#[tokio::test]
async fn all_ejected_with_a_long_cooldown_costs_no_request() {
    let f = fixture(2, Duration::from_secs(3600));
    for e in &f.ends {
        e.set(Script::TimeOut);
    }
    let h = f.blob_homed_at(0, 0);
    for _ in 0..2 {
        assert!(f.pool.get(&h).await.is_err());
    }
    let calls: usize = f.ends.iter().map(|e| e.calls()).sum();
    let err = f.pool.get(&h).await.unwrap_err();
    assert!(
        err.to_string().contains("all 2 pool endpoints are ejected"),
        "{err}"
    );
    assert_eq!(f.ends.iter().map(|e| e.calls()).sum::<usize>(), calls);
}

#[tokio::test]
async fn a_single_endpoint_is_never_ejected() {
    let f = fixture(1, Duration::from_secs(3600));
    f.ends[0].set(Script::TimeOut);
    let h = BlobHash::of(b"x");
    for _ in 0..5 {
        assert!(matches!(
            f.pool.get(&h).await,
            Err(StoreError::Timeout { .. })
        ));
    }
    assert_eq!(f.ends[0].calls(), 5);
    assert_eq!(f.series("prism_upstream_endpoint_state", "a:1"), 0.0);
}

#[test]
fn the_same_endpoint_twice_is_a_build_error() {
    let metrics = Arc::new(Metrics::new());
    let ctx = BuildContext { metrics };
    let endpoints = [Endpoint::new("A:1"), Endpoint::new("a:1")];
    let err = build(
        PoolSpec {
            store: "pool",
            endpoints: &endpoints,
            health: &PoolHealthConfig::default(),
            name_of: crate::config::pool::address_name,
        },
        &ctx,
        |_| Ok(Arc::new(crate::store::noop::NoopStore::new("noop")) as Arc<dyn BlobStore>),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("listed twice"), "{err}");
}
