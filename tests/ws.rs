//! End-to-end: the WebSocket transport against the in-process server, with
//! a real WebSocket client (tokio-tungstenite): subscribing, delivery,
//! resume, liveness, every kind of bad input and its outcome, and shutdown
//! (SIGTERM against the binary).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use herald_testkit::{
    Binary, Endpoints, Server, client,
    ws::{WAIT, assert_nothing_pending, close_code, connect, next, refused, send, subscribe},
};
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

async fn publish_batch(s: &Endpoints, channel: &str, range: std::ops::Range<usize>) {
    let messages: Vec<Value> = range
        .map(|i| json!({"channel": channel, "data": i}))
        .collect();
    s.publish_batch(messages).await;
}

#[tokio::test]
async fn subscribe_receive_unsubscribe() {
    let s = Server::start(&[]).await;
    let mut ws = connect(&s, "/ws").await;
    let sub = subscribe(&mut ws, &["news"], json!({})).await;
    assert_eq!(sub["channels"], json!(["news"]));
    assert!(sub["cursor"].is_string());
    let published = s.publish("news", "hello").await;
    let m = next(&mut ws).await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["channel"], "news");
    assert_eq!(m["data"], "hello");
    assert_eq!(m["event"], Value::Null);
    assert!(m["id"].is_u64() && m["time"].is_u64());
    assert_eq!(
        m["cursor"], published["cursor"],
        "the cursor right after it"
    );
    send(
        &mut ws,
        json!({"type": "unsubscribe", "channels": ["news"], "ref": "u"}),
    )
    .await;
    let v = next(&mut ws).await;
    assert_eq!(
        v,
        json!({"type": "unsubscribed", "ref": "u", "channels": ["news"]})
    );
    s.publish("news", "not for you").await;
    assert_nothing_pending(&mut ws).await;
}

#[tokio::test]
async fn many_channels_on_one_connection() {
    let s = Server::start(&[]).await;
    let mut ws = connect(&s, "/ws").await;
    subscribe(&mut ws, &["a", "b"], json!({})).await;
    s.publish("a", "1").await;
    s.publish("b", "2").await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let v = next(&mut ws).await;
        got.push(format!(
            "{}={}",
            v["channel"].as_str().unwrap(),
            v["data"].as_str().unwrap()
        ));
    }
    subscribe(&mut ws, &["c"], json!({})).await;
    s.publish("elsewhere", "x").await;
    s.publish("c", "3").await;
    let v = next(&mut ws).await;
    got.push(format!(
        "{}={}",
        v["channel"].as_str().unwrap(),
        v["data"].as_str().unwrap()
    ));
    assert_eq!(got, ["a=1", "b=2", "c=3"]);
    assert_nothing_pending(&mut ws).await;
}

