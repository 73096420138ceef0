//! End-to-end: the connection-level limits against hostile and unlucky
//! clients, each at its limit. Connection caps (WebSockets included, per
//! address) answer 503 `overloaded` at once; a reader that stops reading is
//! closed after the send timeout without the server buffering what it did
//! not read, and so is an HTTP/2 reader that answers pings but never opens
//! its stream's window (while a reader on another connection keeps
//! receiving); idle HTTP/2 connections are closed; a drain says
//! `connection: close` and spreads the ends of held requests; the internal
//! listener refuses what a browser page would send; the listen backlog is
//! the configured one.

use std::time::{Duration, Instant};

use herald_testkit::{
    Binary, Server, client, need,
    ws::{connect, next, refused},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

/// Sends a raw HTTP/1.1 request head on a new connection.
async fn raw(addr: std::net::SocketAddr, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send");
    stream
}

/// Reads until the server closes the connection; answers what it sent.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    timeout(within, stream.read_to_end(&mut out))
        .await
        .expect("the server closes in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON error code of a raw HTTP response.
fn error_code(response: &str) -> (u16, String) {
    let status = response[9..12].parse().expect("a status");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).expect("a JSON body");
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn ten_websockets_at_a_cap_of_ten_refuse_the_eleventh() {
    let s = Server::start(&["--max-connections", "10"]).await;
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(connect(&s, "/ws/c").await);
    }
    s.wait_subscribers("c", 10, Duration::from_secs(5)).await;
    let started = Instant::now();
    let refusal = timeout(Duration::from_secs(1), refused(s.ws_url("/ws/c")))
        .await
        .expect("the eleventh is answered within a second");
    assert_eq!(refusal, (503, "overloaded".to_string()));
    assert!(started.elapsed() < Duration::from_secs(1));
    s.publish("c", "still here").await;
    for ws in &mut sockets {
        let m = loop {
            let v = next(ws).await;
            if v["type"] == "message" {
                break v;
            }
        };
        assert_eq!(m["data"], "still here");
    }
    // A socket that closes gives its place back.
    drop(sockets.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio_tungstenite::connect_async(s.ws_url("/ws/c")).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "no place freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_refused_at_once() {
    let s = Server::start(&["--max-connections-per-ip", "2"]).await;
    // Two connections that have sent nothing yet hold their places.
    let _a = TcpStream::connect(s.public).await.unwrap();
    let _b = TcpStream::connect(s.public).await.unwrap();
    let mut third = raw(s.public, "GET /poll/c HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let answer = read_to_close(&mut third, Duration::from_secs(2)).await;
    assert_eq!(error_code(&answer), (503, "overloaded".to_string()));
    assert!(answer.contains("connection: close"), "{answer}");
    // The internal listener counts on its own.
    s.publish("c", "x").await;
}

/// Held by the tests that publish megabytes: the memory test below reads
/// the resident memory of this whole process, which the tests running
/// beside it share, so those that would move it by megabytes take turns.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The resident memory of this process (the in-process server runs here).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_after_the_send_timeout() {
    const PUBLISHED: usize = 10 * 1024 * 1024;
    const CHUNK: usize = 60 * 1024;
    let _alone = HEAVY.lock().await;
    let s = Server::start(&["--send-timeout", "2"]).await;
    let chunk = "x".repeat(CHUNK);
    s.publish("c", &chunk).await;
    let before = rss_bytes();
    // A small receive buffer, set before connecting so that the window
    // the client advertises stays small.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&s.public.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut stalled = TcpStream::from_std(socket.into()).unwrap();
    stalled
        .write_all(b"GET /sse/c?last=1000 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    s.wait_subscribers("c", 1, Duration::from_secs(5)).await;
    let c = client();
    for _ in 0..PUBLISHED / CHUNK {
        let res = c
            .post(s.internal_url("/publish/c"))
            .body(chunk.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    let published = Instant::now();
    s.wait_subscribers("c", 0, Duration::from_secs(10)).await;
    let closed_after = published.elapsed();
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        closed_after < Duration::from_secs(2 + 3),
        "closed after {closed_after:?}"
    );
    // The server holds one frame for the stalled reader at most (bounded
    // by the channel's history, 1 MiB by default), never what was
    // published: allow for the history itself and the allocator.
    assert!(
        grown < 8 * 1024 * 1024,
        "resident memory grew by {grown} bytes for {PUBLISHED} published"
    );
    drop(stalled);
}

/// An HTTP/2 connection (cleartext, prior knowledge) whose streams may
/// receive at most `window` bytes before the client opens their window;
/// the client answers pings and settings on its own task, which ends when
/// the server closes the connection.
async fn http2(
    addr: std::net::SocketAddr,
    window: u32,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(window)
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("an HTTP/2 handshake");
    (send, tokio::spawn(conn))
}

/// Sends `GET path` on an HTTP/2 connection; answers the response, whose
/// body has not been read.
async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    let req = http::Request::get(format!("http://x{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = send.send_request(req).await.expect("a response");
    assert_eq!(res.status(), 200);
    res
}

#[tokio::test]
async fn an_http2_reader_that_never_opens_its_window_is_closed_after_the_send_timeout() {
    use http_body_util::BodyExt;
    let _alone = HEAVY.lock().await;
    let s = Server::start(&["--send-timeout", "2"]).await;
    let chunk = "x".repeat(60 * 1024);
    for _ in 0..16 {
        s.publish("c", &chunk).await;
    }
    // A reader that keeps its connection alive (its task answers pings)
    // but never reads, so its stream's window stays at 1 KiB.
    let (mut stalled, stalled_conn) = http2(s.public, 1024).await;
    let started = Instant::now();
    let _held = h2_get(&mut stalled, "/sse/c?last=100").await;
    // A reader on another connection of the same server, reading.
    let (mut reading, _reading_conn) = http2(s.public, 1024 * 1024).await;
    let mut body = h2_get(&mut reading, "/sse/c").await.into_body();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let _ = tx.send(String::from_utf8_lossy(&data).into_owned());
            }
        }
    });
    s.wait_subscribers("c", 2, Duration::from_secs(5)).await;
    let ended = timeout(Duration::from_secs(2 + 3), stalled_conn)
        .await
        .expect("the stalled connection is closed within the send timeout");
    let closed_after = started.elapsed();
    assert!(ended.is_ok(), "the client's connection task ended");
    assert!(
        closed_after >= Duration::from_secs(2),
        "closed before the send timeout: {closed_after:?}"
    );
    s.wait_subscribers("c", 1, Duration::from_secs(5)).await;
    s.publish("c", "still here").await;
    let mut seen = String::new();
    while !seen.contains("still here") {
        let more = timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the reading subscriber keeps receiving")
            .expect("its stream is open");
        seen.push_str(&more);
    }
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let s = Server::start(&["--idle-timeout", "1"]).await;
    let mut h2 = TcpStream::connect(s.public).await.unwrap();
    // The HTTP/2 connection preface and an empty SETTINGS frame; no stream.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut sink = Vec::new();
    timeout(Duration::from_secs(5), h2.read_to_end(&mut sink))
        .await
        .expect("the idle connection is closed")
        .ok();
}

#[tokio::test]
async fn a_drain_says_connection_close_on_both_paths() {
    let mut s = Server::start(&["--drain-spread", "1"]).await;
    let since = s.cursor_now("c").await;
    let longpoll = format!("GET /longpoll/c?since={since}&timeout=30 HTTP/1.1\r\nhost: x\r\n\r\n");
    // The lean path: a held long poll as the connection's first request.
    let mut lean = raw(s.public, &longpoll).await;
    // hyper's path: a short poll first, then the long poll on the same
    // connection.
    let mut hyper = raw(s.public, "GET /poll/c HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = [0u8; 4096];
    let n = hyper.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    hyper.write_all(longpoll.as_bytes()).await.unwrap();
    s.wait_subscribers("c", 2, Duration::from_secs(5)).await;
    let stopping = tokio::spawn(async move { s.stop().await });
    for (path, stream) in [("lean", &mut lean), ("hyper", &mut hyper)] {
        let answer = read_to_close(stream, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{path}: {answer}"
        );
    }
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_drain_spreads_the_answers_of_held_long_polls() {
    let mut s = Server::start(&["--drain-spread", "2", "--drain-timeout", "5"]).await;
    let since = s.cursor_now("c").await;
    let url = s.url(&format!("/longpoll/c?since={since}&timeout=30"));
    let polls: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                // One client each: one connection each.
                let res = client().get(url).send().await.unwrap();
                assert_eq!(res.status(), 200);
                Instant::now()
            })
        })
        .collect();
    s.wait_subscribers("c", 20, Duration::from_secs(5)).await;
    let stopped = Instant::now();
    s.stop().await.unwrap();
    let mut ends = Vec::new();
    for p in polls {
        ends.push(p.await.unwrap().duration_since(stopped));
    }
    let (first, last) = (ends.iter().min().unwrap(), ends.iter().max().unwrap());
    assert!(*last < Duration::from_secs(4), "{ends:?}");
    assert!(
        *last - *first > Duration::from_millis(500),
        "the answers are spread: {ends:?}"
    );
}

