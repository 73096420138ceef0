//! Holding one request: subscribe at the client's cursor, then answer with
//! whichever comes first of messages, the end of the hold, or shutdown.
//!
//! A held request is the request's own future and nothing else: a bus
//! subscription (one watch per channel) and one timer, both dropped with the
//! future, so that a client that goes away unregisters at once because hyper
//! drops its future. There is no spawned task, no queue and no lock held
//! while the response is written. Ordering, replay and gaps are the bus's
//! business; this file only decides when to answer.

use std::time::Duration;

use herald_bus::{Batch, ChannelName, Subscription};
use herald_http::{
    Body, Context, Error, Query, Session, Transport, authorize, batch_json, channels, json,
};
use http::{Request, Response, StatusCode};

use crate::Config;

/// The long-polling transport.
#[derive(Clone)]
pub struct LongPoll {
    ctx: Context,
    config: Config,
}

impl LongPoll {
    /// A long-poll handler over the shared transport context.
    pub fn new(ctx: Context, config: Config) -> Self {
        LongPoll { ctx, config }
    }

    /// Answers `GET /longpoll/{channels}`; `list` is the `{channels}`
    /// segment. Resolves when there is something to say, when the hold
    /// ends or when the server starts draining; errors are JSON responses.
    ///
    /// What the future keeps while it holds is what waiting needs and no
    /// more: the request is checked and subscribed in a future of its own,
    /// on the heap, which is freed when the hold begins, so that a poll
    /// held for a minute keeps neither the request's head nor the room an
    /// authorization call or an engine read takes.
    pub fn handle<'a, B: Send + Sync + 'a>(
        &'a self,
        req: Request<B>,
        list: &str,
    ) -> impl Future<Output = Response<Body>> + Send + use<'a, B> {
        let channels = channels(list, &self.ctx.limits);
        let prepare = Box::pin(async move { self.prepare(&req, channels?).await });
        async move {
            match prepare.await {
                Ok(held) => self.hold(held).await,
                Err(e) => e.into_response(),
            }
        }
    }

    /// Checks the request and subscribes: everything that needs it.
    async fn prepare<B>(
        &self,
        req: &Request<B>,
        channels: Vec<ChannelName>,
    ) -> Result<Held, Error> {
        let limits = &self.ctx.limits;
        let query = Query::parse(req.uri().query());
        let start = query.start(limits)?;
        let hold = self.config.hold(&query)?;
        let grant = authorize(&self.ctx, req, &channels, "longpoll").await?;
        // A hold never outlasts the token that allowed it.
        let hold = grant.remaining().map_or(hold, |left| hold.min(left));
        // Subscribing registers the watches before the start position is
        // resolved, so nothing published from here on can slip past.
        let sub = self
            .ctx
            .setup(self.ctx.bus.subscribe(&channels, &start))
            .await?;
        let session = self.ctx.stats.session(Transport::LongPoll, channels.len());
        Ok(Held { sub, hold, session })
    }

    /// Waits. Not an async fn, which would keep `held` twice (as given and
    /// as the body's bindings) in every held poll.
    fn hold(&self, held: Held) -> impl Future<Output = Response<Body>> + Send + '_ {
        let Held {
            mut sub,
            hold,
            mut session,
        } = held;
        async move {
            let limits = &self.ctx.limits;
            let batch = tokio::select! {
                // Polled first: what is already retained answers at once,
                // even while draining.
                biased;
                batch = sub.next(limits.max_messages) => {
                    session.reason("answered");
                    batch
                }
                () = self.ctx.shutdown.cancelled() => {
                    session.reason("server shutting down");
                    nothing(sub.cursor())
                }
                () = tokio::time::sleep(hold) => {
                    session.reason("hold ended");
                    nothing(sub.cursor())
                }
            };
            let body = batch_json(&batch);
            session.batch(&batch);
            session.bytes(body.len());
            json(StatusCode::OK, body)
        }
    }
}

