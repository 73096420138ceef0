//! End-to-end: short polling against the in-process server — cursors, paging,
//! gaps, multi-channel polls and ETag/304.

use herald_testkit::{Endpoints, Server, client, data};
use serde_json::Value;

async fn poll(s: &Endpoints, path: &str) -> Value {
    let res = client().get(s.url(path)).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

#[tokio::test]
async fn publish_then_poll() {
    let s = Server::start(&[]).await;
    let first = poll(&s, "/poll/news").await;
    assert_eq!(
        first["messages"].as_array().unwrap().len(),
        0,
        "no since: nothing old"
    );
    let cursor = first["cursor"].as_str().unwrap().to_string();
    let published = s.publish("news", "hello").await;
    let v = poll(&s, &format!("/poll/news?since={cursor}")).await;
    assert_eq!(data(&v), ["hello"]);
    assert_eq!(v["messages"][0]["id"], published["id"]);
    assert_eq!(v["messages"][0]["channel"], "news");
    assert!(v["messages"][0]["time"].as_u64().unwrap() > 0);
    assert_eq!(v["gap"], false);
    // The publish reply's cursor resumes right after the message.
    let after = poll(
        &s,
        &format!("/poll/news?since={}", published["cursor"].as_str().unwrap()),
    )
    .await;
    assert!(data(&after).is_empty());
    assert_eq!(after["gap"], false);
}

#[tokio::test]
async fn last_n_returns_the_most_recent() {
    let s = Server::start(&[]).await;
    for i in 0..5 {
        s.publish("c", &i.to_string()).await;
    }
    assert_eq!(data(&poll(&s, "/poll/c?last=2").await), ["3", "4"]);
    assert_eq!(data(&poll(&s, "/poll/c?last=50").await).len(), 5);
}

#[tokio::test]
async fn multi_channel_poll_resumes_every_channel_with_one_cursor() {
    let s = Server::start(&[]).await;
    let start = poll(&s, "/poll/a,b").await["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    s.publish("a", "a1").await;
    s.publish("b", "b1").await;
    s.publish("a", "a2").await;
    let v = poll(&s, &format!("/poll/a,b?since={start}")).await;
    assert_eq!(data(&v), ["a1", "b1", "a2"], "interleaved by publish time");
    let next = v["cursor"].as_str().unwrap().to_string();
    s.publish("b", "b2").await;
    let v = poll(&s, &format!("/poll/a,b?since={next}")).await;
    assert_eq!(data(&v), ["b2"]);
}

#[tokio::test]
async fn paging_past_the_response_limit() {
    let s = Server::start(&["--history-messages", "2500"]).await;
    let start = poll(&s, "/poll/big").await["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    for chunk in 0..5 {
        let messages: Vec<Value> = (0..500)
            .map(|i| serde_json::json!({"channel": "big", "data": (chunk * 500 + i).to_string()}))
            .collect();
        s.publish_batch(messages).await;
    }
    let mut cursor = start;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let v = poll(&s, &format!("/poll/big?since={cursor}")).await;
        let page = data(&v);
        if page.is_empty() {
            break;
        }
        assert_eq!(v["gap"], false);
        sizes.push(page.len());
        seen.extend(page);
        cursor = v["cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    let expected: Vec<String> = (0..2500).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_cursor_older_than_history_reports_a_gap() {
    let s = Server::start(&[]).await;
    let start = poll(&s, "/poll/g").await["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..150 {
        s.publish("g", &i.to_string()).await;
    }
    let v = poll(&s, &format!("/poll/g?since={start}")).await;
    let expected: Vec<String> = (50..150).map(|i| i.to_string()).collect();
    assert_eq!(data(&v), expected);
    assert_eq!(v["gap"], true);
    assert_eq!(v["gaps"], serde_json::json!(["g"]));
    let v = poll(
        &s,
        &format!("/poll/g?since={}", v["cursor"].as_str().unwrap()),
    )
    .await;
    assert_eq!(v["gap"], false);
}

#[tokio::test]
async fn a_cursor_from_a_restarted_server_reports_a_gap() {
    let old = Server::start(&[]).await;
    old.publish("r", "before").await;
    let cursor = poll(&old, "/poll/r?last=1").await["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    drop(old);
    let s = Server::start(&[]).await;
    s.publish("r", "after").await;
    let v = poll(&s, &format!("/poll/r?since={cursor}")).await;
    assert_eq!(data(&v), ["after"]);
    assert_eq!(v["gap"], true, "another epoch: what is retained, and a gap");
}

#[tokio::test]
async fn etag_and_if_none_match() {
    let s = Server::start(&[]).await;
    let c = client();
    let res = c.get(s.url("/poll/e")).send().await.unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let v: Value = res.json().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", v["cursor"].as_str().unwrap()));
    let url = s.url(&format!("/poll/e?since={}", v["cursor"].as_str().unwrap()));
    let res = c
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    assert!(res.bytes().await.unwrap().is_empty());
    s.publish("e", "new").await;
    let res = c
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_ne!(res.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn json_data_is_embedded_as_json() {
    let s = Server::start(&[]).await;
    let res = client()
        .post(s.internal_url("/publish/j?event=update"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"price":42,"tags":["a"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let v = poll(&s, "/poll/j?last=1").await;
    assert_eq!(v["messages"][0]["data"]["price"], 42);
    assert_eq!(v["messages"][0]["event"], "update");
}

#[tokio::test]
async fn channel_limit_is_configurable() {
    let s = Server::start(&["--max-channels", "3"]).await;
    assert_eq!(poll(&s, "/poll/a,b,c").await["gap"], false);
    let res = client().get(s.url("/poll/a,b,c,d")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_channels");
}
