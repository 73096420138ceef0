//! One upgraded WebSocket connection: a single task that selects on the
//! client's frames, the connection's subscription, one timer and the
//! server's shutdown signal, and that ends with a close frame. The timer
//! serves every deadline (the next ping, the pong awaited, the send
//! deadline, the end of the grant), set to the soonest; the end of the
//! grant is handled ahead of the client's frames.
//!
//! The connection keeps no queue of its own (the bus owns order and replay):
//! it reads the next batch from its [`Subscription`] only once everything
//! written before has been flushed to the socket. The frames of that one
//! batch (shared, already encoded) wait in an outbox and are handed to the
//! socket [`WRITE_CAP`] bytes at a time, so a reader whose socket does not
//! drain costs at most that many copied bytes plus one frame; meanwhile the
//! subscription's positions stay put, and if the channel's history moves
//! past them the next read reports a gap (or, by configuration, the
//! connection is closed with 1013).
//!
//! A peer is alive while it reads: each server ping carries a fresh,
//! unguessable payload and only a pong echoing it counts, and a socket that
//! takes longer than `send_timeout` to accept what was handed to it counts
//! as stalled. Either failure closes with [`LIVENESS`] (4408), a code
//! clients reconnect on. `subscribe` and `unsubscribe` frames, which cost
//! engine reads, are rate-limited per connection. Handshakes and routing
//! are the upgrade module's business.

use std::{
    collections::{HashSet, VecDeque, hash_map::RandomState},
    future::poll_fn,
    hash::BuildHasher,
    pin::Pin,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use futures::{Sink, Stream};
use herald_auth::Decision;
use herald_bus::{Batch, ChannelName, Subscription};
use herald_http::{Code, Context, Error, Session, Transport, refusal};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::{Instant, sleep_until, timeout},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Error as WsError, Message as WsMessage,
        error::ProtocolError,
        protocol::{
            CloseFrame,
            frame::{
                Frame,
                coding::{CloseCode, Data, OpCode},
            },
        },
    },
};

use crate::{
    Config, SlowPolicy,
    access::{Access, Due, EXPIRED_CLOSE},
    frame::{self, Bounds, GapReason, Op},
    port::Port,
    rate::Bucket,
};

/// Bytes handed to the socket (tungstenite's write buffer) before the
/// connection waits for them to be flushed: the rest of a batch waits in the
/// outbox, and the client's frames are not read, so a client that sends but
/// does not read is held back by TCP instead of growing the server's
/// buffers. Documented in docs/security.md.
pub(crate) const WRITE_CAP: usize = 256 * 1024;

/// The close code of a liveness failure (no pong to the latest ping within
/// `ping_timeout`, or a socket that accepted nothing for `send_timeout`):
/// in the 4000–4999 range left to applications, and documented as "the
/// connection was lost; reconnect and resume".
pub(crate) const LIVENESS: CloseCode = CloseCode::Library(4408);

/// How long closing may take: sending the close frame, then waiting for the
/// client to close its side, so that the close frame is not lost to a TCP
/// reset.
const LINGER: Duration = Duration::from_secs(2);

/// How a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The server closes with this code and reason.
    Close(CloseCode, &'static str),
    /// The client sent a close frame; tungstenite queued the echo.
    PeerClosed,
    /// The socket failed or was closed without a close frame.
    Gone,
}

impl End {
    /// Counts the close and gives the session its log line's reason.
    fn record(&self, session: &mut Session) {
        match *self {
            End::Close(CloseCode::Again, reason) => session.slow(reason),
            End::Close(_, reason) => session.reason(reason),
            End::PeerClosed => session.reason("client closed"),
            End::Gone => {}
        }
        match *self {
            End::Close(code, _) => session.ws_close(Some(code.into()), false),
            End::PeerClosed => session.ws_close(None, true),
            End::Gone => session.ws_close(None, false),
        }
    }
}

/// What woke the connection up.
enum Event {
    Shutdown,
    Read(Option<Result<WsMessage, WsError>>),
    Flushed(Result<(), WsError>),
    PingDue,
    PongOverdue,
    /// The socket accepted bytes; the flush goes on.
    Progress(u64),
    Stalled,
    Batch(Batch),
}

/// A connection's state between events.
struct Connection<S> {
    ws: WebSocketStream<Port<S>>,
    sub: Subscription,
    ctx: Context,
    config: Arc<Config>,
    /// Frames were handed to the socket and not yet flushed; no new batch
    /// is read until they are.
    flushing: bool,
    /// Since when the socket holds bytes it has not accepted, or last
    /// accepted some; the send deadline runs from here.
    flush_since: Option<Instant>,
    /// The socket's written count at `flush_since`: when the deadline
    /// comes and it has moved, the reader is slow, not stalled.
    written_mark: u64,
    /// Bytes handed to the socket since the last completed flush.
    unflushed: usize,
    /// Text frames not yet handed to the socket, in order: the rest of the
    /// current batch and the replies after it.
    outbox: VecDeque<Bytes>,
    /// The payload the next pong must echo, while one is awaited.
    ping: Option<[u8; 8]>,
    /// Makes each ping payload unguessable (keyed per connection).
    ping_keys: RandomState,
    /// Pings sent so far (the payload is a keyed hash of this count).
    pings: u64,
    /// Bad client frames so far.
    bad_frames: u32,
    /// Limits `subscribe` and `unsubscribe` frames.
    bucket: Bucket,
    /// Channels subscribed since the last batch was read: a gap on one of
    /// them is the client resuming from an old cursor, not falling behind.
    fresh: Vec<ChannelName>,
    /// Counts what the connection sends; logs its end when dropped.
    session: Session,
    /// What the connection's credentials grant, until when.
    access: Access,
}

