//! End-to-end: two herald instances on one real Redis behave as one gateway.
//! Publish on one, receive on the other (poll, long poll, SSE, WebSocket);
//! one order for 10,000 messages published through both, seen by pollers,
//! an SSE stream and a WebSocket; clients cut from one instance that resume
//! on the other with their cursor (SSE `Last-Event-ID`, WebSocket `since`,
//! long polls switching instance mid-burst); channels merged in publish
//! order; cursors that survive an instance restart; Redis killed and
//! restarted mid-stream (503 while it is down, a gap for the history it
//! lost); and a clear failure at start when Redis is unreachable.

use std::{collections::HashMap, time::Duration};

use herald_testkit::{
    Binary, Endpoints, Server, client, cursor, data, get_json,
    redis::RedisServer,
    sse::Sse,
    ws::{self, Ws},
};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

async fn herald(redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--engine", "redis", "--redis-url", &url];
    args.extend_from_slice(extra);
    Server::start(&args).await
}

#[tokio::test]
async fn publish_on_one_instance_poll_on_the_other() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]).await, herald(&redis, &[]).await);
    let start = cursor(&b.poll("news", None).await);
    let published = a.publish("news", "hello").await;
    let got = b.poll("news", Some(&start)).await;
    assert_eq!(data(&got), ["hello"]);
    assert_eq!(got["gap"], false);
    assert_eq!(got["messages"][0]["id"], published["id"]);
    // The cursor the publisher got works on the other instance too.
    let after = published["cursor"].as_str().unwrap();
    assert_eq!(
        data(&b.poll("news", Some(after)).await),
        Vec::<String>::new()
    );
    let info = get_json(&b.internal_url("/channels/news")).await;
    assert_eq!(info["last_id"], published["id"]);
}

/// Polls `channel` on `s` until `n` messages arrived; answers their data.
async fn poll_all(s: &Endpoints, channel: &str, start: String, n: usize) -> Vec<String> {
    let mut at = start;
    let mut got = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} arrived",
            got.len()
        );
        let v = s.poll(channel, Some(&at)).await;
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
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let opts = ["--history-messages", "20000"];
    let (a, b) = (herald(&redis, &opts).await, herald(&redis, &opts).await);
    let start = cursor(&a.poll("feed", None).await);
    const N: usize = 10_000;
    const BATCH: usize = 100;
    // Besides a poller on each instance, an SSE stream on A and a
    // WebSocket on B, both from the same cursor.
    let sse = Sse::open(&client(), &a.url(&format!("/sse/feed?since={start}")), None).await;
    let mut ws = ws::connect(&b, "/ws").await;
    ws::subscribe(&mut ws, &["feed"], json!({ "since": start })).await;
    let pollers = {
        let (sa, sb) = (start.clone(), start.clone());
        let (a, b) = (&a, &b);
        futures::future::join4(
            poll_all(a, "feed", sa, N),
            poll_all(b, "feed", sb, N),
            sse_data(sse, N),
            ws_data(&mut ws, N),
        )
    };
    let publisher = async {
        for k in 0..N / BATCH {
            let via = if k % 2 == 0 { &a } else { &b };
            publish_range(via, &["feed"], k * BATCH..(k + 1) * BATCH).await;
        }
    };
    let ((on_a, on_b, sse_a, ws_b), ()) = futures::future::join(pollers, publisher).await;
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    for (got, who) in [
        (on_a, "poller on A"),
        (on_b, "poller on B"),
        (sse_a, "SSE on A"),
        (
            ws_b.into_iter().map(|(_, d, _)| d).collect(),
            "WebSocket on B",
        ),
    ] {
        assert!(got == expected, "{who}: wrong order, loss or duplicates");
    }
}

#[tokio::test]
async fn a_poller_moves_between_instances_with_its_cursor() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]).await, herald(&redis, &[]).await);
    let mut at = cursor(&a.poll("c", None).await);
    for round in 0..3 {
        a.publish("c", &format!("{round}a")).await;
        b.publish("c", &format!("{round}b")).await;
        let via = if round % 2 == 0 { &b } else { &a };
        let v = via.poll("c", Some(&at)).await;
        assert_eq!(data(&v), [format!("{round}a"), format!("{round}b")]);
        assert_eq!(v["gap"], false);
        at = cursor(&v);
    }
}

