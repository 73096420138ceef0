//! What the subscriber transports count, and the one log line each
//! subscriber session leaves when it ends.
//!
//! Counting sits on the fan-out path (every delivery to every subscriber),
//! so it must cost next to nothing there: each count is one relaxed atomic
//! add into a shard picked by the current thread, and shards sit on cache
//! lines of their own, so that threads delivering at the same time never
//! fight over a line. Nothing is locked, nothing allocates; the shards are
//! summed only when [`Stats::snapshot`] is called (a metrics scrape).
//!
//! A [`Session`] is one subscriber's stay (an SSE stream, a WebSocket
//! connection, a long poll): it holds the connection and subscription
//! gauges up while it lives, and when it is dropped it logs one line
//! (transport, duration, messages, bytes, reason) under the
//! `herald::session` target. Bodies, channel names and tokens are never
//! logged. What is left out: rendering (the server turns a [`Snapshot`]
//! into Prometheus text) and anything about publishing or the engine.

use herald_bus::Batch;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Instant,
};

/// The subscriber transports, as the metrics label them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Short polling.
    Poll,
    /// Long polling.
    LongPoll,
    /// Server-Sent Events.
    Sse,
    /// WebSocket.
    Ws,
}

impl Transport {
    /// Every transport, in label order.
    pub const ALL: [Transport; 4] = [
        Transport::Poll,
        Transport::LongPoll,
        Transport::Sse,
        Transport::Ws,
    ];

    /// The `transport` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Poll => "poll",
            Transport::LongPoll => "longpoll",
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }
}

/// How a WebSocket connection ended, as `herald_ws_closes_total` labels it:
/// the close code herald sent, `1006` when the socket went away without a
/// close frame, or `client` when the client closed first.
pub const WS_CLOSE_LABELS: [&str; 10] = [
    "1000", "1001", "1002", "1007", "1008", "1009", "1011", "1013", "1006", "client",
];

/// What is counted per transport.
#[derive(Clone, Copy)]
enum Per {
    Connections,
    Subscriptions,
    Deliveries,
    Bytes,
    Gaps,
    SlowCloses,
}

const PER: usize = 6;
const TRANSPORTS: usize = Transport::ALL.len();
/// The cells of one shard: per-transport counts, then WebSocket closes.
const CELLS: usize = TRANSPORTS * PER + WS_CLOSE_LABELS.len();
/// Shards; more than the cores of most machines that run herald, so that
/// two threads rarely share one.
const SHARDS: usize = 16;

fn cell(t: Transport, what: Per) -> usize {
    t as usize * PER + what as usize
}

/// One thread's counts, alone on its cache lines.
#[repr(align(128))]
struct Shard([AtomicU64; CELLS]);

/// The counts of every transport on this server. Cheap to clone; clones
/// count into the same cells.
#[derive(Clone)]
pub struct Stats {
    shards: Arc<[Shard; SHARDS]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            shards: Arc::new(std::array::from_fn(|_| {
                Shard(std::array::from_fn(|_| AtomicU64::new(0)))
            })),
        }
    }
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

/// The shard of the current thread, assigned round-robin on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

impl Stats {
    fn add(&self, cell: usize, n: u64) {
        self.shards[shard_index()].0[cell].fetch_add(n, Relaxed);
    }

    /// Gauges go down by adding the two's complement: shards are summed
    /// with wrapping arithmetic, so the total is right whichever thread
    /// went up and whichever went down.
    fn sub(&self, cell: usize, n: u64) {
        self.add(cell, n.wrapping_neg());
    }

    fn sum(&self, cell: usize) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.0[cell].load(Relaxed)))
    }

    /// Opens a subscriber session of `transport` on `channels` channels: the
    /// connection and subscription gauges count it until it is dropped.
    pub fn session(&self, transport: Transport, channels: usize) -> Session {
        self.add(cell(transport, Per::Connections), 1);
        self.add(cell(transport, Per::Subscriptions), channels as u64);
        Session {
            stats: self.clone(),
            transport,
            started: Instant::now(),
            channels,
            messages: 0,
            bytes: 0,
            reason: "client gone",
            ws_close: None,
            tally: None,
        }
    }

    /// A short poll answered `batch` in `bytes` bytes. Short polls are
    /// single requests, not sessions: they count deliveries, gaps and bytes
    /// but no connection, and log nothing (request tracing covers them).
    /// Cheaper than a [`Session`]: no clock read, no shared reference count.
    pub fn answered(&self, transport: Transport, batch: &Batch, bytes: usize) {
        self.count_batch(transport, batch);
        self.add(cell(transport, Per::Bytes), bytes as u64);
    }

    fn count_batch(&self, t: Transport, batch: &Batch) {
        if !batch.messages.is_empty() {
            self.add(cell(t, Per::Deliveries), batch.messages.len() as u64);
        }
        if !batch.gaps.is_empty() {
            self.add(cell(t, Per::Gaps), 1);
        }
    }

    /// The sums of every shard now. Each value is read on its own, so a
    /// snapshot taken while subscribers come and go may be off by the
    /// changes made while it was read.
    pub fn snapshot(&self) -> Snapshot {
        let per = |what| Transport::ALL.map(|t| self.sum(cell(t, what)));
        let gauge = |what| per(what).map(|v| v as i64);
        Snapshot {
            connections: gauge(Per::Connections),
            subscriptions: gauge(Per::Subscriptions),
            deliveries: per(Per::Deliveries),
            bytes: per(Per::Bytes),
            gaps: per(Per::Gaps),
            slow_closes: per(Per::SlowCloses),
            ws_closes: std::array::from_fn(|i| self.sum(TRANSPORTS * PER + i)),
        }
    }
}