/// Serves one connection until it ends, then closes it. `greeting` is sent
/// first (the `subscribed` frame of `/ws/{channels}`); `fresh` names the
/// channels `sub` was created with; `access` is what the handshake's
/// credentials were granted.
pub(crate) fn serve<S>(
    ws: WebSocketStream<Port<S>>,
    mut sub: Subscription,
    greeting: Option<Bytes>,
    ctx: Context,
    config: Arc<Config>,
    access: Access,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let fresh = sub.channels().cloned().collect();
    let bucket = Bucket::new(config.frame_rate, config.frame_burst);
    let mut session = ctx.stats.session(Transport::Ws, sub.len());
    // While the connection waits with everything written, the publishing
    // task writes its messages straight to the socket.
    sub.deliver_through(ws.get_ref().outlet(session.tally()));
    let c = Connection {
        ws,
        sub,
        ctx,
        config,
        flushing: false,
        flush_since: None,
        written_mark: 0,
        unflushed: 0,
        outbox: VecDeque::new(),
        ping: None,
        ping_keys: RandomState::new(),
        pings: 0,
        bad_frames: 0,
        bucket,
        fresh,
        session,
        access,
    };
    // Built here, not in an async fn, so that the connection's state is
    // stored once (an async fn keeps its arguments for its whole life).
    c.life(greeting)
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Sends `greeting` (the `subscribed` frame of `/ws/{channels}`), serves
    /// the connection until it ends, then closes it.
    ///
    /// An async block, not an async fn: an async fn stores its arguments
    /// twice (as given, then as the body's bindings), and this future is
    /// what every idle connection carries.
    fn life(mut self, greeting: Option<Bytes>) -> impl Future<Output = ()> {
        let greeted = greeting.map(|g| self.reply(g));
        async move {
            let end = match greeted {
                Some(Err(end)) => end,
                _ => self.run().await,
            };
            tracing::debug!(?end, "websocket connection ends");
            end.record(&mut self.session);
            // Boxed: closing needs room that an idle connection does not.
            let finish = Box::pin(self.finish(end));
            finish.await;
        }
    }

    /// Serves the connection until it ends. Every deadline (the next ping,
    /// the pong awaited, the send deadline, the end of the grant) shares one
    /// timer, set to the soonest of them: an idle connection carries one
    /// timer, not four.
    async fn run(&mut self) -> End {
        let every = self.config.ping_interval;
        let mut ping_at = Instant::now() + every;
        // Meaningful while a pong is awaited (`self.ping`).
        let mut pong_at = ping_at;
        let timer = sleep_until(ping_at);
        tokio::pin!(timer);
        let mut timer_at = ping_at;
        let shutdown = self.ctx.shutdown.clone();
        let limit = self.ctx.limits.max_messages;
        loop {
            if !self.flushing && self.ws.get_ref().has_rest() {
                // The publishing task began a frame the socket could not
                // take whole: it is this task's to finish.
                self.flushing = true;
                self.arm();
            }
            let due = self.access.due();
            // The end of the grant goes ahead of the client's frames, so
            // that a chatty client cannot put it off (and behind shutdown,
            // which closes with 1001 whatever else is due).
            if let Some((at, what)) = due
                && at <= Instant::now()
                && !shutdown.is_cancelled()
            {
                if let Err(end) = self.on_auth_due(what) {
                    return end;
                }
                continue;
            }
            let stall_at = self
                .flush_since
                .map(|since| since + self.config.send_timeout);
            let next = [
                Some(ping_at),
                self.ping.map(|_| pong_at),
                stall_at,
                due.map(|(at, _)| at),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(ping_at);
            if next != timer_at {
                timer.as_mut().reset(next);
                timer_at = next;
            }
            let flushing = self.flushing;
            let reading = self.unflushed < WRITE_CAP;
            let ws = &mut self.ws;
            let mark = self.written_mark;
            let socket = poll_fn(|cx| {
                if flushing {
                    if let Poll::Ready(r) = Pin::new(&mut *ws).poll_flush(cx) {
                        return Poll::Ready(Event::Flushed(r));
                    }
                    let written = ws.get_ref().written();
                    if written != mark {
                        return Poll::Ready(Event::Progress(written));
                    }
                }
                if reading {
                    Pin::new(&mut *ws).poll_next(cx).map(Event::Read)
                } else {
                    Poll::Pending
                }
            });
            let paused = self.access.paused();
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => Event::Shutdown,
                e = socket => e,
                () = &mut timer => {
                    let now = Instant::now();
                    if self.ping.is_some() && pong_at <= now {
                        Event::PongOverdue
                    } else if stall_at.is_some_and(|at| at <= now) {
                        Event::Stalled
                    } else if ping_at <= now {
                        // Late pings are not caught up: the next is a
                        // whole interval after this one.
                        ping_at = now + every;
                        Event::PingDue
                    } else {
                        // The grant's end: handled at the top.
                        continue;
                    }
                }
                b = self.sub.next(limit), if !flushing && !paused => Event::Batch(b),
            };
            let step = match event {
                Event::Shutdown => Err(End::Close(CloseCode::Away, "server shutting down")),
                Event::PongOverdue => Err(End::Close(LIVENESS, "no pong within the ping timeout")),
                Event::Progress(written) => {
                    self.flush_since = Some(Instant::now());
                    self.written_mark = written;
                    Ok(())
                }
                Event::Stalled => self.check_progress(),
                Event::PingDue if self.ping.is_some() => Ok(()),
                Event::PingDue => {
                    pong_at = Instant::now() + self.config.ping_timeout;
                    let payload = self.next_ping();
                    self.ping = Some(payload);
                    self.send(WsMessage::Ping(Bytes::copy_from_slice(&payload)))
                }
                Event::Flushed(Ok(())) => {
                    self.flushing = false;
                    self.flush_since = None;
                    self.unflushed = 0;
                    self.pump()
                }
                Event::Flushed(Err(_)) | Event::Read(None) => Err(End::Gone),
                Event::Read(Some(Err(e))) => Err(read_error(e)),
                Event::Read(Some(Ok(WsMessage::Pong(echo)))) => {
                    // Only the answer to the latest ping proves the peer
                    // reads; a pong it sends on its own proves nothing.
                    if self.ping.is_some_and(|p| echo[..] == p[..]) {
                        self.ping = None;
                    }
                    Ok(())
                }
                Event::Read(Some(Ok(m))) => {
                    // On the heap: a client frame may start an engine read
                    // or an authorization call, whose state every idle
                    // connection would otherwise carry (boxed in a `let`:
                    // a temporary of the await's statement would not be).
                    let handled = Box::pin(self.on_message(m));
                    handled.await
                }
                Event::Batch(batch) => self.deliver(batch),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// The grant ended (pause, waiting for a fresh token), or the grace
    /// period after it did (close).
    fn on_auth_due(&mut self, what: Due) -> Result<(), End> {
        match what {
            Due::Expired => {
                // Paused: nothing more is delivered, by this task or by the
                // publishing one, until a fresh token comes.
                self.sub.detach();
                self.access.expire(self.ctx.auth.refresh_grace());
                self.reply(frame::expired())
            }
            Due::GraceOver => Err(End::Close(CloseCode::from(EXPIRED_CLOSE), "token expired")),
        }
    }

    async fn on_message(&mut self, m: WsMessage) -> Result<(), End> {
        match m {
            WsMessage::Text(text) => self.on_text(text.as_str()).await,
            WsMessage::Binary(_) => self.refuse(None, Error::from(Code::BinaryNotSupported)),
            WsMessage::Ping(payload) => {
                // tungstenite queued the pong; make sure it leaves, and count
                // it against the write cap like any other reply.
                self.flushing = true;
                self.arm();
                self.unflushed += payload.len() + 2;
                Ok(())
            }
            WsMessage::Close(_) => Err(End::PeerClosed),
            WsMessage::Pong(_) | WsMessage::Frame(_) => Ok(()),
        }
    }

    /// Starts the send deadline, unless it runs already.
    fn arm(&mut self) {
        if self.flush_since.is_none() {
            self.flush_since = Some(Instant::now());
            self.written_mark = self.ws.get_ref().written();
        }
    }

    /// The send deadline passed with bytes still waiting: a socket that
    /// accepted some since it was armed gets another period, one that
    /// accepted none is stalled.
    fn check_progress(&mut self) -> Result<(), End> {
        let written = self.ws.get_ref().written();
        if written == self.written_mark {
            return Err(End::Close(
                LIVENESS,
                "the socket accepted nothing within the send timeout",
            ));
        }
        self.flush_since = Some(Instant::now());
        self.written_mark = written;
        Ok(())
    }

    /// The payload of the next ping: a keyed hash of the ping count, so
    /// that a peer cannot answer a ping it has not read.
    fn next_ping(&mut self) -> [u8; 8] {
        self.pings += 1;
        self.ping_keys.hash_one(self.pings).to_be_bytes()
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let bounds = Bounds {
            max_last: self.ctx.limits.max_messages,
            max_channels: self.config.max_subscriptions,
        };
        let parsed = frame::parse(text, bounds);
        let reference = parsed.reference.as_deref();
        let costly = matches!(parsed.op, Ok(Op::Subscribe { .. } | Op::Unsubscribe { .. }));
        if costly && !self.bucket.take() {
            let rate = self.config.frame_rate;
            let wait = self.bucket.wait().as_millis();
            return self.refuse(
                reference,
                Error::new(
                    Code::RateLimited,
                    format!(
                        "at most {rate} subscribe or unsubscribe frames per second; next in {wait} ms"
                    ),
                ),
            );
        }
        match parsed.op {
            Err(refusal) => self.refuse(reference, refusal),
            Ok(Op::Ping) => self.reply(frame::pong(reference)),
            Ok(Op::Auth { token }) => self.on_auth(reference, token).await,
            Ok(Op::Subscribe {
                channels,
                start,
                token,
            }) => {
                let have: HashSet<&ChannelName> = self.sub.channels().collect();
                let new: Vec<ChannelName> = channels
                    .iter()
                    .filter(|c| !have.contains(c))
                    .cloned()
                    .collect();
                let max = self.config.max_subscriptions;
                if self.sub.len() + new.len() > max {
                    return self.refuse(reference, frame::too_many(max));
                }
                let refused = self.authorize(reference, &new, token).await?;
                if refused.len() == new.len() && !new.is_empty() {
                    return Ok(());
                }
                let new: Vec<ChannelName> =
                    new.into_iter().filter(|c| !refused.contains(c)).collect();
                let channels: Vec<ChannelName> = channels
                    .into_iter()
                    .filter(|c| !refused.contains(c))
                    .collect();
                match self.ctx.setup(self.sub.add(&new, &start)).await {
                    // The engine is unavailable or slow: not the client's
                    // fault, so not a bad frame; its details stay in the log.
                    Err(e) => self.reply(frame::error(reference, &e)),
                    Ok(()) => {
                        self.fresh.extend(new);
                        self.session.channels(self.sub.len());
                        let cursor = self.sub.cursor();
                        self.reply(frame::subscribed(reference, &channels, &cursor))
                    }
                }
            }
            Ok(Op::Unsubscribe { channels }) => {
                let removed = self.sub.remove(&channels);
                self.fresh.retain(|c| !removed.contains(c));
                self.session.channels(self.sub.len());
                self.reply(frame::unsubscribed(reference, &removed))
            }
        }
    }

    /// Checks the connection's credentials (or the frame's `token`) for
    /// channels about to be subscribed; answers the refused ones, each told
    /// with its own `error` frame. Not bad frames: the connection stays.
    async fn authorize(
        &mut self,
        reference: Option<&str>,
        channels: &[ChannelName],
        token: Option<String>,
    ) -> Result<Vec<ChannelName>, End> {
        if !self.ctx.auth.is_enabled() || channels.is_empty() {
            return Ok(Vec::new());
        }
        let credentials = match token {
            Some(t) => self.access.credentials.clone().with_token(t),
            None => self.access.credentials.clone(),
        };
        let decision = self.ctx.auth.authorize(&credentials, channels, "ws").await;
        let refused = match &decision {
            Decision::Allowed(grant) => {
                self.access.add(credentials, grant);
                Vec::new()
            }
            Decision::Forbidden { refused, grant } => {
                self.access.add(credentials, grant);
                refused.clone()
            }
            // Refused as a whole: the public channels stay readable.
            Decision::Unauthorized(_) | Decision::Unavailable => channels
                .iter()
                .filter(|c| !self.ctx.auth.is_public(c))
                .cloned()
                .collect(),
        };
        let error = refusal(&decision);
        for channel in &refused {
            self.reply(frame::channel_error(reference, channel, &error))?;
        }
        Ok(refused)
    }

    /// An `auth` frame: a fresh token for every channel subscribed. Those
    /// it no longer covers are dropped, each with an `error` frame; a token
    /// that is no good changes nothing.
    async fn on_auth(&mut self, reference: Option<&str>, token: String) -> Result<(), End> {
        let credentials = self.access.credentials.clone().with_token(token);
        let channels: Vec<ChannelName> = self.sub.channels().cloned().collect();
        let decision = self.ctx.auth.authorize(&credentials, &channels, "ws").await;
        let (refused, grant) = match &decision {
            Decision::Allowed(grant) => (&[][..], grant),
            Decision::Forbidden { refused, grant } => (&refused[..], grant),
            Decision::Unauthorized(_) | Decision::Unavailable => {
                return self.reply(frame::error(reference, &refusal(&decision)));
            }
        };
        let error = refusal(&decision);
        let removed = self.sub.remove(refused);
        self.fresh.retain(|c| !removed.contains(c));
        for channel in &removed {
            self.reply(frame::channel_error(reference, channel, &error))?;
        }
        self.access.renew(credentials, grant);
        self.reply(frame::authorized(reference))
    }

    /// Answers a bad frame with an `error` frame; the one that reaches the
    /// configured count closes the connection with 1008.
    fn refuse(&mut self, reference: Option<&str>, refusal: Error) -> Result<(), End> {
        self.bad_frames += 1;
        self.reply(frame::error(reference, &refusal))?;
        if self.bad_frames >= self.config.max_bad_frames {
            return Err(End::Close(CloseCode::Policy, "too many bad frames"));
        }
        Ok(())
    }

    /// Writes one batch: a `gap` frame first when messages were missed, the
    /// messages, then a `gap` frame for deleted channels.
    fn deliver(&mut self, batch: Batch) -> Result<(), End> {
        if batch.is_empty() {
            // The publishing task let go with nothing left to read.
            return Ok(());
        }
        let behind = batch.gaps.iter().any(|c| !self.fresh.contains(c));
        self.fresh.clear();
        if behind && self.config.slow_policy == SlowPolicy::Close {
            return Err(End::Close(
                CloseCode::Again,
                "fell behind the retained history",
            ));
        }
        self.session.batch(&batch);
        if !batch.gaps.is_empty() {
            self.outbox
                .push_back(frame::gap(&batch.gaps, GapReason::History));
        }
        self.outbox
            .extend(batch.messages.iter().map(|m| frame::message(m)));
        if !batch.gone.is_empty() {
            self.outbox
                .push_back(frame::gap(&batch.gone, GapReason::Deleted));
        }
        self.pump()
    }

    /// Queues a reply after what is already queued, so that it never
    /// overtakes messages delivered before it.
    fn reply(&mut self, bytes: Bytes) -> Result<(), End> {
        self.outbox.push_back(bytes);
        self.pump()
    }

    /// Hands queued frames to the socket until [`WRITE_CAP`] bytes wait for
    /// a flush; the rest goes once they are flushed.
    fn pump(&mut self) -> Result<(), End> {
        while self.unflushed < WRITE_CAP {
            let Some(bytes) = self.outbox.pop_front() else {
                break;
            };
            self.text(bytes)?;
        }
        Ok(())
    }

    /// Hands a text frame to the socket without waiting (the frame is
    /// already valid UTF-8: herald built it, so it is not checked again).
    fn text(&mut self, bytes: Bytes) -> Result<(), End> {
        self.session.bytes(bytes.len());
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.send(WsMessage::Frame(frame))
    }

    /// Hands a message to tungstenite's write buffer without waiting:
    /// tokio-tungstenite accepts it whatever the socket's state (a blocked
    /// write counts as accepted and is retried on flush), so the bound on
    /// that buffer is this connection's own: [`WRITE_CAP`] plus one frame,
    /// and a ping.
    fn send(&mut self, m: WsMessage) -> Result<(), End> {
        self.flushing = true;
        self.arm();
        self.unflushed += m.len();
        Pin::new(&mut self.ws).start_send(m).map_err(|_| End::Gone)
    }

    /// Sends the close frame (flushing what was written before it), then
    /// waits, briefly, for the client to close its side.
    async fn finish(mut self, end: End) {
        // Nothing may follow the close frame.
        self.sub.detach();
        let close = match end {
            End::Gone => return,
            End::PeerClosed => None,
            End::Close(code, reason) => Some(CloseFrame {
                code,
                reason: reason.into(),
            }),
        };
        let ws = &mut self.ws;
        let _ = timeout(LINGER, async move {
            let sent = match close {
                Some(frame) => ws.close(Some(frame)).await,
                None => futures::SinkExt::flush(ws).await,
            };
            if sent.is_err() {
                return;
            }
            let io = ws.get_mut();
            let _ = io.shutdown().await;
            let mut buf = [0u8; 256];
            while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// The close that answers a failed read.
fn read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(_) => End::Close(CloseCode::Size, "frame too large"),
        WsError::Utf8(_) => End::Close(CloseCode::Invalid, "text frame is not UTF-8"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Gone,
        WsError::Protocol(_) => End::Close(CloseCode::Protocol, "protocol error"),
        _ => End::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use herald_bus::{Bus, Draft, Payload};
    use herald_http::Limits;
    use serde_json::Value;
    use tokio::{io::DuplexStream, task::JoinHandle};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_util::sync::CancellationToken;

    /// The session of a connection that presented nothing, with
    /// authorization off.
    fn no_access() -> Access {
        Access::new(Default::default(), &Default::default())
    }

    struct Harness {
        client: WebSocketStream<DuplexStream>,
        bus: Bus,
        shutdown: CancellationToken,
        task: JoinHandle<()>,
    }

    /// A context over a new in-memory bus keeping `history` messages per
    /// channel.
    fn context(history: usize) -> Context {
        Context {
            bus: Bus::memory(herald_bus::Config {
                max_messages: history,
                ..Default::default()
            }),
            limits: Limits::default(),
            shutdown: CancellationToken::new(),
            stats: Default::default(),
            auth: Default::default(),
        }
    }

    /// A server connection on one end of an in-memory pipe of `pipe`
    /// bytes, a client on the other.
    async fn harness(config: Config, history: usize, pipe: usize) -> Harness {
        harness_with(context(history), config, pipe).await
    }

    async fn harness_with(ctx: Context, config: Config, pipe: usize) -> Harness {
        harness_granted(ctx, config, pipe, no_access()).await
    }

    /// As [`harness_with`], for a connection whose credentials were granted
    /// `access`.
    async fn harness_granted(ctx: Context, config: Config, pipe: usize, access: Access) -> Harness {
        let (bus, shutdown) = (ctx.bus.clone(), ctx.shutdown.clone());
        let (a, b) = tokio::io::duplex(pipe);
        let server = WebSocketStream::from_raw_socket(Port::new(a), Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let sub = bus.empty_subscription();
        let task = tokio::spawn(serve(server, sub, None, ctx, Arc::new(config), access));
        Harness {
            client,
            bus,
            shutdown,
            task,
        }
    }

    /// Publishes `n` messages `m{from}`, `m{from+1}`, ...
    async fn publish_from(bus: &Bus, channel: &str, from: usize, n: usize) {
        let drafts = (from..from + n)
            .map(|i| Draft {
                channel: ChannelName::new(channel).unwrap(),
                event: None,
                payload: Payload::text(format!("m{i}")).unwrap(),
            })
            .collect();
        bus.publish(drafts).await.unwrap();
    }

    async fn publish(bus: &Bus, channel: &str, n: usize) {
        publish_from(bus, channel, 0, n).await;
    }

    /// The next text frame as JSON, skipping pings.
    async fn next_json(c: &mut WebSocketStream<DuplexStream>) -> Value {
        loop {
            match c.next().await.expect("open").expect("frame") {
                WsMessage::Text(t) => return serde_json::from_str(&t).unwrap(),
                WsMessage::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads until the close frame; answers its code.
    async fn close_code(c: &mut WebSocketStream<DuplexStream>) -> u16 {
        while let Some(m) = c.next().await {
            if let Ok(WsMessage::Close(Some(f))) = m {
                return f.code.into();
            }
        }
        panic!("closed without a close frame")
    }

    async fn subscribe(c: &mut WebSocketStream<DuplexStream>, channel: &str) -> Value {
        let f = format!(r#"{{"type":"subscribe","channels":["{channel}"]}}"#);
        c.send(WsMessage::text(f)).await.unwrap();
        let v = next_json(c).await;
        assert_eq!(v["type"], "subscribed");
        v
    }

    #[tokio::test(start_paused = true)]
    async fn pings_on_schedule_and_a_ponging_client_stays() {
        let config = Config::default();
        let mut h = harness(config.clone(), 10, 1 << 16).await;
        let start = Instant::now();
        for _ in 0..3 {
            // The client answers each ping (tungstenite does) as it reads.
            match h.client.next().await.unwrap().unwrap() {
                WsMessage::Ping(_) => {}
                other => panic!("expected a ping, got {other:?}"),
            }
        }
        assert!(start.elapsed() >= config.ping_interval * 3);
        // Still served: an application ping is answered.
        h.client
            .send(WsMessage::text(r#"{"type":"ping","ref":"p"}"#))
            .await
            .unwrap();
        let v = next_json(&mut h.client).await;
        assert_eq!(
            (v["type"].as_str(), v["ref"].as_str()),
            (Some("pong"), Some("p"))
        );
        assert!(!h.task.is_finished());
    }

    /// The close code among raw server frames (unmasked, as servers send).
    fn raw_close_code(mut bytes: &[u8]) -> Option<u16> {
        while bytes.len() >= 2 {
            let (op, len7) = (bytes[0] & 0x0f, usize::from(bytes[1] & 0x7f));
            let (len, head) = match len7 {
                126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
                127 => return None,
                n => (n, 2),
            };
            let payload = bytes.get(head..head + len)?;
            if op == 8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
            bytes = &bytes[head + len..];
        }
        None
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_pongs_is_closed_after_the_timeout() {
        let config = Config::default();
        let ctx = context(10);
        let sub = ctx.bus.empty_subscription();
        // The client end stays raw: it reads nothing, so it answers nothing.
        let (a, mut raw) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(Port::new(a), Role::Server, None).await;
        let start = Instant::now();
        serve(
            server,
            sub,
            None,
            ctx,
            Arc::new(config.clone()),
            no_access(),
        )
        .await;
        let took = start.elapsed();
        assert!(
            took >= config.ping_interval + config.ping_timeout,
            "{took:?}"
        );
        assert!(
            took <= config.ping_interval + config.ping_timeout + LINGER,
            "{took:?}"
        );
        let mut bytes = Vec::new();
        raw.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(bytes[0], 0x89, "a ping first");
        assert_eq!(raw_close_code(&bytes), Some(4408));
    }

    #[tokio::test(start_paused = true)]
    async fn pongs_a_client_sends_on_its_own_do_not_keep_it_alive() {
        let config = Config::default();
        let mut h = harness(config.clone(), 10, 1 << 16).await;
        let start = Instant::now();
        // Never reads, so never sees a ping's payload; pongs every 5 s.
        while !h.task.is_finished() {
            h.client
                .send(WsMessage::Pong(Bytes::from_static(b"whatever")))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let took = start.elapsed();
        let due = config.ping_interval + config.ping_timeout;
        assert!(
            took >= due && took <= due + LINGER + Duration::from_secs(5),
            "{took:?}"
        );
        // Read raw: a client would answer the unread ping into a closed pipe.
        let mut bytes = Vec::new();
        h.client.get_mut().read_to_end(&mut bytes).await.unwrap();
        assert_eq!(raw_close_code(&bytes), Some(4408));
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_latest_pings_payload_counts_as_a_pong() {
        let config = Config::default();
        let mut h = harness(config.clone(), 10, 1 << 16).await;
        // tungstenite's client answers each ping with its payload as it
        // reads: the connection lives across many ping timeouts.
        let mut payloads = Vec::new();
        while payloads.len() < 5 {
            if let WsMessage::Ping(p) = h.client.next().await.unwrap().unwrap() {
                assert_eq!(p.len(), 8);
                payloads.push(p);
            }
        }
        payloads.dedup();
        assert_eq!(payloads.len(), 5, "each ping has its own payload");
        assert!(!h.task.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_whose_socket_stalls_is_closed_after_the_send_timeout() {
        // No pings in the way: only the send deadline can end it.
        let config = Config {
            ping_interval: Duration::from_secs(3600),
            ..Config::default()
        };
        let mut h = harness(config.clone(), 1000, 4096).await;
        subscribe(&mut h.client, "a").await;
        let start = Instant::now();
        // Far more than the pipe holds; the client reads nothing more.
        publish(&h.bus, "a", 500).await;
        while !h.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = start.elapsed();
        assert!(took >= config.send_timeout, "{took:?}");
        assert!(
            took <= config.send_timeout + LINGER + Duration::from_secs(1),
            "{took:?}"
        );
        let mut last = 0;
        loop {
            match h.client.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    last = v["data"].as_str().unwrap()[1..].parse().unwrap();
                }
                Some(Ok(WsMessage::Close(f))) => {
                    let _ = f;
                    break;
                }
                _ => break,
            }
        }
        assert!(
            last < 499,
            "the stalled reader did not get everything: {last}"
        );
    }

    /// A socket that records the largest write it was offered: what
    /// tungstenite's write buffer held at that moment.
    struct Spy {
        inner: DuplexStream,
        largest: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for Spy {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Spy {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.largest
                .fetch_max(buf.len(), std::sync::atomic::Ordering::SeqCst);
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_does_not_drain_costs_the_write_cap_not_its_batch() {
        let ctx = context(1000);
        let bus = ctx.bus.clone();
        let (a, b) = tokio::io::duplex(4096);
        let largest = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let spy = Spy {
            inner: a,
            largest: largest.clone(),
        };
        let server = WebSocketStream::from_raw_socket(Port::new(spy), Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let sub = bus.empty_subscription();
        let config = Config {
            ping_interval: Duration::from_secs(3600),
            ..Config::default()
        };
        tokio::spawn(serve(server, sub, None, ctx, Arc::new(config), no_access()));
        subscribe(&mut client, "a").await;
        // One batch of about 1.2 MB for a client that reads no more.
        let data = "x".repeat(4000);
        let drafts = (0..300)
            .map(|_| Draft {
                channel: ChannelName::new("a").unwrap(),
                event: None,
                payload: Payload::text(data.clone()).unwrap(),
            })
            .collect();
        bus.publish(drafts).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let held = largest.load(std::sync::atomic::Ordering::SeqCst);
        assert!(held > 4096, "the socket was offered a backlog: {held}");
        assert!(held <= WRITE_CAP + 8192, "{held} bytes buffered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_keeps_reading_slowly_is_not_stalled() {
        let config = Config {
            ping_interval: Duration::from_secs(3600),
            ..Config::default()
        };
        let mut h = harness(config.clone(), 1000, 4096).await;
        subscribe(&mut h.client, "a").await;
        publish(&h.bus, "a", 300).await;
        // One frame every 10 s: each flush completes well within the
        // deadline, though the whole takes far longer than it.
        let mut seen = 0;
        while seen < 300 {
            let v = next_json(&mut h.client).await;
            assert_eq!(v["data"], format!("m{seen}"));
            seen += 1;
            if seen % 50 == 0 {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
        assert!(!h.task.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn subscribe_frames_are_rate_limited_then_the_abuser_is_closed() {
        let config = Config {
            frame_rate: 1,
            frame_burst: 2,
            max_bad_frames: 3,
            ..Config::default()
        };
        let mut h = harness(config, 10, 1 << 16).await;
        subscribe(&mut h.client, "a").await;
        subscribe(&mut h.client, "b").await;
        let over = r#"{"type":"subscribe","channels":["c"],"ref":"r"}"#;
        h.client.send(WsMessage::text(over)).await.unwrap();
        let v = next_json(&mut h.client).await;
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str(), v["ref"].as_str()),
            (Some("error"), Some("rate_limited"), Some("r"))
        );
        // Pings are not limited.
        h.client
            .send(WsMessage::text(r#"{"type":"ping"}"#))
            .await
            .unwrap();
        assert_eq!(next_json(&mut h.client).await["type"], "pong");
        // A second later there is a token again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        subscribe(&mut h.client, "c").await;
        for _ in 0..2 {
            let f = r#"{"type":"unsubscribe","channels":["a"]}"#;
            h.client.send(WsMessage::text(f)).await.unwrap();
        }
        assert_eq!(next_json(&mut h.client).await["code"], "rate_limited");
        assert_eq!(next_json(&mut h.client).await["code"], "rate_limited");
        assert_eq!(close_code(&mut h.client).await, 1008);
    }

    /// What a grant of `secs` seconds allows.
    fn granted(secs: u64) -> Access {
        let grant = herald_auth::Grant {
            sub: None,
            expires_at: Some(std::time::SystemTime::now() + Duration::from_secs(secs)),
        };
        Access::new(Default::default(), &grant)
    }

    /// The end of the grant goes ahead of the client's frames: a client
    /// that keeps its socket busy cannot put it off.
    #[tokio::test(start_paused = true)]
    async fn a_chatty_client_does_not_put_off_the_end_of_its_grant() {
        let mut h = harness_granted(context(10), Config::default(), 1 << 16, granted(10)).await;
        // Frames waiting in the pipe, each answered with a pong, when the
        // server next runs, and the grant over by then.
        for _ in 0..50 {
            h.client
                .feed(WsMessage::text(r#"{"type":"ping"}"#))
                .await
                .unwrap();
        }
        h.client.flush().await.unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        let mut pongs = 0;
        loop {
            let v = next_json(&mut h.client).await;
            if v["type"] == "expired" {
                break;
            }
            assert_eq!(v["type"], "pong");
            pongs += 1;
        }
        assert_eq!(
            pongs, 0,
            "`expired` comes before the answers to waiting frames"
        );
    }

    /// A drain that starts as the grant ends closes with 1001, the drain's
    /// code, without `expired` first.
    #[tokio::test(start_paused = true)]
    async fn shutdown_goes_ahead_of_the_end_of_the_grant() {
        let mut h = harness_granted(context(10), Config::default(), 1 << 16, granted(10)).await;
        h.shutdown.cancel();
        tokio::time::advance(Duration::from_secs(11)).await;
        match h.client.next().await.expect("a frame").unwrap() {
            WsMessage::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
            other => panic!("{other:?} before the close"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_with_1001_after_pending_messages() {
        let mut h = harness(Config::default(), 10, 1 << 16).await;
        subscribe(&mut h.client, "a").await;
        publish(&h.bus, "a", 1).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        h.shutdown.cancel();
        assert_eq!(next_json(&mut h.client).await["data"], "m0");
        assert_eq!(close_code(&mut h.client).await, 1001);
        h.task.await.unwrap();
    }

    /// Messages delivered so far, as the metrics count them.
    fn delivered(stats: &herald_http::Stats) -> u64 {
        stats.snapshot().deliveries[Transport::ALL
            .iter()
            .position(|t| *t == Transport::Ws)
            .unwrap()]
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_connection_is_written_to_by_the_publisher_in_order() {
        let ctx = context(100);
        let stats = ctx.stats.clone();
        let mut h = harness_with(ctx, Config::default(), 1 << 16).await;
        subscribe(&mut h.client, "a").await;
        // The channel's first message goes through the task (a channel
        // without ids is never tapped); from then on the connection waits
        // caught up.
        publish_from(&h.bus, "a", 0, 1).await;
        assert_eq!(next_json(&mut h.client).await["data"], "m0");
        tokio::time::sleep(Duration::from_millis(1)).await;
        publish_from(&h.bus, "a", 1, 3).await;
        for i in 1..4 {
            let v = next_json(&mut h.client).await;
            assert_eq!(v["data"], format!("m{i}"));
        }
        // Still tapped: a later publish goes the same way.
        tokio::time::sleep(Duration::from_millis(1)).await;
        publish_from(&h.bus, "a", 4, 1).await;
        assert_eq!(next_json(&mut h.client).await["data"], "m4");
        assert_eq!(delivered(&stats), 5, "each counted once");
    }

    #[tokio::test(start_paused = true)]
    async fn one_publish_reaches_every_waiting_connection_once() {
        // More connections than tokio's cooperative budget allows writes in
        // one poll (port.rs tests the pass itself against the budget).
        let ctx = context(100);
        let stats = ctx.stats.clone();
        let mut clients = Vec::new();
        for _ in 0..300 {
            let mut h = harness_with(ctx.clone(), Config::default(), 1 << 12).await;
            subscribe(&mut h.client, "a").await;
            clients.push(h);
        }
        publish_from(&ctx.bus, "a", 0, 1).await;
        for h in &mut clients {
            assert_eq!(next_json(&mut h.client).await["data"], "m0");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        publish_from(&ctx.bus, "a", 1, 1).await;
        for h in &mut clients {
            assert_eq!(next_json(&mut h.client).await["data"], "m1");
        }
        assert_eq!(delivered(&stats), 600, "each counted once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_the_socket_takes_in_part_is_finished_before_the_next() {
        // A pipe smaller than one message: the publisher begins the frame,
        // the connection's task finishes it, then reads the rest.
        let ctx = context(100);
        let mut h = harness_with(ctx, Config::default(), 64).await;
        subscribe(&mut h.client, "a").await;
        publish_from(&h.bus, "a", 0, 1).await;
        assert_eq!(next_json(&mut h.client).await["data"], "m0");
        tokio::time::sleep(Duration::from_millis(1)).await;
        let big = "x".repeat(300);
        let drafts = (0..5)
            .map(|i| Draft {
                channel: ChannelName::new("a").unwrap(),
                event: None,
                payload: Payload::text(format!("{i}{big}")).unwrap(),
            })
            .collect();
        h.bus.publish(drafts).await.unwrap();
        for i in 0..5 {
            let v = next_json(&mut h.client).await;
            assert_eq!(v["data"], format!("{i}{big}"), "whole frames, in order");
        }
    }

    #[tokio::test]
    async fn a_slow_reader_gets_a_gap_and_continues_from_the_oldest() {
        // A pipe that holds a few frames only: the server cannot flush while
        // the client does not read.
        let mut h = harness(Config::default(), 5, 512).await;
        subscribe(&mut h.client, "a").await;
        for round in 0..10 {
            publish_from(&h.bus, "a", round * 5, 5).await;
            tokio::task::yield_now().await;
        }
        let mut seen = Vec::new();
        let mut gaps = 0;
        while seen.last() != Some(&49) {
            let v = next_json(&mut h.client).await;
            match v["type"].as_str() {
                Some("gap") => {
                    assert_eq!(v["reason"], "history");
                    gaps += 1;
                }
                Some("message") => {
                    let data = v["data"].as_str().unwrap();
                    seen.push(data[1..].parse::<usize>().unwrap());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(gaps >= 1, "falling behind must be reported: {seen:?}");
        assert!(seen.len() < 50, "messages were missed: {seen:?}");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "in order, once: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_reader_is_closed_with_1013_when_configured() {
        let config = Config {
            slow_policy: SlowPolicy::Close,
            ..Config::default()
        };
        let mut h = harness(config, 5, 512).await;
        subscribe(&mut h.client, "a").await;
        for _ in 0..10 {
            publish(&h.bus, "a", 5).await;
            tokio::task::yield_now().await;
        }
        assert_eq!(close_code(&mut h.client).await, 1013);
    }

    #[tokio::test]
    async fn resuming_from_an_expired_cursor_is_a_gap_not_a_slow_reader() {
        let config = Config {
            slow_policy: SlowPolicy::Close,
            ..Config::default()
        };
        let mut h = harness(config, 5, 1 << 16).await;
        let first = h
            .bus
            .publish(vec![Draft {
                channel: ChannelName::new("a").unwrap(),
                event: None,
                payload: Payload::text("old").unwrap(),
            }])
            .await
            .unwrap();
        publish(&h.bus, "a", 10).await;
        let f = format!(
            r#"{{"type":"subscribe","channels":["a"],"since":"{}"}}"#,
            first[0].cursor
        );
        h.client.send(WsMessage::text(f)).await.unwrap();
        assert_eq!(next_json(&mut h.client).await["type"], "subscribed");
        let v = next_json(&mut h.client).await;
        assert_eq!(
            (v["type"].as_str(), v["reason"].as_str()),
            (Some("gap"), Some("history"))
        );
        assert_eq!(next_json(&mut h.client).await["data"], "m5");
    }

    /// An engine whose store is always unreachable, with details a client
    /// must never see.
    struct Down;

    const SECRET: &str = "redis: 10.1.2.3:6379 refused the login of user herald";

    impl herald_bus::Engine for Down {
        fn epoch(&self) -> u64 {
            1
        }
        fn publish(
            &self,
            _: Vec<Draft>,
        ) -> futures::future::BoxFuture<'_, Result<Vec<Arc<herald_bus::Message>>, herald_bus::Error>>
        {
            Box::pin(async { Err(herald_bus::Error::Unavailable(SECRET.into())) })
        }
        fn read<'a>(
            &'a self,
            _: &'a ChannelName,
            _: u64,
            _: usize,
        ) -> futures::future::BoxFuture<'a, Result<herald_bus::Page, herald_bus::Error>> {
            Box::pin(async { Err(herald_bus::Error::Unavailable(SECRET.into())) })
        }
        fn watch(&self, _: &ChannelName) -> herald_bus::Watch {
            let (tx, rx) = tokio::sync::watch::channel(herald_bus::Signal::default());
            herald_bus::Watch::new(rx, Some(Box::new(tx)))
        }
        fn info<'a>(
            &'a self,
            _: &'a ChannelName,
        ) -> futures::future::BoxFuture<'a, Result<herald_bus::ChannelInfo, herald_bus::Error>>
        {
            Box::pin(async { Err(herald_bus::Error::Unavailable(SECRET.into())) })
        }
        fn delete<'a>(
            &'a self,
            _: &'a ChannelName,
        ) -> futures::future::BoxFuture<'a, Result<bool, herald_bus::Error>> {
            Box::pin(async { Err(herald_bus::Error::Unavailable(SECRET.into())) })
        }
        fn health(&self) -> herald_bus::Health {
            herald_bus::Health::Down(SECRET.into())
        }
    }

    #[tokio::test]
    async fn an_engine_failure_is_told_without_its_details() {
        let ctx = Context {
            bus: Bus::new(Down),
            limits: Limits::default(),
            shutdown: CancellationToken::new(),
            stats: Default::default(),
            auth: Default::default(),
        };
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(Port::new(a), Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let sub = ctx.bus.empty_subscription();
        let config = Arc::new(Config::default());
        tokio::spawn(serve(server, sub, None, ctx, config, no_access()));
        let f = r#"{"type":"subscribe","channels":["a"],"ref":"s"}"#;
        client.send(WsMessage::text(f)).await.unwrap();
        let v = next_json(&mut client).await;
        assert_eq!(
            (v["type"].as_str(), v["ref"].as_str(), v["code"].as_str()),
            (Some("error"), Some("s"), Some("engine_unavailable"))
        );
        assert_eq!(v["message"], Code::EngineUnavailable.message());
        assert!(v["request_id"].is_string());
        assert!(!v.to_string().contains("10.1.2.3"), "{v}");
        // Not a bad frame: the connection still serves.
        client
            .send(WsMessage::text(r#"{"type":"ping"}"#))
            .await
            .unwrap();
        assert_eq!(next_json(&mut client).await["type"], "pong");
    }

    #[tokio::test]
    async fn deleted_channels_are_reported() {
        let mut h = harness(Config::default(), 10, 1 << 16).await;
        subscribe(&mut h.client, "a").await;
        publish(&h.bus, "a", 1).await;
        assert_eq!(next_json(&mut h.client).await["data"], "m0");
        h.bus.delete(&ChannelName::new("a").unwrap()).await.unwrap();
        let v = next_json(&mut h.client).await;
        assert_eq!(v["type"], "gap");
        assert_eq!(v["reason"], "deleted");
        assert_eq!(v["channels"][0], "a");
    }
}