/// A checked long poll, ready to wait.
struct Held {
    sub: Subscription,
    hold: Duration,
    session: Session,
}

/// The answer when the hold ends without news: no messages and the
/// position the request started from, so the client simply sends it again.
fn nothing(cursor: herald_bus::Cursor) -> Batch {
    Batch::unchanged(cursor)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use herald_bus::{Bus, ChannelName, Draft, Payload};
    use herald_http::Limits;
    use http_body_util::BodyExt;
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    struct Fixture {
        lp: LongPoll,
        bus: Bus,
        shutdown: CancellationToken,
    }

    fn fixture() -> Fixture {
        let bus = Bus::memory(herald_bus::Config::default());
        let shutdown = CancellationToken::new();
        let ctx = Context {
            bus: bus.clone(),
            limits: Limits::default(),
            shutdown: shutdown.clone(),
            stats: Default::default(),
            auth: Default::default(),
        };
        Fixture {
            lp: LongPoll::new(ctx, Config::default()),
            bus,
            shutdown,
        }
    }

    /// Runs one long poll; answers status, JSON body and how long it took
    /// (in paused time, exact).
    async fn get(lp: &LongPoll, uri: &str) -> (StatusCode, serde_json::Value, Duration) {
        let req = Request::get(uri).body(()).unwrap();
        let list = uri
            .trim_start_matches("/longpoll/")
            .split('?')
            .next()
            .unwrap();
        let t = Instant::now();
        let res = lp.handle(req, list).await;
        let took = t.elapsed();
        let status = res.status();
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap(), took)
    }

    async fn publish(bus: &Bus, channel: &str, data: &'static str) {
        bus.publish(vec![Draft {
            channel: ChannelName::new(channel).unwrap(),
            event: None,
            payload: Payload::text(data).unwrap(),
        }])
        .await
        .unwrap();
    }

    fn spawn_get(
        lp: &LongPoll,
        uri: &str,
    ) -> tokio::task::JoinHandle<(StatusCode, serde_json::Value, Duration)> {
        let (lp, uri) = (lp.clone(), uri.to_string());
        tokio::spawn(async move { get(&lp, &uri).await })
    }

    /// Lets spawned requests run until they are parked on their watches.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hold_ends_empty_with_the_same_cursor_after_the_clamped_timeout() {
        let f = fixture();
        let (_, first, _) = get(&f.lp, "/longpoll/news?timeout=3").await;
        let cursor = first["cursor"].as_str().unwrap().to_string();
        let secs = Duration::from_secs;
        for (timeout, held) in [("", 25), ("&timeout=10", 10), ("&timeout=0", 1)] {
            let uri = format!("/longpoll/news?since={cursor}{timeout}");
            let (s, v, took) = get(&f.lp, &uri).await;
            assert_eq!(s, 200);
            assert_eq!(took, secs(held), "{timeout}");
            assert_eq!(v["messages"].as_array().unwrap().len(), 0);
            assert_eq!(v["cursor"], cursor.as_str());
            assert_eq!(v["gap"], false);
        }
        let uri = format!("/longpoll/news?since={cursor}&timeout=100");
        let (_, _, took) = get(&f.lp, &uri).await;
        assert_eq!(took, secs(55), "clamped to the ceiling");
    }

    #[tokio::test(start_paused = true)]
    async fn retained_messages_answer_at_once() {
        let f = fixture();
        let (_, v, _) = get(&f.lp, "/longpoll/news?timeout=1").await;
        let cursor = v["cursor"].as_str().unwrap().to_string();
        publish(&f.bus, "news", "one").await;
        publish(&f.bus, "news", "two").await;
        let (_, v, took) = get(&f.lp, &format!("/longpoll/news?since={cursor}")).await;
        assert_eq!(took, Duration::ZERO);
        assert_eq!(v["messages"][0]["data"], "one");
        assert_eq!(v["messages"][1]["data"], "two");
        let (_, v, took) = get(&f.lp, "/longpoll/news?last=1").await;
        assert_eq!(took, Duration::ZERO);
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
        assert_eq!(v["messages"][0]["data"], "two");
    }

    #[tokio::test(start_paused = true)]
    async fn without_since_waits_for_the_next_message_only() {
        let f = fixture();
        publish(&f.bus, "news", "old").await;
        let held = spawn_get(&f.lp, "/longpoll/news");
        settle().await;
        tokio::time::advance(Duration::from_secs(5)).await;
        publish(&f.bus, "news", "new").await;
        let (s, v, took) = held.await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(took, Duration::from_secs(5));
        let messages = v["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0]["data"], "new");
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_on_any_channel_of_the_hold_releases_it() {
        let f = fixture();
        let held = spawn_get(&f.lp, "/longpoll/a,b,c");
        settle().await;
        publish(&f.bus, "b", "to b").await;
        let (_, v, took) = held.await.unwrap();
        assert_eq!(took, Duration::ZERO);
        assert_eq!(v["messages"][0]["channel"], "b");
        let cursor = v["cursor"].as_str().unwrap().to_string();
        // The new cursor covers all three channels: the next hold on them
        // sees only what comes after.
        let held = spawn_get(&f.lp, &format!("/longpoll/a,b,c?since={cursor}"));
        settle().await;
        publish(&f.bus, "c", "to c").await;
        let (_, v, _) = held.await.unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
        assert_eq!(v["messages"][0]["data"], "to c");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_answers_held_requests_at_once_with_their_cursor() {
        let f = fixture();
        let (_, v, _) = get(&f.lp, "/longpoll/news?timeout=1").await;
        let cursor = v["cursor"].as_str().unwrap().to_string();
        let held = spawn_get(&f.lp, &format!("/longpoll/news?since={cursor}"));
        settle().await;
        tokio::time::advance(Duration::from_secs(2)).await;
        f.shutdown.cancel();
        let (s, v, took) = held.await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(took, Duration::from_secs(2));
        assert_eq!(v["messages"].as_array().unwrap().len(), 0);
        assert_eq!(v["cursor"], cursor.as_str());
        // Requests that arrive while draining are not held either.
        let (_, _, took) = get(&f.lp, &format!("/longpoll/news?since={cursor}")).await;
        assert_eq!(took, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn deleting_the_channel_answers_with_gone() {
        let f = fixture();
        publish(&f.bus, "news", "x").await;
        let held = spawn_get(&f.lp, "/longpoll/news,other");
        settle().await;
        f.bus
            .delete(&ChannelName::new("news").unwrap())
            .await
            .unwrap();
        let (s, v, took) = held.await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(took, Duration::ZERO);
        assert_eq!(v["gone"], serde_json::json!(["news"]));
        assert_eq!(v["gap"], true);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_unregisters_its_watches() {
        let f = fixture();
        let news = ChannelName::new("news").unwrap();
        let held: Vec<_> = (0..3).map(|_| spawn_get(&f.lp, "/longpoll/news")).collect();
        settle().await;
        assert_eq!(f.bus.info(&news).await.unwrap().subscribers, 3);
        for h in &held {
            h.abort();
        }
        settle().await;
        assert_eq!(f.bus.info(&news).await.unwrap().subscribers, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_requests_are_json_400s() {
        let f = fixture();
        for (uri, code) in [
            ("/longpoll/news?timeout=-1", "invalid_query"),
            ("/longpoll/news?timeout=soon", "invalid_query"),
            ("/longpoll/news?since=%%%", "invalid_cursor"),
            ("/longpoll/a%20b", "invalid_channel"),
        ] {
            let (s, v, took) = get(&f.lp, uri).await;
            assert_eq!(
                (s.as_u16(), v["error"]["code"].as_str()),
                (400, Some(code)),
                "{uri}"
            );
            assert_eq!(took, Duration::ZERO);
        }
    }
}
