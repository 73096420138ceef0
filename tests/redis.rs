//! End-to-end: two herald binaries on one real Redis behave as one gateway.
//! Publish on one, receive on the other (poll, long poll, SSE); one order for 10,000 messages
//! published through both; cursors that move between instances and survive
//! an instance restart; Redis killed and restarted mid-stream (503 while it
//! is down, a gap for the history it lost); and a clear failure at start
//! when Redis is unreachable.
//!
//! Short polling, long polling and SSE are exercised (WebSocket was not on
//! main when this was written; it reads the same bus).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, client, redis::RedisServer};
use tokio::time::{Instant, sleep};

fn herald(redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--engine", "redis", "--redis-url", &url];
    args.extend_from_slice(extra);
    Server::start(&args)
}

async fn get(url: String) -> Value {
    let res = client().get(url).send().await.expect("GET");
    assert_eq!(res.status(), 200);
    res.json().await.expect("JSON")
}

/// Polls `channel` on `s` from `cursor` (or from now).
async fn poll(s: &Server, channel: &str, cursor: Option<&str>) -> Value {
    let query = cursor.map_or(String::new(), |c| format!("?since={c}"));
    get(s.url(&format!("/poll/{channel}{query}"))).await
}

fn data(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["data"].as_str().expect("text data").to_string())
        .collect()
}

fn cursor(v: &Value) -> String {
    v["cursor"].as_str().expect("cursor").to_string()
}

#[tokio::test]
async fn publish_on_one_instance_poll_on_the_other() {
    let Some(redis) = support::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]), herald(&redis, &[]));
    let start = cursor(&poll(&b, "news", None).await);
    let published = a.publish("news", "hello").await;
    let got = poll(&b, "news", Some(&start)).await;
    assert_eq!(data(&got), ["hello"]);
    assert_eq!(got["gap"], false);
    assert_eq!(got["messages"][0]["id"], published["id"]);
    // The cursor the publisher got works on the other instance too.
    let after = published["cursor"].as_str().unwrap();
    assert_eq!(
        data(&poll(&b, "news", Some(after)).await),
        Vec::<String>::new()
    );
    let info = get(b.internal_url("/channels/news")).await;
    assert_eq!(info["last_id"], published["id"]);
}

/// Polls `channel` on `s` until `n` messages arrived; answers their data.
async fn poll_all(s: &Server, channel: &str, start: String, n: usize) -> Vec<String> {
    let mut at = start;
    let mut got = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} arrived",
            got.len()
        );
        let v = poll(s, channel, Some(&at)).await;
        assert_eq!(v["gap"], false, "no message may be lost");
        let batch = data(&v);
        if batch.is_empty() {
            sleep(Duration::from_millis(5)).await;
        }
        got.extend(batch);
        at = cursor(&v);
    }
    got
}

#[tokio::test]
async fn ten_thousand_messages_through_both_instances_arrive_in_one_order_on_both() {
    let Some(redis) = support::redis() else {
        return;
    };
    let opts = ["--history-messages", "20000"];
    let (a, b) = (herald(&redis, &opts), herald(&redis, &opts));
    let start = cursor(&poll(&a, "feed", None).await);
    const N: usize = 10_000;
    const BATCH: usize = 100;
    let (a_url, b_url) = (a.internal_url("/publish"), b.internal_url("/publish"));
    let pollers = {
        let (sa, sb) = (start.clone(), start.clone());
        let (a, b) = (&a, &b);
        futures::future::join(poll_all(a, "feed", sa, N), poll_all(b, "feed", sb, N))
    };
    let publisher = async {
        let c = client();
        for k in 0..N / BATCH {
            let messages: Vec<Value> = (k * BATCH..(k + 1) * BATCH)
                .map(|i| json!({"channel": "feed", "data": i.to_string()}))
                .collect();
            let url = if k % 2 == 0 { &a_url } else { &b_url };
            let res = c
                .post(url)
                .json(&json!({ "messages": messages }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 202);
        }
    };
    let ((on_a, on_b), ()) = futures::future::join(pollers, publisher).await;
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert!(
        on_a == expected,
        "instance A: wrong order, loss or duplicates"
    );
    assert!(
        on_b == expected,
        "instance B: wrong order, loss or duplicates"
    );
}

#[tokio::test]
async fn a_poller_moves_between_instances_with_its_cursor() {
    let Some(redis) = support::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]), herald(&redis, &[]));
    let mut at = cursor(&poll(&a, "c", None).await);
    for round in 0..3 {
        a.publish("c", &format!("{round}a")).await;
        b.publish("c", &format!("{round}b")).await;
        let via = if round % 2 == 0 { &b } else { &a };
        let v = poll(via, "c", Some(&at)).await;
        assert_eq!(data(&v), [format!("{round}a"), format!("{round}b")]);
        assert_eq!(v["gap"], false);
        at = cursor(&v);
    }
}

