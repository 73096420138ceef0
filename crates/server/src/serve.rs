//! Accepting connections: hyper-util's auto builder (HTTP/1.1 and cleartext
//! HTTP/2) on each listener, the connection limits, the socket options that
//! find dead peers, the idle limit, and connection-level graceful shutdown.
//!
//! Every accepted connection either gets a place under the limits (a
//! [`ConnectionPermit`], held for as long as the connection lives, which
//! for a WebSocket is the life of the transport's task: the permit travels
//! in the request's extensions) or is answered 503 `overloaded` and closed
//! at once. The kernel's backlog never becomes a waiting room, so a
//! client at the cap learns it in one round trip instead of timing out.
//!
//! Graceful shutdown here only stops accepting and lets in-flight requests
//! finish (HTTP/1.1 responses then say `connection: close`); long-lived
//! responses end because their transports watch the shutdown token (see
//! `Herald::shutdown`). Upgraded WebSocket connections are tracked by the
//! transport's task tracker, not by this module. The send deadline of
//! hyper's connections is stall.rs's watchdog, selected on here next to
//! the connection (as the drain and the idle limit are). What it leaves out: the
//! listen backlog (binary.rs binds the listeners) and reading a client
//! address from proxy headers (the per-address cap counts peers).

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use herald_http::{Body, Code, ConnectionPermit, Public};
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::{ServiceExt, service_fn, util::BoxCloneSyncService};

use crate::{
    lean::{self, Lean, Outcome},
    rewind::Rewind,
    stall::{Watchdog, Watched},
};

/// The largest request head, on both paths.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// Refused connections being answered at once; past this many, further
/// ones are closed without an answer.
const MAX_REFUSING: usize = 256;

/// The most a refused connection is kept: time to read its request and
/// take the answer.
const REFUSE_TIME: Duration = Duration::from_secs(1);

/// The most an idle connection's goodbye may take.
const IDLE_GOODBYE: Duration = Duration::from_secs(1);

/// Why a connection's serving stopped.
enum Ended<R> {
    Done(R),
    Draining,
    Idle,
    Stalled,
}

/// Idle time before the kernel starts probing a silent peer, and the
/// interval of its probes.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Per-listener connection settings.
pub(crate) struct ConnLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_read_timeout: Duration,
    pub send_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_spread: Duration,
}

/// Accepts on `listener` until `stop` is cancelled, serving each connection
/// with `service` on a task of `tracker`. With `lean`, a connection's held
/// requests are served by the lean path first (see `lean.rs`) and hyper
/// takes over at the first request that path does not serve.
pub(crate) async fn accept(
    listener: TcpListener,
    service: BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>,
    lean: Option<lean::Routes>,
    limits: ConnLimits,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Small idle connections matter more than a large read buffer: a
        // subscriber sends one request and then only reads.
        .max_buf_size(MAX_HEAD);
    // HTTP/2 has no header read timeout; keep-alive pings find dead peers,
    // the idle limit below closes live ones that hold no stream.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let lean = lean.map(|routes| Lean {
        routes,
        max_head: MAX_HEAD,
        header_read_timeout: limits.header_read_timeout,
        send_timeout: limits.send_timeout,
        drain_spread: limits.drain_spread,
    });
    let shared = Arc::new(Shared {
        builder,
        service,
        lean,
        stop: stop.clone(),
        idle_timeout: limits.idle_timeout,
        send_timeout: limits.send_timeout,
    });
    let gate = Arc::new(Gate {
        max: limits.max_connections,
        max_per_ip: limits.max_connections_per_ip,
        open: Mutex::default(),
    });
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let refusal = overloaded();
    // Linux copies these options from the listener to every socket it
    // accepts: set once here, they cost a storm of ten thousand connects
    // no system call per accept.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    tune(socket2::SockRef::from(&listener), limits.send_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = gate.enter(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: over a connection limit");
            if let Ok(slot) = refusing.clone().try_acquire_owned() {
                let refusal = refusal.clone();
                tokio::spawn(async move {
                    refuse(stream, &refusal).await;
                    drop(slot);
                });
            }
            continue;
        };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        tune(socket2::SockRef::from(&stream), limits.send_timeout);
        // Tracked from the start, so that a drain waits for connections
        // that are still on the lean path.
        tracker.spawn(connection(shared.clone(), stream, peer, permit));
    }
}

