//! The response body type all of herald's services return.
//!
//! One boxed type, so that a router can mix a short JSON answer with an
//! endless SSE stream or an upgrade response. Streaming transports build
//! theirs with [`Body::new`] from any `http_body::Body` that never fails.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// herald's response body: boxed, `Send`, never failing.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A body of known bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().boxed_unsync()
}

/// A JSON response that must not be cached.
pub fn json(status: StatusCode, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(full(bytes));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
