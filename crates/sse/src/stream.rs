//! One SSE response body: a subscription turned into frames, with the
//! heartbeat, the lifetime limit and shutdown.
//!
//! The body is pulled, never pushed: hyper polls it only when the
//! connection can take more, and only then is the subscription read. A
//! reader that stops reading therefore costs its cursor and nothing more;
//! when it resumes after falling behind the retained history, the bus
//! reports a gap and the stream sends the gap event. There is no queue, and
//! one frame holds at most one batch (`max_messages` messages).
//!
//! Per stream there is one timer (the next heartbeat or the end of the
//! lifetime, whichever is sooner); the position lives in the subscription,
//! and each batch says where it starts, from which ids are made. Event bytes themselves are cached per
//! message by the frame module.

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use herald_bus::{Batch, Message, Run, Sent, Subscription};
use herald_http::{Body, Direct, Session, Tally};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::frame::{self, Reason};

/// Where the publishing task writes a single-channel stream's events: the
/// connection's socket, as the server offered it.
pub(crate) struct Outlet {
    pub(crate) socket: Direct,
    pub(crate) tally: Arc<Tally>,
}

impl herald_bus::Outlet for Outlet {
    fn send(&self, message: &Arc<Message>) -> Sent {
        self.send_many(std::slice::from_ref(message)).1
    }

    /// The events of a run of messages, as one piece.
    fn send_many(&self, messages: &[Arc<Message>]) -> (usize, Sent) {
        let run = Run::of(messages, frame::whole);
        let sent = self.socket.0.send(&run.bytes);
        if sent == Sent::Nothing {
            return (0, sent);
        }
        self.tally.delivered(run.count, run.bytes.len());
        (run.count, sent)
    }
}

/// The state of one open stream.
pub(crate) struct Events {
    /// Where the stream reads from.
    pub(crate) sub: Subscription,
    /// Cancelled when the server drains: the stream then ends.
    pub(crate) shutdown: CancellationToken,
    /// Messages per frame.
    pub(crate) limit: usize,
    /// Idle time before a heartbeat.
    pub(crate) heartbeat: Duration,
    /// When the stream ends by itself (maximum lifetime), if ever.
    pub(crate) end: Option<Instant>,
    /// When the subscriber's token expires, if it does: the stream then
    /// sends `herald.expired` and ends, even in the middle of a burst.
    pub(crate) expires: Option<Instant>,
    /// The first frame, until it is written.
    pub(crate) opening: Option<Bytes>,
    /// The stream has one channel: its events are cached whole, ids and
    /// all, and shared with every other stream of the channel.
    pub(crate) single: bool,
    /// Every channel was deleted: end after this frame.
    pub(crate) finished: bool,
    /// Counts what the stream sends; logs its end when dropped.
    pub(crate) session: Session,
}

enum Next {
    Batch(Batch),
    Tick,
    Stop,
}

impl Events {
    /// The response body: frames until shutdown, the lifetime's end, or the
    /// deletion of every channel; the client disconnecting drops it.
    pub(crate) fn into_body(self) -> Body {
        let frames = futures::stream::unfold(self, |mut events| async move {
            let bytes = events.next_frame().await?;
            events.session.bytes(bytes.len());
            Some((Ok(Frame::data(bytes)), events))
        });
        StreamBody::new(frames).boxed_unsync()
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(open) = self.opening.take() {
            return Some(open);
        }
        if self.finished {
            self.session.reason("every channel deleted");
            return None;
        }
        // Checked before reading, so that a channel that never pauses does
        // not keep an expired token reading.
        if self.is_expired() {
            return Some(self.expire());
        }
        // One timer: the heartbeat is due `heartbeat` after the last write,
        // which is when this future was created.
        let due = Instant::now() + self.heartbeat;
        let wake = [self.end, self.expires]
            .into_iter()
            .flatten()
            .fold(due, Instant::min);
        let next = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Next::Stop,
            batch = self.sub.next(self.limit) => Next::Batch(batch),
            () = sleep_until(wake) => Next::Tick,
        };
        if !matches!(next, Next::Batch(_)) {
            // Nothing may follow the stream's last frame, and a frame of
            // this task's own should not wait behind the publishing task.
            self.sub.detach();
        }
        match next {
            Next::Stop => {
                self.session.reason("server shutting down");
                None
            }
            Next::Tick if self.is_expired() => {
                self.session.reason("token expired");
                Some(self.expire())
            }
            Next::Tick if self.end.is_some_and(|end| Instant::now() >= end) => {
                self.session.reason("lifetime over");
                None
            }
            Next::Tick => Some(Bytes::from_static(frame::HEARTBEAT)),
            Next::Batch(batch) => {
                self.session.batch(&batch);
                let bytes = self.encode(batch);
                self.finished = self.sub.is_empty();
                Some(bytes)
            }
        }
    }

    fn is_expired(&self) -> bool {
        self.expires.is_some_and(|at| Instant::now() >= at)
    }

    /// The last frame of a stream whose token expired.
    fn expire(&mut self) -> Bytes {
        self.sub.detach();
        self.finished = true;
        frame::expired(&self.sub.cursor())
    }

    /// All events of one batch, as one frame: gap events first (with the
    /// batch's start position, from which a reconnect neither hears of the
    /// gap again nor misses a message), then one event per message.
    fn encode(&mut self, batch: Batch) -> Bytes {
        let mut parts = Vec::with_capacity(batch.messages.len() + 2);
        if batch.has_gap() {
            let id = batch.start.to_string();
            if !batch.gaps.is_empty() {
                parts.push(frame::gap(&id, &batch.gaps, Reason::History));
            }
            if !batch.gone.is_empty() {
                parts.push(frame::gap(&id, &batch.gone, Reason::Deleted));
            }
        }
        if self.single {
            frame::single(&batch.messages, &mut parts);
        } else {
            // The id is the stream's position after the message: its own
            // channel moves to the message, the others stay where they are.
            let mut cursor = batch.start;
            let mut ids = BytesMut::new();
            for m in &batch.messages {
                cursor.advance(m);
                frame::put_id(&mut ids, &cursor);
                parts.push(ids.split().freeze());
                parts.push(frame::fields(m));
            }
        }
        concat(parts)
    }
}

