//! Server-Sent Events: `GET /sse/{channels}` answers an endless
//! `text/event-stream` with one event per message.
//!
//! What browsers use for one-way push: the EventSource reconnects by itself
//! and sends the id of the last event it saw in `Last-Event-ID`, and every
//! id herald sends is a cursor, so a reconnect resumes exactly after the last
//! event the browser received, on every channel of the stream. Where it
//! cannot (the position fell out of the retained history, a channel was
//! deleted) the stream says so with a `herald.gap` event instead of
//! skipping silently.
//!
//! This crate owns the request (where to start, the response head), the
//! stream (heartbeat, lifetime, shutdown; `stream.rs`) and the wire format
//! (`frame.rs`). It does not own ordering, replay or gap detection (the
//! bus), routing or configuration sources (the server).

mod config;
mod frame;
mod jitter;
mod stream;

use std::sync::Arc;

use herald_bus::{Cursor, Start};
use herald_http::{
    Body, Code, Context, Direct, Error, Query, Transport, authorize, channels, empty,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, header};
use tokio::time::Instant;

pub use config::Config;

use stream::Events;

/// The request header an EventSource sends on reconnection.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The SSE transport.
#[derive(Clone)]
pub struct Sse {
    ctx: Context,
    config: Config,
}

impl Sse {
    /// An SSE handler over the shared transport context.
    pub fn new(ctx: Context, config: Config) -> Self {
        Sse { ctx, config }
    }

    /// Answers `GET /sse/{channels}`; `list` is the `{channels}` segment.
    ///
    /// The stream starts after the `Last-Event-ID` header's cursor when it
    /// is present (a reconnect), else at `?since=` or `?last=`, else now. A
    /// malformed `Last-Event-ID` is a 400 `invalid_cursor`, never a silent
    /// restart from now.
    pub async fn handle<B>(&self, req: &Request<B>, list: &str) -> Response<Body> {
        self.respond(req, list)
            .await
            .unwrap_or_else(Error::into_response)
    }

    async fn respond<B>(&self, req: &Request<B>, list: &str) -> Result<Response<Body>, Error> {
        let channels = channels(list, &self.ctx.limits)?;
        let grant = authorize(&self.ctx, req, &channels, "sse").await?;
        let start = self.start(req)?;
        if req.method() == Method::HEAD {
            return Ok(event_stream(empty()));
        }
        let mut sub = self
            .ctx
            .setup(self.ctx.bus.subscribe(&channels, &start))
            .await?;
        let mut session = self.ctx.stats.session(Transport::Sse, channels.len());
        if let (Some(socket), [_]) = (req.extensions().get::<Direct>(), &channels[..]) {
            // The server offers the socket: while the stream waits with
            // everything written, the publishing task writes its events.
            sub.deliver_through(Arc::new(stream::Outlet {
                socket: socket.clone(),
                tally: session.tally(),
            }));
        }
        let events = Events {
            single: channels.len() == 1,
            sub,
            shutdown: self.ctx.shutdown.clone(),
            limit: self.ctx.limits.max_messages,
            heartbeat: self.config.heartbeat,
            // Jittered per stream (jitter.rs): streams opened together
            // neither end nor reconnect together.
            end: self
                .config
                .max_lifetime
                .map(|d| Instant::now() + jitter::lifetime(d)),
            expires: grant.remaining().map(|left| Instant::now() + left),
            opening: Some(frame::opening(jitter::retry(self.config.retry))),
            finished: false,
            session,
        };
        Ok(event_stream(events.into_body()))
    }

    fn start<B>(&self, req: &Request<B>) -> Result<Start, Error> {
        let invalid = || {
            Error::new(
                Code::InvalidCursor,
                "Last-Event-ID is not a cursor this server issued",
            )
        };
        match req.headers().get(&LAST_EVENT_ID) {
            // An empty id is the EventSource's "no id yet" (it sends none,
            // but a proxy or a hand-written client may).
            Some(v) if !v.as_bytes().trim_ascii().is_empty() => {
                let text = v.to_str().map_err(|_| invalid())?.trim();
                Ok(Start::From(Cursor::parse(text).map_err(|_| invalid())?))
            }
            _ => Query::parse(req.uri().query()).start(&self.ctx.limits),
        }
    }
}

