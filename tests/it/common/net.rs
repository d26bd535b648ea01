//! Network test plumbing: an in-process S3 server (s3s + s3s-fs), a tiny scripted HTTP origin,
//! a hanging origin, the test HTTP client, and `/metrics` scraping. Everything binds 127.0.0.1;
//! readiness is "the listener is bound", never a sleep.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::metric;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub const ACCESS_KEY: &str = "AKIDPRISMTEST";
pub const SECRET_KEY: &str = "prism-test-secret-key";
pub const BUCKET: &str = "blobs";

/// Every network await in the tests goes through this: a hang fails the test, it never stalls it.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within 20s"),
    }
}

/// A real S3-protocol server on 127.0.0.1, storing objects under a directory.
pub struct S3Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

/// A public-read bucket policy: objects can be read without credentials (what an `http`
/// origin pointed at a bucket's URL relies on); everything else needs the test keys.
struct PublicRead;

#[async_trait::async_trait]
impl s3s::access::S3Access for PublicRead {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let read = matches!(cx.s3_op().name(), "GetObject" | "HeadObject");
        match cx.credentials().is_some() || read {
            true => Ok(()),
            false => Err(s3s::s3_error!(AccessDenied, "Signature is required")),
        }
    }
}

impl S3Server {
    /// Starts on `port` (0 = any free port). Objects live in `root/<bucket>/<key>`.
    pub async fn start(root: &Path, port: u16) -> S3Server {
        S3Server::serve(root, port, false).await
    }

    /// Like [`S3Server::start`] on any free port, with objects readable anonymously (a
    /// public-read bucket, as a CDN or an `http` origin reads one).
    pub async fn start_public_read(root: &Path) -> S3Server {
        S3Server::serve(root, 0, true).await
    }

    async fn serve(root: &Path, port: u16, public_read: bool) -> S3Server {
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        if public_read {
            builder.set_access(PublicRead);
        }
        let service = builder.build();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind s3");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Owning the connections here means aborting this task drops every open
            // connection too: a stopped server really is gone, keep-alive pools included.
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        S3Server { addr, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes every connection; returns once the port is free again.
    pub async fn stop(self) {
        self.task.abort();
        let _ = within("s3 server stop", self.task).await;
    }
}

/// An SDK client talking to the test server directly (to plant objects behind a store's back).
pub fn sdk_client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub async fn create_bucket(client: &aws_sdk_s3::Client) {
    within(
        "create bucket",
        client.create_bucket().bucket(BUCKET).send(),
    )
    .await
    .expect("create bucket");
}

pub async fn put_object(client: &aws_sdk_s3::Client, key: &str, data: Bytes) {
    within(
        "put object",
        client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(data.into())
            .send(),
    )
    .await
    .expect("put object");
}

/// A scripted HTTP origin: path -> (status, body); unknown paths get 404.
#[derive(Clone, Default)]
pub struct Script(Arc<Mutex<HashMap<String, (u16, Bytes)>>>);

impl Script {
    pub fn set(&self, path: &str, status: u16, body: impl Into<Bytes>) {
        self.0
            .lock()
            .unwrap()
            .insert(path.to_string(), (status, body.into()));
    }
}

pub struct HttpOrigin {
    pub addr: SocketAddr,
    pub script: Script,
    pub requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl HttpOrigin {
    pub async fn start() -> HttpOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Script::default();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (script.clone(), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (s, r) = (s.clone(), Arc::clone(&r));
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_string();
                        r.lock().unwrap().push(format!("{} {path}", req.method()));
                        let (status, body) =
                            s.0.lock()
                                .unwrap()
                                .get(&path)
                                .cloned()
                                .unwrap_or((404, Bytes::from_static(b"no such object")));
                        let mut resp = Response::new(Full::new(body));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        async move { Ok::<_, Infallible>(resp) }
                    });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        HttpOrigin {
            addr,
            script,
            requests,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/bucket/", self.addr)
    }
}

impl Drop for HttpOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections and never answers: the worst kind of origin.
pub struct HangingOrigin {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HangingOrigin {
    pub async fn start() -> HangingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        HangingOrigin { addr, task }
    }
}

impl Drop for HangingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `GET /blob?hash=H` on a front door: (status, Via header, body).
pub async fn get_blob(addr: SocketAddr, hash: &str) -> (u16, Option<String>, Bytes) {
    let resp = within(
        "GET /blob",
        http_client()
            .get(format!("http://{addr}/blob?hash={hash}"))
            .send(),
    )
    .await
    .expect("GET /blob");
    let status = resp.status().as_u16();
    let via = resp
        .headers()
        .get("via")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = within("GET /blob body", resp.bytes()).await.unwrap();
    (status, via, body)
}

/// The text of `/metrics`.
pub async fn scrape(metrics_addr: SocketAddr) -> String {
    let resp = within(
        "GET /metrics",
        http_client()
            .get(format!("http://{metrics_addr}/metrics"))
            .send(),
    )
    .await
    .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    within("metrics body", resp.text()).await.unwrap()
}

/// `GET path` on `addr` (a metrics port's `/status.json`, `/dht/status`...) as JSON.
pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let resp = within(
        "GET json",
        http_client().get(format!("http://{addr}{path}")).send(),
    )
    .await
    .expect("GET json");
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    within("json body", resp.json()).await.expect("a JSON body")
}

/// `GET path` on `addr` as text (a status page).
pub async fn get_text(addr: SocketAddr, path: &str) -> String {
    let resp = within(
        "GET text",
        http_client().get(format!("http://{addr}{path}")).send(),
    )
    .await
    .expect("GET text");
    within("text body", resp.text()).await.expect("a text body")
}

/// Polls `/metrics` until the series reaches `at_least` (bounded by `within`).
pub async fn wait_for_metric(
    metrics_addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) {
    within(&format!("{name} to reach {at_least}"), async {
        while metric(&scrape(metrics_addr).await, name, labels) < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A client bound to `from` (127.0.0.2, 127.0.0.3...: another client address).
pub fn client_from(from: &str) -> reqwest::Client {
    client_from_within(from, Duration::from_secs(10))
}

/// A client from `from` whose whole request (body included) may take `timeout`.
pub fn client_from_within(from: &str, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .timeout(timeout)
        .build()
        .unwrap()
}
