//! Short polling: `GET /poll/{channels}?since={cursor}` answers at once with
//! what was published after the cursor.
//!
//! The simplest transport and the cheapest to serve when nothing changed:
//! the response's `ETag` is the cursor, so a client that sends it back in
//! `If-None-Match` gets a bodiless 304 while its position is unchanged. The
//! transport keeps no state between requests; the client's cursor is the
//! whole session. It does not wait for messages: that is long polling.
//!
//! The 304 is the hot path (a poller asks again and again while nothing
//! happens), so it is decided on values the request already holds: the
//! position read is compared with the parsed `since` (a cursor has exactly
//! one text, so equal cursors mean the ETag is the `since` text), the
//! `If-None-Match` text is compared with that text, and the 304's `ETag` is
//! the request's own header value. Nothing is encoded or formatted. A 200
//! of one message takes its body and `ETag` from the message's cache
//! ([`herald_http::only_message`]).

use std::borrow::Cow;

use bytes::Bytes;
use herald_bus::{Encoding, Message, Start};
use herald_http::{
    Body, Context, Error, Query, Transport, authorize, batch_json, channels, empty, header_str,
    json, only_message,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};

/// The short-polling transport.
#[derive(Clone)]
pub struct Poll {
    ctx: Context,
}

impl Poll {
    /// A poll handler over the shared transport context.
    pub fn new(ctx: Context) -> Self {
        Poll { ctx }
    }

    /// Answers `GET /poll/{channels}`; `list` is the `{channels}` segment.
    pub async fn handle<B>(&self, req: &Request<B>, list: &str) -> Response<Body> {
        self.respond(req, list)
            .await
            .unwrap_or_else(Error::into_response)
    }

    async fn respond<B>(&self, req: &Request<B>, list: &str) -> Result<Response<Body>, Error> {
        let limits = &self.ctx.limits;
        let channels = channels(list, limits)?;
        // Checked on every request: a poll holds nothing past it.
        authorize(&self.ctx, req, &channels, "poll").await?;
        let query = Query::parse(req.uri().query());
        let start = query.start(limits)?;
        let batch = self
            .ctx
            .setup(self.ctx.bus.read(&channels, &start, limits.max_messages))
            .await?;
        let inm = header_str(req.headers(), &header::IF_NONE_MATCH);
        if let (Start::From(since), Some(inm), true) = (&start, inm, batch.is_empty()) {
            // The position did not move: the ETag is the text sent.
            let etag = if batch.cursor == *since {
                Cow::Borrowed(query.get("since").unwrap_or_default())
            } else {
                Cow::Owned(batch.cursor.to_string())
            };
            if matches_etag(inm, &etag) {
                return Ok(not_modified(req.headers(), &etag));
            }
        }
        let (body, etag) = match only_message(&batch) {
            Some(m) => (batch_json(&batch), etag_value(m.encoded::<ETag>())),
            None => (
                batch_json(&batch),
                etag_value(Bytes::from(format!("\"{}\"", batch.cursor))),
            ),
        };
        self.ctx.stats.answered(Transport::Poll, &batch, body.len());
        let mut res = json(StatusCode::OK, body);
        if let Some(v) = etag {
            res.headers_mut().insert(header::ETAG, v);
        }
        Ok(res)
    }
}

/// The quoted cursor after a message: the `ETag` of a one-message answer,
/// cached per message like its body.
struct ETag;

impl Encoding for ETag {
    fn encode(m: &Message) -> Bytes {
        Bytes::from(format!("\"{}\"", herald_bus::Cursor::after(m)))
    }
}

fn etag_value(quoted: Bytes) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(quoted).ok()
}

/// The 304 for entity tag `tag` (unquoted). Its `ETag` is the request's
/// `If-None-Match` value when that is exactly the tag, as a poller sends
/// it, so the answer copies nothing.
fn not_modified(request: &HeaderMap, tag: &str) -> Response<Body> {
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::NOT_MODIFIED;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let etag = match request.get(header::IF_NONE_MATCH) {
        Some(v) if is_quoted(v.as_bytes(), tag.as_bytes()) => Some(v.clone()),
        _ => etag_value(Bytes::from(format!("\"{tag}\""))),
    };
    if let Some(v) = etag {
        h.insert(header::ETAG, v);
    }
    res
}

