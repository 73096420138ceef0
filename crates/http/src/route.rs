//! herald's routes, parsed in one place: which listener, which endpoint, and
//! the path segment that names its channels.
//!
//! The server's routers, its lean HTTP/1.1 path (which serves held routes
//! only) and embedders that mount herald beside their own routes all ask
//! [`Route::parse`], so a path means the same everywhere. Adding a route is
//! a variant of [`Route`] and a row in [`ROUTES`]. The segment is handed
//! over as it came (percent-encoded): decoding and validating channel names
//! is [`channels`](crate::channels)' job, in the transport.

use http::Method;

use crate::{Code, Error};

/// The two listeners: subscribers on one, publishers and admin on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Subscriber transports and health; safe to expose through a proxy.
    Public,
    /// Publishing, channel admin and health; keep it private.
    Internal,
}

/// A parsed route. The `&str` is the raw `{channels}` (or `{channel}`)
/// path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET|HEAD /healthz`, on either listener.
    Health,
    /// `GET|HEAD /poll/{channels}`.
    Poll(&'a str),
    /// `GET|HEAD /longpoll/{channels}`.
    LongPoll(&'a str),
    /// `GET|HEAD /sse/{channels}`.
    Sse(&'a str),
    /// `GET /ws` (`None`) or `GET /ws/{channels}`.
    Ws(Option<&'a str>),
    /// `POST /publish/{channel}`.
    Publish(&'a str),
    /// `POST /publish` (a batch).
    PublishBatch,
    /// `GET /channels/{channel}`.
    ChannelInfo(&'a str),
    /// `DELETE /channels/{channel}`.
    DeleteChannel(&'a str),
}

/// What may follow a route's first segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing: `/healthz`.
    None,
    /// `/` and a segment (possibly empty): `/poll/{channels}`.
    Segment,
    /// Either.
    Any,
}

/// Builds a route from the segment after its first one.
type Make = for<'a> fn(Option<&'a str>) -> Route<'a>;

/// One path of one or both listeners, and what each method there is.
struct Path {
    on: &'static [Listener],
    segment: &'static str,
    tail: Tail,
    /// The `Allow` header of a 405 on this path.
    allow: &'static str,
    methods: &'static [(Method, Make)],
}

const BOTH: &[Listener] = &[Listener::Public, Listener::Internal];
const PUBLIC: &[Listener] = &[Listener::Public];
const INTERNAL: &[Listener] = &[Listener::Internal];

/// The segment of a [`Tail::Segment`] path, which is always there.
fn seg(s: Option<&str>) -> &str {
    s.unwrap_or_default()
}

/// Every route. A subscriber endpoint answers 405 with `Allow: GET, HEAD`,
/// `/ws` included.
// The closure around `Route::Ws` is needed: a tuple variant's constructor
// is not general enough over the segment's lifetime.
#[rustfmt::skip]
#[allow(clippy::redundant_closure)]
const ROUTES: &[Path] = &[
    Path { on: BOTH, segment: "healthz", tail: Tail::None, allow: "GET, HEAD",
        methods: &[(Method::GET, |_| Route::Health), (Method::HEAD, |_| Route::Health)] },
    Path { on: PUBLIC, segment: "poll", tail: Tail::Segment, allow: "GET, HEAD",
        methods: &[(Method::GET, |s| Route::Poll(seg(s))), (Method::HEAD, |s| Route::Poll(seg(s)))] },
    Path { on: PUBLIC, segment: "longpoll", tail: Tail::Segment, allow: "GET, HEAD",
        methods: &[(Method::GET, |s| Route::LongPoll(seg(s))), (Method::HEAD, |s| Route::LongPoll(seg(s)))] },
    Path { on: PUBLIC, segment: "sse", tail: Tail::Segment, allow: "GET, HEAD",
        methods: &[(Method::GET, |s| Route::Sse(seg(s))), (Method::HEAD, |s| Route::Sse(seg(s)))] },
    Path { on: PUBLIC, segment: "ws", tail: Tail::Any, allow: "GET, HEAD",
        methods: &[(Method::GET, |s| Route::Ws(s))] },
    Path { on: INTERNAL, segment: "publish", tail: Tail::Segment, allow: "POST",
        methods: &[(Method::POST, |s| Route::Publish(seg(s)))] },
    Path { on: INTERNAL, segment: "publish", tail: Tail::None, allow: "POST",
        methods: &[(Method::POST, |_| Route::PublishBatch)] },
    Path { on: INTERNAL, segment: "channels", tail: Tail::Segment, allow: "GET, DELETE",
        methods: &[(Method::GET, |s| Route::ChannelInfo(seg(s))), (Method::DELETE, |s| Route::DeleteChannel(seg(s)))] },
];

impl<'a> Route<'a> {
    /// The route of `method` and `path` (without the query) on `listener`.
    /// Fails with 404 `not_found` when the listener has no such path, and
    /// with 405 `method_not_allowed` (and its `Allow`) when the path exists
    /// but not for this method.
    pub fn parse(listener: Listener, method: &Method, path: &'a str) -> Result<Route<'a>, Error> {
        let path = find(listener, path).ok_or_else(|| Error::from(Code::NotFound))?;
        let (entry, tail) = path;
        entry
            .methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, make)| make(tail))
            .ok_or_else(|| Error::method_not_allowed(entry.allow))
    }

    /// Whether the request is held open (a long poll, an SSE stream): what
    /// the server's lean HTTP/1.1 path serves.
    pub fn is_held(&self) -> bool {
        matches!(self, Route::LongPoll(_) | Route::Sse(_))
    }
}

impl Listener {
    /// Whether `path` is one of this listener's routes, whatever the method:
    /// an embedder mounting herald beside its own routes sends these to
    /// herald (which answers a wrong method with 405).
    pub fn has_path(self, path: &str) -> bool {
        find(self, path).is_some()
    }
}

fn find(listener: Listener, path: &str) -> Option<(&'static Path, Option<&str>)> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (first, tail) = (parts.next().unwrap_or_default(), parts.next());
    ROUTES
        .iter()
        .find(|p| {
            p.on.contains(&listener)
                && p.segment == first
                && match p.tail {
                    Tail::None => tail.is_none(),
                    Tail::Segment => tail.is_some(),
                    Tail::Any => true,
                }
        })
        .map(|p| (p, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Listener::{Internal, Public};

    fn parse(l: Listener, m: Method, p: &str) -> Result<Route<'_>, (u16, Option<String>)> {
        Route::parse(l, &m, p).map_err(|e| {
            let res = e.into_response();
            let allow = res
                .headers()
                .get(http::header::ALLOW)
                .map(|v| v.to_str().unwrap().to_string());
            (res.status().as_u16(), allow)
        })
    }

    #[test]
    fn public_routes() {
        assert_eq!(parse(Public, Method::GET, "/healthz"), Ok(Route::Health));
        assert_eq!(
            parse(Public, Method::HEAD, "/poll/a,b"),
            Ok(Route::Poll("a,b"))
        );
        assert_eq!(
            parse(Public, Method::GET, "/longpoll/a"),
            Ok(Route::LongPoll("a"))
        );
        assert_eq!(parse(Public, Method::GET, "/sse/"), Ok(Route::Sse("")));
        assert_eq!(parse(Public, Method::GET, "/ws"), Ok(Route::Ws(None)));
        assert_eq!(
            parse(Public, Method::GET, "/ws/a"),
            Ok(Route::Ws(Some("a")))
        );
        let get_head = Some("GET, HEAD".to_string());
        assert_eq!(
            parse(Public, Method::HEAD, "/ws"),
            Err((405, get_head.clone()))
        );
        assert_eq!(parse(Public, Method::POST, "/sse/a"), Err((405, get_head)));
        for missing in [
            "/",
            "/poll",
            "/healthz/",
            "/publish/a",
            "/channels/a",
            "/nope",
        ] {
            assert_eq!(
                parse(Public, Method::GET, missing),
                Err((404, None)),
                "{missing}"
            );
        }
    }

    #[test]
    fn internal_routes() {
        assert_eq!(
            parse(Internal, Method::POST, "/publish/a"),
            Ok(Route::Publish("a"))
        );
        assert_eq!(
            parse(Internal, Method::POST, "/publish"),
            Ok(Route::PublishBatch)
        );
        assert_eq!(
            parse(Internal, Method::GET, "/channels/a"),
            Ok(Route::ChannelInfo("a"))
        );
        assert_eq!(
            parse(Internal, Method::DELETE, "/channels/a"),
            Ok(Route::DeleteChannel("a"))
        );
        assert_eq!(parse(Internal, Method::HEAD, "/healthz"), Ok(Route::Health));
        assert_eq!(
            parse(Internal, Method::GET, "/publish"),
            Err((405, Some("POST".into())))
        );
        assert_eq!(
            parse(Internal, Method::PUT, "/channels/a"),
            Err((405, Some("GET, DELETE".into())))
        );
        for missing in ["/channels", "/poll/a", "/ws", "/"] {
            assert_eq!(
                parse(Internal, Method::GET, missing),
                Err((404, None)),
                "{missing}"
            );
        }
    }

    #[test]
    fn held_routes_and_paths() {
        assert!(Route::Sse("a").is_held() && Route::LongPoll("a").is_held());
        assert!(!Route::Poll("a").is_held() && !Route::Ws(None).is_held());
        assert!(Public.has_path("/sse/a") && Public.has_path("/ws"));
        assert!(!Public.has_path("/publish/a") && Internal.has_path("/publish"));
    }
}
