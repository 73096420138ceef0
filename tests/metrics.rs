//! Operating herald: `/metrics` counts what every transport delivered,
//! `/readyz` turns away new subscribers while draining or while the engine
//! is unreachable, and the JSON log has one line per subscriber session
//! with no message body or token in it.

use std::{collections::HashMap, time::Duration};

use herald_testkit::{Binary, Endpoints, Server, client, cursor, sse::Sse, ws};
use serde_json::Value;
use tokio::time::{Instant, sleep};

/// Every sample of a scrape, by `name{labels}`.
async fn scrape(s: &Endpoints) -> HashMap<String, f64> {
    let res = client()
        .get(s.internal_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let kind = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = res.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn sample(m: &HashMap<String, f64>, name: &str) -> f64 {
    *m.get(name).unwrap_or_else(|| panic!("{name} missing"))
}

/// Scrapes until `ok` holds, for at most 5 s.
async fn scrape_until(
    s: &Endpoints,
    ok: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(s).await;
        if ok(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "metrics never got there: {m:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// `/readyz`'s status and error code (empty when ready).
async fn readyz(url: &str) -> (u16, String) {
    let res = client().get(url).send().await.unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code)
}

#[tokio::test]
async fn every_transport_is_counted() {
    let s = Server::start(&[]).await;
    let from = s.cursor_now("a").await;
    let mut socket = ws::connect(&s, "/ws/a").await;
    ws::next(&mut socket).await;
    let c = client();
    let mut stream = Sse::open(&c, &s.url("/sse/a"), None).await;
    s.wait_subscribers("a", 2, Duration::from_secs(5)).await;
    let m = scrape(&s).await;
    assert_eq!(sample(&m, r#"herald_connections{transport="ws"}"#), 1.0);
    assert_eq!(sample(&m, r#"herald_connections{transport="sse"}"#), 1.0);
    assert_eq!(sample(&m, r#"herald_subscriptions{transport="ws"}"#), 1.0);

    s.publish("a", "one").await;
    assert_eq!(ws::next(&mut socket).await["data"], "one");
    assert_eq!(stream.event().await.data(), "one");
    assert_eq!(s.poll("a", Some(&from)).await["messages"][0]["data"], "one");
    assert_eq!(
        s.longpoll("a", &from, 5).await["messages"][0]["data"],
        "one"
    );
    socket.close(None).await.unwrap();
    drop(stream);

    let m = scrape_until(&s, |m| {
        ["poll", "longpoll", "sse", "ws"]
            .iter()
            .all(|t| m.get(&format!("herald_connections{{transport=\"{t}\"}}")) == Some(&0.0))
    })
    .await;
    for t in ["poll", "longpoll", "sse", "ws"] {
        let delivered = format!("herald_deliveries_total{{transport=\"{t}\"}}");
        assert_eq!(sample(&m, &delivered), 1.0, "{t}");
        let bytes = format!("herald_bytes_sent_total{{transport=\"{t}\"}}");
        assert!(sample(&m, &bytes) > 0.0, "{t}");
        let subscribed = format!("herald_subscriptions{{transport=\"{t}\"}}");
        assert_eq!(sample(&m, &subscribed), 0.0, "{t}");
    }
    assert_eq!(sample(&m, "herald_messages_published_total"), 1.0);
    assert_eq!(sample(&m, "herald_publish_duration_seconds_count"), 1.0);
    assert_eq!(sample(&m, r#"herald_ws_closes_total{code="client"}"#), 1.0);
    assert_eq!(sample(&m, "herald_channels"), 1.0);
    assert_eq!(sample(&m, "herald_engine_up"), 1.0);
    assert_eq!(sample(&m, "herald_engine_errors_total"), 0.0);
    assert_eq!(sample(&m, "herald_longpolls_held"), 0.0);
    if cfg!(target_os = "linux") {
        assert!(sample(&m, "process_open_fds") > 0.0);
        assert!(sample(&m, "process_resident_memory_bytes") > 0.0);
        assert!(m.contains_key("process_cpu_seconds_total"));
    }
}

#[tokio::test]
async fn gaps_and_server_closes_are_counted() {
    let s = Server::start(&["--history-messages", "2"]).await;
    let from = s.cursor_now("a").await;
    for i in 0..5 {
        s.publish("a", &i.to_string()).await;
    }
    let v = s.poll("a", Some(&from)).await;
    assert_eq!(v["gap"], true);
    let m = scrape(&s).await;
    assert_eq!(sample(&m, r#"herald_gaps_total{transport="poll"}"#), 1.0);
    assert_eq!(
        sample(&m, r#"herald_deliveries_total{transport="poll"}"#),
        2.0
    );

    let mut socket = ws::connect(&s, "/ws/a").await;
    ws::next(&mut socket).await;
    let held = {
        let (endpoints, at): (Endpoints, _) = (*s, cursor(&v));
        tokio::spawn(async move { endpoints.longpoll("a", &at, 30).await })
    };
    s.wait_subscribers("a", 2, Duration::from_secs(5)).await;
    assert_eq!(sample(&scrape(&s).await, "herald_longpolls_held"), 1.0);
    s.herald().shutdown();
    assert_eq!(ws::close_code(&mut socket).await, 1001);
    assert_eq!(held.await.unwrap()["messages"], serde_json::json!([]));
    let m = scrape_until(&s, |m| {
        m.get(r#"herald_ws_closes_total{code="1001"}"#) == Some(&1.0)
    })
    .await;
    assert_eq!(sample(&m, "herald_longpolls_held"), 0.0);
}

#[tokio::test]
async fn readyz_turns_away_new_subscribers_once_draining() {
    let s = Server::start(&[]).await;
    for url in [s.url("/readyz"), s.internal_url("/readyz")] {
        assert_eq!(readyz(&url).await, (200, String::new()), "{url}");
    }
    s.herald().shutdown();
    for url in [s.url("/readyz"), s.internal_url("/readyz")] {
        assert_eq!(readyz(&url).await, (503, "draining".into()), "{url}");
    }
    let alive = client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200, "liveness is not readiness");
}

#[tokio::test]
async fn readyz_follows_the_engine() {
    let Some(mut redis) = herald_testkit::redis() else {
        return;
    };
    let url = redis.url();
    let s = Server::start(&["--engine", "redis", "--redis-url", &url]).await;
    assert_eq!(readyz(&s.url("/readyz")).await.0, 200);
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&s.url("/readyz")).await != (503, "engine_unavailable".into()) {
        assert!(
            Instant::now() < deadline,
            "readyz never reported the engine"
        );
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        readyz(&s.internal_url("/readyz")).await,
        (503, "engine_unavailable".into())
    );
    let res = client()
        .post(s.internal_url("/publish/a"))
        .body("lost")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let m = scrape(&s).await;
    assert_eq!(sample(&m, "herald_engine_up"), 0.0);
    assert!(sample(&m, "herald_engine_errors_total") >= 1.0);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&s.url("/readyz")).await.0 != 200 {
        assert!(Instant::now() < deadline, "readyz never recovered");
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_end_each_session_with_one_line() {
    const TOKEN: &str = "tok-s3cret-value";
    const BODY: &str = "body-s3cret-value";
    let mut b = Binary::start(&["--log-format", "json", "--publish-token", TOKEN]);
    for line in &b.startup {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let c = client();
    let mut stream = Sse::open(&c, &b.url("/sse/a"), None).await;
    let res = c
        .post(b.internal_url("/publish/a"))
        .bearer_auth(TOKEN)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(stream.event().await.data(), BODY);
    drop(stream);

    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = b.log.recv_timeout(left).expect("a session line in time");
        assert!(!line.contains(BODY) && !line.contains(TOKEN), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["message"] == "subscriber session ended" {
            break v;
        }
    };
    assert_eq!(ended["transport"], "sse");
    assert_eq!(ended["messages"], 1);
    assert!(ended["bytes"].as_u64().unwrap() > BODY.len() as u64);
    assert!(ended["duration_ms"].is_u64());
    assert_eq!(ended["reason"], "client gone");
    assert!(b.terminate(Duration::from_secs(10)));
    while let Ok(line) = b.log.try_recv() {
        assert!(!line.contains(BODY) && !line.contains(TOKEN), "{line}");
    }
}
