//! HTTP errors: the one place where failures become responses.
//!
//! Every error answer, whether herald's own or one produced by a tower-http
//! layer (body limit, timeout), leaves as `{"error":{"code","message"}}` with
//! a stable machine-readable code. Client errors are not logged as errors;
//! server errors are logged here and their details are not leaked.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode, header};

use crate::{Body, body::json, write_json_str};

/// An error answer: status, stable code, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    /// A header the status requires (`Allow` on 405, `WWW-Authenticate` on
    /// 401), if any.
    header: Option<(header::HeaderName, &'static str)>,
}

impl Error {
    /// An error with an explicit status and code.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// 405 `method_not_allowed` with `Allow: GET, HEAD`, the methods of
    /// every subscriber endpoint; see [`Error::allow`] for others.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this endpoint",
        )
        .allow("GET, HEAD")
    }

    /// Sets the `Allow` header of a 405 (RFC 9110 requires it).
    pub fn allow(mut self, methods: &'static str) -> Self {
        self.header = Some((header::ALLOW, methods));
        self
    }

    /// 401 `unauthorized` with `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        );
        e.header = Some((header::WWW_AUTHENTICATE, "Bearer"));
        e
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Body> {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(code = self.code, message = %self.message, "request refused");
        }
        let message =
            if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
                "internal error"
            } else {
                &self.message
            };
        let mut out = String::with_capacity(64 + message.len());
        out.push_str("{\"error\":{\"code\":\"");
        out.push_str(self.code);
        out.push_str("\",\"message\":");
        write_json_str(&mut out, message);
        out.push_str("}}");
        let mut res = json(self.status, out);
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            // The request body was not read to its end, so the connection
            // cannot carry another request: say so, or a client reusing it
            // races the close.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some((name, value)) = self.header {
            res.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        res
    }
}

impl From<herald_bus::Error> for Error {
    fn from(e: herald_bus::Error) -> Self {
        use herald_bus::Error as E;
        let (status, code) = match &e {
            E::InvalidChannel(_) => (StatusCode::BAD_REQUEST, "invalid_channel"),
            E::InvalidEvent(_) => (StatusCode::BAD_REQUEST, "invalid_event"),
            E::InvalidCursor(_) => (StatusCode::BAD_REQUEST, "invalid_cursor"),
            E::TooManyChannels { .. } => (StatusCode::BAD_REQUEST, "too_many_channels"),
            E::InvalidUtf8 => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_utf8"),
            E::InvalidJson(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_json"),
            E::Unavailable(why) => {
                // The details (hosts, store errors) go to the log, not to
                // the client.
                tracing::warn!(reason = %why, "engine unavailable");
                return Error::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "engine_unavailable",
                    "the engine is unavailable; retry later",
                );
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Error::new(status, code, e.to_string())
    }
}

/// Rewrites an error response that did not come from herald (a tower-http
/// layer's plain-text 413 or 408, hyper's defaults) into the JSON error
/// shape, so that clients see one format whatever produced the error.
pub fn json_errors<B>(res: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes, Error = std::convert::Infallible> + Send + 'static,
{
    use http_body_util::BodyExt;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return res.map(BodyExt::boxed_unsync);
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::FORBIDDEN => "forbidden",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    let (parts, _) = res.into_parts();
    let mut out = Error::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}
