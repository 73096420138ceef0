//! HTTP/1.1 on the wire, over raw TCP: held requests (long polls, SSE) are
//! served by herald's lean path and everything else by hyper, on the same
//! connection. These tests check the seams: keep-alive and pipelining across
//! the two, framing, `Connection: close`, and that whatever the lean path
//! does not understand still gets hyper's answer.

use std::time::Duration;

use herald_testkit::Server;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    time::timeout,
};

const WITHIN: Duration = Duration::from_secs(10);

/// One parsed response.
struct Res {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Res {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

async fn connect(s: &Server) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(s.public).await.unwrap())
}

async fn send(conn: &mut BufReader<TcpStream>, raw: &str) {
    conn.get_mut().write_all(raw.as_bytes()).await.unwrap();
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: herald\r\n\r\n")
}

/// Reads the status line and headers.
async fn read_head(conn: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line, got {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            return (status, headers);
        }
        let (k, v) = l.split_once(':').expect("a header line");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

/// Reads one chunk of a chunked body; `None` at the last chunk.
async fn read_chunk(conn: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    let len = usize::from_str_radix(line.trim_end(), 16).expect("a chunk size");
    let mut data = vec![0; len + 2];
    conn.read_exact(&mut data).await.unwrap();
    assert_eq!(&data[len..], b"\r\n");
    data.truncate(len);
    (len > 0).then_some(data)
}

/// Reads a whole response, framed by its length or chunked.
async fn read_response(conn: &mut BufReader<TcpStream>, head_only: bool) -> Res {
    let (status, headers) = timeout(WITHIN, read_head(conn)).await.expect("a head");
    let mut res = Res {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return res;
    }
    if let Some(n) = res.header("content-length") {
        let mut body = vec![0; n.parse().unwrap()];
        conn.read_exact(&mut body).await.unwrap();
        res.body = body;
    } else if res.header("transfer-encoding") == Some("chunked") {
        while let Some(chunk) = timeout(WITHIN, read_chunk(conn)).await.expect("a chunk") {
            res.body.extend(chunk);
        }
    }
    res
}

/// Whether the server closes the connection (within the test's patience).
async fn closed(conn: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    matches!(
        timeout(WITHIN, conn.read_to_end(&mut rest)).await,
        Ok(Ok(0))
    )
}

#[tokio::test]
async fn held_and_other_requests_share_one_keep_alive_connection() {
    let s = Server::start(&[]).await;
    s.publish("news", "one").await;
    let mut conn = connect(&s).await;
    for path in [
        "/longpoll/news?last=1",
        "/longpoll/news?last=1",
        "/healthz",
        "/poll/news?last=1",
        "/longpoll/news?last=1",
    ] {
        send(&mut conn, &get(path)).await;
        let res = read_response(&mut conn, false).await;
        assert_eq!(res.status, 200, "{path}");
        assert!(res.header("date").is_some(), "{path}: a Date header");
        if path != "/healthz" {
            assert_eq!(res.json()["messages"][0]["data"], "one", "{path}");
        }
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let s = Server::start(&[]).await;
    s.publish("a", "to a").await;
    s.publish("b", "to b").await;
    let mut conn = connect(&s).await;
    let raw = [
        get("/longpoll/a?last=1"),
        get("/longpoll/b?last=1"),
        get("/healthz"),
        get("/longpoll/a?last=1"),
    ]
    .concat();
    send(&mut conn, &raw).await;
    for want in [Some("to a"), Some("to b"), None, Some("to a")] {
        let res = read_response(&mut conn, false).await;
        assert_eq!(res.status, 200);
        match want {
            Some(data) => assert_eq!(res.json()["messages"][0]["data"], data),
            None => assert_eq!(res.json()["status"], "ok"),
        }
    }
}

#[tokio::test]
async fn a_request_sent_while_a_poll_is_held_waits_its_turn() {
    let s = Server::start(&[]).await;
    let mut conn = connect(&s).await;
    send(&mut conn, &get("/longpoll/later?timeout=30")).await;
    s.wait_subscribers("later", 1, WITHIN).await;
    send(&mut conn, &get("/longpoll/later?last=1")).await;
    s.publish("later", "news").await;
    for _ in 0..2 {
        let res = read_response(&mut conn, false).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.json()["messages"][0]["data"], "news");
    }
}

#[tokio::test]
async fn an_sse_stream_is_chunked_and_its_first_chunk_comes_at_once() {
    let s = Server::start(&[]).await;
    let mut conn = connect(&s).await;
    send(&mut conn, &get("/sse/news")).await;
    let (status, headers) = timeout(WITHIN, read_head(&mut conn)).await.unwrap();
    assert_eq!(status, 200);
    let has = |k: &str, v: &str| headers.iter().any(|(a, b)| a == k && b == v);
    assert!(has("transfer-encoding", "chunked"), "{headers:?}");
    assert!(has("content-type", "text/event-stream"), "{headers:?}");
    let first = timeout(WITHIN, read_chunk(&mut conn))
        .await
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b":"), "a comment first");
    s.wait_subscribers("news", 1, WITHIN).await;
    s.publish("news", "hello").await;
    let event = timeout(WITHIN, read_chunk(&mut conn))
        .await
        .unwrap()
        .unwrap();
    let event = String::from_utf8(event).unwrap();
    assert!(event.contains("data: hello\n"), "{event:?}");
}

