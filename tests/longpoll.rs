//! End-to-end: long polling against the in-process server. No loss between
//! requests under a fast publisher, fan-out release of a thousand holds,
//! waiters freed when clients go away, hold clamping, gaps, deleted
//! channels, bad parameters and, on the binary, SIGTERM.

use std::{collections::HashSet, time::Duration};

use futures::{StreamExt, stream};
use herald_testkit::{Binary, Server, client, data};
use serde_json::{Value, json};
use tokio::time::Instant;

/// A client that opens one HTTP/1 connection per concurrent request, so
/// that a thousand held requests are a thousand connections.
fn crowd_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

async fn fetch(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let res = c.get(url).send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("json body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_arrive_once_in_order_under_a_fast_publisher() {
    const BATCHES: usize = 100;
    const PER_BATCH: usize = 100;
    const TOTAL: usize = BATCHES * PER_BATCH;
    // Enough history that the reader never falls behind what is retained:
    // this test is about the hand-over between requests, not about gaps.
    let s = Server::start(&["--history-messages", "20000", "--history-bytes", "16777216"]).await;
    let start = s.cursor_now("bulk").await;

    let publisher = {
        let internal = *s;
        async move {
            stream::iter(0..BATCHES)
                .map(|b| async move {
                    let messages: Vec<Value> = (0..PER_BATCH)
                        .map(|i| json!({"channel": "bulk", "data": format!("{b}-{i}")}))
                        .collect();
                    internal.publish_batch(messages).await;
                })
                .buffer_unordered(4)
                .collect::<Vec<()>>()
                .await;
        }
    };
    let reader = async {
        let c = client();
        let mut cursor = start;
        let mut got: Vec<(u64, String)> = Vec::with_capacity(TOTAL);
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < TOTAL {
            assert!(Instant::now() < deadline, "only {} received", got.len());
            let url = s.url(&format!("/longpoll/bulk?since={cursor}&timeout=2"));
            let (status, v) = fetch(&c, &url).await;
            assert_eq!(status, 200);
            assert_eq!(v["gap"], false, "no message may be missed");
            for m in v["messages"].as_array().unwrap() {
                let d = m["data"].as_str().unwrap().to_string();
                got.push((m["id"].as_u64().unwrap(), d));
            }
            cursor = v["cursor"].as_str().unwrap().to_string();
        }
        got
    };
    let ((), got) = tokio::join!(publisher, reader);

    assert_eq!(got.len(), TOTAL);
    // Ids start at the channel's origin and then count up by one.
    let first = got[0].0;
    for (n, (id, _)) in got.iter().enumerate() {
        assert_eq!(*id, first + n as u64, "message {n} out of order");
    }
    let unique: HashSet<&str> = got.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(unique.len(), TOTAL, "no duplicates");
    // Every message of every batch, each batch in its publish order.
    let mut next = [0usize; BATCHES];
    for (_, d) in &got {
        let (b, i) = d.split_once('-').unwrap();
        let (b, i): (usize, usize) = (b.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[b], "batch {b} out of order");
        next[b] += 1;
    }
    assert!(next.iter().all(|&n| n == PER_BATCH));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publish_releases_a_thousand_holds() {
    const HOLDS: usize = 1000;
    let s = Server::start(&["--longpoll-timeout", "30", "--longpoll-max-timeout", "30"]).await;
    let c = crowd_client();
    let url = s.url("/longpoll/crowd");
    let held: Vec<_> = (0..HOLDS)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { fetch(&c, &url).await })
        })
        .collect();
    s.wait_subscribers("crowd", HOLDS as u64, Duration::from_secs(10))
        .await;
    let t = Instant::now();
    s.publish("crowd", "go").await;
    for h in held {
        let (status, v) = tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("released")
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(data(&v), ["go"]);
    }
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    s.wait_subscribers("crowd", 0, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_abandoned_holds_free_their_waiters() {
    const HOLDS: usize = 1000;
    let s = Server::start(&[]).await;
    let c = crowd_client();
    let url = s.url("/longpoll/abandoned");
    let held: Vec<_> = (0..HOLDS)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { c.get(&url).send().await })
        })
        .collect();
    s.wait_subscribers("abandoned", HOLDS as u64, Duration::from_secs(10))
        .await;
    // Dropping a pending request closes its connection.
    for h in &held {
        h.abort();
    }
    s.wait_subscribers("abandoned", 0, Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn holds_end_empty_with_the_same_cursor_and_timeouts_are_clamped() {
    let s = Server::start(&["--longpoll-timeout", "1", "--longpoll-max-timeout", "2"]).await;
    let cursor = s.cursor_now("quiet").await;
    let hold = |query: String| {
        let url = s.url(&format!("/longpoll/quiet?since={cursor}{query}"));
        async move {
            let t = Instant::now();
            let (status, v) = fetch(&client(), &url).await;
            (status, v, t.elapsed())
        }
    };
    let (default, clamped) = tokio::join!(hold(String::new()), hold("&timeout=100".into()));
    for (status, v, _) in [&default, &clamped] {
        assert_eq!(*status, 200);
        assert_eq!(v["messages"], json!([]));
        assert_eq!(v["cursor"], cursor.as_str());
        assert_eq!(v["gap"], false);
    }
    let secs = Duration::from_secs_f64;
    assert!(
        default.2 >= secs(0.9) && default.2 < secs(1.8),
        "{:?}",
        default.2
    );
    assert!(
        clamped.2 >= secs(1.9) && clamped.2 < secs(3.5),
        "{:?}",
        clamped.2
    );
}

#[tokio::test]
async fn responses_are_json_uncacheable_and_cors_enabled() {
    let s = Server::start(&[]).await;
    s.publish("news", "hello").await;
    let res = client()
        .get(s.url("/longpoll/news?last=1"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["access-control-allow-origin"], "*");
    let v: Value = res.json().await.unwrap();
    assert_eq!(data(&v), ["hello"]);
}

#[tokio::test]
async fn bad_timeouts_are_json_400s() {
    let s = Server::start(&[]).await;
    let c = client();
    for bad in ["-1", "soon", "1.5", ""] {
        let url = s.url(&format!("/longpoll/news?timeout={bad}"));
        let (status, v) = fetch(&c, &url).await;
        assert_eq!(status, 400, "timeout={bad}");
        assert_eq!(v["error"]["code"], "invalid_query", "timeout={bad}");
    }
    let res = c.post(s.url("/longpoll/news")).send().await.unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn a_hold_on_several_channels_wakes_for_any_of_them() {
    let s = Server::start(&[]).await;
    let c = client();
    let cursor = s.cursor_now("left,right").await;
    let url = s.url(&format!("/longpoll/left,right?since={cursor}"));
    let held = tokio::spawn({
        let c = c.clone();
        async move { fetch(&c, &url).await }
    });
    s.wait_subscribers("right", 1, Duration::from_secs(5)).await;
    s.publish("right", "r1").await;
    let (_, v) = held.await.unwrap();
    assert_eq!(data(&v), ["r1"]);
    assert_eq!(v["messages"][0]["channel"], "right");
    // Both channels are covered by the new cursor: what comes next on
    // either is answered at once, nothing twice.
    let cursor = v["cursor"].as_str().unwrap();
    s.publish("left", "l1").await;
    s.publish("right", "r2").await;
    let url = s.url(&format!("/longpoll/left,right?since={cursor}"));
    let (_, v) = fetch(&c, &url).await;
    assert_eq!(data(&v), ["l1", "r2"]);
}

#[tokio::test]
async fn an_old_cursor_answers_at_once_with_a_gap() {
    let s = Server::start(&["--history-messages", "5"]).await;
    let cursor = s.cursor_now("busy").await;
    for i in 1..=10 {
        s.publish("busy", &format!("m{i}")).await;
    }
    let t = Instant::now();
    let url = s.url(&format!("/longpoll/busy?since={cursor}"));
    let (status, v) = fetch(&client(), &url).await;
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(status, 200);
    assert_eq!(v["gap"], true);
    assert_eq!(data(&v), ["m6", "m7", "m8", "m9", "m10"]);
}

#[tokio::test]
async fn deleting_a_channel_answers_its_holds_with_gone() {
    let s = Server::start(&[]).await;
    s.publish("doomed", "before").await;
    let url = s.url("/longpoll/doomed");
    let held = tokio::spawn(async move { fetch(&client(), &url).await });
    s.wait_subscribers("doomed", 1, Duration::from_secs(5))
        .await;
    let res = client()
        .delete(s.internal_url("/channels/doomed"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, v) = tokio::time::timeout(Duration::from_secs(2), held)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["gone"], json!(["doomed"]));
    assert_eq!(v["gap"], true);
    assert_eq!(v["messages"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_held_requests_at_once() {
    const HOLDS: usize = 20;
    // No drain spread: every answer at once (the spread is tests/limits.rs's).
    let mut s = Binary::start(&[
        "--longpoll-timeout",
        "20",
        "--longpoll-max-timeout",
        "20",
        "--drain-spread",
        "0",
    ]);
    let cursor = s.cursor_now("draining").await;
    let c = crowd_client();
    let url = s.url(&format!("/longpoll/draining?since={cursor}"));
    let held: Vec<_> = (0..HOLDS)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                let r = fetch(&c, &url).await;
                (r, Instant::now())
            })
        })
        .collect();
    s.wait_subscribers("draining", HOLDS as u64, Duration::from_secs(5))
        .await;
    let signalled = Instant::now();
    let exited = tokio::task::spawn_blocking(move || s.terminate(Duration::from_secs(5)));
    for h in held {
        let ((status, v), at) = h.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(v["messages"], json!([]));
        assert_eq!(v["cursor"], cursor.as_str());
        let after = at - signalled;
        assert!(
            after < Duration::from_secs(2),
            "answered {after:?} after SIGTERM"
        );
    }
    assert!(exited.await.unwrap(), "herald exits cleanly");
}