/// The response head of an event stream: no caching, no proxy buffering,
/// no length.
fn event_stream(body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    res
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::frame::tests::{Event, parse};
    use herald_bus::{Bus, ChannelName, Draft, EventName, Payload};
    use herald_http::Limits;
    use http::StatusCode;
    use http_body_util::BodyExt;
    use tokio::time::sleep;
    use tokio_util::sync::CancellationToken;

    struct Setup {
        sse: Sse,
        bus: Bus,
        shutdown: CancellationToken,
    }

    fn setup(config: Config, history: usize) -> Setup {
        let bus = Bus::memory(herald_bus::Config {
            max_messages: history,
            ..Default::default()
        });
        let shutdown = CancellationToken::new();
        let ctx = Context {
            bus: bus.clone(),
            limits: Limits::default(),
            shutdown: shutdown.clone(),
            stats: Default::default(),
            auth: Default::default(),
        };
        Setup {
            sse: Sse::new(ctx, config),
            bus,
            shutdown,
        }
    }

    async fn open(s: &Setup, uri: &str, last_event_id: Option<&str>) -> Response<Body> {
        let mut req = Request::get(uri);
        if let Some(id) = last_event_id {
            req = req.header(LAST_EVENT_ID, id);
        }
        let req = req.body(()).unwrap();
        let list = uri.trim_start_matches("/sse/").split('?').next().unwrap();
        s.sse.handle(&req, list).await
    }

    /// The next body frame as text; `None` once the stream ended.
    async fn frame(body: &mut Body) -> Option<String> {
        let f = body.frame().await?.unwrap();
        let bytes = f.into_data().unwrap();
        Some(String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Opens a stream and consumes the opening frame.
    async fn stream(s: &Setup, uri: &str, last_event_id: Option<&str>) -> Body {
        let res = open(s, uri, last_event_id).await;
        assert_eq!(res.status(), StatusCode::OK);
        let mut body = res.into_body();
        let first = frame(&mut body).await.unwrap();
        assert!(first.starts_with(": ok\n"), "{first:?}");
        body
    }

    async fn publish(bus: &Bus, channel: &str, data: &str) -> Cursor {
        let p = bus.publish(vec![draft(channel, None, data)]).await.unwrap();
        p[0].cursor.clone()
    }

    /// Publishes `(channel, event, data)` messages in one call.
    async fn publish_batch(bus: &Bus, batch: &[(&str, Option<&str>, &str)]) {
        let drafts = batch.iter().map(|&(c, e, d)| draft(c, e, d)).collect();
        bus.publish(drafts).await.unwrap();
    }

    fn draft(channel: &str, event: Option<&str>, data: &str) -> Draft {
        Draft {
            channel: ChannelName::new(channel).unwrap(),
            event: event.map(|e| EventName::new(e).unwrap()),
            payload: Payload::text(data.to_string()).unwrap(),
        }
    }

    async fn events(body: &mut Body) -> Vec<Event> {
        parse(&frame(body).await.unwrap()).events
    }

    /// What a reconnect to `list` with Last-Event-ID `id` would read first.
    async fn after(s: &Setup, list: &str, id: &str) -> herald_bus::Batch {
        let channels = ChannelName::parse_list(list, 32).unwrap();
        let from = Start::From(Cursor::parse(id).unwrap());
        s.bus.read(&channels, &from, 10).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn opening_frame_headers_and_retry() {
        let s = setup(
            Config {
                retry: Duration::from_millis(1234),
                ..Config::default()
            },
            100,
        );
        let res = open(&s, "/sse/news", None).await;
        let h = res.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/event-stream");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert_eq!(h["x-accel-buffering"], "no");
        assert!(h.get(header::CONTENT_LENGTH).is_none());
        let mut body = res.into_body();
        let at = Instant::now();
        let first = frame(&mut body).await.unwrap();
        assert_eq!(at.elapsed(), Duration::ZERO, "the first frame is immediate");
        let retry = parse(&first).retry.unwrap();
        assert!((987..=1481).contains(&retry), "1234 ms ± 20 %: {retry}");
        let head = Request::head("/sse/news").body(()).unwrap();
        let res = s.sse.handle(&head, "news").await;
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "HEAD subscribes to nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_after_idle_time_restarted_by_every_write() {
        let s = setup(Config::default(), 100);
        let mut body = stream(&s, "/sse/news", None).await;
        let t0 = Instant::now();
        assert_eq!(frame(&mut body).await.unwrap(), ": heartbeat\n\n");
        assert_eq!(t0.elapsed(), Duration::from_secs(15));
        let bus = s.bus.clone();
        tokio::spawn(async move {
            sleep(Duration::from_secs(10)).await;
            publish(&bus, "news", "hi").await;
        });
        assert_eq!(events(&mut body).await[0].data, "hi");
        assert_eq!(t0.elapsed(), Duration::from_secs(25));
        assert_eq!(frame(&mut body).await.unwrap(), ": heartbeat\n\n");
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(40),
            "15 s after the event"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_lifetime_ends_the_stream() {
        let s = setup(
            Config {
                max_lifetime: Some(Duration::from_secs(40)),
                ..Config::default()
            },
            100,
        );
        let t0 = Instant::now();
        let mut body = stream(&s, "/sse/news", None).await;
        assert_eq!(frame(&mut body).await.unwrap(), ": heartbeat\n\n");
        assert_eq!(frame(&mut body).await.unwrap(), ": heartbeat\n\n");
        let ended = loop {
            match frame(&mut body).await {
                Some(_) => continue,
                None => break t0.elapsed(),
            }
        };
        assert!(
            (Duration::from_secs(32)..=Duration::from_secs(40)).contains(&ended),
            "80 % to 100 % of the lifetime: {ended:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_stream() {
        let s = setup(Config::default(), 100);
        let mut body = stream(&s, "/sse/news", None).await;
        let token = s.shutdown.clone();
        tokio::spawn(async move {
            sleep(Duration::from_secs(1)).await;
            token.cancel();
        });
        let t0 = Instant::now();
        assert_eq!(frame(&mut body).await, None);
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_batch_is_one_frame_and_ids_resume_after_each_event() {
        let s = setup(Config::default(), 100);
        let mut body = stream(&s, "/sse/news", None).await;
        let batch = [
            ("news", None, "a"),
            ("news", Some("ev"), "b\nc"),
            ("news", None, "d"),
        ];
        publish_batch(&s.bus, &batch).await;
        let evs = events(&mut body).await;
        let got: Vec<_> = evs
            .iter()
            .map(|e| (e.event.as_str(), e.data.as_str()))
            .collect();
        assert_eq!(got, [("message", "a"), ("ev", "b\nc"), ("message", "d")]);
        for (i, e) in evs.iter().enumerate() {
            let rest = after(&s, "news", &e.id).await;
            assert_eq!(rest.messages.len(), 2 - i, "after event {i}");
            assert!(!rest.has_gap());
        }
    }

    #[tokio::test]
    async fn multi_channel_ids_cover_every_channel() {
        let s = setup(Config::default(), 100);
        let mut body = stream(&s, "/sse/a,b,c", None).await;
        let batch = [
            ("a", None, "a1"),
            ("b", None, "b1"),
            ("a", None, "a2"),
            ("c", None, "c1"),
        ];
        publish_batch(&s.bus, &batch).await;
        let evs = events(&mut body).await;
        // Messages of the same millisecond may interleave either way across
        // channels; each channel's own order is kept.
        let data: Vec<_> = evs.iter().map(|e| e.data.as_str()).collect();
        let a: Vec<_> = data.iter().filter(|d| d.starts_with('a')).collect();
        assert_eq!(a, [&"a1", &"a2"]);
        assert_eq!(data.len(), 4);
        for (i, e) in evs.iter().enumerate() {
            let rest = after(&s, "a,b,c", &e.id).await;
            let mut rest: Vec<_> = rest.messages.iter().map(|m| m.payload.as_str()).collect();
            let mut want = data[i + 1..].to_vec();
            rest.sort_unstable();
            want.sort_unstable();
            assert_eq!(rest, want, "resuming after event {i}");
        }
    }

    #[tokio::test]
    async fn last_event_id_wins_and_a_malformed_one_is_refused() {
        let s = setup(Config::default(), 100);
        let first = publish(&s.bus, "news", "1").await;
        let second = publish(&s.bus, "news", "2").await;
        publish(&s.bus, "news", "3").await;
        let uri = format!("/sse/news?since={first}");
        let mut body = stream(&s, &uri, Some(&second.to_string())).await;
        assert_eq!(events(&mut body).await[0].data, "3");
        let mut body = stream(&s, &uri, Some("  ")).await;
        let data: Vec<_> = events(&mut body)
            .await
            .into_iter()
            .map(|e| e.data)
            .collect();
        assert_eq!(data, ["2", "3"], "an empty Last-Event-ID is no id");
        for bad in ["garbage!", "AQ", "x y"] {
            let res = open(&s, &uri, Some(bad)).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], "invalid_cursor");
        }
        let res = open(&s, "/sse/news?last=x", None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_gap_is_an_event_whose_id_resumes_after_it() {
        let s = setup(Config::default(), 2);
        let b1 = publish(&s.bus, "b", "b1").await;
        let a1 = publish(&s.bus, "a", "a1").await;
        for d in ["a2", "a3", "a4"] {
            publish(&s.bus, "a", d).await;
        }
        // Behind the history on a, up to date on b.
        let old = Cursor::combine([a1, b1]).unwrap();
        for list in ["a", "a,b"] {
            let mut body = stream(&s, &format!("/sse/{list}?since={old}"), None).await;
            let evs = events(&mut body).await;
            assert_eq!(evs[0].event, "herald.gap", "{list}");
            let v: serde_json::Value = serde_json::from_str(&evs[0].data).unwrap();
            assert_eq!(
                v,
                serde_json::json!({"channels": ["a"], "reason": "history"})
            );
            let data: Vec<_> = evs[1..].iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, ["a3", "a4"]);
            for (i, e) in evs.iter().enumerate() {
                let rest = after(&s, list, &e.id).await;
                assert!(!rest.has_gap(), "{list}: no second gap after event {i}");
                assert_eq!(rest.messages.len(), 2 - i, "{list}: after event {i}");
            }
        }
    }

    #[tokio::test]
    async fn deleted_channels_are_reported_and_the_last_one_ends_the_stream() {
        let s = setup(Config::default(), 100);
        let mut body = stream(&s, "/sse/a,b", None).await;
        s.bus.delete(&ChannelName::new("a").unwrap()).await.unwrap();
        let evs = events(&mut body).await;
        assert_eq!(evs[0].event, "herald.gap");
        let v: serde_json::Value = serde_json::from_str(&evs[0].data).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"channels": ["a"], "reason": "deleted"})
        );
        publish(&s.bus, "b", "still here").await;
        assert_eq!(events(&mut body).await[0].data, "still here");
        s.bus.delete(&ChannelName::new("b").unwrap()).await.unwrap();
        assert_eq!(events(&mut body).await[0].event, "herald.gap");
        assert_eq!(frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn a_stalled_reader_holds_only_its_cursor() {
        let s = setup(Config::default(), 10);
        let mut body = stream(&s, "/sse/news", None).await;
        // The body is not read while 1,000 messages are published: nothing
        // queues up; the stream reads the shared history when read again.
        for i in 0..1000 {
            publish(&s.bus, "news", &i.to_string()).await;
        }
        let evs = events(&mut body).await;
        assert_eq!(evs[0].event, "herald.gap");
        let data: Vec<_> = evs[1..].iter().map(|e| e.data.as_str()).collect();
        let want: Vec<String> = (990..1000).map(|i| i.to_string()).collect();
        assert_eq!(data, want);
    }
}