#[tokio::test]
async fn an_sse_stream_that_ends_ends_its_chunked_body_and_keeps_the_connection() {
    let s = Server::start(&["--sse-max-lifetime", "1"]).await;
    let mut conn = connect(&s).await;
    send(&mut conn, &get("/sse/news")).await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 200);
    assert!(res.body.starts_with(b":"));
    send(&mut conn, &get("/healthz")).await;
    assert_eq!(read_response(&mut conn, false).await.status, 200);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let s = Server::start(&[]).await;
    s.publish("news", "one").await;
    let mut conn = connect(&s).await;
    send(
        &mut conn,
        "GET /longpoll/news?last=1 HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n",
    )
    .await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("connection"), Some("close"));
    assert!(
        closed(&mut conn).await,
        "the server closes after the answer"
    );
}

#[tokio::test]
async fn head_of_an_sse_route_has_the_stream_head_and_no_body() {
    let s = Server::start(&[]).await;
    let mut conn = connect(&s).await;
    send(&mut conn, "HEAD /sse/news HTTP/1.1\r\nHost: herald\r\n\r\n").await;
    let res = read_response(&mut conn, true).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/event-stream"));
    // Nothing follows the head: the next answer on the connection is the
    // next request's.
    send(&mut conn, &get("/healthz")).await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.json()["status"], "ok");
}

#[tokio::test]
async fn what_the_lean_path_does_not_serve_gets_hypers_answer() {
    let s = Server::start(&[]).await;
    s.publish("news", "one").await;

    // HTTP/1.0.
    let mut conn = connect(&s).await;
    send(&mut conn, "GET /longpoll/news?last=1 HTTP/1.0\r\n\r\n").await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["messages"][0]["data"], "one");

    // A body on a held route: the route's own 405, as JSON.
    let mut conn = connect(&s).await;
    send(
        &mut conn,
        "POST /sse/news HTTP/1.1\r\nHost: herald\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.json()["error"]["code"], "method_not_allowed");

    // A malformed head.
    let mut conn = connect(&s).await;
    send(&mut conn, "GET /sse/news HTTP/1.1\r\nno colon here\r\n\r\n").await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 400);

    // A head over the 16 KiB limit.
    let mut conn = connect(&s).await;
    let big = "x".repeat(17 * 1024);
    send(
        &mut conn,
        &format!("GET /longpoll/news HTTP/1.1\r\nHost: herald\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 431);

    // A head just under it is served.
    let mut conn = connect(&s).await;
    let fits = "x".repeat(15 * 1024);
    send(
        &mut conn,
        &format!("GET /longpoll/news?last=1 HTTP/1.1\r\nHost: herald\r\nX-Big: {fits}\r\n\r\n"),
    )
    .await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["messages"][0]["data"], "one");

    // Bad input on a held route is the transport's JSON error.
    let mut conn = connect(&s).await;
    send(&mut conn, &get("/longpoll/news?timeout=soon")).await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 400);
    assert!(res.json()["error"]["code"].is_string());
}