/// `If-None-Match` is a list of entity tags, possibly weak (`W/"..."`);
/// `tag` is unquoted.
fn matches_etag(header: &str, tag: &str) -> bool {
    // What a poller sends: exactly the tag it was given.
    is_quoted(header.as_bytes(), tag.as_bytes())
        || header
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || is_quoted(t.as_bytes(), tag.as_bytes()))
}

/// Whether `quoted` is `tag` in double quotes.
fn is_quoted(quoted: &[u8], tag: &[u8]) -> bool {
    quoted.len() == tag.len() + 2
        && quoted.first() == Some(&b'"')
        && quoted.last() == Some(&b'"')
        && &quoted[1..quoted.len() - 1] == tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_bus::{Bus, ChannelName, Config, Draft, Payload};
    use herald_http::Limits;
    use http_body_util::BodyExt;

    fn poll() -> (Poll, Bus) {
        let bus = Bus::memory(Config::default());
        let ctx = Context {
            bus: bus.clone(),
            limits: Limits::default(),
            shutdown: Default::default(),
            stats: Default::default(),
            auth: Default::default(),
        };
        (Poll::new(ctx), bus)
    }

    async fn get(
        p: &Poll,
        uri: &str,
        inm: Option<&str>,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let mut req = Request::get(uri);
        if let Some(v) = inm {
            req = req.header(header::IF_NONE_MATCH, v);
        }
        let req = req.body(()).unwrap();
        let list = uri.trim_start_matches("/poll/").split('?').next().unwrap();
        let res = p.handle(&req, list).await;
        let status = res.status();
        let etag = res
            .headers()
            .get(header::ETAG)
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (status, etag, v)
    }

    #[tokio::test]
    async fn poll_then_304_until_something_is_published() {
        let (p, bus) = poll();
        let (s, etag, v) = get(&p, "/poll/news", None).await;
        assert_eq!(s, 200);
        assert_eq!(v["messages"].as_array().unwrap().len(), 0);
        let cursor = v["cursor"].as_str().unwrap().to_string();
        assert_eq!(etag.as_deref(), Some(format!("\"{cursor}\"").as_str()));
        let uri = format!("/poll/news?since={cursor}");
        let (s, _, _) = get(&p, &uri, etag.as_deref()).await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        let ch = ChannelName::new("news").unwrap();
        bus.publish(vec![Draft {
            channel: ch,
            event: None,
            payload: Payload::text("hi").unwrap(),
        }])
        .await
        .unwrap();
        let (s, _, v) = get(&p, &uri, etag.as_deref()).await;
        assert_eq!(s, 200);
        assert_eq!(v["messages"][0]["data"], "hi");
    }

    #[tokio::test]
    async fn the_304_echoes_the_tag_and_any_listed_or_weak_tag_matches() {
        let (p, bus) = poll();
        let (_, etag, _) = get(&p, "/poll/news", None).await;
        let etag = etag.unwrap();
        let since = etag.trim_matches('"');
        let uri = format!("/poll/news?since={since}");
        for inm in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_string(),
        ] {
            let (s, got, _) = get(&p, &uri, Some(&inm)).await;
            assert_eq!(s, StatusCode::NOT_MODIFIED, "{inm}");
            assert_eq!(got.as_deref(), Some(etag.as_str()), "{inm}");
        }
        for inm in ["\"other\"", since, "\"\""] {
            let (s, _, _) = get(&p, &uri, Some(inm)).await;
            assert_eq!(s, 200, "{inm}");
        }
        // After a publish: one message, whose body and ETag are shared by
        // every poller and lead to the next 304.
        bus.publish(vec![Draft {
            channel: ChannelName::new("news").unwrap(),
            event: None,
            payload: Payload::text("hi").unwrap(),
        }])
        .await
        .unwrap();
        let (s, next, v) = get(&p, &uri, Some(&etag)).await;
        assert_eq!(s, 200);
        let next = next.unwrap();
        assert_eq!(next, format!("\"{}\"", v["cursor"].as_str().unwrap()));
        let (_, again, _) = get(&p, &uri, Some(&etag)).await;
        assert_eq!(again.as_ref(), Some(&next));
        let uri = format!("/poll/news?since={}", next.trim_matches('"'));
        let (s, _, _) = get(&p, &uri, Some(&next)).await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn bad_input_is_a_json_400() {
        let (p, _) = poll();
        for uri in ["/poll/a%20b", "/poll/news?since=%%%", "/poll/news?last=x"] {
            let (s, _, v) = get(&p, uri, None).await;
            assert_eq!(s, 400, "{uri}");
            assert!(v["error"]["code"].is_string());
        }
    }
}
