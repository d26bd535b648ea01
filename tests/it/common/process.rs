//! `prism-lite blobcache` as a real child process on 127.0.0.1: started from a YAML file in its
//! own config directory, ready when its `/readyz` answers 200 (a bounded poll, never a fixed
//! sleep), killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::net::http_client;

/// A port on 127.0.0.1, free for both TCP and UDP, for a child process to bind.
///
/// Taken from 20000-31999, below the kernel's ephemeral range (32768-60999 by default), where
/// the OS never picks the source port of an outgoing connection: a port the OS handed out for
/// `:0` and then released could be taken by another test's client before the child binds it.
/// A counter gives every call in this test process a different port; the start depends on the
/// process id, so two test runs side by side start apart.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() * 97 % COUNT;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % COUNT) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}-{}", FIRST + COUNT - 1);
}

/// A running `prism-lite blobcache` process.
pub struct Blobcache {
    child: Child,
    conf_dir: PathBuf,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
}

impl Blobcache {
    /// Writes `yaml` (whose `servers.http` must be 127.0.0.1:`http_port`) to `conf_dir` and
    /// starts the process with its metrics on a free port; returns once it is ready.
    pub async fn start(conf_dir: &Path, http_port: u16, yaml: &str) -> Blobcache {
        std::fs::create_dir_all(conf_dir).unwrap();
        std::fs::write(conf_dir.join("blobcache.yaml"), yaml).unwrap();
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_prism-lite"))
            .arg("--conf-dir")
            .arg(conf_dir)
            .args(["blobcache", "--metrics-port", &metrics_port.to_string()])
            .args(["--metrics-address", "127.0.0.1"])
            .current_dir(conf_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn prism-lite");
        let mut cache = Blobcache {
            child,
            conf_dir: conf_dir.to_path_buf(),
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        };
        cache.wait_ready().await;
        cache
    }

    async fn wait_ready(&mut self) {
        let what = self.conf_dir.display().to_string();
        wait_ready(&mut self.child, self.metrics, || {
            format!("prism-lite in {what}")
        })
        .await;
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("prism-lite is running")
    }

    /// SIGKILL, as a crash would; returns once the process is gone (its ports are closed).
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill prism-lite");
    }
}

/// A running `prism-lite` process started with any command line (e.g. `reflector` with its
/// flags), its log going to a file in `dir`; ready when `/readyz` on `metrics_port` answers.
pub struct Prism {
    child: Child,
    log: PathBuf,
    pub metrics: SocketAddr,
}

impl Prism {
    /// Runs `prism-lite ARGS` in `dir`; returns once `/readyz` on 127.0.0.1:`metrics_port`
    /// answers 200 (panics with the log if the process exits first).
    pub async fn start(dir: &Path, args: &[&str], metrics_port: u16) -> Prism {
        let log = dir.join(format!("prism-{metrics_port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_prism-lite"))
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn prism-lite");
        let mut prism = Prism {
            child,
            log,
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        };
        prism.wait_ready().await;
        prism
    }

    /// `prism-lite --conf-dir CONF blobcache` with its metrics on a free local port.
    pub async fn blobcache(dir: &Path, conf_dir: &Path) -> Prism {
        let metrics = free_port();
        Prism::start(
            dir,
            &[
                "--conf-dir",
                conf_dir.to_str().expect("a UTF-8 path"),
                "blobcache",
                &format!("--metrics-port={metrics}"),
                "--metrics-address=127.0.0.1",
            ],
            metrics,
        )
        .await
    }

    async fn wait_ready(&mut self) {
        let log = self.log.clone();
        wait_ready(&mut self.child, self.metrics, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            format!("prism-lite (log follows)\n{text}\n")
        })
        .await;
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; returns the exit code (bounded wait) and the whole log.
    pub async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().expect("running").to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("prism-lite stops within 20s of SIGTERM")
            .expect("wait");
        (status.code(), self.log())
    }
}

/// Polls `/readyz` on `metrics` (bounded: 20 s) until it answers 200; panics, naming the
/// process with `what()`, if it exits or never gets ready.
async fn wait_ready(child: &mut Child, metrics: SocketAddr, what: impl Fn() -> String) {
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited early: {status}", what());
        }
        let ready = tokio::time::timeout(
            Duration::from_secs(1),
            client.get(format!("http://{metrics}/readyz")).send(),
        )
        .await;
        if matches!(ready, Ok(Ok(ref r)) if r.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{} not ready within 20s", what());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `prism-lite ARGS... --conf-dir CONF` to its end (bounded by `within`): (exit success,
/// stdout, stderr).
pub async fn run_command(args: &[&str], conf_dir: &Path) -> (bool, String, String) {
    let output = super::within(
        &format!("prism-lite {}", args.join(" ")),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_prism-lite"))
            .args(args)
            .arg("--conf-dir")
            .arg(conf_dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run prism-lite");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
