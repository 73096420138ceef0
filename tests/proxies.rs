//! The shipped reverse-proxy configurations, proven in the real proxies.
//!
//! Each test runs nginx, HAProxy or Caddy with the file from `deploy/` as
//! shipped, changing only the addresses and ports (upstream, listen, admin)
//! and, for TLS, the certificate paths; `render` refuses to run a file whose
//! placeholder text moved. Behind it runs the real herald binary, or, for
//! the header checks, a small upstream that records the requests it gets
//! (herald does not echo headers). What is checked through each proxy:
//! SSE events arrive one at a time, a long poll held 50 s is not cut,
//! WebSockets upgrade and carry frames both ways, the internal listener's
//! paths stay out of reach, and the client's `Host` and `X-Forwarded-For`
//! reach herald on every public route. nginx also serves wss:// and SSE over
//! HTTP/2 with TLS (deploy/nginx/herald-tls.conf), and round-robins two
//! instances on one Redis, one of which is killed mid-stream
//! (deploy/nginx/herald-pair.conf).
//!
//! Left out: the proxies' own performance, and TLS for HAProxy and Caddy
//! (Caddy's certificates come from its own automation, HAProxy's TLS is the
//! same `bind ... ssl crt` line as anywhere).

use std::{
    fmt::Debug,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt};
use herald_testkit::{Binary, free_port, need, nginx::main_conf};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    time::{Instant, sleep, sleep_until, timeout},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, handshake::derive_accept_key},
};

const NGINX: &str = include_str!("../deploy/nginx/herald.conf");
const NGINX_TLS: &str = include_str!("../deploy/nginx/herald-tls.conf");
const NGINX_PAIR: &str = include_str!("../deploy/nginx/herald-pair.conf");
const HAPROXY: &str = include_str!("../deploy/haproxy/haproxy.cfg");
const CADDY: &str = include_str!("../deploy/caddy/Caddyfile");

/// The host name clients ask for, as a browser on the site would: Caddy
/// serves only the site it is configured for.
const SITE: &str = "example.com";

/// A shipped proxy configuration.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    Haproxy,
    Caddy,
}

/// `shipped` with each placeholder replaced; panics when a placeholder is
/// missing, so that a configuration edited without its test fails loudly
/// instead of running with the shipped addresses.
fn render(shipped: &str, swaps: &[(&str, String)]) -> String {
    swaps.iter().fold(shipped.to_string(), |text, (from, to)| {
        assert!(text.contains(from), "placeholder `{from}` not in the file");
        text.replace(from, to)
    })
}

/// A fresh scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "herald-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn show(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free port for a proxy to listen on, below the kernel's ephemeral range
/// (where `free_port` picks): a port from that range, released for the
/// proxy to bind, can be handed to another test's connection first, and
/// Caddy listens on every address, where any such socket is in the way.
fn listen_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000).max(1);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id().wrapping_mul(2_654_435_761);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (10_000 + (seed.wrapping_add(n.wrapping_mul(7919)) % span)) as u16;
        // A family the machine lacks (no IPv6) is no obstacle.
        let free = |addr: &str| match std::net::TcpListener::bind((addr, port)) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
        };
        if free("127.0.0.1") && free("0.0.0.0") && free("::") {
            return port;
        }
    }
}

/// A running proxy, killed on drop.
struct Proxy {
    child: Child,
    port: u16,
    name: &'static str,
    // Dropped after the child is killed (fields drop in order).
    dir: Scratch,
}

