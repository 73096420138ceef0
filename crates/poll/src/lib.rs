//! Short polling: `GET /poll/{channels}?since={cursor}` answers at once with
//! what was published after the cursor.
//!
//! The simplest transport and the cheapest to serve when nothing changed:
//! the response's `ETag` is the cursor, so a client that sends it back in
//! `If-None-Match` gets a bodiless 304 while its position is unchanged. The
//! transport keeps no state between requests; the client's cursor is the
//! whole session. It does not wait for messages: that is long polling.

use herald_bus::Start;
use herald_http::{
    Body, Context, Error, Query, Transport, authorize, batch_json, channels, empty, header_str,
    json,
};
use http::{HeaderValue, Request, Response, StatusCode, header};

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
        let start = Query::parse(req.uri().query()).start(limits)?;
        let batch = self
            .ctx
            .setup(self.ctx.bus.read(&channels, &start, limits.max_messages))
            .await?;
        let etag = format!("\"{}\"", batch.cursor);
        let unchanged = matches!(start, Start::From(_))
            && batch.is_empty()
            && header_str(req.headers(), &header::IF_NONE_MATCH)
                .is_some_and(|inm| matches_etag(inm, &etag));
        let mut res = if unchanged {
            let mut res = Response::new(empty());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        } else {
            let body = batch_json(&batch);
            self.ctx.stats.answered(Transport::Poll, &batch, body.len());
            json(StatusCode::OK, body)
        };
        if let Ok(v) = HeaderValue::from_str(&etag) {
            res.headers_mut().insert(header::ETAG, v);
        }
        Ok(res)
    }
}

/// `If-None-Match` is a list of entity tags, possibly weak (`W/"..."`).
fn matches_etag(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
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
    async fn bad_input_is_a_json_400() {
        let (p, _) = poll();
        for uri in ["/poll/a%20b", "/poll/news?since=%%%", "/poll/news?last=x"] {
            let (s, _, v) = get(&p, uri, None).await;
            assert_eq!(s, 400, "{uri}");
            assert!(v["error"]["code"].is_string());
        }
    }
}
