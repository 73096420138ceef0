//! End-to-end: subscriber authorization on all four transports, with real
//! clients — tokens (good, for another channel, forged, `alg: none`,
//! expiring while connected), the backend hook (a real backend the test
//! starts and counts), CORS with credentials, and the logs (a query token
//! never appears in them).

use std::{
    convert::Infallible,
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use bytes::Bytes;
use herald_testkit::{Binary, Server, client, js_script, need_node_packages, sse::Sse, ws};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "an-end-to-end-secret-of-32-bytes-or-more";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `channels`, valid `secs` more seconds.
fn token(channels: &[&str], secs: u64) -> String {
    let claims = json!({"sub": "e2e-user", "channels": channels, "exp": now() + secs});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn forged(channels: &[&str]) -> String {
    let claims = json!({"channels": channels, "exp": now() + 60});
    let key = EncodingKey::from_secret(b"not-the-server-secret-but-32-bytes-long");
    encode(&Header::default(), &claims, &key).unwrap()
}

fn alg_none(channels: &[&str]) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"channels": channels, "exp": now() + 60}))
    )
}

async fn secured(extra: &[&str]) -> Server {
    let mut flags = vec!["--auth-jwt-secret", SECRET, "--public-channels", "lobby"];
    flags.extend_from_slice(extra);
    Server::start(&flags).await
}

/// Status, error code (when any) and `WWW-Authenticate` of a GET.
async fn get(url: &str, bearer: Option<&str>) -> (u16, Value, Option<String>) {
    let mut req = client().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let res = tokio::time::timeout(Duration::from_secs(10), req.send())
        .await
        .expect("an answer in time")
        .unwrap();
    let status = res.status().as_u16();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = if res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        res.json().await.unwrap()
    } else {
        Value::Null
    };
    (status, body, www)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// The HTTP transports' URLs for `channels`, reading what is retained.
fn http_paths(channels: &str) -> [String; 3] {
    [
        format!("/poll/{channels}?last=10"),
        format!("/longpoll/{channels}?last=10&timeout=1"),
        format!("/sse/{channels}?last=10"),
    ]
}

