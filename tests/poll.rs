//! End-to-end: publishing and short polling against the real binary.

mod support;

use support::{Server, client};

#[tokio::test]
async fn publish_then_poll() {
    let s = Server::start(&[]);
    let c = client();
    let first: serde_json::Value = c
        .get(s.url("/poll/news"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = first["cursor"].as_str().unwrap().to_string();
    s.publish("news", "hello").await;
    let v: serde_json::Value = c
        .get(s.url(&format!("/poll/news?since={cursor}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["messages"][0]["data"], "hello");
    assert_eq!(v["gap"], false);
}