/// The counts at one moment, indexed like [`Transport::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Open sessions (streams, connections, requests in progress).
    pub connections: [i64; TRANSPORTS],
    /// Channels subscribed by open sessions (a session on three channels
    /// counts three).
    pub subscriptions: [i64; TRANSPORTS],
    /// Messages delivered.
    pub deliveries: [u64; TRANSPORTS],
    /// Bytes of response bodies, events and frames handed to sockets.
    pub bytes: [u64; TRANSPORTS],
    /// Gap notices sent: a subscriber was told it missed messages.
    pub gaps: [u64; TRANSPORTS],
    /// Sessions closed because their reader fell behind.
    pub slow_closes: [u64; TRANSPORTS],
    /// WebSocket closes, indexed like [`WS_CLOSE_LABELS`].
    pub ws_closes: [u64; WS_CLOSE_LABELS.len()],
}

/// One subscriber's session: counts what it sends and logs one line when
/// dropped.
pub struct Session {
    stats: Stats,
    transport: Transport,
    started: Instant,
    /// Channels counted in the subscription gauge.
    channels: usize,
    messages: u64,
    bytes: u64,
    reason: &'static str,
    /// The `ws_closes` cell to count when the session ends.
    ws_close: Option<usize>,
    /// What the publishing task delivered for this session, if it did.
    tally: Option<Arc<Tally>>,
}

/// The counts of one session's deliveries made by the publishing task
/// (herald-bus's taps), which cannot reach the session itself: atomics it
/// adds to, and the session reads when it ends.
pub struct Tally {
    stats: Stats,
    transport: Transport,
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    /// `messages` messages of `bytes` bytes in all were handed to the
    /// socket. Must not be called for one tally from two threads at once
    /// (a tap's lock ensures it for its outlet): the session's own counts
    /// are plain loads and stores, not locked adds, and would lose counts.
    pub fn delivered(&self, messages: usize, bytes: usize) {
        let add =
            |count: &AtomicU64, n: usize| count.store(count.load(Relaxed) + n as u64, Relaxed);
        add(&self.messages, messages);
        add(&self.bytes, bytes);
        self.stats
            .add(cell(self.transport, Per::Deliveries), messages as u64);
        self.stats
            .add(cell(self.transport, Per::Bytes), bytes as u64);
    }
}