#[tokio::test]
async fn http_transports_refuse_missing_foreign_forged_and_unsigned_tokens() {
    let s = secured(&[]).await;
    s.publish("room.1", "hello").await;
    for path in http_paths("room.1") {
        let url = s.url(&path);
        let (status, body, www) = get(&url, None).await;
        assert_eq!((status, code(&body)), (401, "unauthorized"), "{path}");
        assert_eq!(www.as_deref(), Some("Bearer"), "{path}");

        for bad in [forged(&["room.1"]), alg_none(&["room.1"]), "junk".into()] {
            let (status, body, www) = get(&url, Some(&bad)).await;
            assert_eq!((status, code(&body)), (401, "unauthorized"), "{path}");
            assert_eq!(
                www.as_deref(),
                Some(r#"Bearer error="invalid_token""#),
                "{path}"
            );
        }
        let expired = {
            let claims = json!({"channels": ["room.1"], "exp": now() - 5});
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            encode(&Header::default(), &claims, &key).unwrap()
        };
        let (status, ..) = get(&url, Some(&expired)).await;
        assert_eq!(status, 401, "{path}");

        let (status, body, _) = get(&url, Some(&token(&["room.2"], 60))).await;
        assert_eq!((status, code(&body)), (403, "forbidden"), "{path}");
    }
}

#[tokio::test]
async fn http_transports_serve_a_good_token_from_header_query_or_public_list() {
    let s = secured(&[]).await;
    s.publish("room.1", "hello").await;
    s.publish("lobby", "welcome").await;
    let good = token(&["room.*"], 60);
    for path in &http_paths("room.1")[..2] {
        let (status, body, _) = get(&s.url(path), Some(&good)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(herald_testkit::data(&body), ["hello"], "{path}");
        let (status, body, _) = get(&s.url(&format!("{path}&token={good}")), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        // All-or-nothing: one channel not covered refuses the request.
        let both = path.replace("room.1", "room.1,secret");
        let (status, body, _) = get(&s.url(&both), Some(&good)).await;
        assert_eq!((status, code(&body)), (403, "forbidden"), "{both}");
        let public = path.replace("room.1", "lobby");
        let (status, body, _) = get(&s.url(&public), None).await;
        assert_eq!(status, 200, "{public}");
        assert_eq!(herald_testkit::data(&body), ["welcome"]);
    }
    let c = client();
    let mut sse = Sse::open(
        &c,
        &s.url(&format!("/sse/room.1?last=10&token={good}")),
        None,
    )
    .await;
    assert_eq!(sse.event().await.data(), "hello");
    let mut sse = Sse::open(&c, &s.url("/sse/lobby?last=10"), None).await;
    assert_eq!(sse.event().await.data(), "welcome");
}

#[tokio::test]
async fn websocket_handshakes_are_refused_like_http_and_frames_per_channel() {
    let s = secured(&[]).await;
    s.publish("room.1", "hello").await;

    // The handshake of /ws/{channels} is HTTP: all-or-nothing.
    let (status, code) = ws::refused(s.ws_url("/ws/room.1")).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    for bad in [forged(&["room.1"]), alg_none(&["room.1"])] {
        let (status, code) = ws::refused(s.ws_url(&format!("/ws/room.1?token={bad}"))).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
    }
    let other = token(&["room.2"], 60);
    let (status, code) = ws::refused(s.ws_url(&format!("/ws/room.1?token={other}"))).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));

    let good = token(&["room.1"], 60);
    let mut c = ws::connect(&s, &format!("/ws/room.1?last=10&token={good}")).await;
    assert_eq!(ws::next(&mut c).await["type"], "subscribed");
    assert_eq!(ws::next(&mut c).await["data"], "hello");

    // On an open socket each refused channel gets its own error frame and
    // the connection stays.
    let mut c = ws::connect(&s, "/ws").await;
    ws::send(
        &mut c,
        json!({"type": "subscribe", "channels": ["room.1", "room.2", "lobby"], "ref": "a"}),
    )
    .await;
    let mut errors = Vec::new();
    let subscribed = loop {
        let v = ws::next(&mut c).await;
        match v["type"].as_str() {
            Some("error") => errors.push((v["code"].clone(), v["channel"].clone())),
            Some("subscribed") => break v,
            _ => panic!("{v}"),
        }
    };
    errors.sort_by_key(|e| e.1.to_string());
    assert_eq!(
        errors,
        [
            (json!("unauthorized"), json!("room.1")),
            (json!("unauthorized"), json!("room.2"))
        ]
    );
    assert_eq!(subscribed["channels"], json!(["lobby"]));
    // A token on the subscribe frame.
    let frame =
        json!({"type": "subscribe", "channels": ["room.1", "room.2"], "token": good, "ref": "b"});
    ws::send(&mut c, frame).await;
    let v = ws::next(&mut c).await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{v}"
    );
    assert_eq!(v["channel"], "room.2");
    let v = ws::next(&mut c).await;
    assert_eq!(v["type"], "subscribed", "{v}");
    assert_eq!(v["channels"], json!(["room.1"]));
    s.publish("room.1", "after").await;
    assert_eq!(ws::next(&mut c).await["data"], "after");
}

#[tokio::test]
async fn websocket_refreshes_its_token_in_place_and_stays_connected() {
    let s = secured(&["--auth-grace", "5"]).await;
    let mut c = ws::connect(&s, &format!("/ws/room.1?token={}", token(&["room.1"], 1))).await;
    assert_eq!(ws::next(&mut c).await["type"], "subscribed");
    // At exp: an `expired` frame, and delivery pauses without losing
    // anything.
    let v = ws::next(&mut c).await;
    assert_eq!(v["type"], "expired", "{v}");
    s.publish("room.1", "during-grace").await;
    ws::send(
        &mut c,
        json!({"type": "auth", "token": token(&["room.1"], 60), "ref": "r"}),
    )
    .await;
    let v = ws::next(&mut c).await;
    assert_eq!(
        (v["type"].as_str(), v["ref"].as_str()),
        (Some("authorized"), Some("r")),
        "{v}"
    );
    assert_eq!(ws::next(&mut c).await["data"], "during-grace");
    s.publish("room.1", "after").await;
    assert_eq!(ws::next(&mut c).await["data"], "after");
}

