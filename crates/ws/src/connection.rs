//! One upgraded WebSocket connection: a single task that selects on the
//! client's frames, the connection's subscription, the ping timer and the
//! server's shutdown signal, and that ends with a close frame.
//!
//! The connection keeps no queue of its own (the bus owns order and replay):
//! it reads the next batch from its [`Subscription`] only once everything
//! written before has been flushed to the socket. A reader whose socket does
//! not drain therefore costs one batch of buffered frames at most; meanwhile
//! the subscription's positions stay put, and if the channel's history moves
//! past them the next read reports a gap (or, by configuration, the
//! connection is closed with 1013). Handshakes and routing are the upgrade
//! module's business.

use std::{future::poll_fn, pin::Pin, sync::Arc, task::Poll, time::Duration};

use bytes::Bytes;
use futures::{Sink, Stream};
use herald_auth::Decision;
use herald_bus::{Batch, ChannelName, Subscription};
use herald_http::{Code, Context, Error, refusal};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout},
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
    frame::{self, GapReason, Op},
    session::{Due, EXPIRED_CLOSE, Session},
};

/// Replies (to subscribe, ping, bad frames) that may wait for a socket that
/// does not drain before the connection stops reading the client: beyond
/// this, a client that sends but does not read is held back by TCP instead
/// of growing the server's write buffer.
const MAX_UNFLUSHED_REPLIES: usize = 64;

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

/// What woke the connection up.
enum Event {
    Shutdown,
    Read(Option<Result<WsMessage, WsError>>),
    Flushed(Result<(), WsError>),
    PingDue,
    PongOverdue,
    Batch(Batch),
    /// The session's grant ended, or its grace period did.
    Auth(Due),
}

/// A connection's state between events.
struct Connection<S> {
    ws: WebSocketStream<S>,
    sub: Subscription,
    ctx: Context,
    config: Arc<Config>,
    /// Frames were handed to the socket and not yet flushed; no new batch
    /// is read until they are.
    flushing: bool,
    /// Replies handed to the socket since the last completed flush.
    replies: usize,
    /// Bad client frames so far.
    bad_frames: u32,
    /// Channels subscribed since the last batch was read: a gap on one of
    /// them is the client resuming from an old cursor, not falling behind.
    fresh: Vec<ChannelName>,
    /// What the connection's credentials grant, until when.
    session: Session,
}