#[tokio::test]
async fn redis_killed_mid_stream_then_restarted() {
    let Some(mut redis) = herald_testkit::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]).await, herald(&redis, &[]).await);
    a.publish("c", "before").await;
    let v = b.poll("c", Some(&cursor(&b.poll("c", None).await))).await;
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
    let v = b.poll("c", Some(&before)).await;
    assert_eq!(data(&v), ["after"]);
    assert_eq!(v["gap"], true, "the history Redis lost is a gap");
}

#[tokio::test]
async fn cursors_survive_an_instance_restart() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let mut a = herald(&redis, &[]).await;
    let first = a.publish("c", "1").await;
    a.publish("c", "2").await;
    a.publish("c", "3").await;
    assert!(a.stop().await.is_ok(), "clean exit");
    a.restart().await;
    let v = a.poll("c", first["cursor"].as_str()).await;
    assert_eq!(data(&v), ["2", "3"]);
    assert_eq!(v["gap"], false);
}

#[tokio::test]
async fn an_unreachable_redis_stops_the_start_with_a_clear_error() {
    let port = herald_testkit::free_port().to_string();
    let url = format!("redis://127.0.0.1:{port}");
    let out = Binary::output(
        &[
            "--engine",
            "redis",
            "--redis-url",
            &url,
            "--public-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot use Redis"), "{stderr}");
}

#[tokio::test]
async fn sse_on_one_instance_resumes_on_the_other_with_last_event_id() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]).await, herald(&redis, &[]).await);
    let c = client();
    let mut on_b = Sse::open(&c, &b.url("/sse/live"), None).await;
    b.wait_subscribers("live", 1, Duration::from_secs(5)).await;
    a.publish("live", "1").await;
    let got = on_b.events(1).await;
    assert_eq!(got[0].data(), "1", "published on A, streamed by B");
    // The client is cut from B and comes back on A with Last-Event-ID.
    a.publish("live", "2").await;
    b.publish("live", "3").await;
    let last = got[0].id.as_deref().expect("an id");
    let mut on_a = Sse::open(&c, &a.url("/sse/live"), Some(last)).await;
    let resumed = on_a.events(2).await;
    assert_eq!(herald_testkit::sse::datas(&resumed), ["2", "3"]);
}

#[tokio::test]
async fn a_long_poll_on_one_instance_is_released_by_a_publish_on_the_other() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]).await, herald(&redis, &[]).await);
    let start = cursor(&b.poll("held", None).await);
    let on_b = *b;
    let hold = tokio::spawn(async move { on_b.longpoll("held", &start, 5).await });
    b.wait_subscribers("held", 1, Duration::from_secs(5)).await;
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
    let v = a.longpoll("held", &cursor(&v), 5).await;
    assert_eq!(data(&v), ["next"]);
}

/// Reads `n` SSE messages; answers their data. Fails on a `herald.*`
/// control event (a gap).
async fn sse_data(mut sse: Sse, n: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let ev = sse.event().await;
        assert_eq!(ev.event, None, "no gap: {ev:?}");
        got.push(ev.data().to_string());
    }
    got
}

/// Reads `n` message frames; answers each one's channel, data and cursor.
/// Fails on a gap.
async fn ws_data(ws: &mut Ws, n: usize) -> Vec<(String, String, String)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let v = ws::next(ws).await;
        assert_eq!(v["type"], "message", "no gap, nothing else: {v}");
        let field = |k: &str| v[k].as_str().expect("a string field").to_string();
        got.push((field("channel"), field("data"), field("cursor")));
    }
    got
}

/// Publishes `range` as one batch through `s`; message `i` goes to
/// `channels[i % len]` with data `i`.
async fn publish_range(s: &Endpoints, channels: &[&str], range: std::ops::Range<usize>) {
    let messages: Vec<Value> = range
        .map(|i| json!({"channel": channels[i % channels.len()], "data": i.to_string()}))
        .collect();
    s.publish_batch(messages).await;
}

/// Publishes `range` in batches of 10, alternately through `a` and `b`.
async fn publish_burst(
    a: &Endpoints,
    b: &Endpoints,
    channels: &[&str],
    range: std::ops::Range<usize>,
) {
    for (k, start) in range.clone().step_by(10).enumerate() {
        let via = if k % 2 == 0 { a } else { b };
        publish_range(via, channels, start..(start + 10).min(range.end)).await;
    }
}

