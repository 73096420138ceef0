//! Storm: N clients connect at the same instant, and then, when a restart
//! command is given, the server is restarted under them and every one
//! reconnects at once.
//!
//! This is the load a gateway meets after a deploy or a network blip, and
//! what it tests is the listener, not delivery: the kernel's accept queue
//! (its overflows are counted from `/proc/net/netstat`, as `nstat` shows
//! them: `TcpExtListenOverflows`, `TcpExtListenDrops`, `TcpExtTCPSynRetrans`;
//! the counters are the host's, so other traffic on the machine adds to
//! them), the TCP connect time (a SYN dropped by a full queue costs the
//! client a 1 s retransmission), and for the restart how long the crowd
//! takes to be back (the reconnect spread).
//!
//! The connect time is each client's own: from its `connect` call to the
//! connection established. It is not counted from the start signal,
//! because one process cannot issue ten thousand connects at one instant:
//! its runtime wakes the clients one after the other, and each connect
//! costs the issuing core the whole loopback handshake (the kernel runs
//! the server's half of it in the sender's context too), so the last
//! connect call leaves hundreds of milliseconds after the first whatever
//! the server does. Timed from the signal, that queue of the load
//! generator would be charged to the server. When the call returns, a
//! loopback connection the server's queue admitted is already established
//! and is timed there, to the microsecond; one that is not (its SYN was
//! dropped, or the handshake is still under way) is timed when the runtime
//! next polls it, which adds this client's own scheduling and so is an
//! upper bound. How far apart the calls were is reported separately
//! (`connect_issue_us`, from the signal), and so is how many connections
//! had to be waited for (`connects_waited`). The server's accept loop shows
//! in neither figure (the kernel completes handshakes before `accept`);
//! it shows in the SSE response head, timed from the same connect call
//! (what one client waits for its stream once it has dialled, the
//! server's queue of accepted connections and requests included).
//!
//! Subscribers alternate: even ones open an SSE stream, odd ones hold a
//! long poll, each on its own connection, all parked before a single start
//! signal. The requests are written by hand on the socket rather than
//! through an HTTP client so that the client knows when its request left:
//! a held long poll answers nothing until it ends. An SSE subscriber is
//! "in place" (and "back") when its response head arrives, a long poll when
//! its request is written. After the restart command starts, a subscriber
//! whose stream or poll ends reconnects at once, and while the server
//! refuses, again every `retry` (a fixed interval, no jitter: the clients
//! a server must survive). Messages are not published: fan-out is another
//! scenario's.
//!
//! The restart itself is the caller's: a shell command that stops the
//! server and starts it again on the same address (herald's drain answers
//! held requests and ends streams before it exits).

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{Notify, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{Common, Ready, Shards, channel_names, report};
use crate::{Error, Latency, Report, Storm, Target, Transport, net};

/// Storm settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Subscribers (`subscribers`, default 10,000 from the CLI), channels,
    /// source spread, long-poll hold, target. `transport` is ignored (half
    /// SSE, half long polling); `connecting` and `ramp` too: all start at
    /// once.
    pub common: Common,
    /// Shell command that restarts the server (`sh -c`); `None` measures
    /// the connection storm only.
    pub restart: Option<String>,
    /// Wait between reconnection attempts while the server refuses.
    pub retry: Duration,
    /// Longest wait for every subscriber to be back after the restart.
    pub timeout: Duration,
}

impl Config {
    /// No restart; 100 ms between reconnection attempts, 60 s to be back.
    pub fn new(common: Common) -> Config {
        Config {
            common,
            restart: None,
            retry: Duration::from_millis(100),
            timeout: Duration::from_secs(60),
        }
    }
}

