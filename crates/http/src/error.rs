//! HTTP errors and the one rule that turns them into what a client sees.
//!
//! An [`Error`] is a [`Code`] (which decides status, code string and log
//! level) with an optional detail. [`Error::report`] is the rule, used for
//! HTTP responses ([`Error::into_response`]) and WebSocket `error` frames
//! alike: a client error is told its detail (it describes the client's own
//! input); a server error is told only its code's public message and a
//! request id, while its detail (hosts, store errors) goes to the log under
//! that id. Error responses that did not come from herald (a tower-http
//! layer's plain-text 413 or 408) are rewritten into the same shape by
//! [`json_errors`]. What an error is for, and when it is raised, is the
//! business of the code that raises it.

use std::{borrow::Cow, fmt};

use http::{HeaderValue, Response, StatusCode, header};
use tracing::Level;

use crate::{Body, Code, body::json, write_json_str};

/// An error answer: a code and, optionally, a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: Code,
    /// Shown to the client instead of the code's message for a client
    /// error; only logged for a server error.
    detail: Option<Cow<'static, str>>,
    /// The `Allow` header of a 405 (RFC 9110 requires it).
    allow: Option<&'static str>,
    /// A 401 for credentials that were sent but are unusable: its
    /// challenge says `error="invalid_token"` (RFC 6750), so that a client
    /// knows to fetch a fresh token rather than log in.
    invalid_token: bool,
}

impl Error {
    /// An error with `code` and a detail: for a client error, what exactly
    /// was wrong with its request; for a server error, what the log says.
    pub fn new(code: Code, detail: impl Into<Cow<'static, str>>) -> Self {
        Error {
            code,
            detail: Some(detail.into()),
            allow: None,
            invalid_token: false,
        }
    }

    /// 401 `unauthorized` for a token that was sent but is unusable
    /// (malformed, forged, expired): `WWW-Authenticate: Bearer
    /// error="invalid_token"`.
    pub fn invalid_token(detail: impl Into<Cow<'static, str>>) -> Self {
        Error {
            invalid_token: true,
            ..Error::new(Code::Unauthorized, detail)
        }
    }

    /// 405 `method_not_allowed` with `Allow: {allow}`.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Error {
            allow: Some(allow),
            ..Error::from(Code::MethodNotAllowed)
        }
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The HTTP status (the code's).
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Logs the error at its code's level and answers what a client may be
    /// told. The one place that decides what leaves the server.
    pub fn report(&self) -> Public<'_> {
        let detail = self.detail.as_deref().unwrap_or("");
        if self.code.is_server_error() {
            let id = RequestId::new();
            match self.code.level() {
                Level::ERROR => {
                    tracing::error!(request_id = %id, code = %self.code, detail, "request failed")
                }
                _ => tracing::warn!(request_id = %id, code = %self.code, detail, "request failed"),
            }
            Public {
                code: self.code,
                message: self.code.message(),
                request_id: Some(id),
            }
        } else {
            tracing::debug!(code = %self.code, detail, "request refused");
            Public {
                code: self.code,
                message: self.detail.as_deref().unwrap_or(self.code.message()),
                request_id: None,
            }
        }
    }

    /// The JSON response: `{"error":{"code","message"}}`, plus
    /// `"request_id"` for a server error.
    pub fn into_response(self) -> Response<Body> {
        let public = self.report();
        let mut out = String::with_capacity(64 + public.message.len());
        out.push_str("{\"error\":{");
        public.write_fields(&mut out);
        out.push_str("}}");
        let status = self.status();
        let mut res = json(status, out);
        let h = res.headers_mut();
        if matches!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            // The request body was not read to its end, so the connection
            // cannot carry another request: say so, or a client reusing it
            // races the close.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.code == Code::Unauthorized {
            let challenge = if self.invalid_token {
                r#"Bearer error="invalid_token""#
            } else {
                "Bearer"
            };
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(allow) = self.allow {
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        res
    }
}

