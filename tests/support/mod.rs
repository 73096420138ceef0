//! Shared helpers for the end-to-end tests: start the real `herald` binary
//! on ephemeral ports, talk to it over real HTTP, and find (or loudly skip
//! without) outside programs such as `redis-server`, `node` or `chromium`.
//!
//! Every test file includes this module with `mod support;`; not every file
//! uses every helper.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// A running `herald` process, killed on drop.
pub struct Server {
    child: Option<Child>,
    /// Public listener address.
    pub public: SocketAddr,
    /// Internal listener address.
    pub internal: SocketAddr,
    /// Log lines after the "listening" line (stderr), for tests that read them.
    pub log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts herald with `args` added to ephemeral listener addresses.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Starts herald with extra arguments and environment variables.
    // The child is waited for in `Drop` (and in `terminate`), which the lint
    // cannot see.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.args([
            "--public-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start herald");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned by a `Server` from here on, so that a failed start kills
        // and reaps the process (on drop) instead of leaving it running.
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut server = Server {
            child: Some(child),
            public: unknown,
            internal: unknown,
            log: rx,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = server
                .log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("herald did not report its listeners"));
            if line.contains("herald listening") {
                let addr = |key: &str| -> SocketAddr {
                    let at = line.find(key).expect("address in log") + key.len();
                    line[at..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                };
                server.public = addr("public=");
                server.internal = addr("internal=");
                return server;
            }
        }
    }

    /// `http://public/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.public, path)
    }

    /// `http://internal/path`.
    pub fn internal_url(&self, path: &str) -> String {
        format!("http://{}{}", self.internal, path)
    }

    /// `ws://public/path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.public, path)
    }

    /// Publishes text `data` to `channel`; answers the JSON reply.
    pub async fn publish(&self, channel: &str, data: &str) -> serde_json::Value {
        let res = client()
            .post(self.internal_url(&format!("/publish/{channel}")))
            .body(data.to_string())
            .send()
            .await
            .expect("publish");
        assert_eq!(res.status(), 202, "publish to {channel}");
        res.json().await.expect("publish reply")
    }

    /// Publishes a batch (`POST /publish` with `{"messages": messages}`);
    /// answers the JSON reply.
    pub async fn publish_batch(&self, messages: Vec<serde_json::Value>) -> serde_json::Value {
        let res = client()
            .post(self.internal_url("/publish"))
            .json(&serde_json::json!({ "messages": messages }))
            .send()
            .await
            .expect("publish");
        assert_eq!(res.status(), 202, "publish a batch");
        res.json().await.expect("publish reply")
    }

    /// The channel's subscriber count from the internal `/channels/{ch}`
    /// endpoint: held long polls, open streams and sockets on it.
    pub async fn subscribers(&self, channel: &str) -> u64 {
        let v: serde_json::Value = client()
            .get(self.internal_url(&format!("/channels/{channel}")))
            .send()
            .await
            .expect("channel info")
            .json()
            .await
            .expect("channel info reply");
        v["subscribers"].as_u64().expect("subscribers")
    }

    /// Polls the subscriber count until it is `n`; panics with the last
    /// count seen after `within`.
    pub async fn wait_subscribers(&self, channel: &str, n: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.subscribers(channel).await;
            if seen == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel}: {seen} subscribers after {within:?}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; answers
    /// its exit status success.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP client with no proxy and no pooling surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// True when outside programs must be present (CI sets `CI=true`).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Finds `program` on the PATH. Without it, a test skips with a loud
/// message, or fails when running in CI.
pub fn need(program: &str) -> Option<std::path::PathBuf> {
    // Daemons such as nginx live in sbin, which a non-root PATH may lack.
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(sbin)
        .map(|p| p.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        if required() {
            panic!("{program} is required in CI but was not found on PATH");
        }
        eprintln!("\n*** SKIPPED: {program} not found on PATH; install it to run this test ***\n");
    }
    found
}

/// A free TCP port on 127.0.0.1 (bound and released; for programs that
/// cannot report the port they picked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `node` binary, once it and the npm packages of `tests/js` are
/// installed (`npm ci --prefix tests/js`). Without either, a test skips
/// with a loud message, or fails when running in CI.
pub fn need_node_packages() -> Option<std::path::PathBuf> {
    let node = need("node")?;
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules");
    if !modules.is_dir() {
        if required() {
            panic!("tests/js/node_modules is required in CI; run `npm ci --prefix tests/js`");
        }
        eprintln!(
            "\n*** SKIPPED: tests/js/node_modules missing; run `npm ci --prefix tests/js` to run this test ***\n"
        );
        return None;
    }
    Some(node)
}

/// A script of `tests/js`, by file name.
pub fn js_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js")
        .join(name)
}

pub mod redis;

/// A fresh `redis-server` on a free port, or `None` (a loud skip, or a
/// failure in CI) when it is not installed.
pub fn redis() -> Option<redis::RedisServer> {
    need("redis-server").map(|program| redis::RedisServer::start(&program))
}