/// What every subscriber task shares.
struct Shared {
    target: Target,
    retry: Duration,
    stop: CancellationToken,
    ready: Ready,
    /// Subscribers parked before the start signal.
    parked: AtomicU64,
    /// TCP connect time from each client's connect call, µs.
    connect: Shards,
    /// Connect calls after the start signal, µs.
    issued: Shards,
    /// Connections not yet established when their connect call returned.
    waited: AtomicU64,
    /// SSE response head from the client's connect call, µs.
    head: Shards,
    /// Set when the restart command starts.
    restart_at: OnceLock<Instant>,
    /// Back after the restart, µs from its start.
    back: Mutex<Vec<u64>>,
    back_changed: Notify,
    /// Streams and polls that ended before any restart, and were opened
    /// again.
    early: AtomicU64,
}

/// Runs a storm. Fails when no subscriber gets in place or the restart
/// command fails to run; subscribers that fail or are not back in time are
/// counted, not fatal.
pub async fn run(cfg: &Config) -> Result<Report, Error> {
    let c = &cfg.common;
    c.target.supports(Transport::Sse)?;
    c.target.supports(Transport::Longpoll)?;
    let channels = channel_names(c.channels);
    let shared = Arc::new(Shared {
        target: c.target,
        retry: cfg.retry,
        stop: CancellationToken::new(),
        ready: Ready::default(),
        parked: AtomicU64::new(0),
        connect: Shards::new(),
        issued: Shards::new(),
        waited: AtomicU64::new(0),
        head: Shards::new(),
        restart_at: OnceLock::new(),
        back: Mutex::new(Vec::new()),
        back_changed: Notify::new(),
        early: AtomicU64::new(0),
    });
    let (go, start) = watch::channel(None::<Instant>);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..c.subscribers {
        let transport = if i % 2 == 0 {
            Transport::Sse
        } else {
            Transport::Longpoll
        };
        let client = Client {
            shared: shared.clone(),
            transport,
            path: request_path(c, transport, &channels[i % channels.len()]),
            from: net::source(c.target.sub, i, c.spread),
        };
        set.spawn(client.run(i, start.clone()));
    }
    while shared.parked.load(Ordering::SeqCst) < c.subscribers as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let before = Netstat::read();
    let t0 = Instant::now();
    go.send_replace(Some(t0));
    let in_place = shared.ready.wait(c.subscribers, c.ready_timeout).await;
    let storm_secs = t0.elapsed().as_secs_f64();
    let storm = before.delta(&Netstat::read());
    if let Err(e) = in_place {
        shared.stop.cancel();
        set.shutdown().await;
        return Err(e);
    }
    tokio::time::sleep(c.settle).await;

    let mut figures = Storm {
        listen_overflows: storm.overflows,
        listen_drops: storm.drops,
        syn_retrans: storm.syn_retrans,
        stream_head_us: Latency::of(&shared.head.merged()),
        connect_issue_us: Latency::of(&shared.issued.merged()),
        connects_waited: shared.waited.load(Ordering::SeqCst),
        ..Storm::default()
    };
    let mut ok = shared.ready.errors() == 0;
    if let Some(cmd) = &cfg.restart {
        let alive = shared.ready.ready() as usize;
        let before = Netstat::read();
        let t = Instant::now();
        let _ = shared.restart_at.set(t);
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .await?;
        if !status.success() {
            shared.stop.cancel();
            set.shutdown().await;
            return Err(Error::Usage(format!("restart command failed: {status}")));
        }
        let deadline = t + cfg.timeout;
        loop {
            let notified = shared.back_changed.notified();
            if shared.back.lock().expect("never poisoned").len() >= alive {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let after = before.delta(&Netstat::read());
        let mut back = shared.back.lock().expect("never poisoned").clone();
        back.sort_unstable();
        let h = Shards::new();
        for (i, us) in back.iter().enumerate() {
            h.record(i, *us);
        }
        figures.restart_listen_overflows = Some(after.overflows);
        figures.restart_listen_drops = Some(after.drops);
        figures.restart_syn_retrans = Some(after.syn_retrans);
        figures.reconnect_us = Latency::of(&h.merged());
        figures.reconnect_spread_ms = back
            .first()
            .zip(back.last())
            .map(|(a, b)| (b - a) as f64 / 1e3);
        figures.not_back = Some((alive - back.len().min(alive)) as u64);
        ok &= back.len() >= alive;
    }
    figures.early_ends = shared.early.load(Ordering::SeqCst);
    shared.stop.cancel();
    set.shutdown().await;

    let mut r = report("storm", c);
    r.transport = "sse+longpoll".into();
    if cfg.restart.is_some() {
        r.variant = "restart".into();
    }
    r.secs = storm_secs;
    r.errors = shared.ready.errors();
    r.latency_us = Latency::of(&shared.connect.merged());
    r.storm = Some(figures);
    r.ok = ok;
    Ok(r)
}

/// The request target of one subscriber.
fn request_path(c: &Common, transport: Transport, channel: &str) -> String {
    let path = c.target.sub_path(transport, channel);
    match (transport, c.target.system) {
        (Transport::Longpoll, crate::System::Herald) => {
            format!("{path}?timeout={}", c.hold_secs)
        }
        _ => path,
    }
}

/// One subscriber.
struct Client {
    shared: Arc<Shared>,
    transport: Transport,
    path: String,
    from: IpAddr,
}

impl Client {
    async fn run(self, i: usize, mut start: watch::Receiver<Option<Instant>>) {
        let s = &self.shared;
        s.parked.fetch_add(1, Ordering::SeqCst);
        let Ok(t0) = start
            .wait_for(Option::is_some)
            .await
            .map(|t| t.expect("set"))
        else {
            return;
        };
        let mut conn = match self.open(i, Some(t0)).await {
            Ok(conn) => {
                s.ready.up();
                conn
            }
            Err(e) => {
                s.ready.failed(&e);
                return;
            }
        };
        let mut back_recorded = false;
        loop {
            tokio::select! {
                () = ended(&mut conn, self.transport) => {}
                () = s.stop.cancelled() => return,
            }
            let restarting = s.restart_at.get().copied();
            if restarting.is_none() {
                s.early.fetch_add(1, Ordering::Relaxed);
            }
            conn = loop {
                tokio::select! {
                    r = self.open(i, None) => if let Ok(conn) = r {
                        break conn;
                    },
                    () = s.stop.cancelled() => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(s.retry) => {}
                    () = s.stop.cancelled() => return,
                }
            };
            if let (Some(at), false) = (restarting, back_recorded) {
                back_recorded = true;
                let us = at.elapsed().as_micros() as u64;
                s.back.lock().expect("never poisoned").push(us);
                s.back_changed.notify_one();
            }
        }
    }

    /// Connects and subscribes; with `t0`, records the connect time, when
    /// the connect was issued, and the head time from the connect call. An SSE stream
    /// is open when its 200 head arrived, a long poll when its request is
    /// written.
    async fn open(&self, i: usize, t0: Option<Instant>) -> Result<TcpStream, Error> {
        let s = &self.shared;
        let (mut conn, timed) = connect(s.target.sub, self.from).await?;
        if let Some(t0) = t0 {
            s.issued
                .record(i, timed.called.duration_since(t0).as_micros() as u64);
            s.connect.record(i, timed.took.as_micros() as u64);
            if timed.waited {
                s.waited.fetch_add(1, Ordering::Relaxed);
            }
        }
        let head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.path, s.target.sub
        );
        conn.write_all(head.as_bytes()).await?;
        if self.transport == Transport::Sse {
            let mut buf = [0u8; 1024];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                if n == buf.len() {
                    return Err(Error::Protocol("an SSE response head over 1 KiB"));
                }
                match conn.read(&mut buf[n..]).await? {
                    0 => return Err(Error::Closed),
                    k => n += k,
                }
            }
            if !buf.starts_with(b"HTTP/1.1 200") {
                let status = std::str::from_utf8(&buf[9..12.min(n)])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return Err(Error::Status(status));
            }
            if t0.is_some() {
                s.head.record(i, timed.called.elapsed().as_micros() as u64);
            }
        }
        Ok(conn)
    }
}