impl Proxy {
    /// The shipped configuration of `kind` in front of `upstream`, or
    /// `None` (a loud skip, or a failure in CI) without the program.
    fn start(kind: Kind, upstream: SocketAddr) -> Option<Proxy> {
        let upstream = upstream.to_string();
        match kind {
            Kind::Nginx => Self::nginx(NGINX, |port| {
                vec![
                    ("server 127.0.0.1:8080;", format!("server {upstream};")),
                    ("listen 80;", format!("listen 127.0.0.1:{port};")),
                ]
            }),
            Kind::Haproxy => {
                let program = need("haproxy")?;
                Some(Self::spawn("haproxy", |port| {
                    let dir = Scratch::new("haproxy");
                    let config = render(
                        HAPROXY,
                        &[
                            ("127.0.0.1:8080", upstream.clone()),
                            ("bind :80", format!("bind 127.0.0.1:{port}")),
                        ],
                    );
                    std::fs::write(dir.path("haproxy.cfg"), config).unwrap();
                    let mut cmd = Command::new(&program);
                    cmd.args(["-db", "-f", &dir.show("haproxy.cfg")]);
                    (cmd, dir)
                }))
            }
            Kind::Caddy => {
                let program = need("caddy")?;
                Some(Self::spawn("caddy", |port| {
                    let dir = Scratch::new("caddy");
                    let config = render(
                        CADDY,
                        &[
                            ("127.0.0.1:8080", upstream.clone()),
                            ("localhost:2019", format!("127.0.0.1:{}", listen_port())),
                            ("example.com {", format!("http://{SITE}:{port} {{")),
                        ],
                    );
                    std::fs::write(dir.path("Caddyfile"), config).unwrap();
                    let mut cmd = Command::new(&program);
                    cmd.args(["run", "--adapter", "caddyfile", "--config"])
                        .arg(dir.path("Caddyfile"))
                        // Caddy keeps state under the user's directories.
                        .env("HOME", &dir.0)
                        .env("XDG_DATA_HOME", &dir.0)
                        .env("XDG_CONFIG_HOME", &dir.0);
                    (cmd, dir)
                }))
            }
        }
    }

    /// An nginx site file (one of the shipped ones, rendered with the
    /// `swaps` for the listen port) inside a minimal main configuration of
    /// the test's own.
    fn nginx(site: &str, swaps: impl Fn(u16) -> Vec<(&'static str, String)>) -> Option<Proxy> {
        let program = need("nginx")?;
        Some(Self::spawn("nginx", |port| {
            let dir = Scratch::new("nginx");
            std::fs::write(dir.path("site.conf"), render(site, &swaps(port))).unwrap();
            std::fs::write(dir.path("nginx.conf"), main_conf(&dir.0, "site.conf")).unwrap();
            let mut cmd = Command::new(&program);
            cmd.arg("-p").arg(&dir.0).args([
                "-e",
                &dir.show("error.log"),
                "-c",
                &dir.show("nginx.conf"),
            ]);
            (cmd, dir)
        }))
    }

    /// Starts the proxy that `prepare` sets up to listen on a port, on a
    /// free port. A port is free when chosen but may be taken (by another
    /// test's connection) before the proxy binds it: then it is tried again
    /// on another.
    fn spawn(name: &'static str, prepare: impl Fn(u16) -> (Command, Scratch)) -> Proxy {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = listen_port();
            let (cmd, dir) = prepare(port);
            match Self::launch(name, cmd, dir, port) {
                Ok(proxy) => return proxy,
                Err(log) if log.to_lowercase().contains("address already in use") => {
                    failures.push(log)
                }
                Err(log) => panic!("{name} did not start:\n{log}"),
            }
        }
        panic!("{name} found no free port:\n{}", failures.join("\n"));
    }

