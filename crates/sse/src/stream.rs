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

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use herald_bus::{Batch, Subscription};
use herald_http::{Body, Session};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::frame::{self, Reason};

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
            Next::Stop => {
                self.session.reason("server shutting down");
                None
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