impl Session {
    /// The counter for this session's deliveries made elsewhere (by the
    /// publishing task); they count in the metrics as they happen and in
    /// the session's log line when it ends.
    pub fn tally(&mut self) -> Arc<Tally> {
        self.tally
            .get_or_insert_with(|| {
                Arc::new(Tally {
                    stats: self.stats.clone(),
                    transport: self.transport,
                    messages: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// A batch was written: its messages count as delivered, and its gap
    /// (if it reports missed messages) as a gap notice. Its bytes are
    /// counted by [`Session::bytes`], where they are written.
    pub fn batch(&mut self, batch: &Batch) {
        self.messages += batch.messages.len() as u64;
        self.stats.count_batch(self.transport, batch);
    }

    /// `n` bytes were handed to the socket (a body, an event frame, a
    /// WebSocket frame, a heartbeat).
    pub fn bytes(&mut self, n: usize) {
        self.bytes += n as u64;
        self.stats.add(cell(self.transport, Per::Bytes), n as u64);
    }

    /// The session now subscribes `channels` channels (a WebSocket that
    /// subscribed or unsubscribed).
    pub fn channels(&mut self, channels: usize) {
        let c = cell(self.transport, Per::Subscriptions);
        self.stats.add(c, channels as u64);
        self.stats.sub(c, self.channels as u64);
        self.channels = channels;
    }

    /// Why the session ends, for its log line (default `client gone`).
    pub fn reason(&mut self, reason: &'static str) {
        self.reason = reason;
    }

    /// The session is closed because its reader fell behind.
    pub fn slow(&mut self, reason: &'static str) {
        self.stats.add(cell(self.transport, Per::SlowCloses), 1);
        self.reason = reason;
    }

    /// The WebSocket close: `code` is what herald sent (`None` when the
    /// socket went away without a close frame), or the client closed first
    /// when `by_client`.
    pub fn ws_close(&mut self, code: Option<u16>, by_client: bool) {
        let label = match (by_client, code) {
            (true, _) => "client",
            (false, None) => "1006",
            (false, Some(code)) => match code {
                1000 => "1000",
                1001 => "1001",
                1002 => "1002",
                1007 => "1007",
                1008 => "1008",
                1009 => "1009",
                1013 => "1013",
                _ => "1011",
            },
        };
        self.ws_close = WS_CLOSE_LABELS.iter().position(|l| *l == label);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let t = self.transport;
        self.stats.sub(cell(t, Per::Connections), 1);
        self.stats
            .sub(cell(t, Per::Subscriptions), self.channels as u64);
        if let Some(i) = self.ws_close {
            self.stats.add(TRANSPORTS * PER + i, 1);
        }
        if let Some(tally) = &self.tally {
            self.messages += tally.messages.load(Relaxed);
            self.bytes += tally.bytes.load(Relaxed);
        }
        tracing::info!(
            target: "herald::session",
            transport = t.as_str(),
            duration_ms = self.started.elapsed().as_millis() as u64,
            messages = self.messages,
            bytes = self.bytes,
            reason = self.reason,
            "subscriber session ended"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_bus::{ChannelName, Cursor, Draft, Message, Payload};

    fn batch(messages: usize, gap: bool) -> Batch {
        let channel = ChannelName::new("a").unwrap();
        let message = |id| {
            let draft = Draft {
                channel: channel.clone(),
                event: None,
                payload: Payload::text("x").unwrap(),
            };
            Arc::new(Message::new(draft, id, 0, 1))
        };
        let mut b = Batch::unchanged(Cursor::after(&message(1)));
        b.messages = (1..=messages as u64).map(message).collect();
        if gap {
            b.gaps.push(channel);
        }
        b
    }

    #[test]
    fn sessions_hold_gauges_and_leave_counts() {
        let stats = Stats::default();
        let mut ws = stats.session(Transport::Ws, 2);
        let sse = stats.session(Transport::Sse, 1);
        ws.batch(&batch(3, true));
        ws.batch(&batch(0, false));
        ws.bytes(300);
        ws.bytes(10);
        ws.channels(5);
        let s = stats.snapshot();
        assert_eq!(s.connections, [0, 0, 1, 1]);
        assert_eq!(s.subscriptions, [0, 0, 1, 5]);
        assert_eq!((s.deliveries[3], s.bytes[3], s.gaps[3]), (3, 310, 1));
        ws.slow("fell behind");
        ws.ws_close(Some(1013), false);
        drop(ws);
        drop(sse);
        let s = stats.snapshot();
        assert_eq!(s.connections, [0; 4]);
        assert_eq!(s.subscriptions, [0; 4]);
        assert_eq!(s.slow_closes[3], 1);
        let i = WS_CLOSE_LABELS.iter().position(|l| *l == "1013").unwrap();
        assert_eq!(s.ws_closes[i], 1);
        assert_eq!(s.deliveries[3], 3, "counters outlive the session");
    }

    #[test]
    fn ws_close_labels() {
        let stats = Stats::default();
        for (code, by_client) in [(Some(1001), false), (None, false), (Some(1000), true)] {
            let mut s = stats.session(Transport::Ws, 0);
            s.ws_close(code, by_client);
        }
        let s = stats.snapshot();
        let labelled = |label: &str| {
            let i = WS_CLOSE_LABELS.iter().position(|l| *l == label)?;
            Some(s.ws_closes[i])
        };
        assert_eq!(labelled("1001"), Some(1));
        assert_eq!(labelled("1006"), Some(1));
        assert_eq!(labelled("client"), Some(1));
        assert_eq!(labelled("1008"), Some(0));
    }

    #[test]
    fn gauges_sum_across_threads() {
        let stats = Stats::default();
        let session = stats.session(Transport::LongPoll, 1);
        // Dropped on another thread: another shard goes down.
        std::thread::spawn(move || drop(session)).join().unwrap();
        assert_eq!(stats.snapshot().connections, [0; 4]);
    }
}