#[tokio::test]
async fn a_head_that_never_ends_is_cut_off_after_the_header_read_timeout() {
    let s = Server::start(&["--header-read-timeout", "1"]).await;
    let mut conn = connect(&s).await;
    send(&mut conn, "GET /sse/news HTTP/1.1\r\nHost: her").await;
    let t = std::time::Instant::now();
    assert!(closed(&mut conn).await);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn cors_applies_on_held_routes() {
    let s = Server::start(&["--cors-origins", "https://app.example"]).await;
    s.publish("news", "one").await;
    let mut conn = connect(&s).await;
    send(
        &mut conn,
        "GET /longpoll/news?last=1 HTTP/1.1\r\nHost: herald\r\nOrigin: https://app.example\r\n\r\n",
    )
    .await;
    let res = read_response(&mut conn, false).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

/// A stream that waits caught up is written to by the publishing task
/// itself, one chunk per run of events (docs/architecture.md, "The path of
/// one message"); when the socket fills, the stream's own task takes over,
/// in the middle of a chunk if need be, and hands back once caught up. A
/// client with a small receive buffer that reads slowly sees valid chunked
/// framing and every event once, whole and in order: with large events
/// (chunks written from their pieces) ...
#[tokio::test]
async fn a_slow_stream_fed_by_the_publisher_keeps_its_framing_and_order() {
    slow_stream(2000, 4000).await;
}

/// ... and with small ones, whose chunks the publishing task copies into
/// one buffer before writing.
#[tokio::test]
async fn a_slow_stream_of_small_events_keeps_its_framing_and_order() {
    slow_stream(30000, 100).await;
}

/// `n` events of about `size` bytes, published in batches of ten while the
/// client does not read for half a second, then read slowly.
async fn slow_stream(n: usize, size: usize) {
    let history = n.to_string();
    let s = Server::start(&[
        "--history-messages",
        &history,
        "--history-bytes",
        "33554432",
    ])
    .await;
    s.publish("burst", "first").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = BufReader::with_capacity(1024, socket.connect(s.public).await.unwrap());
    send(&mut conn, &get("/sse/burst?last=1")).await;
    let (status, _) = timeout(WITHIN, read_head(&mut conn)).await.unwrap();
    assert_eq!(status, 200);
    let pad = "x".repeat(size);
    let publisher = {
        let s: herald_testkit::Endpoints = *s;
        let pad = pad.clone();
        tokio::spawn(async move {
            for batch in 0..n / 10 {
                let messages = (batch * 10..batch * 10 + 10)
                    .map(|i| serde_json::json!({"channel": "burst", "data": format!("{i} {pad}")}))
                    .collect();
                s.publish_batch(messages).await;
            }
        })
    };
    // More than the socket buffers hold (a few MiB on loopback) is
    // published before the client starts reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut text = String::new();
    let mut seen = Vec::with_capacity(n);
    while seen.len() < n {
        let chunk = timeout(WITHIN, read_chunk(&mut conn))
            .await
            .expect("a chunk")
            .expect("the stream goes on");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if data == "first" {
                continue;
            }
            let (i, rest) = data.split_once(' ').expect("an event of the burst");
            assert_eq!(rest, pad, "event {i} arrived whole");
            seen.push(i.parse::<usize>().unwrap());
        }
    }
    publisher.await.unwrap();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "every event once, in order"
    );
}