#[tokio::test]
async fn websocket_without_a_fresh_token_is_closed_with_4001_after_the_grace() {
    let s = secured(&["--auth-grace", "1"]).await;
    let mut c = ws::connect(&s, &format!("/ws/room.1?token={}", token(&["room.1"], 1))).await;
    assert_eq!(ws::next(&mut c).await["type"], "subscribed");
    assert_eq!(ws::next(&mut c).await["type"], "expired");
    // A bad refresh is refused and changes nothing.
    ws::send(
        &mut c,
        json!({"type": "auth", "token": forged(&["room.1"])}),
    )
    .await;
    let v = ws::next(&mut c).await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
    assert_eq!(ws::close_code(&mut c).await, 4001);
}

#[tokio::test]
async fn sse_through_eventsource_survives_expiry_mid_burst_and_misses_nothing() {
    let Some(node) = need_node_packages() else {
        return;
    };
    let s = secured(&["--sse-retry", "100"]).await;
    let n = 40;
    let url = s.url("/sse/room.1");
    let child = tokio::process::Command::new(node)
        .arg(js_script("eventsource.js"))
        .args([url.as_str(), &n.to_string(), "20000"])
        .env("HERALD_AUTH_JWT_SECRET", SECRET)
        .env("HERALD_TOKEN_CHANNELS", "room.1")
        .env("HERALD_TOKEN_SECONDS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    s.wait_subscribers("room.1", 1, Duration::from_secs(10))
        .await;
    // A burst spread over more than one token lifetime.
    for i in 0..n {
        s.publish("room.1", &format!("m{i}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expired = lines.iter().filter(|l| l.get("expired").is_some()).count();
    assert!(expired >= 1, "the token never expired mid-burst: {text}");
    assert!(lines.iter().all(|l| l.get("gap").is_none()), "{text}");
    let last = lines.last().unwrap();
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(
        last["messages"],
        json!(want),
        "nothing missed, nothing repeated"
    );
    assert!(last["opens"].as_u64().unwrap() >= 2, "{text}");
}

#[tokio::test]
async fn query_tokens_never_reach_the_logs() {
    let mut herald =
        Binary::start_with_env(&["--auth-jwt-secret", SECRET], &[("RUST_LOG", "debug")]);
    let good = token(&["room.1"], 60);
    let bad = forged(&["room.1"]);
    for t in [&good, &bad] {
        for path in http_paths("room.1") {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = herald.url(&format!("{path}{sep}token={t}"));
            let res = client().get(&url).send().await.unwrap();
            // Read SSE only to its head: the stream is endless.
            drop(res);
        }
        let req = herald
            .ws_url(&format!("/ws/room.1?token={t}"))
            .into_client_request()
            .unwrap();
        let _ = tokio_tungstenite::connect_async(req).await;
    }
    assert!(herald.terminate(Duration::from_secs(10)));
    let log: Vec<String> = herald.log.try_iter().collect();
    let log = log.join("\n");
    assert!(
        log.contains("<redacted>"),
        "the request lines are logged: {log}"
    );
    assert!(
        log.contains("sub=e2e-user"),
        "the subscriber is named: {log}"
    );
    for t in [&good, &bad] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token leaked into the log");
    }
}

/// A backend hook started by the test: answers every call with `answer`
/// after `delay`, and counts the calls.
struct Backend {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(answer: fn() -> Response<Full<Bytes>>, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                let service = service_fn(move |_req: Request<Incoming>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(answer())
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Backend { addr, calls }
    }

    async fn herald(&self, extra: &[&str]) -> Server {
        let url = format!("http://{}/herald/auth", self.addr);
        let mut flags = vec!["--auth-url", url.as_str()];
        flags.extend_from_slice(extra);
        Server::start(&flags).await
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn answer(status: StatusCode, cache: Option<&'static str>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    if let Some(c) = cache {
        r = r.header("cache-control", c);
    }
    r.body(Full::new(Bytes::new())).unwrap()
}

async fn get_with_cookie(url: &str, cookie: &str) -> (u16, Value) {
    let res = client()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_hook_allows_refuses_times_out_and_is_cached() {
    let allow = Backend::start(
        || answer(StatusCode::OK, Some("max-age=60")),
        Duration::ZERO,
    )
    .await;
    let s = allow.herald(&[]).await;
    s.publish("room.1", "hello").await;
    for _ in 0..3 {
        let (status, body) = get_with_cookie(&s.url("/poll/room.1?last=1"), "sid=1").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(herald_testkit::data(&body), ["hello"]);
    }
    assert_eq!(allow.calls(), 1, "answers with max-age are cached");
    let (status, _) = get_with_cookie(&s.url("/poll/room.1"), "sid=2").await;
    assert_eq!(status, 200);
    assert_eq!(allow.calls(), 2, "other credentials are asked about");
    let (status, body, _) = get(&s.url("/poll/room.1"), None).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    assert_eq!(allow.calls(), 2, "no credentials, no call");

    let refuse = Backend::start(|| answer(StatusCode::FORBIDDEN, None), Duration::ZERO).await;
    let s = refuse.herald(&[]).await;
    let (status, body) = get_with_cookie(&s.url("/sse/room.1"), "sid=1").await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, body) = get_with_cookie(&s.url("/sse/room.1"), "sid=1").await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    assert_eq!(refuse.calls(), 2, "answers without max-age are not cached");

    let logout = Backend::start(|| answer(StatusCode::UNAUTHORIZED, None), Duration::ZERO).await;
    let s = logout.herald(&[]).await;
    let (status, body) = get_with_cookie(&s.url("/longpoll/room.1"), "sid=1").await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));

    let slow = Backend::start(|| answer(StatusCode::OK, None), Duration::from_secs(30)).await;
    let s = slow.herald(&["--auth-timeout", "1"]).await;
    let (status, body) = get_with_cookie(&s.url("/poll/room.1"), "sid=1").await;
    assert_eq!((status, code(&body)), (503, "auth_unavailable"));
    let broken = Backend::start(|| answer(StatusCode::BAD_GATEWAY, None), Duration::ZERO).await;
    let s = broken.herald(&[]).await;
    let (status, body) = get_with_cookie(&s.url("/poll/room.1"), "sid=1").await;
    assert_eq!((status, code(&body)), (503, "auth_unavailable"));
}

#[tokio::test]
async fn a_cookie_token_needs_cors_with_the_exact_origin_and_credentials() {
    let s = secured(&[
        "--auth-cookie",
        "herald_token",
        "--cors-origins",
        "https://app.example",
        "--ws-origins",
        "https://app.example",
    ])
    .await;
    s.publish("room.1", "hello").await;
    let res = client()
        .get(s.url("/poll/room.1?last=1"))
        .header("origin", "https://app.example")
        .header("cookie", format!("herald_token={}", token(&["room.1"], 60)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let preflight = client()
        .request(reqwest::Method::OPTIONS, s.url("/poll/room.1"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
}

#[test]
fn a_cookie_with_a_wildcard_origin_is_refused_at_start_naming_the_options() {
    let out = Binary::output(
        &[
            "--auth-jwt-secret",
            SECRET,
            "--auth-cookie",
            "t",
            "--cors-origins",
            "*",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth-cookie") && err.contains("cors-origins"),
        "{err}"
    );
}

#[test]
fn the_secret_is_never_printed_by_help() {
    let out = Binary::output(&["--help"], &[("HERALD_AUTH_JWT_SECRET", SECRET)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--auth-jwt-secret"), "{text}");
    assert!(!text.contains(SECRET));
}

#[tokio::test]
async fn a_held_long_poll_answers_by_the_tokens_expiry_and_the_next_one_is_refused() {
    let s = secured(&["--longpoll-max-timeout", "55"]).await;
    let short = token(&["room.1"], 2);
    let url = s.url("/longpoll/room.1?timeout=50");
    // `get` gives up after 10 s: the hold of 50 s must end at exp instead.
    let (status, body, _) = get(&url, Some(&short)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"], json!([]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body, www) = get(&url, Some(&short)).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    assert_eq!(www.as_deref(), Some(r#"Bearer error="invalid_token""#));
}
