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
//! lifetime, whichever is sooner) and the stream's position (a cursor, from
//! which multi-channel ids are made). Event bytes themselves are cached per
//! message by the frame module.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use herald_bus::{Batch, Bus, ChannelName, Cursor, Draft, Message, Payload, Subscription};
use herald_http::Body;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::frame::{self, Reason};

/// The state of one open stream.
pub(crate) struct Events {
    /// Where the stream reads from.
    pub(crate) sub: Subscription,
    /// For the ids: single-channel ids come from `Bus::cursor_after`.
    pub(crate) bus: Bus,
    /// Cancelled when the server drains: the stream then ends.
    pub(crate) shutdown: CancellationToken,
    /// Messages per frame.
    pub(crate) limit: usize,
    /// Idle time before a heartbeat.
    pub(crate) heartbeat: Duration,
    /// When the stream ends by itself (maximum lifetime), if ever.
    pub(crate) end: Option<Instant>,
    /// The first frame, until it is written.
    pub(crate) opening: Option<Bytes>,
    /// Position after the last event written, covering every channel:
    /// the `id:` of a multi-channel event, and the base of a gap event's.
    pub(crate) cursor: Cursor,
    /// The stream has one channel: its events are cached whole, ids and
    /// all, and shared with every other stream of the channel.
    pub(crate) single: bool,
    /// Every channel was deleted: end after this frame.
    pub(crate) finished: bool,
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
            Some((Ok(Frame::data(bytes)), events))
        });
        StreamBody::new(frames).boxed_unsync()
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(open) = self.opening.take() {
            return Some(open);
        }
        if self.finished {
            return None;
        }
        // One timer: the heartbeat is due `heartbeat` after the last write,
        // which is when this future was created.
        let due = Instant::now() + self.heartbeat;
        let wake = self.end.map_or(due, |end| end.min(due));
        let next = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Next::Stop,
            batch = self.sub.next(self.limit) => Next::Batch(batch),
            () = sleep_until(wake) => Next::Tick,
        };
        match next {
            Next::Stop => None,
            Next::Tick if self.end.is_some_and(|end| Instant::now() >= end) => None,
            Next::Tick => Some(Bytes::from_static(frame::HEARTBEAT)),
            Next::Batch(batch) => {
                let bytes = self.encode(batch);
                self.finished = self.sub.is_empty();
                Some(bytes)
            }
        }
    }

    /// All events of one batch, as one frame: gap events first (with the
    /// position before any of the batch's messages), then one event per
    /// message.
    fn encode(&mut self, batch: Batch) -> Bytes {
        let mut parts = Vec::with_capacity(batch.messages.len() + 2);
        if batch.has_gap() {
            self.cursor = self.before(&batch);
            let id = self.cursor.to_string();
            if !batch.gaps.is_empty() {
                parts.push(frame::gap(&id, &batch.gaps, Reason::History));
            }
            if !batch.gone.is_empty() {
                parts.push(frame::gap(&id, &batch.gone, Reason::Deleted));
            }
        }
        if self.single {
            frame::single(&self.bus, &batch.messages, &mut parts);
        } else {
            // The id is the stream's position after the message: its own
            // channel moves to the message, the others stay where they are.
            let mut ids = BytesMut::new();
            for m in &batch.messages {
                let after = self.bus.cursor_after(m);
                let cursor = std::mem::take(&mut self.cursor);
                self.cursor = Cursor::combine([cursor, after]).unwrap_or_default();
                frame::put_id(&mut ids, &self.cursor);
                parts.push(ids.split().freeze());
                parts.push(frame::fields(m));
            }
        }
        self.cursor = batch.cursor;
        concat(parts)
    }

    /// The position just before the batch's messages, once its gaps are
    /// accounted for: a reconnect from there does not hear of the gap again
    /// and misses none of the messages that follow it.
    fn before(&self, batch: &Batch) -> Cursor {
        // A gapped channel resumed from its oldest retained message: just
        // before its first message in this batch, or where the batch left
        // it when it brought none of its messages.
        let bases = batch.gaps.iter().map(|channel| {
            let base = match batch.messages.iter().find(|m| &m.channel == channel) {
                Some(first) => first.id - 1,
                None => batch.cursor.position(channel).map_or(0, |(pos, _)| pos),
            };
            position(&self.bus, channel, base)
        });
        // The bases come first: they carry the current epoch, so positions
        // of the old cursor from another epoch lose to them.
        Cursor::combine(bases.chain([self.cursor.clone()])).unwrap_or_default()
    }
}

/// A cursor naming `channel` at position `id` (the last id seen).
fn position(bus: &Bus, channel: &ChannelName, id: u64) -> Cursor {
    // The bus makes single-channel cursors from a message only; a message
    // carrying just the channel and the id stands in for it.
    let probe = Draft {
        channel: channel.clone(),
        event: None,
        payload: Payload::text(Bytes::new()).expect("empty data is UTF-8"),
    };
    bus.cursor_after(&Message::new(probe, id, 0))
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