#[tokio::test]
async fn direct_subscribe_in_the_path() {
    let s = Server::start(&[]).await;
    s.publish("a", "old-a").await;
    s.publish("b", "old-b").await;
    let mut ws = connect(&s, "/ws/a,b?last=1").await;
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "subscribed");
    assert_eq!(hello["channels"], json!(["a", "b"]));
    let mut data = vec![next(&mut ws).await, next(&mut ws).await]
        .into_iter()
        .map(|v| v["data"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    data.sort();
    assert_eq!(data, ["old-a", "old-b"]);
    s.publish("b", "new").await;
    assert_eq!(next(&mut ws).await["data"], "new");

    // Refused before the upgrade, with the HTTP error shape.
    for (path, code) in [
        ("/ws/a%20b", "invalid_channel"),
        ("/ws/a?since=!!", "invalid_cursor"),
        ("/ws/a?since=x&last=1", "invalid_query"),
    ] {
        assert_eq!(refused(s.ws_url(path)).await, (400, code.into()), "{path}");
    }
}

#[tokio::test]
async fn resume_after_a_dropped_connection_loses_nothing() {
    const N: usize = 1000;
    let s = Server::start(&["--history-messages", "2000"]).await;
    let mut ws = connect(&s, "/ws").await;
    let first = subscribe(&mut ws, &["burst"], json!({})).await;
    let mut cursor = first["cursor"].as_str().unwrap().to_string();
    let publisher = {
        let internal = *s;
        tokio::spawn(async move {
            for chunk in 0..N / 50 {
                let messages: Vec<Value> = (chunk * 50..chunk * 50 + 50)
                    .map(|i| json!({"channel": "burst", "data": i}))
                    .collect();
                internal.publish_batch(messages).await;
            }
        })
    };
    let mut seen = Vec::with_capacity(N);
    // Mid-burst, the connection drops without a close handshake.
    while seen.len() < 300 {
        let m = next(&mut ws).await;
        seen.push(m["data"].as_u64().unwrap() as usize);
        cursor = m["cursor"].as_str().unwrap().to_string();
    }
    drop(ws);
    let mut ws = connect(&s, "/ws").await;
    let again = subscribe(&mut ws, &["burst"], json!({ "since": [cursor] })).await;
    assert_eq!(again["channels"], json!(["burst"]));
    while seen.len() < N {
        let m = next(&mut ws).await;
        assert_eq!(m["type"], "message", "no gap expected: {m}");
        seen.push(m["data"].as_u64().unwrap() as usize);
    }
    publisher.await.unwrap();
    assert_eq!(
        seen,
        (0..N).collect::<Vec<_>>(),
        "every message, in order, once"
    );
    assert_nothing_pending(&mut ws).await;
}

#[tokio::test]
async fn pings_both_ways() {
    let s = Server::start(&["--ws-ping-interval", "1"]).await;
    let mut ws = connect(&s, "/ws").await;
    ws.send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    let mut got_pong = false;
    let mut got_ping = false;
    let start = std::time::Instant::now();
    while !(got_pong && got_ping) {
        match timeout(WAIT, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Pong(p))) => {
                assert_eq!(&p[..], b"are you there");
                got_pong = true;
            }
            // tokio-tungstenite answers it with a pong as it reads on.
            Some(Ok(Message::Ping(_))) => got_ping = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(start.elapsed() < Duration::from_millis(2500));
    // Answered pings keep the connection open past the timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_nothing_pending(&mut ws).await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays() {
    let s = Server::start(&["--ws-max-subscriptions", "2"]).await;
    let mut ws = connect(&s, "/ws").await;
    for (frame, code) in [
        (Message::text("{not json"), "invalid_json"),
        (
            Message::text(r#"{"type":"publish","ref":"r"}"#),
            "unknown_type",
        ),
        (
            Message::text(r#"{"type":"subscribe","channels":["no spaces"]}"#),
            "invalid_channel",
        ),
        (
            Message::text(r#"{"type":"subscribe","channels":["a"],"since":"%%"}"#),
            "invalid_cursor",
        ),
        (
            Message::text(r#"{"type":"subscribe","channels":["a","b","c"]}"#),
            "too_many_subscriptions",
        ),
        (Message::binary(&b"\x00\x01"[..]), "binary_not_supported"),
    ] {
        ws.send(frame).await.unwrap();
        let v = next(&mut ws).await;
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str()),
            (Some("error"), Some(code)),
            "{v}"
        );
        assert!(v["message"].is_string());
        if code == "unknown_type" {
            assert_eq!(v["ref"], "r");
        }
    }
    // Still serving, and the limit counts channels across frames.
    subscribe(&mut ws, &["a", "b"], json!({})).await;
    send(&mut ws, json!({"type": "subscribe", "channels": ["c"]})).await;
    assert_eq!(next(&mut ws).await["code"], "too_many_subscriptions");
    s.publish("b", "still here").await;
    assert_eq!(next(&mut ws).await["data"], "still here");
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_with_1009() {
    let s = Server::start(&["--ws-max-frame", "1024"]).await;
    let mut ws = connect(&s, "/ws").await;
    let big = format!(r#"{{"type":"ping","ref":"{}"}}"#, "x".repeat(2000));
    ws.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
}

#[tokio::test]
async fn too_many_bad_frames_close_with_1008() {
    let s = Server::start(&["--ws-max-bad-frames", "3"]).await;
    let mut ws = connect(&s, "/ws").await;
    for _ in 0..3 {
        ws.send(Message::text("nope")).await.unwrap();
    }
    for _ in 0..3 {
        assert_eq!(next(&mut ws).await["code"], "invalid_json");
    }
    assert_eq!(close_code(&mut ws).await, 1008);
}

#[tokio::test]
async fn handshakes_are_checked_before_the_upgrade() {
    let s = Server::start(&["--ws-origins", "https://app.example, https://other.example"]).await;
    let with_origin = |origin: &'static str| {
        let mut req = s.ws_url("/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("origin", HeaderValue::from_static(origin));
        req
    };
    assert_eq!(
        refused(with_origin("https://evil.example")).await,
        (403, "origin_not_allowed".into())
    );
    let (mut ws, _) = connect_async(with_origin("https://other.example"))
        .await
        .expect("an allowed origin upgrades");
    assert_nothing_pending(&mut ws).await;

    // Not a WebSocket handshake at all: a JSON 400, and 405 for other methods.
    let res = client().get(s.url("/ws")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "websocket_upgrade_required");
    let res = client().post(s.url("/ws")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let mut req = s.ws_url("/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-version", HeaderValue::from_static("8"));
    assert_eq!(
        refused(req).await,
        (400, "unsupported_websocket_version".into())
    );
}

#[tokio::test]
async fn one_clients_bad_input_does_not_disturb_another() {
    let s = Server::start(&["--ws-max-bad-frames", "2"]).await;
    let mut good = connect(&s, "/ws").await;
    subscribe(&mut good, &["shared"], json!({})).await;
    let mut bad = connect(&s, "/ws").await;
    subscribe(&mut bad, &["shared"], json!({})).await;
    publish_batch(&s, "shared", 0..10).await;
    bad.send(Message::text("garbage")).await.unwrap();
    bad.send(Message::binary(&b"\xff"[..])).await.unwrap();
    let big = Message::text("x".repeat(100_000));
    let _ = bad.send(big).await;
    publish_batch(&s, "shared", 10..20).await;
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(next(&mut good).await["data"].as_u64().unwrap());
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_nothing_pending(&mut good).await;
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001() {
    let mut s = Binary::start(&[]);
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut ws = connect(&s, "/ws").await;
        subscribe(&mut ws, &[&format!("c{i}")], json!({})).await;
        clients.push(ws);
    }
    let mut direct = connect(&s, "/ws/d").await;
    assert_eq!(next(&mut direct).await["type"], "subscribed");
    clients.push(direct);
    let waiter = tokio::task::spawn_blocking(move || s.terminate(Duration::from_secs(5)));
    for ws in &mut clients {
        assert_eq!(close_code(ws).await, 1001);
    }
    drop(clients);
    assert!(waiter.await.unwrap(), "herald exits cleanly after closing");
}
