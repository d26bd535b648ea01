//! A stand-in for the public LBRY JSON-RPC API (which cannot run here), speaking its wire
//! format: `resolve` with `urls` and `claim_search` with `claim_id`, answered from a list of
//! claims shaped like the real entry in `../shared/fixtures/lbry-api/resolve.json`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::fixture_streams;

/// The real `resolve` entry of the shared fixtures (a stream claim), to shape claims after.
pub fn fixture_claim() -> Value {
    let path = fixture_streams()
        .expect("../shared/fixtures")
        .join("../lbry-api/resolve.json");
    let example: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    example["response"]["result"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone()
}

/// A stream claim `name#claim_id` pointing at `sd_hash`, made at `timestamp`.
pub fn stream_claim(name: &str, claim_id: &str, sd_hash: &str, timestamp: u64) -> Value {
    let mut claim = fixture_claim();
    claim["name"] = json!(name);
    claim["normalized_name"] = json!(name);
    claim["claim_id"] = json!(claim_id);
    claim["permanent_url"] = json!(format!("lbry://{name}#{claim_id}"));
    claim["timestamp"] = json!(timestamp);
    claim["value"]["source"]["sd_hash"] = json!(sd_hash);
    claim
}

/// A repost claim of `target`: with the target embedded as `reposted_claim` (as the API answers
/// for most reposts) or with only `value.claim_id` (so the cache must look it up).
pub fn repost_claim(name: &str, claim_id: &str, target: &Value, embedded: bool) -> Value {
    let mut claim = fixture_claim();
    claim["name"] = json!(name);
    claim["claim_id"] = json!(claim_id);
    claim["value_type"] = json!("repost");
    claim["value"] = json!({ "claim_id": target["claim_id"] });
    if embedded {
        claim["reposted_claim"] = target.clone();
    }
    claim
}

/// A channel claim (not a stream).
pub fn channel_claim(name: &str, claim_id: &str) -> Value {
    let mut claim = fixture_claim()["signing_channel"].clone();
    claim["name"] = json!(name);
    claim["claim_id"] = json!(claim_id);
    claim
}

/// The running stand-in; counts the calls it answered.
pub struct LbryApiStandIn {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl LbryApiStandIn {
    /// Serves `claims` on a free 127.0.0.1 port.
    pub async fn start(claims: Vec<Value>) -> LbryApiStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let claims = Arc::new(claims);
        let counter = Arc::clone(&calls);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (claims, counter) = (Arc::clone(&claims), Arc::clone(&counter));
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let (claims, counter) = (Arc::clone(&claims), Arc::clone(&counter));
                    async move {
                        let body: Bytes = BodyExt::collect(req.into_body())
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        counter.fetch_add(1, Ordering::SeqCst);
                        let answer = answer(&claims, &body);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                            answer.to_string(),
                        ))))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        LbryApiStandIn { addr, calls, task }
    }

    /// The `stream.api` URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for LbryApiStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One JSON-RPC answer, as the SDK shapes it.
fn answer(claims: &[Value], body: &[u8]) -> Value {
    let call: Value = serde_json::from_slice(body).unwrap_or_default();
    let params = &call["params"];
    let result = match call["method"].as_str() {
        Some("resolve") => {
            let url = params["urls"][0].as_str().unwrap_or_default().to_owned();
            let entry = find_named(claims, &url).cloned().unwrap_or_else(|| {
                json!({"error": {"name": "NOT_FOUND",
                    "text": format!("Could not find claim at \"{url}\".")}})
            });
            json!({ url: entry })
        }
        Some("claim_search") => {
            let id = params["claim_id"].as_str().unwrap_or_default();
            let items: Vec<&Value> = claims.iter().filter(|c| c["claim_id"] == id).collect();
            json!({"items": items, "page": 1, "page_size": params["page_size"],
                "blocked": {"channels": [], "total": 0}})
        }
        _ => {
            return json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}})
        }
    };
    json!({"jsonrpc": "2.0", "id": call["id"], "result": result})
}

/// The claim `lbry://name#id_prefix` names.
fn find_named<'a>(claims: &'a [Value], url: &str) -> Option<&'a Value> {
    let (name, id) = url.strip_prefix("lbry://")?.split_once('#')?;
    claims
        .iter()
        .find(|c| c["name"] == name && c["claim_id"].as_str().is_some_and(|c| c.starts_with(id)))
}