#[tokio::test]
async fn the_internal_listener_refuses_what_a_browser_page_sends() {
    let s = Server::start(&[]).await;
    let c = client();
    let host = |name: &str| format!("{name}:{}", s.internal.port());
    let batch = json!({"messages": [{"channel": "c", "data": "x"}]}).to_string();
    for (request, status, code) in [
        // A page's preflight-free POST.
        (
            c.post(s.internal_url("/publish/c"))
                .header("origin", "https://page.example")
                .header("content-type", "text/plain")
                .body("from a page"),
            403,
            "origin_not_allowed",
        ),
        // DNS rebinding: the page's own host name, resolved to 127.0.0.1.
        (
            c.get(s.internal_url("/channels/c"))
                .header("host", host("rebind.example")),
            403,
            "host_not_allowed",
        ),
        // A batch that does not say it is JSON.
        (
            c.post(s.internal_url("/publish"))
                .header("content-type", "text/plain")
                .body(batch),
            415,
            "invalid_json",
        ),
    ] {
        let res = request.send().await.unwrap();
        assert_eq!(res.status(), status, "{code}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], code);
    }
    // The loopback names are answered, and nothing was published.
    let res = c
        .get(s.internal_url("/channels/c"))
        .header("host", host("localhost"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["retained"], 0, "nothing was published");
}

#[test]
fn the_listen_backlog_is_the_configured_one() {
    let Some(ss) = need("ss") else { return };
    let b = Binary::start(&["--listen-backlog", "77"]);
    let out = std::process::Command::new(ss)
        .args(["-ltnH", &format!("sport = :{}", b.public.port())])
        .output()
        .expect("ss runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // State, Recv-Q, Send-Q (the backlog), local address, peer address.
    let backlog: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(backlog, ["77"], "{text}");
}