#[tokio::test]
async fn a_websocket_on_one_instance_receives_what_the_other_publishes() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]).await, herald(&redis, &[]).await);
    let mut ws = ws::connect(&b, "/ws").await;
    ws::subscribe(&mut ws, &["news"], json!({})).await;
    let published = a.publish("news", "hello").await;
    let m = ws::next(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["data"].as_str()),
        (Some("message"), Some("hello"))
    );
    assert_eq!(m["id"], published["id"]);
    assert_eq!(
        m["cursor"], published["cursor"],
        "one cursor on every instance"
    );
}

/// A WebSocket client reads part of a stream on A, is cut, 1,000 messages
/// are published through both instances meanwhile, and it resumes on B
/// with the last cursor it got on each channel: every message once, each
/// channel in order, no gap.
#[tokio::test]
async fn a_websocket_cut_from_one_instance_resumes_on_the_other_with_its_cursors() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let opts = ["--history-messages", "2000"];
    let (a, b) = (herald(&redis, &opts).await, herald(&redis, &opts).await);
    let channels = ["x", "y"];
    let mut ws = ws::connect(&a, "/ws").await;
    let reply = ws::subscribe(&mut ws, &channels, json!({})).await;
    let mut since = vec![reply["cursor"].as_str().unwrap().to_string()];

    publish_burst(&a, &b, &channels, 0..100).await;
    // The client handles only part of what A sent it, then the cut.
    let before = ws_data(&mut ws, 50).await;
    drop(ws);
    publish_burst(&a, &b, &channels, 100..1100).await;

    let mut last: HashMap<String, String> = HashMap::new();
    for (channel, _, cursor) in &before {
        last.insert(channel.clone(), cursor.clone());
    }
    since.extend(last.into_values());
    let mut ws = ws::connect(&b, "/ws").await;
    ws::subscribe(&mut ws, &channels, json!({ "since": since })).await;
    let after = ws_data(&mut ws, 1050).await;
    // Still live on B after the catch-up.
    publish_range(&a, &channels, 1100..1102).await;
    let live = ws_data(&mut ws, 2).await;

    let all: Vec<(String, String, String)> = before.into_iter().chain(after).chain(live).collect();
    for channel in channels {
        let got: Vec<&str> = all
            .iter()
            .filter(|(c, ..)| c == channel)
            .map(|(_, d, _)| d.as_str())
            .collect();
        let expected: Vec<String> = (0..1102)
            .filter(|i| channels[i % 2] == channel)
            .map(|i| i.to_string())
            .collect();
        assert!(got == expected, "{channel}: loss, duplicates or disorder");
    }
}

/// A long-poll client alternates between A and B with each request while
/// a burst is published through both: every message once, in order.
#[tokio::test]
async fn a_long_poll_client_switches_instance_mid_burst_and_misses_nothing() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    const N: usize = 1000;
    let opts = ["--history-messages", "2000"];
    let (a, b) = (herald(&redis, &opts).await, herald(&redis, &opts).await);
    let start = cursor(&a.poll("feed", None).await);
    let reader = async {
        let mut at = start;
        let mut got = Vec::with_capacity(N);
        let mut switches = 0;
        while got.len() < N {
            let via = if switches % 2 == 0 { &a } else { &b };
            switches += 1;
            let v = via.longpoll("feed", &at, 5).await;
            assert_eq!(v["gap"], false, "no message may be lost");
            got.extend(data(&v));
            at = cursor(&v);
        }
        (got, switches)
    };
    let publisher = async {
        for k in 0..N / 10 {
            let via = if k % 2 == 0 { &a } else { &b };
            publish_range(via, &["feed"], k * 10..(k + 1) * 10).await;
            if k % 10 == 0 {
                sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let ((got, switches), ()) = futures::future::join(reader, publisher).await;
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert!(got == expected, "loss, duplicates or disorder");
    assert!(switches >= 4, "the client changed instance mid-burst");
}

/// One batch to b, a, b, a shares a millisecond; a poll of `a,b` on the
/// other instance answers it in publish order.
#[tokio::test]
async fn a_multi_channel_poll_follows_publish_order_across_instances() {
    let Some(redis) = herald_testkit::redis() else {
        return;
    };
    let (a, b) = (herald(&redis, &[]).await, herald(&redis, &[]).await);
    let start = cursor(&b.poll("a,b", None).await);
    let messages: Vec<Value> = ["b", "a", "b", "a"]
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"channel": c, "data": format!("{c}{i}")}))
        .collect();
    a.publish_batch(messages).await;
    let v = b.poll("a,b", Some(&start)).await;
    assert_eq!(data(&v), ["b0", "a1", "b2", "a3"]);
}