/// A non-blocking connect under way (`io::ErrorKind::InProgress` is not
/// stable yet).
#[cfg(any(target_os = "linux", target_os = "android"))]
const EINPROGRESS: i32 = 115;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const EINPROGRESS: i32 = 36;

/// When a connect was called, how long it took, and whether the
/// connection had to be waited for.
struct Timed {
    called: Instant,
    took: Duration,
    waited: bool,
}

/// A TCP connection to `to` from `from`, without Nagle's delay, timed
/// from the connect call: where the call returns with the connection
/// established (loopback, nothing dropped), that is its time; otherwise
/// when this task sees it established (see the module doc).
async fn connect(to: SocketAddr, from: IpAddr) -> Result<(TcpStream, Timed), Error> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::new(from, 0).into())?;
    let called = Instant::now();
    match sock.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    // getpeername fails until the handshake is complete.
    let established = sock.peer_addr().is_ok();
    let mut took = called.elapsed();
    let stream = TcpStream::from_std(sock.into())?;
    if !established {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e.into());
        }
        stream.peer_addr()?;
        took = called.elapsed();
    }
    stream.set_nodelay(true)?;
    let timed = Timed {
        called,
        took,
        waited: !established,
    };
    Ok((stream, timed))
}

/// Resolves when the server answers a long poll (its first byte), ends a
/// stream, or the connection fails; an SSE stream's frames before that
/// (retry, heartbeats) are read and dropped.
async fn ended(conn: &mut TcpStream, transport: Transport) {
    let mut buf = [0u8; 512];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) if transport == Transport::Longpoll => return,
            Ok(_) => continue,
        }
    }
}

