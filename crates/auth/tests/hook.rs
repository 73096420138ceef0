//! The backend hook against a real HTTP backend on 127.0.0.1:0: what it is
//! sent, how each answer is read, timeouts and the cache.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use herald_auth::{Authorizer, Config, Credentials, Decision, Patterns, Reason};
use herald_bus::ChannelName;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the backend saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    cookie: Option<String>,
    authorization: Option<String>,
    body: serde_json::Value,
}

/// A backend answering every call with `answer`, after `delay`.
struct Backend {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type Answer = fn() -> Response<Full<Bytes>>;

impl Backend {
    async fn start(answer: Answer, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (calls.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (c, s) = (c.clone(), s.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let (c, s) = (c.clone(), s.clone());
                    async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        let header = |name| {
                            req.headers()
                                .get(name)
                                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
                        };
                        let cookie = header(http::header::COOKIE);
                        let authorization = header(http::header::AUTHORIZATION);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        s.lock().unwrap().push(Seen {
                            cookie,
                            authorization,
                            body: serde_json::from_slice(&body).unwrap(),
                        });
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
        Backend { addr, calls, seen }
    }

    fn authorizer(&self, timeout: Duration) -> Authorizer {
        Authorizer::new(Config {
            hook_url: Some(format!("http://{}/herald/auth", self.addr)),
            hook_timeout: timeout,
            public_channels: Patterns::parse_list("lobby").unwrap(),
            ..Config::default()
        })
        .unwrap()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn json(body: &'static str, cache: Option<&str>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().header("content-type", "application/json");
    if let Some(cache) = cache {
        r = r.header("cache-control", cache);
    }
    r.body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn ch(names: &[&str]) -> Vec<ChannelName> {
    names.iter().map(|n| ChannelName::new(n).unwrap()).collect()
}

fn session(cookie: &str) -> Credentials {
    let req = Request::builder()
        .uri("/sse/a")
        .header("cookie", cookie)
        .body(())
        .unwrap();
    Credentials::from_request(&req, None)
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_2xx_allows_and_the_backend_sees_the_cookie_and_the_private_channels() {
    let backend = Backend::start(|| status(StatusCode::NO_CONTENT), Duration::ZERO).await;
    let auth = backend.authorizer(TIMEOUT);
    let d = auth
        .authorize(&session("sid=abc"), &ch(&["lobby", "room.1"]), "sse")
        .await;
    assert!(matches!(d, Decision::Allowed(_)), "{d:?}");
    let seen = backend.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.cookie.as_deref(), Some("sid=abc"));
    assert_eq!(seen.authorization, None);
    assert_eq!(
        seen.body,
        serde_json::json!({"channels": ["room.1"], "transport": "sse"}),
        "public channels are not asked about"
    );
}

#[tokio::test]
async fn a_query_token_reaches_the_backend_as_a_bearer() {
    let backend = Backend::start(|| status(StatusCode::OK), Duration::ZERO).await;
    let auth = backend.authorizer(TIMEOUT);
    let req = Request::builder()
        .uri("/sse/a?token=opaque")
        .body(())
        .unwrap();
    let d = auth
        .authorize(&auth.credentials(&req), &ch(&["a"]), "sse")
        .await;
    assert!(matches!(d, Decision::Allowed(_)), "{d:?}");
    let seen = backend.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.authorization.as_deref(), Some("Bearer opaque"));
}

#[tokio::test]
async fn a_json_answer_narrows_the_grant_and_names_the_subscriber() {
    let backend = Backend::start(
        || json(r#"{"channels":["room.*"],"sub":"alice"}"#, None),
        Duration::ZERO,
    )
    .await;
    let auth = backend.authorizer(TIMEOUT);
    let d = auth
        .authorize(&session("sid=1"), &ch(&["room.1", "admin"]), "ws")
        .await;
    let Decision::Forbidden { refused, grant } = d else {
        panic!("{d:?}")
    };
    assert_eq!(refused, ch(&["admin"]));
    assert_eq!(grant.sub.as_deref(), Some("alice"));
    assert_eq!(grant.expires_at, None);
}

#[tokio::test]
async fn a_401_is_unauthorized_and_a_403_forbidden() {
    let backend = Backend::start(|| status(StatusCode::UNAUTHORIZED), Duration::ZERO).await;
    let d = backend
        .authorizer(TIMEOUT)
        .authorize(&session("sid=1"), &ch(&["a"]), "poll")
        .await;
    assert_eq!(d, Decision::Unauthorized(Reason::Refused));

    let backend = Backend::start(|| status(StatusCode::FORBIDDEN), Duration::ZERO).await;
    let d = backend
        .authorizer(TIMEOUT)
        .authorize(&session("sid=1"), &ch(&["lobby", "a", "b"]), "poll")
        .await;
    let Decision::Forbidden { refused, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(refused, ch(&["a", "b"]));
}

#[tokio::test]
async fn errors_redirects_and_bad_bodies_are_unavailable_never_allowed() {
    let answers: [Answer; 4] = [
        || status(StatusCode::INTERNAL_SERVER_ERROR),
        || {
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", "/login")
                .body(Full::new(Bytes::new()))
                .unwrap()
        },
        || json("{not json", None),
        || {
            let big = vec![b' '; herald_auth::MAX_HOOK_BODY + 1];
            Response::new(Full::new(Bytes::from(big)))
        },
    ];
    for answer in answers {
        let backend = Backend::start(answer, Duration::ZERO).await;
        let d = backend
            .authorizer(TIMEOUT)
            .authorize(&session("sid=1"), &ch(&["a"]), "poll")
            .await;
        assert_eq!(d, Decision::Unavailable);
    }
}

#[tokio::test]
async fn a_body_at_the_limit_is_read() {
    let backend = Backend::start(
        || {
            let mut body = br#"{"channels":["a"]}"#.to_vec();
            body.resize(herald_auth::MAX_HOOK_BODY, b' ');
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        },
        Duration::ZERO,
    )
    .await;
    let d = backend
        .authorizer(TIMEOUT)
        .authorize(&session("sid=1"), &ch(&["a"]), "poll")
        .await;
    assert!(matches!(d, Decision::Allowed(_)), "{d:?}");
}

#[tokio::test]
async fn a_slow_backend_is_unavailable_after_the_timeout() {
    let backend = Backend::start(|| status(StatusCode::OK), Duration::from_secs(30)).await;
    let d = backend
        .authorizer(Duration::from_millis(200))
        .authorize(&session("sid=1"), &ch(&["a"]), "longpoll")
        .await;
    assert_eq!(d, Decision::Unavailable);
}

#[tokio::test]
async fn an_unreachable_backend_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let auth = Authorizer::new(Config {
        hook_url: Some(format!("http://{addr}/auth")),
        ..Config::default()
    })
    .unwrap();
    let d = auth.authorize(&session("sid=1"), &ch(&["a"]), "poll").await;
    assert_eq!(d, Decision::Unavailable);
}

#[tokio::test]
async fn answers_with_max_age_are_cached_per_credentials_and_channels() {
    let backend = Backend::start(|| json("{}", Some("max-age=60")), Duration::ZERO).await;
    let auth = backend.authorizer(TIMEOUT);
    for _ in 0..3 {
        let d = auth
            .authorize(&session("sid=1"), &ch(&["a", "b"]), "sse")
            .await;
        assert!(matches!(d, Decision::Allowed(_)));
    }
    assert_eq!(backend.calls(), 1);
    // The same channels in another order are the same question.
    auth.authorize(&session("sid=1"), &ch(&["b", "a"]), "sse")
        .await;
    assert_eq!(backend.calls(), 1);
    auth.authorize(&session("sid=2"), &ch(&["a", "b"]), "sse")
        .await;
    assert_eq!(backend.calls(), 2, "other credentials are asked about");
    auth.authorize(&session("sid=1"), &ch(&["a"]), "sse").await;
    assert_eq!(backend.calls(), 3, "other channels are asked about");
    auth.authorize(&session("sid=1"), &ch(&["a"]), "ws").await;
    assert_eq!(backend.calls(), 4, "another transport is asked about");
}

#[tokio::test]
async fn refusals_are_cached_too_but_answers_without_max_age_are_not() {
    let backend = Backend::start(
        || {
            Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header("cache-control", "max-age=60")
                .body(Full::new(Bytes::new()))
                .unwrap()
        },
        Duration::ZERO,
    )
    .await;
    let auth = backend.authorizer(TIMEOUT);
    for _ in 0..2 {
        let d = auth.authorize(&session("s"), &ch(&["a"]), "poll").await;
        assert!(matches!(d, Decision::Forbidden { .. }));
    }
    assert_eq!(backend.calls(), 1);

    let backend = Backend::start(|| status(StatusCode::OK), Duration::ZERO).await;
    let auth = backend.authorizer(TIMEOUT);
    for _ in 0..2 {
        auth.authorize(&session("s"), &ch(&["a"]), "poll").await;
    }
    assert_eq!(backend.calls(), 2);
}

#[tokio::test]
async fn no_credentials_and_public_channels_never_reach_the_backend() {
    let backend = Backend::start(|| status(StatusCode::OK), Duration::ZERO).await;
    let auth = backend.authorizer(TIMEOUT);
    let d = auth
        .authorize(&Credentials::default(), &ch(&["a"]), "poll")
        .await;
    assert_eq!(d, Decision::Unauthorized(Reason::Missing));
    let d = auth
        .authorize(&Credentials::default(), &ch(&["lobby"]), "poll")
        .await;
    assert!(matches!(d, Decision::Allowed(_)));
    assert_eq!(backend.calls(), 0);
}
