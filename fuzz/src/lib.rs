//! herald's fuzz targets as plain functions of one input.
//!
//! Each `fuzz_targets/*.rs` binary hands libFuzzer's input to one function
//! here, and `tests/corpus.rs` runs every committed seed through the same
//! function under a plain `cargo test`, so that the seeds stay valid inputs
//! without the fuzzing toolchain.
//!
//! The targets reach herald through its public API, and the WebSocket
//! frame parser through a doc-hidden entry point behind herald-ws's
//! `fuzzing` feature. Parsers that are private (the batch body parser, the
//! lean HTTP/1.1 head parser) are reached through the service or the
//! socket that owns them: slower per input than a direct call, but the
//! same code runs.
//! A target fails by panicking: on a panic in herald (in any task, since
//! libFuzzer's panic hook aborts the process), on a 5xx, or on an error
//! response whose body is not `{"error":{"code","message"}}`.
//!
//! Left out: the Redis engine (it needs a running redis-server) and timing.

use std::{
    net::SocketAddr,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use herald_bus::Cursor;
use herald_http::{Limits, Query};
use herald_server::{Config, Herald};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    runtime::Runtime,
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};
use tower::ServiceExt;

/// Cursor text: [`Cursor::parse`] never panics, and what it accepts
/// survives a round trip through its own text form.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Cursor::parse(text) {
        round_trip(&c);
    }
}

/// A channel segment and a query string (`{segment}?{query}`), parsed as
/// every subscriber route does, then sent to `GET /poll/{segment}?{query}`.
pub fn since(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (segment, query) = text.split_once('?').unwrap_or((text, ""));
    let limits = Limits::default();
    let _ = herald_http::channels(segment, &limits);
    let parsed = Query::parse(Some(query));
    if let Ok(herald_bus::Start::From(c)) = parsed.start(&limits) {
        round_trip(&c);
    }
    let Ok(req) = Request::get(format!("/poll/{segment}?{query}")).body(Empty::<Bytes>::new())
    else {
        return;
    };
    let gw = gateway();
    check(gw.public(req), &gw.rt);
}

/// A `Last-Event-ID` header on `HEAD /sse/c`: answered 200 exactly when
/// the trimmed value is empty or a cursor, else 400 `invalid_cursor`.
pub fn last_event_id(data: &[u8]) {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let trimmed = data.trim_ascii();
    let valid =
        trimmed.is_empty() || std::str::from_utf8(trimmed).is_ok_and(|t| Cursor::parse(t).is_ok());
    let req = Request::head("/sse/c")
        .header("last-event-id", value)
        .body(Empty::<Bytes>::new())
        .expect("a fixed request");
    let gw = gateway();
    let res = gw.public(req);
    let status = res.status();
    let code = check(res, &gw.rt);
    if valid {
        assert_eq!(status, StatusCode::OK, "a valid Last-Event-ID was refused");
    } else {
        assert_eq!(code.as_deref(), Some("invalid_cursor"));
    }
}

/// A batch publish body: `POST /publish` with `Content-Type:
/// application/json`, answered 202 or a 4xx JSON error.
pub fn batch(data: &[u8]) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/publish")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(data)))
        .expect("a fixed request");
    let gw = gateway();
    check(gw.internal(req), &gw.rt);
}

/// The most channels and the highest `last` a frame may ask for, as in
/// herald's defaults (`ws-max-subscriptions`, `max-messages`).
const WS_MAX_CHANNELS: usize = 100;
const WS_MAX_LAST: usize = 1000;

/// A WebSocket client text frame, given straight to the frame parser
/// (`herald_ws::fuzz_parse`, behind herald-ws's `fuzzing` feature): no
/// socket, so each input costs only its parse. An input that is not UTF-8
/// is not a text frame and never reaches the parser (the connection
/// refuses binary frames; `ws_socket` sends those). Beyond "no panic": a
/// subscription names between one and the cap of channels, each once; a
/// refusal is a 4xx code; a `ref` that is a JSON string is echoed.
pub fn ws_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (reference, op) = herald_ws::fuzz_parse(text, WS_MAX_LAST, WS_MAX_CHANNELS);
    match op {
        Ok(channels) => {
            assert!(
                channels.len() <= WS_MAX_CHANNELS,
                "{} channels",
                channels.len()
            );
            let mut seen = std::collections::HashSet::new();
            for c in &channels {
                assert!(seen.insert(c), "channel {c} named twice");
            }
        }
        Err(code) => assert!(
            code.status().is_client_error(),
            "a refusal with {}",
            code.status()
        ),
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(serde_json::Value::String(r)) = o.get("ref")
    {
        assert_eq!(reference.as_deref(), Some(r.as_str()), "the ref is echoed");
    }
}

