//! End-to-end: Server-Sent Events against the in-process server (SIGTERM
//! against the binary), read off the socket by the test kit's reader, and
//! through an independent EventSource client (the npm `eventsource`
//! package, driven by tests/js/eventsource.js).

use std::time::Duration;

use herald_testkit::{
    Binary, Endpoints, Server, client,
    sse::{PROMPT, Sse, datas},
};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn publish_event(s: &Endpoints, channel: &str, event: &str, data: &str) {
    let res = client()
        .post(s.internal_url(&format!("/publish/{channel}?event={event}")))
        .body(data.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn headers_opening_and_events() {
    let s = Server::start(&[]).await;
    let mut sse = Sse::open(&client(), &s.url("/sse/news"), None).await;
    let h = &sse.res_headers;
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("content-length").is_none());
    let published = s.publish("news", "hello").await;
    publish_event(&s, "news", "update", "{\"n\":1}").await;
    let evs = sse.events(2).await;
    assert_eq!(evs[0].id.as_deref(), published["cursor"].as_str());
    assert_eq!(evs[0].event, None, "no event line without an event name");
    assert_eq!(evs[0].data(), "hello");
    assert_eq!(evs[1].event.as_deref(), Some("update"));
    assert_eq!(evs[1].json()["n"], 1);
}

#[tokio::test]
async fn multi_line_data_round_trips() {
    let s = Server::start(&[]).await;
    let mut sse = Sse::open(&client(), &s.url("/sse/lines"), None).await;
    let cases = [
        ("a\nb", "data: a\ndata: b"),
        ("a\r\nb", "data: a\ndata: b"),
        ("a\rb", "data: a\ndata: b"),
        ("a\n\nb\n", "data: a\ndata:\ndata: b\ndata:"),
        ("data", "data: data"),
        ("data:\n data", "data: data:\ndata:  data"),
        ("", "data:"),
    ];
    for (data, _) in cases {
        s.publish("lines", data).await;
    }
    for (data, wire) in cases {
        let block = sse.block().await.unwrap();
        let lines: Vec<_> = block.lines().filter(|l| !l.starts_with("id:")).collect();
        assert_eq!(lines.join("\n"), wire, "{data:?}");
    }
}

#[tokio::test]
async fn heartbeats_arrive() {
    let s = Server::start(&["--sse-heartbeat", "1"]).await;
    let mut sse = Sse::open(&client(), &s.url("/sse/quiet"), None).await;
    for _ in 0..2 {
        let t = std::time::Instant::now();
        assert_eq!(sse.block().await.unwrap(), ": heartbeat");
        let waited = t.elapsed();
        assert!(waited > Duration::from_millis(800), "{waited:?}");
    }
}

#[tokio::test]
async fn last_event_id_wins_over_since_and_must_be_a_cursor() {
    let s = Server::start(&[]).await;
    let c = client();
    let first = s.publish("news", "1").await;
    let second = s.publish("news", "2").await;
    s.publish("news", "3").await;
    let url = s.url(&format!(
        "/sse/news?since={}",
        first["cursor"].as_str().unwrap()
    ));
    let mut sse = Sse::open(&c, &url, second["cursor"].as_str()).await;
    assert_eq!(sse.event().await.data(), "3");
    let mut sse = Sse::open(&c, &url, None).await;
    assert_eq!(datas(&sse.events(2).await), ["2", "3"]);
    for bad in ["not-a-cursor!", "AQ"] {
        let res = c
            .get(&url)
            .header("last-event-id", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_cursor");
    }
}

#[tokio::test]
async fn multi_channel_streams_resume_on_every_channel() {
    let s = Server::start(&[]).await;
    let c = client();
    let url = s.url("/sse/a,b");
    let mut sse = Sse::open(&c, &url, None).await;
    s.publish("a", "a1").await;
    s.publish("b", "b1").await;
    let seen = sse.events(2).await;
    assert_eq!(datas(&seen), ["a1", "b1"]);
    drop(sse);
    s.publish("a", "a2").await;
    s.publish("b", "b2").await;
    let mut sse = Sse::open(&c, &url, seen[1].id.as_deref()).await;
    assert_eq!(datas(&sse.events(2).await), ["a2", "b2"]);
    // Resuming from the first event's id replays the second channel's
    // message too: the id covers both channels.
    let mut sse = Sse::open(&c, &url, seen[0].id.as_deref()).await;
    assert_eq!(datas(&sse.events(3).await), ["b1", "a2", "b2"]);
}

#[tokio::test]
async fn an_old_cursor_gets_a_gap_event_then_the_retained_messages() {
    let s = Server::start(&["--history-messages", "2"]).await;
    let c = client();
    let old = s.publish("news", "1").await;
    for d in ["2", "3", "4"] {
        s.publish("news", d).await;
    }
    let url = s.url(&format!(
        "/sse/news?since={}",
        old["cursor"].as_str().unwrap()
    ));
    let mut sse = Sse::open(&c, &url, None).await;
    let evs = sse.events(3).await;
    assert_eq!(evs[0].event.as_deref(), Some("herald.gap"));
    assert_eq!(
        evs[0].json(),
        serde_json::json!({"channels": ["news"], "reason": "history"})
    );
    assert_eq!(datas(&evs[1..]), ["3", "4"]);
    // Reconnecting from the gap event's id resumes after it: no second gap.
    let mut sse = Sse::open(&c, &url, evs[0].id.as_deref()).await;
    assert_eq!(datas(&sse.events(2).await), ["3", "4"]);
}

#[tokio::test]
async fn deleted_channels_are_reported_and_end_a_stream_left_with_none() {
    let s = Server::start(&[]).await;
    let c = client();
    let mut multi = Sse::open(&c, &s.url("/sse/a,b"), None).await;
    let mut single = Sse::open(&c, &s.url("/sse/a"), None).await;
    let res = c
        .delete(s.internal_url("/channels/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for sse in [&mut multi, &mut single] {
        let ev = sse.event().await;
        assert_eq!(ev.event.as_deref(), Some("herald.gap"));
        assert_eq!(
            ev.json(),
            serde_json::json!({"channels": ["a"], "reason": "deleted"})
        );
    }
    assert_eq!(
        single.block().await,
        None,
        "no channel left: the stream ends"
    );
    s.publish("b", "still here").await;
    assert_eq!(multi.event().await.data(), "still here");
}

#[tokio::test]
async fn sigterm_ends_streams_cleanly() {
    // No drain spread: every stream ends at once (the spread is
    // tests/limits.rs's).
    let mut s = Binary::start(&["--drain-spread", "0"]);
    let c = client();
    let mut a = Sse::open(&c, &s.url("/sse/a"), None).await;
    let mut b = Sse::open(&c, &s.url("/sse/a,b"), None).await;
    let t = std::time::Instant::now();
    let exited = tokio::task::spawn_blocking(move || s.terminate(PROMPT));
    assert_eq!(a.block().await, None);
    assert_eq!(b.block().await, None);
    assert!(exited.await.unwrap(), "herald exits successfully");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn max_lifetime_ends_the_stream() {
    let s = Server::start(&["--sse-max-lifetime", "1", "--sse-heartbeat", "60"]).await;
    let t = std::time::Instant::now();
    let mut sse = Sse::open(&client(), &s.url("/sse/news"), None).await;
    assert_eq!(sse.block().await, None);
    let lived = t.elapsed();
    // Each stream lives 80 % to 100 % of the lifetime (jitter).
    assert!(
        lived >= Duration::from_millis(750) && lived < Duration::from_secs(3),
        "{lived:?}"
    );
}

#[tokio::test]
async fn http2_streams_share_one_connection() {
    // One public connection allowed: the streams can only all be served
    // if they are multiplexed on it.
    let s = Server::start(&["--max-connections", "1"]).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let channels = ["h1", "h2", "h3"];
    let mut streams = Vec::new();
    for ch in channels {
        let sse = Sse::open(&h2, &s.url(&format!("/sse/{ch}")), None).await;
        assert_eq!(sse.version, reqwest::Version::HTTP_2);
        streams.push(sse);
    }
    for ch in channels {
        s.publish(ch, &format!("to {ch}")).await;
    }
    for (sse, ch) in streams.iter_mut().zip(channels) {
        assert_eq!(sse.event().await.data(), format!("to {ch}"));
    }
}

/// The npm `eventsource` client (reconnects by itself with Last-Event-ID)
/// reads a burst of 1,000 messages while the server cuts its stream every
/// second, and ends with all of them, in order, once each.
#[tokio::test]
async fn an_eventsource_client_gets_a_cut_burst_whole() {
    let Some(node) = herald_testkit::need_node_packages() else {
        return;
    };
    let s = Server::start(&[
        "--sse-max-lifetime",
        "1",
        "--sse-retry",
        "50",
        "--history-messages",
        "2000",
    ])
    .await;
    let mut child = tokio::process::Command::new(node)
        .arg(herald_testkit::js_script("eventsource.js"))
        .arg(s.url("/sse/burst"))
        .arg("1000")
        .arg("15000")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .expect("eventsource client stalled")
            .unwrap()
            .expect("eventsource client output");
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(next().await["open"], 1);
    // 1,000 messages over about two seconds, in batches of ten, so that the
    // one-second lifetime cuts the stream in the middle of the burst.
    let publisher = async {
        for batch in 0..100 {
            let messages: Vec<_> = (0..10)
                .map(|i| serde_json::json!({"channel": "burst", "data": (batch * 10 + i).to_string()}))
                .collect();
            s.publish_batch(messages).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let reader = async {
        let mut reopened_mid_burst = false;
        loop {
            let v = next().await;
            if let Some(received) = v["received"].as_u64() {
                reopened_mid_burst |= received > 0 && received < 1000;
                continue;
            }
            assert!(v.get("gap").is_none(), "no gap expected: {v}");
            assert!(v.get("timeout").is_none(), "client gave up: {v}");
            return (v, reopened_mid_burst);
        }
    };
    let ((), (done, reopened_mid_burst)) = tokio::join!(publisher, reader);
    assert!(
        reopened_mid_burst,
        "the stream was never cut mid-burst: {done}"
    );
    let got: Vec<String> = serde_json::from_value(done["messages"].clone()).unwrap();
    let want: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "all 1,000, in order, once each");
    assert!(child.wait().await.unwrap().success());
}