#[tokio::test]
async fn redis_killed_mid_stream_then_restarted() {
    let Some(mut redis) = support::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]), herald(&redis, &[]));
    a.publish("c", "before").await;
    let v = poll(&b, "c", Some(&cursor(&poll(&b, "c", None).await))).await;
    let before = cursor(&v);
    let c = client();
    redis.kill();

    let res = c
        .post(a.internal_url("/publish/c"))
        .body("lost")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "engine_unavailable");
    for s in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let res = c.get(s.internal_url("/healthz")).send().await.unwrap();
            if res.status() == 503 {
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["engine"], "down");
                break;
            }
            assert!(Instant::now() < deadline, "healthz never reported down");
            sleep(Duration::from_millis(50)).await;
        }
    }

    redis.restart();
    for s in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while c
            .get(s.internal_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            != 200
        {
            assert!(Instant::now() < deadline, "healthz never recovered");
            sleep(Duration::from_millis(50)).await;
        }
    }
    a.publish("c", "after").await;
    let v = poll(&b, "c", Some(&before)).await;
    assert_eq!(data(&v), ["after"]);
    assert_eq!(v["gap"], true, "the history Redis lost is a gap");
}

#[tokio::test]
async fn cursors_survive_an_instance_restart() {
    let Some(redis) = support::redis() else {
        return;
    };
    let mut a = herald(&redis, &[]);
    let first = a.publish("c", "1").await;
    a.publish("c", "2").await;
    a.publish("c", "3").await;
    assert!(a.terminate(Duration::from_secs(5)), "clean exit");
    let a = herald(&redis, &[]);
    let v = poll(&a, "c", first["cursor"].as_str()).await;
    assert_eq!(data(&v), ["2", "3"]);
    assert_eq!(v["gap"], false);
}

#[tokio::test]
async fn an_unreachable_redis_stops_the_start_with_a_clear_error() {
    let port = support::free_port().to_string();
    let url = format!("redis://127.0.0.1:{port}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--engine", "redis", "--redis-url", &url])
        .args([
            "--public-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run herald");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot use Redis"), "{stderr}");
}

/// Reads an SSE body until `n` `data:` lines arrived; answers each event's
/// `(id, data)`.
async fn sse_events(res: reqwest::Response, n: usize) -> Vec<(String, String)> {
    use futures::StreamExt;
    let mut body = res.bytes_stream();
    let mut text = String::new();
    loop {
        let events: Vec<(String, String)> = text
            .split("\n\n")
            .filter_map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(str::to_string))
                };
                Some((field("id: ")?, field("data: ")?))
            })
            .collect();
        if events.len() >= n && text.ends_with("\n\n") {
            return events;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("an SSE event within 5 s")
            .expect("the stream goes on")
            .expect("no stream error");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn sse_on_one_instance_resumes_on_the_other_with_last_event_id() {
    let Some(redis) = support::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]), herald(&redis, &[]));
    let c = client();
    let on_b = c.get(b.url("/sse/live")).send().await.unwrap();
    assert_eq!(on_b.status(), 200);
    sleep(Duration::from_millis(200)).await;
    a.publish("live", "1").await;
    let got = sse_events(on_b, 1).await;
    assert_eq!(got[0].1, "1", "published on A, streamed by B");
    // The client is cut from B and comes back on A with Last-Event-ID.
    a.publish("live", "2").await;
    b.publish("live", "3").await;
    let on_a = c
        .get(a.url("/sse/live"))
        .header("last-event-id", &got[0].0)
        .send()
        .await
        .unwrap();
    let resumed = sse_events(on_a, 2).await;
    let data: Vec<&str> = resumed.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(data, ["2", "3"]);
}

#[tokio::test]
async fn a_long_poll_on_one_instance_is_released_by_a_publish_on_the_other() {
    let Some(redis) = support::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]), herald(&redis, &[]));
    let start = cursor(&poll(&b, "held", None).await);
    let url = b.url(&format!("/longpoll/held?since={start}&timeout=5"));
    let hold = tokio::spawn(async move { get(url).await });
    sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    a.publish("held", "wake").await;
    let v = hold.await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "released by the publish"
    );
    assert_eq!(data(&v), ["wake"]);
    // The same cursor continues on the other instance.
    a.publish("held", "next").await;
    let url = a.url(&format!("/longpoll/held?since={}&timeout=5", cursor(&v)));
    assert_eq!(data(&get(url).await), ["next"]);
}