/// Serves one connection until it ends, then closes it. `greeting` is sent
/// first (the `subscribed` frame of `/ws/{channels}`); `fresh` names the
/// channels `sub` was created with; `session` is what the handshake's
/// credentials were granted.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    sub: Subscription,
    greeting: Option<Bytes>,
    ctx: Context,
    config: Arc<Config>,
    session: Session,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fresh = sub.channels().cloned().collect();
    let mut c = Connection {
        ws,
        sub,
        ctx,
        config,
        flushing: false,
        replies: 0,
        bad_frames: 0,
        fresh,
        session,
    };
    let end = match greeting {
        Some(g) => match c.reply(g) {
            Ok(()) => c.run().await,
            Err(end) => end,
        },
        None => c.run().await,
    };
    tracing::debug!(?end, "websocket connection ends");
    c.finish(end).await;
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(&mut self) -> End {
        let every = self.config.ping_interval;
        let mut ping = interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let pong_due = sleep_until(Instant::now());
        tokio::pin!(pong_due);
        let mut awaiting_pong = false;
        let shutdown = self.ctx.shutdown.clone();
        let limit = self.ctx.limits.max_messages;
        loop {
            let flushing = self.flushing;
            let reading = !flushing || self.replies < MAX_UNFLUSHED_REPLIES;
            let ws = &mut self.ws;
            let socket = poll_fn(|cx| {
                if flushing {
                    if let Poll::Ready(r) = Pin::new(&mut *ws).poll_flush(cx) {
                        return Poll::Ready(Event::Flushed(r));
                    }
                }
                if reading {
                    Pin::new(&mut *ws).poll_next(cx).map(Event::Read)
                } else {
                    Poll::Pending
                }
            });
            let due = self.session.due();
            let auth_due = async {
                match due {
                    Some((at, what)) => {
                        sleep_until(at).await;
                        what
                    }
                    None => std::future::pending().await,
                }
            };
            let paused = self.session.paused();
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => Event::Shutdown,
                what = auth_due => Event::Auth(what),
                e = socket => e,
                () = &mut pong_due, if awaiting_pong => Event::PongOverdue,
                _ = ping.tick() => Event::PingDue,
                b = self.sub.next(limit), if !flushing && !paused => Event::Batch(b),
            };
            let step = match event {
                Event::Shutdown => Err(End::Close(CloseCode::Away, "server shutting down")),
                Event::PongOverdue => Err(End::Close(
                    CloseCode::Policy,
                    "no pong within the ping timeout",
                )),
                Event::PingDue if awaiting_pong => Ok(()),
                Event::PingDue => {
                    awaiting_pong = true;
                    pong_due
                        .as_mut()
                        .reset(Instant::now() + self.config.ping_timeout);
                    self.send(WsMessage::Ping(Bytes::new()))
                }
                Event::Flushed(Ok(())) => {
                    self.flushing = false;
                    self.replies = 0;
                    Ok(())
                }
                Event::Flushed(Err(_)) | Event::Read(None) => Err(End::Gone),
                Event::Read(Some(Err(e))) => Err(read_error(e)),
                Event::Read(Some(Ok(WsMessage::Pong(_)))) => {
                    awaiting_pong = false;
                    Ok(())
                }
                Event::Read(Some(Ok(m))) => self.on_message(m).await,
                Event::Batch(batch) => self.deliver(batch),
                Event::Auth(Due::Expired) => {
                    self.session.expire(self.ctx.auth.refresh_grace());
                    self.reply(frame::expired())
                }
                Event::Auth(Due::GraceOver) => {
                    Err(End::Close(CloseCode::from(EXPIRED_CLOSE), "token expired"))
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_message(&mut self, m: WsMessage) -> Result<(), End> {
        match m {
            WsMessage::Text(text) => self.on_text(text.as_str()).await,
            WsMessage::Binary(_) => self.refuse(None, Error::from(Code::BinaryNotSupported)),
            WsMessage::Ping(_) => {
                // tungstenite queued the pong; make sure it leaves.
                self.flushing = true;
                Ok(())
            }
            WsMessage::Close(_) => Err(End::PeerClosed),
            WsMessage::Pong(_) | WsMessage::Frame(_) => Ok(()),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let parsed = frame::parse(text, self.ctx.limits.max_messages);
        let reference = parsed.reference.as_deref();
        match parsed.op {
            Err(refusal) => self.refuse(reference, refusal),
            Ok(Op::Ping) => self.reply(frame::pong(reference)),
            Ok(Op::Auth { token }) => self.on_auth(reference, token).await,
            Ok(Op::Subscribe {
                channels,
                start,
                token,
            }) => {
                let new: Vec<ChannelName> = channels
                    .iter()
                    .filter(|c| !self.sub.channels().any(|s| s == *c))
                    .cloned()
                    .collect();
                let max = self.config.max_subscriptions;
                if self.sub.len() + new.len() > max {
                    return self.refuse(
                        reference,
                        Error::new(
                            Code::TooManySubscriptions,
                            format!("at most {max} channels per connection"),
                        ),
                    );
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
                match self.sub.add(&new, &start).await {
                    // The engine is unavailable: not the client's fault,
                    // so not a bad frame; its details stay in the log.
                    Err(e) => self.reply(frame::error(reference, &Error::from(e))),
                    Ok(()) => {
                        self.fresh.extend(new);
                        let cursor = self.sub.cursor();
                        self.reply(frame::subscribed(reference, &channels, &cursor))
                    }
                }
            }
            Ok(Op::Unsubscribe { channels }) => {
                let removed = self.sub.remove(&channels);
                self.fresh.retain(|c| !removed.contains(c));
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
            Some(t) => self.session.credentials.clone().with_token(t),
            None => self.session.credentials.clone(),
        };
        let decision = self.ctx.auth.authorize(&credentials, channels, "ws").await;
        let refused = match &decision {
            Decision::Allowed(grant) => {
                self.session.add(credentials, grant);
                Vec::new()
            }
            Decision::Forbidden { refused, grant } => {
                self.session.add(credentials, grant);
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
        let credentials = self.session.credentials.clone().with_token(token);
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
        self.session.renew(credentials, grant);
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
        let behind = batch.gaps.iter().any(|c| !self.fresh.contains(c));
        self.fresh.clear();
        if behind && self.config.slow_policy == SlowPolicy::Close {
            return Err(End::Close(
                CloseCode::Again,
                "fell behind the retained history",
            ));
        }
        if !batch.gaps.is_empty() {
            self.text(frame::gap(&batch.gaps, GapReason::History))?;
        }
        for m in &batch.messages {
            self.text(frame::message(m))?;
        }
        if !batch.gone.is_empty() {
            self.text(frame::gap(&batch.gone, GapReason::Deleted))?;
        }
        Ok(())
    }

    fn reply(&mut self, bytes: Bytes) -> Result<(), End> {
        self.replies += 1;
        self.text(bytes)
    }

    /// Hands a text frame to the socket without waiting (the frame is
    /// already valid UTF-8: herald built it, so it is not checked again).
    fn text(&mut self, bytes: Bytes) -> Result<(), End> {
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.send(WsMessage::Frame(frame))
    }

    /// Hands a message to tungstenite's write buffer without waiting:
    /// tokio-tungstenite accepts it whatever the socket's state (a blocked
    /// write counts as accepted and is retried on flush), so the only bound
    /// on that buffer is this connection's own (one batch, a few replies).
    fn send(&mut self, m: WsMessage) -> Result<(), End> {
        self.flushing = true;
        Pin::new(&mut self.ws).start_send(m).map_err(|_| End::Gone)
    }

    /// Sends the close frame (flushing what was written before it), then
    /// waits, briefly, for the client to close its side.
    async fn finish(mut self, end: End) {
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
    fn no_session() -> Session {
        Session::new(Default::default(), &Default::default())
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
            auth: Default::default(),
        }
    }

    /// A server connection on one end of an in-memory pipe of `pipe`
    /// bytes, a client on the other.
    async fn harness(config: Config, history: usize, pipe: usize) -> Harness {
        let ctx = context(history);
        let (bus, shutdown) = (ctx.bus.clone(), ctx.shutdown.clone());
        let (a, b) = tokio::io::duplex(pipe);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let sub = bus.empty_subscription();
        let task = tokio::spawn(serve(
            server,
            sub,
            None,
            ctx,
            Arc::new(config),
            no_session(),
        ));
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
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let start = Instant::now();
        serve(
            server,
            sub,
            None,
            ctx,
            Arc::new(config.clone()),
            no_session(),
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
        assert_eq!(raw_close_code(&bytes), Some(1008));
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
            auth: Default::default(),
        };
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let sub = ctx.bus.empty_subscription();
        let config = Arc::new(Config::default());
        tokio::spawn(serve(server, sub, None, ctx, config, no_session()));
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
