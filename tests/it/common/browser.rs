//! Headless Chromium driven through chromedriver (Debian's `chromium` and `chromium-driver`),
//! with a fresh profile and nothing that phones home.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

/// Bound on starting a browser session (a cold start of Chromium on a busy box is slow).
pub const BROWSER_START: Duration = Duration::from_secs(90);

/// A browser session; chromedriver is killed when this is dropped.
pub struct Browser {
    pub client: fantoccini::Client,
    _driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session with its profile in
    /// `profile`.
    pub async fn start(profile: &Path) -> Browser {
        Browser::start_with(profile, &[]).await
    }

    /// [`start`](Self::start) with more Chromium switches (e.g. an autoplay policy).
    pub async fn start_with(profile: &Path, switches: &[&str]) -> Browser {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "start chromedriver (Debian package chromium-driver; tests/run.sh installs it)",
            );
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--disable-breakpad",
        ]
        .iter()
        .chain(switches)
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        });
        let caps = caps.as_object().unwrap().clone();
        // The WebDriver client's TLS stack needs a process-wide provider; another test may
        // have installed it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let deadline = tokio::time::Instant::now() + BROWSER_START;
        loop {
            let attempt = fantoccini::ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match attempt {
                Ok(client) => {
                    return Browser {
                        client,
                        _driver: driver,
                    }
                }
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "could not start a Chromium session through chromedriver: {e}"
                    );
                    // Poll interval while chromedriver binds its port.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