/// One frame from the parts of a batch: shared bytes as they are when there
/// is one part (a single message goes out without a copy), one copy
/// otherwise.
fn concat(mut parts: Vec<Bytes>) -> Bytes {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in parts {
        out.extend_from_slice(&p);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_bus::{Bus, ChannelName, Cursor, Draft, Payload, Start};
    use http_body_util::BodyExt;

    use super::*;
    use crate::frame::tests::parse;

    async fn events(bus: &Bus, expires: Duration) -> Body {
        let channels = [ChannelName::new("a").unwrap()];
        let sub = bus.subscribe(&channels, &Start::Now).await.unwrap();
        Events {
            sub,
            shutdown: CancellationToken::new(),
            limit: 1,
            heartbeat: Duration::from_secs(15),
            end: None,
            expires: Some(Instant::now() + expires),
            opening: None,
            single: true,
            finished: false,
            session: herald_http::Stats::default().session(herald_http::Transport::Sse, 1),
        }
        .into_body()
    }

    async fn publish(bus: &Bus, data: &str) {
        let draft = Draft {
            channel: ChannelName::new("a").unwrap(),
            event: None,
            payload: Payload::text(data.to_string()).unwrap(),
        };
        bus.publish(vec![draft]).await.unwrap();
    }

    async fn next(body: &mut Body) -> Option<String> {
        let f = body.frame().await?.unwrap();
        Some(String::from_utf8(f.into_data().unwrap().to_vec()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn at_expiry_the_stream_says_where_it_stands_and_ends() {
        let bus = Bus::memory(herald_bus::Config::default());
        let mut body = events(&bus, Duration::from_secs(10)).await;
        publish(&bus, "one").await;
        let first = parse(&next(&mut body).await.unwrap()).events;
        assert_eq!(first[0].data, "one");

        let t = Instant::now();
        let last = next(&mut body).await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_secs(10), "exactly at exp");
        let expired = &parse(&last).events[0];
        assert_eq!(expired.event, "herald.expired");
        assert_eq!(expired.id, first[0].id, "resumes right after `one`");
        let data: serde_json::Value = serde_json::from_str(&expired.data).unwrap();
        assert_eq!(data["cursor"], expired.id.as_str());
        assert!(next(&mut body).await.is_none(), "the stream ends");
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_cuts_a_burst_between_batches_and_loses_nothing() {
        let bus = Bus::memory(herald_bus::Config::default());
        let mut body = events(&bus, Duration::from_secs(1)).await;
        for i in 0..5 {
            publish(&bus, &format!("m{i}")).await;
        }
        // One message per frame (limit 1): read two, then expire with
        // three still retained.
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.extend(parse(&next(&mut body).await.unwrap()).events);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let expired = parse(&next(&mut body).await.unwrap()).events.remove(0);
        assert_eq!(expired.event, "herald.expired");
        assert!(next(&mut body).await.is_none());

        // A reconnect from the expired event's id gets exactly the rest.
        let from = Start::From(Cursor::parse(&expired.id).unwrap());
        let rest = bus
            .read(&[ChannelName::new("a").unwrap()], &from, 10)
            .await
            .unwrap();
        let datas: Vec<String> = rest
            .messages
            .iter()
            .map(|m| m.payload.as_str().to_owned())
            .collect();
        assert_eq!(datas, ["m2", "m3", "m4"]);
        assert_eq!(seen.len(), 2);
    }
}
