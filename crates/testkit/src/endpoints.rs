//! The two listeners of a running herald, in-process or as a subprocess,
//! and the calls every test makes on them: URLs, a short and a long poll,
//! publish, batch publish and the channel admin endpoint. Also the readers of a poll's JSON reply.
//!
//! What it leaves out: asserting anything but the status of a call that
//! must succeed for the test to mean anything (a publish answers 202).

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;

/// The public (subscriber) and internal (publish, admin) listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Public listener address.
    pub public: SocketAddr,
    /// Internal listener address.
    pub internal: SocketAddr,
}

impl Endpoints {
    /// `http://public/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.public, path)
    }

    /// `http://internal/path`.
    pub fn internal_url(&self, path: &str) -> String {
        format!("http://{}{}", self.internal, path)
    }

    /// `ws://public/path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.public, path)
    }

    /// Short-polls `channels` (comma-separated) from `since` (or from
    /// now); asserts a 200 and answers the JSON reply.
    pub async fn poll(&self, channels: &str, since: Option<&str>) -> Value {
        let query = since.map_or(String::new(), |c| format!("?since={c}"));
        get_json(&self.url(&format!("/poll/{channels}{query}"))).await
    }

    /// Long-polls `channels` from `since`, held for at most `timeout`
    /// seconds; asserts a 200 and answers the JSON reply.
    pub async fn longpoll(&self, channels: &str, since: &str, timeout: u64) -> Value {
        let path = format!("/longpoll/{channels}?since={since}&timeout={timeout}");
        get_json(&self.url(&path)).await
    }

    /// The current cursor of `channels`, from a short poll.
    pub async fn cursor_now(&self, channels: &str) -> String {
        cursor(&self.poll(channels, None).await)
    }

    /// Publishes text `data` to `channel`; answers the JSON reply.
    pub async fn publish(&self, channel: &str, data: &str) -> Value {
        let res = client()
            .post(self.internal_url(&format!("/publish/{channel}")))
            .body(data.to_string())
            .send()
            .await
            .expect("publish");
        assert_eq!(res.status(), 202, "publish to {channel}");
        res.json().await.expect("publish reply")
    }

    /// Publishes a batch (`POST /publish` with `{"messages": messages}`);
    /// answers the JSON reply.
    pub async fn publish_batch(&self, messages: Vec<Value>) -> Value {
        let res = client()
            .post(self.internal_url("/publish"))
            .json(&serde_json::json!({ "messages": messages }))
            .send()
            .await
            .expect("publish");
        assert_eq!(res.status(), 202, "publish a batch");
        res.json().await.expect("publish reply")
    }

    /// The channel's subscriber count from the internal `/channels/{ch}`
    /// endpoint: held long polls, open streams and sockets on it.
    pub async fn subscribers(&self, channel: &str) -> u64 {
        let v: Value = client()
            .get(self.internal_url(&format!("/channels/{channel}")))
            .send()
            .await
            .expect("channel info")
            .json()
            .await
            .expect("channel info reply");
        v["subscribers"].as_u64().expect("subscribers")
    }

    /// Polls the subscriber count until it is `n`; panics with the last
    /// count seen after `within`.
    pub async fn wait_subscribers(&self, channel: &str, n: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.subscribers(channel).await;
            if seen == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel}: {seen} subscribers after {within:?}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An HTTP client with no proxy and no pooling surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// GETs `url`; asserts a 200 and answers the JSON body.
pub async fn get_json(url: &str) -> Value {
    let res = client().get(url).send().await.expect("GET");
    assert_eq!(res.status(), 200, "{url}");
    res.json().await.expect("JSON")
}

/// The text `data` of every message in a poll or long-poll reply.
pub fn data(reply: &Value) -> Vec<String> {
    reply["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["data"].as_str().expect("text data").to_string())
        .collect()
}

/// The `cursor` of a poll, long-poll or publish reply.
pub fn cursor(reply: &Value) -> String {
    reply["cursor"].as_str().expect("cursor").to_string()
}