/// What every connection of a listener shares: one reference each, rather
/// than a clone of every part (the service stack alone is a few hundred
/// bytes) in every idle connection.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    service: BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>,
    lean: Option<Lean>,
    stop: CancellationToken,
    idle_timeout: Duration,
    send_timeout: Duration,
}

/// Serves one connection: held requests on the lean path first, the rest
/// (and whatever follows them) with hyper.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    permit: ConnectionPermit,
) {
    let (stream, prefix) = match &shared.lean {
        Some(lean) => match lean::serve(stream, lean, &shared.stop).await {
            Outcome::Closed => return,
            Outcome::Handover(stream, prefix) => (stream, prefix),
        },
        None => (stream, Bytes::new()),
    };
    // On the heap, and only once hyper takes over: hyper's connection
    // state is several times what a connection held on the lean path
    // needs, and would otherwise be reserved in every one of them.
    let hyper = Box::pin(with_hyper(&shared, stream, prefix, peer, permit));
    hyper.await;
}

/// Serves the rest of a connection with hyper, until it ends, the drain
/// ends it, it idles or it stalls.
async fn with_hyper(
    shared: &Shared,
    stream: TcpStream,
    prefix: Bytes,
    peer: std::net::SocketAddr,
    permit: ConnectionPermit,
) {
    let stop = &shared.stop;
    let activity = Arc::new(Activity::default());
    let dog = Watchdog::new(shared.send_timeout);
    let service = carrying(
        shared.service.clone(),
        permit,
        activity.clone(),
        dog.clone(),
        stop.clone(),
    );
    let conn = shared.builder.serve_connection_with_upgrades(
        TokioIo::new(Rewind::new(stream, prefix)),
        TowerToHyperService::new(service),
    );
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Ended::Done(r),
        () = stop.cancelled() => Ended::Draining,
        () = activity.idle(shared.idle_timeout) => Ended::Idle,
        () = dog.stalled() => Ended::Stalled,
    };
    let result = match ended {
        Ended::Done(r) => r,
        Ended::Draining => {
            conn.as_mut().graceful_shutdown();
            // A stream stuck behind a closed window would hold the drain
            // until its timeout.
            tokio::select! {
                r = conn => r,
                () = dog.stalled() => stalled(peer),
            }
        }
        Ended::Idle => {
            // Nothing is in progress: HTTP/2's goodbye needs one round
            // trip, which a peer that does not answer does not get to
            // stretch.
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(IDLE_GOODBYE, conn)
                .await
                .unwrap_or(Ok(()))
        }
        Ended::Stalled => stalled(peer),
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// A connection whose peer took no bytes owed to it for the send timeout:
/// dropping it closes the socket and frees what hyper buffered for it.
fn stalled<E>(peer: std::net::SocketAddr) -> Result<(), E> {
    tracing::debug!(%peer, "connection closed: the peer took nothing for the send timeout");
    Ok(())
}

/// Socket options of an accepted connection (set on the listener where
/// accepted sockets inherit them): no Nagle delay; keep-alive probes, so
/// that a peer that vanished is noticed on an idle connection; and on
/// Linux a user timeout, so that data the peer never acknowledges (a zero
/// window included) ends the connection after `send_timeout`.
fn tune(socket: socket2::SockRef<'_>, send_timeout: Duration) {
    if let Err(e) = socket.set_tcp_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keep-alive");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket.set_tcp_user_timeout(Some(send_timeout)) {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = send_timeout;
}

/// The connection limits of one listener: open connections in all and per
/// peer address.
struct Gate {
    max: usize,
    /// 0: no per-address cap.
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl Gate {
    /// A place for a connection from `ip`, or `None` when a cap is reached.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionPermit> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max {
            return None;
        }
        if self.max_per_ip > 0 {
            let n = open.by_ip.entry(ip).or_default();
            if *n >= self.max_per_ip {
                return None;
            }
            *n += 1;
        }
        open.total += 1;
        Some(ConnectionPermit::new(Place {
            gate: self.clone(),
            ip,
        }))
    }
}