/// A WebSocket client frame on `/ws`: text when the input is UTF-8, else
/// binary. Every frame is answered by a JSON frame with a `type`, or the
/// server closes (after too many bad frames); the connection is reused
/// across inputs and opened again when closed. Slower than [`ws_frame`],
/// and it reaches the connection's handling of frames too.
pub fn ws_socket(data: &[u8]) {
    let server = server();
    let mut slot = server.ws.lock().unwrap_or_else(|e| e.into_inner());
    server.rt.block_on(async {
        if slot.as_ref().is_none_or(|(_, used)| *used >= 64) {
            let url = format!("ws://{}/ws", server.public);
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("the WebSocket handshake on /ws");
            *slot = Some((ws, 0));
        }
        let (ws, used) = slot.as_mut().expect("opened above");
        *used += 1;
        let frame = match std::str::from_utf8(data) {
            Ok(text) => Message::text(text),
            Err(_) => Message::binary(data.to_vec()),
        };
        if ws.send(frame).await.is_err() {
            *slot = None;
            return;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(reply)))) => {
                    let v: serde_json::Value =
                        serde_json::from_str(reply.as_str()).expect("a JSON server frame");
                    assert!(v["type"].is_string(), "a server frame without a type");
                    return;
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => {
                    *slot = None;
                    return;
                }
                Ok(Some(Ok(other))) => panic!("unexpected server frame {other:?}"),
                Err(_) => panic!("no answer to a client frame within 5 s"),
            }
        }
    });
}

/// Raw bytes on a fresh connection to the public listener, where the lean
/// HTTP/1.1 path reads the head first and hands anything it does not serve
/// to hyper. The input is written, the write side closed, and the answer
/// read until the server closes or 50 ms pass (a held request answers
/// later; its task ends on its own).
pub fn http_head(data: &[u8]) {
    let server = server();
    server.rt.block_on(async {
        let mut s = TcpStream::connect(server.public)
            .await
            .expect("connect to the public listener");
        if s.write_all(data).await.is_err() || s.shutdown().await.is_err() {
            return;
        }
        let mut buf = vec![0; 64 * 1024];
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
    });
}

/// A gateway on the in-memory engine, in this process, with a runtime to
/// call its services on.
struct Gateway {
    rt: Runtime,
    herald: Herald,
}

impl Gateway {
    /// One request through the public service.
    fn public(&self, req: Request<Empty<Bytes>>) -> Response<herald_http::Body> {
        let res = self.rt.block_on(self.herald.public_service().oneshot(req));
        res.unwrap_or_else(|e| match e {})
    }

    /// One request through the internal service.
    fn internal(&self, req: Request<Full<Bytes>>) -> Response<herald_http::Body> {
        let res = self
            .rt
            .block_on(self.herald.internal_service().oneshot(req));
        res.unwrap_or_else(|e| match e {})
    }
}

fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let herald = {
            let _guard = rt.enter();
            Herald::new(config()).expect("a valid configuration")
        };
        Gateway { rt, herald }
    })
}

/// The real server on a loopback port, served from its own thread, and a
/// client runtime (with the WebSocket connection `ws_frame` reuses).
struct Server {
    rt: Runtime,
    public: SocketAddr,
    ws: Mutex<Option<(WebSocketStream<MaybeTlsStream<TcpStream>>, u32)>>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a server runtime");
            rt.block_on(async {
                let public = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                tx.send(public.local_addr()?)
                    .expect("the fuzz thread waits");
                let herald = Herald::new(config()).expect("a valid configuration");
                herald_server::run(herald, public, internal, std::future::pending()).await
            })
        });
        let public = rx.recv().expect("the server thread binds its listeners");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a client runtime");
        // A fuzz binary has no Rust `main`, so SIGPIPE keeps its default
        // action and a write to a socket the peer closed kills the process.
        // The herald binary ignores it (the Rust runtime does); so does
        // this one, by handling it (a handler, once set, stays for the
        // life of the process).
        {
            let _guard = rt.enter();
            let _handled = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::pipe())
                .expect("a SIGPIPE handler");
        }
        Server {
            rt,
            public,
            ws: Mutex::new(None),
        }
    })
}

/// Defaults, with short holds and small histories so that a long run stays
/// small.
fn config() -> Config {
    let mut c = Config::default();
    c.longpoll.timeout = Duration::from_secs(1);
    c.history.max_messages = 4;
    c.history.max_age = Duration::from_secs(5);
    c.header_read_timeout = Duration::from_secs(1);
    c.sse.max_lifetime = Some(Duration::from_secs(1));
    c
}

/// Reads a response: never a 5xx; an error's body is the one JSON shape.
/// Returns the error code, if it is an error.
fn check(res: Response<herald_http::Body>, rt: &Runtime) -> Option<String> {
    let status = res.status();
    assert!(!status.is_server_error(), "a 5xx: {status}");
    if status.is_success() {
        return None;
    }
    let body = rt
        .block_on(res.into_body().collect())
        .expect("an error body")
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("an error body is JSON");
    let code = v["error"]["code"].as_str().expect("error.code").to_string();
    assert!(v["error"]["message"].is_string(), "error.message");
    Some(code)
}

fn round_trip(c: &Cursor) {
    let text = c.to_string();
    let again = Cursor::parse(&text).expect("a cursor's own text parses");
    assert_eq!(&again, c, "a cursor changed in a round trip");
}
