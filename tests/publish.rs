//! End-to-end: the internal listener — publish, batch, admin, token — and
//! every bad input getting its status and JSON error without disturbing
//! anything else.

use herald_testkit::{Server, client};
use serde_json::Value;

async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    assert_eq!(
        res.headers()["content-type"],
        "application/json",
        "status {status}"
    );
    let v: Value = res.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
    )
}

async fn retained(s: &Server, ch: &str) -> Vec<String> {
    let v: Value = client()
        .get(s.url(&format!("/poll/{ch}?last=1000")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn bad_inputs_get_their_status_and_lose_nothing() {
    let s = Server::start(&[]).await;
    let c = client();
    s.publish("keep", "before").await;
    let long = "x".repeat(129);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> =
        vec![
        (
            c.post(s.internal_url("/publish/bad%20name")).body("x"),
            400,
            "invalid_channel",
        ),
        (
            c.post(s.internal_url(&format!("/publish/{long}")))
                .body("x"),
            400,
            "invalid_channel",
        ),
        (
            c.post(s.internal_url("/publish/ok?event=herald.gap"))
                .body("x"),
            400,
            "invalid_event",
        ),
        (
            c.post(s.internal_url(&format!("/publish/ok?event={}", "e".repeat(65))))
                .body("x"),
            400,
            "invalid_event",
        ),
        (
            c.post(s.internal_url("/publish/ok?event=a%0Ab")).body("x"),
            400,
            "invalid_event",
        ),
        (
            c.post(s.internal_url("/publish/ok")).body(vec![0xff, 0xfe]),
            415,
            "invalid_utf8",
        ),
        (
            c.post(s.internal_url("/publish/ok"))
                .header("content-type", "application/json")
                .body("{nope"),
            415,
            "invalid_json",
        ),
        (
            c.post(s.internal_url("/publish/ok"))
                .body("a".repeat(64 * 1024 + 1)),
            413,
            "body_too_large",
        ),
        (
            c.post(s.internal_url("/publish"))
                .header("content-type", "application/json").body("[1,2"),
            415,
            "invalid_json",
        ),
        (
            c.post(s.internal_url("/publish"))
                .header("content-type", "application/json")
                .body(r#"{"messages":[]}"#),
            400,
            "invalid_batch",
        ),
        (
            c.post(s.internal_url("/publish"))
                .header("content-type", "application/json").body(r#"{"msgs":[]}"#),
            400,
            "invalid_batch",
        ),
        (
            c.post(s.internal_url("/publish"))
                .header("content-type", "application/json")
                .body(r#"{"messages":[{"channel":"ok","data":"a"},{"channel":"b d","data":"b"}]}"#),
            400,
            "invalid_channel",
        ),
        (
            c.get(s.internal_url("/publish/ok")),
            405,
            "method_not_allowed",
        ),
        (c.get(s.internal_url("/nowhere")), 404, "not_found"),
        (c.delete(s.url("/poll/keep")), 405, "method_not_allowed"),
        (c.get(s.url("/publish/keep")), 404, "not_found"),
        (
            c.get(s.url("/poll/keep?since=%21%21")),
            400,
            "invalid_cursor",
        ),
        (c.get(s.url("/poll/keep?last=-3")), 400, "invalid_query"),
        (c.get(s.url("/poll/a,,b")), 400, "invalid_channel"),
    ];
    for (req, status, code) in cases {
        let req = req.build().unwrap();
        let what = format!("{} {}", req.method(), req.url());
        let res = c.execute(req).await.unwrap();
        assert_eq!(error_code(res).await, (status, code.to_string()), "{what}");
    }
    s.publish("keep", "after").await;
    assert_eq!(retained(&s, "keep").await, ["before", "after"]);
    assert!(
        retained(&s, "ok").await.is_empty(),
        "no rejected message was stored"
    );
    let health = c.get(s.internal_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn body_limit_is_configurable_and_exact() {
    let s = Server::start(&["--max-body", "1000"]).await;
    let c = client();
    let at = c
        .post(s.internal_url("/publish/l"))
        .body("a".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(at.status(), 202);
    let over = c
        .post(s.internal_url("/publish/l"))
        .body("a".repeat(1001))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(over).await, (413, "body_too_large".to_string()));
}

#[tokio::test]
async fn batch_publish_orders_and_types_data() {
    let s = Server::start(&["--max-batch", "3"]).await;
    let c = client();
    let res = c
        .post(s.internal_url("/publish"))
                .header("content-type", "application/json")
        .body(r#"{"messages":[{"channel":"x","data":"one"},{"channel":"y","event":"ev","data":{"n":2}},{"channel":"x","data":"three"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    let ids: Vec<u64> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], ids[0] + 1, "consecutive on channel x");
    assert_eq!(retained(&s, "x").await, ["one", "three"]);
    let y: Value = c
        .get(s.url("/poll/y?last=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(y["messages"][0]["data"]["n"], 2);
    assert_eq!(y["messages"][0]["event"], "ev");
    let four = r#"{"messages":[{"channel":"x","data":"1"},{"channel":"x","data":"2"},{"channel":"x","data":"3"},{"channel":"x","data":"4"}]}"#;
    let res = c
        .post(s.internal_url("/publish"))
        .header("content-type", "application/json")
        .body(four)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (400, "invalid_batch".to_string()));
    assert_eq!(
        retained(&s, "x").await.len(),
        2,
        "a refused batch stores nothing"
    );
}

#[tokio::test]
async fn publish_token_guards_every_internal_endpoint() {
    let s = Server::start(&["--publish-token", "s3cret"]).await;
    let c = client();
    for (req, what) in [
        (c.post(s.internal_url("/publish/t")).body("x"), "no token"),
        (
            c.post(s.internal_url("/publish/t"))
                .bearer_auth("wrong")
                .body("x"),
            "wrong token",
        ),
        (
            c.post(s.internal_url("/publish/t"))
                .bearer_auth("s3cret2")
                .body("x"),
            "longer token",
        ),
        (c.get(s.internal_url("/channels/t")), "info without token"),
        (
            c.delete(s.internal_url("/channels/t")),
            "delete without token",
        ),
        (c.get(s.internal_url("/healthz")), "healthz without token"),
    ] {
        let res = req.send().await.unwrap();
        assert_eq!(
            error_code(res).await,
            (401, "unauthorized".to_string()),
            "{what}"
        );
    }
    let ok = c
        .post(s.internal_url("/publish/t"))
        .bearer_auth("s3cret")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    // The public listener never asks for the token.
    assert_eq!(retained(&s, "t").await, ["x"]);
}

#[tokio::test]
async fn channel_info_and_delete() {
    let s = Server::start(&[]).await;
    let c = client();
    let a = s.publish("info", "1").await;
    let b = s.publish("info", "2").await;
    let v: Value = c
        .get(s.internal_url("/channels/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["retained"], 2);
    assert_eq!(v["first_id"], a["id"]);
    assert_eq!(v["last_id"], b["id"]);
    assert_eq!(v["subscribers"], 0);
    let del: Value = c
        .delete(s.internal_url("/channels/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(del["deleted"], true);
    let v: Value = c
        .get(s.internal_url("/channels/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["retained"], 0);
    let again: Value = c
        .delete(s.internal_url("/channels/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["deleted"], false);
    // A channel recreated after delete never reuses an id.
    let c2 = s.publish("info", "3").await;
    assert!(c2["id"].as_u64() > b["id"].as_u64());
}

#[tokio::test]
async fn cors_on_the_public_listener() {
    let s = Server::start(&["--cors-origins", "https://app.example"]).await;
    let c = client();
    let res = c
        .get(s.url("/poll/x"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let res = c
        .get(s.url("/poll/x"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let pre = c
        .request(reqwest::Method::OPTIONS, s.url("/poll/x"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success());
    assert!(
        pre.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("last-event-id")
    );
}

#[tokio::test]
async fn status_headers_required_by_http() {
    let s = Server::start(&["--publish-token", "tok"]).await;
    let c = client();
    let res = c
        .get(s.internal_url("/publish/x"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "POST");
    let res = c
        .put(s.internal_url("/channels/x"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET, DELETE");
    let res = c.post(s.url("/poll/x")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    let res = c
        .get(s.internal_url("/channels"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = c
        .post(s.internal_url("/publish/x"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    // The auth scheme is case-insensitive (RFC 9110).
    let res = c
        .post(s.internal_url("/publish/x"))
        .header("authorization", "bearer tok")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn percent_encoded_channel_names_are_decoded() {
    let s = Server::start(&[]).await;
    let c = client();
    let res = c
        .post(s.internal_url("/publish/user%40example.com"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["channel"], "user@example.com");
    assert_eq!(retained(&s, "user@example.com").await, ["hi"]);
    assert_eq!(retained(&s, "user%40example.com").await, ["hi"]);
}

#[tokio::test]
async fn a_stalled_publish_times_out_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start(&["--request-timeout", "1"]).await;
    let mut sock = tokio::net::TcpStream::connect(s.internal).await.unwrap();
    // Headers promise 10 bytes; only 3 arrive.
    sock.write_all(
        b"POST /publish/slow HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\nabc",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
        .await
        .expect("answered within the timeout")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"timeout\""), "{text}");
    assert!(retained(&s, "slow").await.is_empty());
}