/// One connection's place under a [`Gate`], given back on drop.
struct Place {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if self.gate.max_per_ip > 0
            && let Some(n) = open.by_ip.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// The answer to a connection over a cap: 503 with the JSON error, and the
/// connection closes.
fn overloaded() -> Bytes {
    let code = Code::Overloaded;
    let mut body = String::from("{\"error\":{");
    Public {
        code,
        message: code.message(),
        request_id: None,
    }
    .write_fields(&mut body);
    body.push_str("}}");
    Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// Answers a refused connection and closes it, within [`REFUSE_TIME`]. The
/// request is read first (what has arrived of it), so that the close does
/// not reset the connection under the answer.
async fn refuse(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(REFUSE_TIME, async {
        let mut buf = [0u8; 2048];
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// `service`, with the connection's permit in every request's extensions
/// (a WebSocket upgrade takes it along), each request counted as activity
/// until its response body is dropped, each response body watched by the
/// connection's send deadline, and `connection: close` on HTTP/1.1
/// responses made once the drain has begun (hyper closes the connection
/// after them, and says so only when it is not already writing one).
fn carrying(
    service: BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>,
    permit: ConnectionPermit,
    activity: Arc<Activity>,
    dog: Arc<Watchdog>,
    stop: CancellationToken,
) -> BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible> {
    BoxCloneSyncService::new(service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(permit.clone());
        let busy = activity.begin();
        let http1 = req.version() == Version::HTTP_11;
        let answer = service.clone().oneshot(req);
        let (stop, dog) = (stop.clone(), dog.clone());
        async move {
            let mut res = answer.await?;
            if http1 && stop.is_cancelled() && res.status() != StatusCode::SWITCHING_PROTOCOLS {
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(res.map(|body| {
                Body::new(Counted {
                    body: dog.watch(body),
                    _busy: busy,
                })
            }))
        }
    }))
}

/// A response body that keeps its request counted as in progress until
/// it is dropped; otherwise the body itself, length included.
struct Counted {
    body: Watched,
    _busy: Busy,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Requests in progress on one connection, for the idle limit.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    changed: Notify,
}

/// One request in progress; ends when dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Busy(self.clone())
    }

    /// Resolves once no request has been in progress for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let changed = self.changed.notified();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                changed.await;
            } else if tokio::time::timeout(limit, changed).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize, max_per_ip: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max,
            max_per_ip,
            open: Mutex::default(),
        })
    }

    #[test]
    fn the_gate_counts_connections_in_all_and_per_address() {
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let g = gate(3, 2);
        let a1 = g.enter(a).unwrap();
        let _a2 = g.enter(a).unwrap();
        assert!(g.enter(a).is_none(), "a third from one address");
        let _b1 = g.enter(b).unwrap();
        assert!(g.enter(b).is_none(), "a fourth in all");
        drop(a1);
        assert!(g.enter(a).is_some(), "a place given back is free again");
        let unlimited = gate(2, 0);
        let _x = unlimited.enter(a).unwrap();
        let _y = unlimited.enter(a).unwrap();
        assert!(unlimited.enter(b).is_none());
    }

    #[tokio::test]
    async fn accepted_sockets_get_keepalive_and_the_user_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Where the listener passes them on (Linux), they are set there.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        tune(socket2::SockRef::from(&listener), Duration::from_secs(7));
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        tune(socket2::SockRef::from(&accepted), Duration::from_secs(7));
        let socket = socket2::SockRef::from(&accepted);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_TIME);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn the_refusal_is_a_json_503_that_closes() {
        let text = String::from_utf8(overloaded().to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_resolves_only_after_the_limit_with_nothing_in_progress() {
        let activity = Arc::new(Activity::default());
        let limit = Duration::from_secs(60);
        let busy = activity.begin();
        let idle = activity.idle(limit);
        tokio::pin!(idle);
        assert!(
            tokio::time::timeout(limit * 3, idle.as_mut())
                .await
                .is_err(),
            "a request in progress is not idle"
        );
        drop(busy);
        let started = tokio::time::Instant::now();
        idle.await;
        assert_eq!(started.elapsed(), limit);
    }
}
