//! Both listeners' services answer unknown paths and wrong methods as the
//! route table says: 404 `not_found`, 405 `method_not_allowed` with `Allow`,
//! every one as a JSON error.

use herald_server::{Config, Herald};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;

type Answer = (StatusCode, Option<String>, String);

async fn ask(herald: &Herald, internal: bool, method: Method, path: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = if internal {
        herald.internal_service().oneshot(req).await
    } else {
        herald.public_service().oneshot(req).await
    }
    .unwrap();
    let allow = res
        .headers()
        .get(header::ALLOW)
        .map(|v| v.to_str().unwrap().to_string());
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    (status, allow, code)
}

#[tokio::test]
async fn missing_paths_and_wrong_methods() {
    let herald = Herald::new(Config::default()).unwrap();
    let not_found: Answer = (StatusCode::NOT_FOUND, None, "not_found".into());
    let not_allowed = |allow: &str| -> Answer {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            Some(allow.into()),
            "method_not_allowed".into(),
        )
    };
    for (internal, method, path, want) in [
        (false, Method::GET, "/nope", not_found.clone()),
        (false, Method::GET, "/publish/a", not_found.clone()),
        (false, Method::POST, "/poll/a", not_allowed("GET, HEAD")),
        (false, Method::HEAD, "/ws", not_allowed("GET, HEAD")),
        (false, Method::DELETE, "/healthz", not_allowed("GET, HEAD")),
        (true, Method::GET, "/sse/a", not_found.clone()),
        (true, Method::GET, "/publish/a", not_allowed("POST")),
        (true, Method::PUT, "/channels/a", not_allowed("GET, DELETE")),
        (true, Method::POST, "/healthz", not_allowed("GET, HEAD")),
    ] {
        assert_eq!(ask(&herald, internal, method, path).await, want, "{path}");
    }
}
