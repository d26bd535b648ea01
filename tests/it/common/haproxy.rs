//! Debian's haproxy as a real PROXY protocol sender (`send-proxy` / `send-proxy-v2`), in tcp
//! mode in the foreground, killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::TEST_TIMEOUT;

/// `haproxy -db` in tcp mode: one frontend per `(listen port, backend address, send-proxy
/// keyword)`, killed when dropped.
pub struct Haproxy {
    _child: Child,
}

impl Haproxy {
    pub async fn start(dir: &Path, routes: &[(u16, SocketAddr, &str)]) -> Haproxy {
        let mut cfg = String::from(
            "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\n",
        );
        for (i, (port, backend, keyword)) in routes.iter().enumerate() {
            cfg.push_str(&format!(
                "frontend f{i}\n  bind 127.0.0.1:{port}\n  default_backend b{i}\n\
                 backend b{i}\n  server s{i} {backend} {keyword}\n"
            ));
        }
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&file)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy is installed (tests/run.sh installs it)");
        for (port, _, _) in routes {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            wait_until_async("haproxy listening", || async move {
                tokio::net::TcpStream::connect(addr).await.is_ok()
            })
            .await;
        }
        Haproxy { _child: child }
    }
}

/// Polls `cond` until it holds, at most [`TEST_TIMEOUT`].
pub async fn wait_until_async<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + TEST_TIMEOUT;
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within the timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