    /// Spawns `cmd` (output to `dir/output.log`) and waits until `port`
    /// accepts connections; the proxy's output if it does not.
    fn launch(
        name: &'static str,
        mut cmd: Command,
        dir: Scratch,
        port: u16,
    ) -> Result<Proxy, String> {
        let log = std::fs::File::create(dir.path("output.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut proxy = Proxy {
            child,
            port,
            name,
            dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = proxy.child.try_wait().ok().flatten().is_some();
            if exited || std::time::Instant::now() > deadline {
                let read = |f: &str| std::fs::read_to_string(proxy.dir.path(f)).unwrap_or_default();
                return Err(format!("{}{}", read("output.log"), read("error.log")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(proxy)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A request through the proxy, for the site's host name.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client()
            .request(method, self.url(path))
            .header(reqwest::header::HOST, SITE)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// A WebSocket through the proxy, for the site's host name; `None` when
    /// the upgrade fails.
    async fn ws(&self, path: &str) -> Option<WebSocketStream<MaybeTlsStream<TcpStream>>> {
        let mut req = format!("ws://127.0.0.1:{}{path}", self.port)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static(SITE));
        let (ws, res) = connect_async(req).await.ok()?;
        assert_eq!(res.status(), 101, "{}: upgrade of {path}", self.name);
        Some(ws)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON answer to `req`.
async fn json(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// An HTTP client that does not follow redirects.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// What every proxy must do.

/// Messages published one every `SPACING` must each reach the SSE client
/// before the next is published: a proxy that buffers delivers them late
/// and in clumps.
const SPACING: Duration = Duration::from_millis(300);
const EVENTS: u32 = 6;

/// Reads SSE `body` while `EVENTS` messages are published to `channel`, and
/// fails unless each arrived before the next one was published.
async fn events_arrive_one_at_a_time<B, E>(via: &str, herald: &Binary, channel: &str, body: B)
where
    B: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: Debug + Send + 'static,
{
    let reader = tokio::spawn(sse_arrivals(body, EVENTS as usize));
    herald
        .wait_subscribers(channel, 1, Duration::from_secs(5))
        .await;
    let start = Instant::now();
    let mut published = Vec::new();
    for i in 0..EVENTS {
        sleep_until(start + SPACING * i).await;
        published.push(Instant::now());
        herald.publish(channel, &format!("e{i}")).await;
    }
    let arrived = timeout(Duration::from_secs(10), reader)
        .await
        .unwrap_or_else(|_| panic!("{via}: not every event arrived"))
        .unwrap();
    let data: Vec<&str> = arrived.iter().map(|(d, _)| d.as_str()).collect();
    let want: Vec<String> = (0..EVENTS).map(|i| format!("e{i}")).collect();
    assert_eq!(data, want, "{via}");
    let offsets: Vec<_> = arrived.iter().map(|(_, t)| *t - start).collect();
    for (i, (_, at)) in arrived.iter().enumerate() {
        let next = published
            .get(i + 1)
            .copied()
            .unwrap_or(published[i] + SPACING);
        assert!(
            *at < next,
            "{via}: event {i} arrived after the next publish (buffered); \
             arrivals after start: {offsets:?}, one publish every {SPACING:?}"
        );
    }
}

/// The data of the first `n` SSE events of `body`, each with the time the
/// chunk that completed it arrived.
async fn sse_arrivals<B, E>(mut body: B, n: usize) -> Vec<(String, Instant)>
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Debug,
{
    let mut arrived = Vec::new();
    let mut text = String::new();
    while arrived.len() < n {
        let chunk = body.next().await.expect("stream open").expect("chunk");
        let at = Instant::now();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        for event in complete_events(&mut text) {
            arrived.extend(event.data.map(|d| (d, at)));
        }
    }
    arrived
}

/// One SSE event, as the stream carried it.
struct Event {
    id: Option<String>,
    event: Option<String>,
    /// The `data:` lines, joined with LF; `None` for a comment.
    data: Option<String>,
}

/// Takes the complete events (up to a blank line) from the front of `text`.
fn complete_events(text: &mut String) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(end) = text.find("\n\n") {
        let block: String = text.drain(..end + 2).collect();
        let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name));
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        events.push(Event {
            id: field("id: ").map(str::to_string),
            event: field("event: ").map(str::to_string),
            data: (!data.is_empty()).then(|| data.join("\n")),
        });
    }
    events
}

/// The next JSON text frame, within 5 s.
async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        let frame = timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("a frame");
        if let Message::Text(t) = frame {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// A subscribe frame goes up, `subscribed` and a published message come
/// down.
async fn ws_round_trip<S>(via: &str, herald: &Binary, ws: &mut WebSocketStream<S>, channel: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let subscribe = json!({"type": "subscribe", "channels": [channel], "ref": "s"});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    let reply = next_frame(ws).await;
    assert_eq!(reply["type"], "subscribed", "{via}: {reply}");
    assert_eq!(reply["ref"], "s", "{via}: {reply}");
    herald.publish(channel, "both ways").await;
    let message = next_frame(ws).await;
    assert_eq!(message["type"], "message", "{via}: {message}");
    assert_eq!(message["data"], "both ways", "{via}: {message}");
}

async fn sse_through(kind: Kind) {
    let herald = Binary::start(&[]);
    let Some(proxy) = Proxy::start(kind, herald.public) else {
        return;
    };
    let res = proxy.get("/sse/paced").send().await.unwrap();
    assert_eq!(res.status(), 200, "{kind:?}");
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    events_arrive_one_at_a_time(proxy.name, &herald, "paced", res.bytes_stream()).await;
}

async fn websocket_through(kind: Kind) {
    let herald = Binary::start(&[]);
    let Some(proxy) = Proxy::start(kind, herald.public) else {
        return;
    };
    let mut ws = proxy.ws("/ws").await.expect("upgrade through the proxy");
    ws_round_trip(proxy.name, &herald, &mut ws, "duplex").await;
}

async fn polls_through(kind: Kind) {
    let herald = Binary::start(&[]);
    let Some(proxy) = Proxy::start(kind, herald.public) else {
        return;
    };
    let first = json(proxy.get("/poll/polled")).await;
    let cursor = first["cursor"].as_str().unwrap();
    herald.publish("polled", "short").await;
    let v = json(proxy.get(&format!("/poll/polled?since={cursor}"))).await;
    assert_eq!(v["messages"][0]["data"], "short", "{kind:?}");
    let held = tokio::spawn(
        proxy
            .get(&format!(
                "/longpoll/polled?since={}&timeout=20",
                v["cursor"].as_str().unwrap()
            ))
            .send(),
    );
    herald
        .wait_subscribers("polled", 1, Duration::from_secs(5))
        .await;
    herald.publish("polled", "long").await;
    let res = timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["messages"][0]["data"], "long", "{kind:?}");
    let health = proxy.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200, "{kind:?}");
}

/// herald's public routes, as a client reaches them through a proxy.
const PUBLIC: [&str; 4] = ["/poll/h", "/longpoll/h", "/sse/h", "/healthz"];
const PUBLIC_WS: [&str; 2] = ["/ws", "/ws/h"];
/// The internal listener's routes, which no proxy may pass on.
const INTERNAL: [(&str, &str); 4] = [
    ("POST", "/publish/h"),
    ("POST", "/publish"),
    ("GET", "/channels/h"),
    ("DELETE", "/channels/h"),
];
/// Marks the test's own requests, apart from a proxy's health checks.
const PROBE: &str = "?probe=headers";

async fn headers_through(kind: Kind) {
    let upstream = Recorder::start().await;
    let Some(proxy) = Proxy::start(kind, upstream.addr) else {
        return;
    };
    for path in PUBLIC {
        let res = proxy.get(&format!("{path}{PROBE}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{kind:?} {path}");
    }
    for path in PUBLIC_WS {
        let ws = proxy.ws(&format!("{path}{PROBE}")).await;
        assert!(ws.is_some(), "{kind:?}: upgrade of {path} refused");
    }
    for (method, path) in INTERNAL {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = proxy
            .request(method.clone(), path)
            .body("x")
            .send()
            .await
            .unwrap();
        // nginx's static handler answers 405 to methods it does not serve.
        assert!(
            [404, 405].contains(&res.status().as_u16()),
            "{kind:?}: {method} {path} through the proxy: {}",
            res.status()
        );
    }
    let seen = upstream.seen();
    for path in PUBLIC.into_iter().chain(PUBLIC_WS) {
        let target = format!("{path}{PROBE}");
        let got = seen
            .iter()
            .find(|r| r.target == target)
            .unwrap_or_else(|| panic!("{kind:?}: {path} never reached the upstream"));
        assert_eq!(got.host.as_deref(), Some(SITE), "{kind:?} {path}: Host");
        assert_eq!(
            got.forwarded_for.last().map(String::as_str),
            Some("127.0.0.1"),
            "{kind:?} {path}: X-Forwarded-For {:?}",
            got.forwarded_for
        );
    }
    for (_, path) in INTERNAL {
        assert!(
            !seen.iter().any(|r| r.target.starts_with(path)),
            "{kind:?}: {path} reached the upstream"
        );
    }
}

/// One test per check and proxy, so that a failure names both.
macro_rules! through {
    ($proxy:ident, $kind:expr) => {
        mod $proxy {
            use super::*;

            #[tokio::test]
            async fn sse_events_arrive_one_at_a_time() {
                sse_through($kind).await;
            }

            #[tokio::test]
            async fn websockets_upgrade_and_carry_frames_both_ways() {
                websocket_through($kind).await;
            }

            #[tokio::test]
            async fn short_and_long_polls_pass() {
                polls_through($kind).await;
            }

            #[tokio::test]
            async fn host_and_forwarded_for_reach_herald_and_internal_paths_do_not() {
                headers_through($kind).await;
            }
        }
    };
}

through!(nginx, Kind::Nginx);
through!(haproxy, Kind::Haproxy);
through!(caddy, Kind::Caddy);

/// The three proxies hold a long poll for 50 s side by side, so that the
/// suite waits once. herald answers it with nothing at the end of the hold;
/// a proxy that cuts it answers 502/504 or drops the connection first.
#[tokio::test]
async fn a_long_poll_held_50_s_is_not_cut_by_any_proxy() {
    const HOLD: u64 = 50;
    let herald = Binary::start(&[]);
    let proxies: Vec<Proxy> = [Kind::Nginx, Kind::Haproxy, Kind::Caddy]
        .into_iter()
        .filter_map(|kind| Proxy::start(kind, herald.public))
        .collect();
    let holds = proxies.iter().map(|proxy| async move {
        let started = Instant::now();
        let path = format!("/longpoll/held-{}?timeout={HOLD}", proxy.name);
        let res = proxy.get(&path).send().await;
        (proxy.name, res, started.elapsed())
    });
    for (name, res, took) in futures::future::join_all(holds).await {
        let res = res.unwrap_or_else(|e| panic!("{name}: the held request failed: {e}"));
        assert_eq!(res.status(), 200, "{name}: answered after {took:?}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["messages"], json!([]), "{name}");
        assert!(
            took >= Duration::from_secs(HOLD - 1),
            "{name}: answered after {took:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// A recording upstream for the header checks.

/// One request as the upstream received it.
#[derive(Debug)]
struct Seen {
    target: String,
    host: Option<String>,
    /// Every address of every X-Forwarded-For header, in order.
    forwarded_for: Vec<String>,
}

/// An HTTP/1.1 upstream that answers every request `200 {}` (and accepts
/// WebSocket upgrades) and records what it received.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(Self::serve(conn, log.clone()));
            }
        });
        Recorder { addr, seen }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap()
    }

    /// Answers the requests of one connection until it closes.
    async fn serve(conn: TcpStream, log: Arc<Mutex<Vec<Seen>>>) -> std::io::Result<()> {
        let mut conn = BufReader::new(conn);
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let target = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut seen = Seen {
                target,
                host: None,
                forwarded_for: Vec::new(),
            };
            let (mut length, mut key) = (0, None);
            loop {
                line.clear();
                conn.read_line(&mut line).await?;
                let Some((name, value)) = line.trim_end().split_once(':') else {
                    break;
                };
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "host" => seen.host = Some(value.to_string()),
                    "x-forwarded-for" => seen
                        .forwarded_for
                        .extend(value.split(',').map(|a| a.trim().to_string())),
                    "content-length" => length = value.parse().unwrap_or(0),
                    "sec-websocket-key" => key = Some(value.to_string()),
                    _ => {}
                }
            }
            log.lock().unwrap().push(seen);
            let mut body = vec![0; length];
            conn.read_exact(&mut body).await?;
            if let Some(key) = key {
                let accept = derive_accept_key(key.as_bytes());
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n\
                     upgrade: websocket\r\nsec-websocket-accept: {accept}\r\n\r\n"
                );
                conn.write_all(head.as_bytes()).await?;
                // Hold the upgraded connection until the client leaves.
                let mut sink = Vec::new();
                let _ = conn.read_to_end(&mut sink).await;
                return Ok(());
            }
            conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            )
            .await?;
        }
    }
}

