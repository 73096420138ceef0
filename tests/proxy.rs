//! End-to-end through a real nginx running the shipped configuration
//! (deploy/nginx/herald.conf, with only the addresses substituted): every
//! transport must work through it, and streams must not be buffered.

use std::time::{Duration, Instant};

use herald_testkit::{
    Server, client,
    nginx::{Nginx, SHIPPED},
    sse::Sse,
    ws,
};
use serde_json::{Value, json};

#[tokio::test]
async fn polls_pass_through_nginx() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(s.public, SHIPPED) else {
        return;
    };
    let c = client();
    let v: Value = c
        .get(nginx.url("/poll/news"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = v["cursor"].as_str().unwrap().to_string();
    s.publish("news", "via nginx").await;
    let v: Value = c
        .get(nginx.url(&format!("/poll/news?since={cursor}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["messages"][0]["data"], "via nginx");
    let health = c.get(nginx.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // The internal listener is not reachable through the proxy.
    let res = c
        .post(nginx.url("/publish/news"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_held_long_poll_is_answered_through_nginx() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(s.public, SHIPPED) else {
        return;
    };
    let c = client();
    let held = tokio::spawn({
        let url = nginx.url("/longpoll/lp?timeout=20");
        let c = c.clone();
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    s.wait_subscribers("lp", 1, Duration::from_secs(5)).await;
    let started = Instant::now();
    s.publish("lp", "released").await;
    let v = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["messages"][0]["data"], "released");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn sse_is_not_buffered_by_nginx() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(s.public, SHIPPED) else {
        return;
    };
    // The opening comment arrives at once, before any message (the
    // reader fails on a stall).
    let mut sse = Sse::open(&client(), &nginx.url("/sse/live"), None).await;
    assert_eq!(sse.res_headers["content-type"], "text/event-stream");
    s.wait_subscribers("live", 1, Duration::from_secs(5)).await;
    s.publish("live", "streamed").await;
    assert_eq!(sse.event().await.data(), "streamed", "event unbuffered");
}

#[tokio::test]
async fn websockets_pass_through_nginx() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(s.public, SHIPPED) else {
        return;
    };
    let url = nginx.url("/ws/live").replacen("http", "ws", 1);
    let mut ws = ws::open(&url).await;
    let mut frames = Vec::new();
    s.publish("live", "via nginx").await;
    ws::send(&mut ws, json!({"type": "ping", "ref": "p"})).await;
    // subscribed, the message, and the pong, both ways through the proxy.
    while frames.len() < 3 {
        frames.push(ws::next(&mut ws).await);
    }
    assert_eq!(frames[0]["type"], "subscribed");
    assert!(
        frames.iter().any(|f| f["data"] == "via nginx"),
        "{frames:?}"
    );
    assert!(frames.iter().any(|f| f["type"] == "pong"), "{frames:?}");
}