impl From<Code> for Error {
    /// An error with no detail: the client is told the code's message.
    fn from(code: Code) -> Self {
        Error {
            code,
            detail: None,
            allow: None,
            invalid_token: false,
        }
    }
}

impl From<herald_bus::Error> for Error {
    fn from(e: herald_bus::Error) -> Self {
        Error::new(Code::from(&e), e.to_string())
    }
}

impl fmt::Display for Error {
    /// The code and the detail, for logs and tests; never sent as such.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.code),
            None => write!(f, "{}: {}", self.code, self.code.message()),
        }
    }
}

impl std::error::Error for Error {}

/// What a client is told of an error (see [`Error::report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Public<'a> {
    /// The code.
    pub code: Code,
    /// The message for humans.
    pub message: &'a str,
    /// For a server error, the id its log line carries.
    pub request_id: Option<RequestId>,
}

impl Public<'_> {
    /// Appends `"code":..,"message":..` (and `,"request_id":..`), the
    /// fields an HTTP error body and a WebSocket `error` frame share.
    pub fn write_fields(&self, out: &mut String) {
        out.push_str("\"code\":\"");
        out.push_str(self.code.as_str());
        out.push_str("\",\"message\":");
        write_json_str(out, self.message);
        if let Some(id) = self.request_id {
            use std::fmt::Write as _;
            let _ = write!(out, ",\"request_id\":\"{id}\"");
        }
    }
}

/// A random id joining a server error's answer to its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(u64);

impl RequestId {
    fn new() -> Self {
        RequestId(rand::random())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Rewrites an error response that did not come from herald (a tower-http
/// layer's plain-text 413 or 408, hyper's defaults) into the JSON error
/// shape, with the code [`Code::for_status`] names, so that clients see one
/// format whatever produced the error.
pub fn json_errors<B>(res: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes, Error = std::convert::Infallible> + Send + 'static,
{
    use http_body_util::BodyExt;
    let status = res.status();
    let is_json = || {
        res.headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    };
    if status.as_u16() < 400 || is_json() {
        return res.map(BodyExt::boxed_unsync);
    }
    let (parts, _) = res.into_parts();
    let mut out = Error::from(Code::for_status(status)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(res: Response<Body>) -> serde_json::Value {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_client_error_is_told_its_detail() {
        let res = Error::new(Code::InvalidQuery, "last must be a number").into_response();
        assert_eq!(res.status(), 400);
        let v = body(res).await;
        assert_eq!(v["error"]["code"], "invalid_query");
        assert_eq!(v["error"]["message"], "last must be a number");
        assert!(v["error"].get("request_id").is_none());
    }

    #[tokio::test]
    async fn a_server_error_never_shows_its_detail() {
        let e = herald_bus::Error::Unavailable("redis: secret-host:6379 refused".into());
        let res = Error::from(e).into_response();
        assert_eq!(res.status(), 503);
        let v = body(res).await;
        assert_eq!(v["error"]["code"], "engine_unavailable");
        assert_eq!(v["error"]["message"], Code::EngineUnavailable.message());
        assert_eq!(v["error"]["request_id"].as_str().unwrap().len(), 16);
        assert!(!v.to_string().contains("secret-host"));
        let v = body(Error::new(Code::Internal, "disk on fire").into_response()).await;
        assert_eq!(v["error"]["message"], "internal error");
    }

    #[tokio::test]
    async fn required_headers_come_with_their_codes() {
        let res = Error::method_not_allowed("POST").into_response();
        assert_eq!(res.headers()[header::ALLOW], "POST");
        let res = Error::from(Code::Unauthorized).into_response();
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let res = Error::invalid_token("expired").into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        let res = Error::from(Code::BodyTooLarge).into_response();
        assert_eq!(res.headers()[header::CONNECTION], "close");
    }

    #[tokio::test]
    async fn layer_errors_become_json() {
        let mut plain = Response::new(http_body_util::Full::new(bytes::Bytes::from("too big")));
        *plain.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        let res = json_errors(plain);
        assert_eq!(res.status(), 413);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body(res).await["error"]["code"], "body_too_large");
    }
}