// ---------------------------------------------------------------------------
// nginx with TLS and HTTP/2.

/// A self-signed certificate for `localhost` and 127.0.0.1, made by the
/// openssl command line tool; `None` (a loud skip) without it.
fn self_signed(dir: &Scratch) -> Option<(PathBuf, PathBuf)> {
    let openssl = need("openssl")?;
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let status = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext"])
        .args(["subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext"])
        .args(["basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl could not make a certificate");
    Some((cert, key))
}

/// A TLS connection to `port` that trusts only `cert`, offering `alpn`.
async fn tls_connect(
    cert: &Path,
    port: u16,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with nginx");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    tls
}

#[tokio::test]
async fn nginx_with_tls_serves_sse_over_http2_and_wss() {
    use http_body_util::BodyExt;
    let certs = Scratch::new("tls");
    let Some((cert, key)) = self_signed(&certs) else {
        return;
    };
    let herald = Binary::start(&[]);
    // The plain-http server's port, chosen with the TLS one.
    let http = std::cell::Cell::new(0);
    let Some(proxy) = Proxy::nginx(NGINX_TLS, |https| {
        http.set(listen_port());
        vec![
            (
                "server 127.0.0.1:8080;",
                format!("server {};", herald.public),
            ),
            (
                "listen 443 ssl http2;",
                format!("listen 127.0.0.1:{https} ssl http2;"),
            ),
            ("listen 80;", format!("listen 127.0.0.1:{};", http.get())),
            ("/etc/ssl/herald/fullchain.pem", cert.display().to_string()),
            ("/etc/ssl/herald/privkey.pem", key.display().to_string()),
        ]
    }) else {
        return;
    };
    let (https, http) = (proxy.port, http.get());

    // SSE over HTTP/2, one event at a time.
    let tls = tls_connect(&cert, https, b"h2").await;
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://localhost:{https}/sse/secure"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let body = res.into_body().into_data_stream();
    events_arrive_one_at_a_time("nginx TLS h2", &herald, "secure", body).await;

    // wss://, an HTTP/1.1 upgrade inside TLS.
    let tls = tls_connect(&cert, https, b"http/1.1").await;
    let (mut ws, res) = tokio_tungstenite::client_async(format!("wss://localhost:{https}/ws"), tls)
        .await
        .expect("wss upgrade through nginx");
    assert_eq!(res.status(), 101);
    ws_round_trip("nginx wss", &herald, &mut ws, "secure-ws").await;

    // Plain http is sent to https.
    let res = client()
        .get(format!("http://127.0.0.1:{http}/sse/secure"))
        .header(reqwest::header::HOST, "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "https://localhost/sse/secure");
}

// ---------------------------------------------------------------------------
// The three nginx files share their locations.

/// The text from the first `location` to the end of the file.
fn locations(conf: &str) -> &str {
    &conf[conf.find("    location").expect("a location")..]
}

#[test]
fn the_nginx_variants_keep_the_same_locations_and_headers() {
    let headers = |conf: &str| -> Vec<String> {
        conf.lines()
            .filter(|l| l.trim_start().starts_with("proxy_set_header"))
            .map(str::to_string)
            .collect()
    };
    for (name, variant) in [
        ("herald-tls.conf", NGINX_TLS),
        ("herald-pair.conf", NGINX_PAIR),
    ] {
        assert_eq!(locations(variant), locations(NGINX), "{name}");
        assert_eq!(headers(variant), headers(NGINX), "{name}");
    }
    // Any proxy_set_header inside a location would drop the server-level
    // ones (Host, X-Forwarded-For) for that location.
    for line in locations(NGINX).lines() {
        assert!(!line.contains("proxy_set_header"), "in a location: {line}");
    }
}

// ---------------------------------------------------------------------------
// Two instances on one Redis behind nginx, one killed mid-stream.

/// Messages published to every client's channel, one round at a time.
const ROUNDS: usize = 30;
/// The round after which one instance is killed.
const KILL_AFTER: usize = 10;

/// What a following client received.
#[derive(Debug, Default)]
struct Followed {
    data: Vec<String>,
    /// Connections (WebSocket, SSE) or requests (long poll) that failed or
    /// ended before every message had arrived.
    interruptions: usize,
    gaps: usize,
}

impl Followed {
    fn done(&self) -> bool {
        self.data.len() >= ROUNDS
    }

    /// Counts an interruption and waits a little before the client retries.
    async fn interrupted(&mut self) {
        self.interruptions += 1;
        sleep(Duration::from_millis(100)).await;
    }
}

/// A WebSocket client on `channel` from cursor `since`, resuming with the
/// cursor of the last message after every interruption. `ready` fires once
/// the first connection is subscribed.
async fn follow_ws(
    proxy: Arc<Proxy>,
    channel: String,
    since: String,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Followed {
    let mut got = Followed::default();
    let mut ready = Some(ready);
    let mut cursor = since;
    while !got.done() {
        if let Some(mut ws) = proxy.ws("/ws").await {
            let subscribe = json!({"type": "subscribe", "channels": [&channel], "since": &cursor});
            if ws.send(Message::text(subscribe.to_string())).await.is_ok() {
                while let Some(Ok(frame)) = ws.next().await {
                    let Message::Text(text) = frame else { continue };
                    let v: Value = serde_json::from_str(&text).unwrap();
                    match v["type"].as_str() {
                        Some("subscribed") => {
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                        }
                        Some("message") => {
                            got.data.push(v["data"].as_str().unwrap().to_string());
                            cursor = v["cursor"].as_str().unwrap().to_string();
                        }
                        Some("gap") => got.gaps += 1,
                        _ => {}
                    }
                    if got.done() {
                        return got;
                    }
                }
            }
        }
        got.interrupted().await;
    }
    got
}

/// An SSE client on `channel` from cursor `since`, resuming with
/// `Last-Event-ID` after every interruption, as `EventSource` does. `ready`
/// fires once the first stream is open.
async fn follow_sse(
    proxy: Arc<Proxy>,
    channel: String,
    since: String,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Followed {
    let mut got = Followed::default();
    let mut ready = Some(ready);
    let mut last_id: Option<String> = None;
    while !got.done() {
        let mut req = proxy.get(&format!("/sse/{channel}?since={since}"));
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        if let Ok(res) = req.send().await.and_then(|r| r.error_for_status()) {
            let mut body = res.bytes_stream();
            let mut text = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                text.push_str(std::str::from_utf8(&chunk).unwrap());
                for event in complete_events(&mut text) {
                    last_id = event.id.or(last_id);
                    match (event.event.as_deref(), event.data) {
                        (Some("herald.gap"), _) => got.gaps += 1,
                        (_, Some(data)) => got.data.push(data),
                        _ => {}
                    }
                }
                if got.done() {
                    return got;
                }
            }
        }
        got.interrupted().await;
    }
    got
}

/// A long-poll client on `channel` from cursor `since`, asking again with
/// the same cursor after a failed request.
async fn follow_longpoll(proxy: Arc<Proxy>, channel: String, since: String) -> Followed {
    let mut got = Followed::default();
    let mut cursor = since;
    while !got.done() {
        let path = format!("/longpoll/{channel}?since={cursor}&timeout=10");
        let res = proxy
            .get(&path)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        let Ok(v) = (match res {
            Ok(res) => res.json::<Value>().await,
            Err(e) => Err(e),
        }) else {
            got.interrupted().await;
            continue;
        };
        for m in v["messages"].as_array().unwrap() {
            got.data.push(m["data"].as_str().unwrap().to_string());
        }
        if v["gap"] == true {
            got.gaps += 1;
        }
        cursor = v["cursor"].as_str().unwrap().to_string();
    }
    got
}

#[tokio::test]
async fn a_round_robin_pair_loses_nothing_when_one_instance_is_killed() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let url = redis.url();
    let start = || Binary::start(&["--engine", "redis", "--redis-url", &url]);
    let mut instances = [Some(start()), Some(start())];
    let [a, b] = [0, 1].map(|i| instances[i].as_ref().unwrap().public.to_string());
    let Some(proxy) = Proxy::nginx(NGINX_PAIR, |port| {
        vec![
            ("herald-a:8080", a.clone()),
            ("herald-b:8080", b.clone()),
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
        ]
    }) else {
        return;
    };
    let proxy = Arc::new(proxy);
    let on = |i: usize| instances[i].as_ref().unwrap();

    // Every client follows a channel of its own from a cursor taken before
    // the first publish, so that "everything after the cursor" is exactly
    // the ROUNDS messages.
    let channels: Vec<String> = ["ws-0", "ws-1", "sse-0", "sse-1", "lp-0", "lp-1"]
        .map(String::from)
        .to_vec();
    let mut clients = Vec::new();
    for channel in &channels {
        let first = json(client().get(on(0).url(&format!("/poll/{channel}")))).await;
        let since = first["cursor"].as_str().unwrap().to_string();
        let (ready, opened) = tokio::sync::oneshot::channel();
        let (p, ch) = (proxy.clone(), channel.clone());
        clients.push(match &channel[..2] {
            "ws" => tokio::spawn(follow_ws(p, ch, since, ready)),
            "ss" => tokio::spawn(follow_sse(p, ch, since, ready)),
            _ => {
                drop(ready);
                tokio::spawn(follow_longpoll(p, ch, since))
            }
        });
        // One at a time, so that round robin spreads the streams.
        let _ = timeout(Duration::from_secs(5), opened).await;
    }

    // Kill the instance that holds a WebSocket and an SSE stream (round
    // robin gives each instance one of each).
    let mut hosts = Vec::new();
    for i in 0..2 {
        let mut held = Vec::new();
        for channel in &channels[..4] {
            if on(i).subscribers(channel).await > 0 {
                held.push(channel.clone());
            }
        }
        hosts.push(held);
    }
    let victim = (0..2)
        .find(|&i| {
            hosts[i].iter().any(|c| c.starts_with("ws"))
                && hosts[i].iter().any(|c| c.starts_with("sse"))
        })
        .unwrap_or_else(|| panic!("no instance holds both a WebSocket and a stream: {hosts:?}"));
    let survivor = 1 - victim;

    // A long poll held on the instance about to die, alone on its channel:
    // nginx retries it on the survivor, so its client sees no error at all.
    let mut held = None;
    for i in 0..8 {
        let channel = format!("held-{i}");
        let since = json(client().get(on(survivor).url(&format!("/poll/{channel}")))).await;
        let path = format!(
            "/longpoll/{channel}?since={}&timeout=20",
            since["cursor"].as_str().unwrap()
        );
        let request = tokio::spawn(proxy.get(&path).send());
        let deadline = Instant::now() + Duration::from_secs(5);
        while on(0).subscribers(&channel).await + on(1).subscribers(&channel).await == 0 {
            assert!(
                Instant::now() < deadline,
                "{channel}: the long poll is not held"
            );
            sleep(Duration::from_millis(20)).await;
        }
        if on(victim).subscribers(&channel).await == 1 {
            held = Some((channel, request));
            break;
        }
    }
    let (held_channel, held_request) = held.expect("a long poll held on the instance to kill");

    for round in 1..=ROUNDS {
        let batch = channels
            .iter()
            .map(|c| json!({"channel": c, "data": format!("m{round}")}))
            .collect();
        // Publish through both instances while both run.
        let through = if round <= KILL_AFTER {
            round % 2
        } else {
            survivor
        };
        let publisher = instances[through].as_ref().unwrap();
        publisher.publish_batch(batch).await;
        if round == KILL_AFTER {
            instances[victim] = None; // SIGKILL
        }
        sleep(Duration::from_millis(50)).await;
    }

    let alive = instances[survivor].as_ref().unwrap();
    alive.publish(&held_channel, "held").await;
    let res = timeout(Duration::from_secs(10), held_request)
        .await
        .expect("the held long poll answered")
        .unwrap()
        .expect("the held long poll did not fail");
    assert_eq!(res.status(), 200, "the held long poll");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["messages"][0]["data"], "held", "{v}");

    let want: Vec<String> = (1..=ROUNDS).map(|r| format!("m{r}")).collect();
    for (channel, client) in channels.iter().zip(clients) {
        let got = timeout(Duration::from_secs(20), client)
            .await
            .unwrap_or_else(|_| panic!("{channel}: not every message arrived"))
            .unwrap();
        assert_eq!(got.data, want, "{channel}: exactly once, in order");
        assert_eq!(got.gaps, 0, "{channel}");
        if hosts[victim].contains(channel) {
            assert!(
                got.interruptions > 0,
                "{channel} was on the killed instance"
            );
        }
    }
}