/// The host's TCP listen counters (`/proc/net/netstat`, `TcpExt`).
#[derive(Debug, Clone, Copy, Default)]
struct Netstat {
    overflows: u64,
    drops: u64,
    syn_retrans: u64,
}

impl Netstat {
    /// Zeros where `/proc/net/netstat` cannot be read.
    fn read() -> Netstat {
        let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
        Netstat::parse(&text)
    }

    fn parse(text: &str) -> Netstat {
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return Netstat::default();
        };
        let mut out = Netstat::default();
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            let v = value.parse().unwrap_or(0);
            match name {
                "ListenOverflows" => out.overflows = v,
                "ListenDrops" => out.drops = v,
                "TCPSynRetrans" => out.syn_retrans = v,
                _ => {}
            }
        }
        out
    }

    fn delta(&self, after: &Netstat) -> Netstat {
        Netstat {
            overflows: after.overflows.saturating_sub(self.overflows),
            drops: after.drops.saturating_sub(self.drops),
            syn_retrans: after.syn_retrans.saturating_sub(self.syn_retrans),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loopback_connect_is_timed_from_its_call() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let before = Instant::now();
        let (stream, timed) = connect(to, net::source(to, 3, 16)).await.unwrap();
        assert!(timed.called >= before);
        assert!(timed.took <= before.elapsed());
        assert!(
            !timed.waited,
            "a loopback connection is established by the call"
        );
        assert_eq!(stream.local_addr().unwrap().ip(), net::source(to, 3, 16));
        // Nothing listens here any more: the error is the connect's.
        drop(listener);
        assert!(connect(to, net::source(to, 0, 1)).await.is_err());
    }

    #[test]
    fn netstat_counters_by_name() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                    TcpExt: 0 442 450 339\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        let n = Netstat::parse(text);
        assert_eq!((n.overflows, n.drops, n.syn_retrans), (442, 450, 339));
        let later = Netstat {
            overflows: 500,
            ..n
        };
        assert_eq!(n.delta(&later).overflows, 58);
        assert_eq!(Netstat::parse("").overflows, 0);
    }
}
