//! End-to-end: the limits that keep hostile or broken subscribers cheap,
//! each at its limit, against the in-process server and real clients: a
//! WebSocket client that answers no ping it has not read, oversized and
//! over-frequent subscribe frames, and the setup deadline on a store that
//! stops answering (a paused Redis).
//!
//! The exact timings (ping and send deadlines) are tested on paused time in
//! crates/ws; here the bounds are loose and only the outcomes are asserted.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use herald_testkit::{
    Server, client,
    ws::{close_code, connect, next, send, subscribe},
};
use serde_json::json;
use tokio::{
    io::AsyncReadExt,
    time::{Instant, sleep, timeout},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, protocol::Role},
};

/// The code of the close frame among what a server sent, read back as a
/// client would have read it.
async fn close_code_in(bytes: Vec<u8>) -> Option<u16> {
    let mut replay =
        WebSocketStream::from_raw_socket(std::io::Cursor::new(bytes), Role::Client, None).await;
    while let Some(Ok(m)) = replay.next().await {
        if let Message::Close(Some(f)) = m {
            return Some(f.code.into());
        }
    }
    None
}

#[tokio::test]
async fn a_client_that_pongs_without_reading_is_closed_with_4408() {
    let s = Server::start(&["--ws-ping-interval", "1", "--ws-ping-timeout", "1"]).await;
    let (mut ws, _) = connect_async(s.ws_url("/ws")).await.expect("connect");
    let start = Instant::now();
    // Pongs of its own, and never a read: it cannot echo the ping's
    // payload. It stops sending before the close, so that the server's
    // close frame is not lost to a reset.
    while start.elapsed() < Duration::from_millis(1800) {
        ws.send(Message::Pong(b"alive".to_vec().into()))
            .await
            .expect("pong");
        sleep(Duration::from_millis(300)).await;
    }
    let MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
        panic!("a plain socket")
    };
    let mut bytes = Vec::new();
    timeout(Duration::from_secs(10), tcp.read_to_end(&mut bytes))
        .await
        .expect("the server ends the connection")
        .expect("read");
    assert_eq!(bytes[0], 0x89, "a ping first");
    assert_eq!(close_code_in(bytes).await, Some(4408));
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_subscribe_list_longer_than_the_limit_is_refused() {
    let s = Server::start(&["--ws-max-subscriptions", "3"]).await;
    let mut ws = connect(&s, "/ws").await;
    send(
        &mut ws,
        json!({"type": "subscribe", "channels": ["a", "a", "b", "c"], "ref": "big"}),
    )
    .await;
    let v = next(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str(), v["ref"].as_str()),
        (Some("error"), Some("too_many_subscriptions"), Some("big"))
    );
    let ok = subscribe(&mut ws, &["a", "b", "c"], json!({})).await;
    assert_eq!(ok["channels"], json!(["a", "b", "c"]));
    // Full: one more channel is refused, one already held is not new.
    send(&mut ws, json!({"type": "subscribe", "channels": ["d"]})).await;
    assert_eq!(next(&mut ws).await["code"], "too_many_subscriptions");
    subscribe(&mut ws, &["a"], json!({})).await;
}

#[tokio::test]
async fn subscribe_frames_over_the_rate_are_refused_then_the_connection_is_closed() {
    let s = Server::start(&[
        "--ws-frame-rate",
        "1",
        "--ws-frame-burst",
        "2",
        "--ws-max-bad-frames",
        "3",
    ])
    .await;
    let mut ws = connect(&s, "/ws").await;
    subscribe(&mut ws, &["a"], json!({})).await;
    subscribe(&mut ws, &["b"], json!({})).await;
    for i in 0..3 {
        send(
            &mut ws,
            json!({"type": "unsubscribe", "channels": ["a"], "ref": i.to_string()}),
        )
        .await;
    }
    for i in 0..3 {
        let v = next(&mut ws).await;
        assert_eq!(
            (v["code"].as_str(), v["ref"].as_str()),
            (Some("rate_limited"), Some(i.to_string().as_str())),
            "{v}"
        );
    }
    assert_eq!(close_code(&mut ws).await, 1008);
    // Another connection has its own bucket.
    let mut other = connect(&s, "/ws").await;
    subscribe(&mut other, &["a"], json!({})).await;
}

#[tokio::test]
async fn a_store_that_stops_answering_gets_503_within_the_setup_timeout() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let url = redis.url();
    let s = Server::start(&[
        "--engine",
        "redis",
        "--redis-url",
        &url,
        "--redis-timeout",
        "20",
        "--setup-timeout",
        "1",
    ])
    .await;
    let mut ws = connect(&s, "/ws").await;
    // Every command of every other client waits for 6 s.
    redis.command(&["CLIENT", "PAUSE", "6000", "ALL"]);
    let start = Instant::now();
    for path in ["/longpoll/slow?timeout=5", "/poll/slow", "/sse/slow"] {
        let res = client().get(s.url(path)).send().await.expect("GET");
        assert_eq!(res.status(), 503, "{path}");
        let v: serde_json::Value = res.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], "engine_unavailable", "{path}");
    }
    send(
        &mut ws,
        json!({"type": "subscribe", "channels": ["slow"], "ref": "s"}),
    )
    .await;
    let v = next(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("engine_unavailable"))
    );
    // Four requests, about 1 s each, all before the pause ends.
    assert!(
        start.elapsed() < Duration::from_millis(6000),
        "{:?}",
        start.elapsed()
    );
    // Once the store answers again, so does herald.
    sleep(Duration::from_millis(6500).saturating_sub(start.elapsed())).await;
    subscribe(&mut ws, &["slow"], json!({})).await;
}
