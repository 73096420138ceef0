//! A lean HTTP/1.1 path for the requests that are held: SSE streams and
//! long polls.
//!
//! Why it exists: hyper's HTTP/1 connection keeps an 8 KiB read buffer and
//! an 8 KiB write buffer for as long as the connection lives, and neither
//! size can be configured lower. A held long poll or an SSE stream lives for
//! minutes and carries one small request head, so at 19,000 idle
//! subscribers those two buffers alone would be about 300 MiB, most of the
//! server's memory. Here the head is read into a buffer sized to it and
//! freed once parsed, the request goes through the very same tower service
//! as hyper's requests do, and each response frame goes out in one write
//! from a buffer that lives only for that write. An idle stream then costs
//! its task, its response body and its subscription.
//!
//! A reader that stops reading costs one frame: the next is pulled from
//! the response body only once the socket took the last, and a socket that
//! takes no byte for the send timeout closes the connection. During a
//! drain the last bytes of each held response wait a random part of the
//! drain spread, and a head not yet written says `connection: close`.
//!
//! It serves only what it fully understands: `GET` or `HEAD` over
//! HTTP/1.1 on a held route, with no request body and no upgrade. Anything
//! else (HTTP/2, HTTP/1.0, other routes and methods, a head that is
//! malformed or larger than the head limit) goes to hyper together with the
//! bytes read so far, so that hyper answers it exactly as it would have;
//! this path never makes an error response of its own. Which routes are
//! held is herald-http's `Route::is_held`, asked through [`Routes::held`];
//! the connection that replays the bytes read here to hyper is rewind.rs.

use std::{
    convert::Infallible,
    future::poll_fn,
    io::{self, IoSlice, Write as _},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use herald_bus::Sent;
use herald_http::{Body, Direct, Pieces};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::{Service, util::BoxCloneSyncService};

/// The service the lean path calls: the public service over bodiless
/// requests.
pub(crate) type LeanService =
    BoxCloneSyncService<Request<Empty<Bytes>>, Response<Body>, Infallible>;

/// Headers a lean request may have; a head with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// The most one read takes.
const READ: usize = 2048;

/// What the lean path serves: the held routes, through this service.
pub(crate) struct Routes {
    pub service: LeanService,
    /// Whether a `GET` or `HEAD` of a path (without its query) is one of
    /// the held routes.
    pub held: fn(&Method, &str) -> bool,
}

/// The lean path of one listener: its routes and the connection limits it
/// shares with hyper's path.
pub(crate) struct Lean {
    pub routes: Routes,
    /// The largest request head (hyper answers 431 beyond it).
    pub max_head: usize,
    /// Time to receive a whole head, counted from when the connection is
    /// idle.
    pub header_read_timeout: Duration,
    /// Time the socket may take no bytes of a response before the
    /// connection is closed.
    pub send_timeout: Duration,
    /// During a drain, the last bytes of a held response wait a random part
    /// of this window, so that clients do not all come back at once.
    pub drain_spread: Duration,
}

/// How a connection left the lean path.
pub(crate) enum Outcome {
    /// It is finished: either side closed it, or it timed out.
    Closed,
    /// hyper serves the rest, starting with these bytes.
    Handover(TcpStream, Bytes),
}

/// Serves held requests on `stream` for as long as they come, then hands
/// the connection to hyper or reports it closed.
pub(crate) async fn serve(stream: TcpStream, lean: &Lean, stop: &CancellationToken) -> Outcome {
    let port = Arc::new(Port {
        stream,
        state: Mutex::new(State::default()),
    });
    let stream = &port.stream;
    let mut buf = BytesMut::new();
    loop {
        // Reading a head and writing a response are on the heap, each
        // while it lasts, so that a request waiting in the service (a held
        // long poll) carries the room of neither.
        let reading = Box::pin(tokio::time::timeout(
            lean.header_read_timeout,
            read_head(stream, &mut buf, lean),
        ));
        let read = tokio::select! {
            () = stop.cancelled() => return Outcome::Closed,
            r = reading => r,
        };
        let (call, head_only, close) = match read {
            Err(_) | Ok(Head::Closed | Head::Partial) => return Outcome::Closed,
            Ok(Head::Other) => {
                return match Arc::try_unwrap(port) {
                    Ok(port) => Outcome::Handover(port.stream, buf.freeze()),
                    // A stream that ended on this connection still holds
                    // it (it lets go at its channel's next message).
                    Err(_) => Outcome::Closed,
                };
            }
            Ok(Head::Lean { req, close, len }) => {
                buf.advance(len);
                if buf.is_empty() {
                    // Give the head's allocation back while the request is
                    // held.
                    buf = BytesMut::new();
                }
                let mut req = *req;
                let head_only = req.method() == Method::HEAD;
                if !head_only {
                    req.extensions_mut().insert(Direct(port.clone()));
                }
                // Called here rather than through `oneshot`, whose future
                // keeps room for the request beside the service's: a held
                // request waits in the service's future alone.
                let mut service = lean.routes.service.clone();
                match poll_fn(|cx| service.poll_ready(cx)).await {
                    Ok(()) => {}
                    Err(e) => match e {},
                }
                (service.call(req), head_only, close)
            }
        };
        let res = tokio::select! {
            res = call => match res { Ok(r) => r, Err(e) => match e {} },
            () = gone(stream, &mut buf, lean.max_head) => return Outcome::Closed,
        };
        let out = Out {
            port: &port,
            lean,
            stop,
        };
        let respond = Box::pin(out.respond(res, head_only, close, &mut buf));
        if respond.await.is_err() || close || stop.is_cancelled() {
            return Outcome::Closed;
        }
    }
}

/// The connection's socket, shared by the response's writer ([`Out`]) and
/// the publishing task, which writes a stream's events to it directly
/// (herald-bus's taps) as chunks of the response body. Each write is whole
/// or kept: what the socket does not take waits in `rest` and goes first.
struct Port {
    stream: TcpStream,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The response's own writer is writing: the publishing task waits.
    busy: bool,
    /// Bytes the publishing task began and the socket has not taken yet.
    rest: Bytes,
}

impl Port {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what the socket takes of `rest`, then of `bytes`, without
    /// waiting; answers whether all of both went.
    fn write_now(&self, state: &mut State, bytes: &mut &[u8]) -> io::Result<bool> {
        while !state.rest.is_empty() {
            let Some(n) = self.try_write(&state.rest)? else {
                return Ok(false);
            };
            state.rest.advance(n);
        }
        while !bytes.is_empty() {
            let Some(n) = self.try_write(bytes)? else {
                return Ok(false);
            };
            *bytes = &bytes[n..];
        }
        Ok(true)
    }

    /// One non-blocking write: `None` when the socket would block.
    fn try_write(&self, bytes: &[u8]) -> io::Result<Option<usize>> {
        match self.stream.try_write(bytes) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Pieces for Port {
    fn send(&self, data: &Bytes) -> Sent {
        let mut state = self.state();
        if state.busy || !state.rest.is_empty() {
            return Sent::Nothing;
        }
        let mut size = [0u8; 18];
        let size = chunk_size(&mut size, data.len());
        let parts = [
            IoSlice::new(size),
            IoSlice::new(data),
            IoSlice::new(b"\r\n"),
        ];
        let total = size.len() + data.len() + 2;
        let written = if total <= SMALL_CHUNK {
            // Copied together and sent as one buffer: for the kernel, one
            // buffer is cheaper than gathering three (`writev`), and most
            // chunks (one event) are a few hundred bytes.
            let mut chunk = [0u8; SMALL_CHUNK];
            let mut at = 0;
            for part in &parts {
                chunk[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            self.stream.try_write(&chunk[..total])
        } else {
            self.stream.try_write_vectored(&parts)
        };
        match written {
            Ok(n) if n == total => Sent::All,
            Ok(n) if n > 0 => {
                let mut rest = BytesMut::with_capacity(total);
                rest.extend_from_slice(size);
                rest.extend_from_slice(data);
                rest.extend_from_slice(b"\r\n");
                state.rest = rest.freeze().split_off(n);
                Sent::Part
            }
            _ => Sent::Nothing,
        }
    }
}

/// The largest chunk the publishing task copies into one buffer before
/// writing it; a larger one is written from its pieces.
const SMALL_CHUNK: usize = 2048;

/// A chunk's size line (`{len:x}\r\n`), written into `buf`.
fn chunk_size(buf: &mut [u8; 18], len: usize) -> &[u8] {
    let mut cursor = io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{len:x}\r\n");
    let end = cursor.position() as usize;
    &buf[..end]
}

/// A request head, read and sorted.
enum Head {
    /// A held request this path serves (boxed: it is much larger than the
    /// other cases); `len` bytes of the buffer were its head; `close` if
    /// the client asked to close after it.
    Lean {
        req: Box<Request<Empty<Bytes>>>,
        close: bool,
        len: usize,
    },
    /// Anything else: hyper's.
    Other,
    /// Not a whole head yet.
    Partial,
    /// The client closed (or broke) the connection before a whole head.
    Closed,
}

/// Reads until `buf` holds a whole head (or proves not to be a lean one).
async fn read_head(stream: &TcpStream, buf: &mut BytesMut, lean: &Lean) -> Head {
    loop {
        if !buf.is_empty() {
            match parse(buf, lean) {
                Head::Partial if buf.len() < lean.max_head => {}
                Head::Partial => return Head::Other,
                head => return head,
            }
        }
        match read_some(stream, buf).await {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(_) => {}
        }
    }
}

fn parse(buf: &[u8], lean: &Lean) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let method = match head.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Head::Other,
    };
    // Origin form only (`/sse/a?since=..`): anything else is hyper's.
    let Some(path) = head
        .path
        .filter(|p| p.starts_with('/'))
        .filter(|p| (lean.routes.held)(&method, p.split('?').next().unwrap_or_default()))
    else {
        return Head::Other;
    };
    if head.version != Some(1) {
        return Head::Other;
    }
    let mut req = Request::new(Empty::new());
    *req.method_mut() = method;
    *req.uri_mut() = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return Head::Other,
    };
    let mut close = false;
    for h in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Other;
        };
        if name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::CONTENT_LENGTH && value.as_bytes().trim_ascii() != b"0"
        {
            // A body, or a protocol switch: hyper's business.
            return Head::Other;
        }
        if name == header::CONNECTION {
            close |= has_token(h.value, b"close");
        }
        if name == header::CONTENT_LENGTH && req.headers().contains_key(&name) {
            // Every length here is 0; hyper keeps one of repeated equal
            // lengths, and so does this path.
            continue;
        }
        req.headers_mut().append(name, value);
    }
    Head::Lean {
        req: Box::new(req),
        close,
        len,
    }
}

/// Whether a comma-separated header value has `token` (ASCII
/// case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Reads what is available (up to [`READ`] bytes) and appends it to `buf`.
/// The read goes through a local array, not the caller's buffer, so that a
/// connection waiting for bytes holds no buffer at all; `buf` grows only by
/// what arrived.
async fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        let mut chunk = [0u8; READ];
        match stream.try_read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Resolves when the client has gone (end of stream or an error) while its
/// request is answered. What it sends meanwhile is the next request
/// (pipelining): it is kept in `pending`, up to `max` bytes, after which
/// reading stops until the response is done.
async fn gone(stream: &TcpStream, pending: &mut BytesMut, max: usize) {
    loop {
        if pending.len() >= max {
            return std::future::pending().await;
        }
        match read_some(stream, pending).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Where a response goes: the socket, under the lean path's deadlines.
struct Out<'a> {
    port: &'a Port,
    lean: &'a Lean,
    stop: &'a CancellationToken,
}

impl Out<'_> {
    /// Writes `res` (see [`Out::write_response`]). Not an async fn: the
    /// future keeps the head's bytes and the body, not the response it was
    /// given (an async fn would keep it twice) nor its header map.
    fn respond<'a>(
        &'a self,
        res: Response<Body>,
        head_only: bool,
        close: bool,
        pending: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        let (parts, body) = res.into_parts();
        let bodiless = head_only
            || parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        let length = body.size_hint().exact();
        // All of the head but what is known only when it goes out.
        let start = begin_head(&parts, length, bodiless && !head_only);
        drop(parts);
        self.write_response(start, body, bodiless, length, close, pending)
    }

    /// Writes a response whose head `start` begins: the head, then the
    /// body with its length when it is known (one write for head and body),
    /// chunked when it is a stream (the head goes out with the first frame
    /// if that one is ready, then one write per frame). At most one frame
    /// is held at a time: the next is pulled from the body only once the
    /// socket took the last. During a drain the head says `connection:
    /// close` (when it has not gone out yet) and the response's last bytes
    /// wait a random part of the drain spread. Fails when the client has
    /// gone or took nothing for the send timeout.
    async fn write_response(
        &self,
        start: Vec<u8>,
        mut body: Body,
        bodiless: bool,
        length: Option<u64>,
        close: bool,
        pending: &mut BytesMut,
    ) -> io::Result<()> {
        let head = |close| end_head(start, close);
        if bodiless {
            self.spread().await;
            return self.write(&head(close || self.stop.is_cancelled())).await;
        }
        if length.is_some() {
            let mut data = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(d) = frame.unwrap_or_else(|e| match e {}).into_data() else {
                    continue;
                };
                data.extend_from_slice(&d);
            }
            // A long poll answers when the drain starts: this is where its
            // answers are spread.
            self.spread().await;
            let mut out = head(close || self.stop.is_cancelled());
            out.extend_from_slice(&data);
            return self.write(&out).await;
        }
        let mut out = head(close || self.stop.is_cancelled());
        let mut first = body.frame().now_or_never();
        if first.is_none() {
            self.write(&out).await?;
            out.clear();
        }
        loop {
            let frame = match first.take() {
                Some(f) => f,
                None => tokio::select! {
                    f = body.frame() => f,
                    () = gone(&self.port.stream, pending, self.lean.max_head) => return Err(io::ErrorKind::ConnectionAborted.into()),
                },
            };
            let Some(frame) = frame else { break };
            let Ok(data) = frame.unwrap_or_else(|e| match e {}).into_data() else {
                continue;
            };
            if data.is_empty() {
                // Nothing of its own (the publishing task let go of the
                // stream): finish what that task began.
                self.write(&[]).await?;
                continue;
            }
            let _ = write!(out, "{:x}\r\n", data.len());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            self.write(&out).await?;
            out = Vec::new();
        }
        self.spread().await;
        out.extend_from_slice(b"0\r\n\r\n");
        self.write(&out).await
    }

    /// During a drain, waits a random part of the drain spread.
    async fn spread(&self) {
        let window = self.lean.drain_spread;
        if self.stop.is_cancelled() && !window.is_zero() {
            tokio::time::sleep(window.mul_f64(rand::random::<f64>())).await;
        }
    }

    /// Writes all of `bytes`, after what the publishing task began. Fails
    /// when the socket fails, or takes no byte for the send timeout (a
    /// reader that stopped reading). Meanwhile the publishing task writes
    /// nothing.
    async fn write(&self, mut bytes: &[u8]) -> io::Result<()> {
        let port = self.port;
        port.state().busy = true;
        let written = async {
            loop {
                if port.write_now(&mut port.state(), &mut bytes)? {
                    return Ok(());
                }
                tokio::time::timeout(self.lean.send_timeout, port.stream.writable())
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            }
        }
        .await;
        port.state().busy = false;
        written
    }
}

/// The response head but its last lines (see [`end_head`]). The framing
/// headers are this path's own: whatever the service set for them is
/// replaced.
fn begin_head(parts: &http::response::Parts, length: Option<u64>, no_length: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match (no_length, length) {
        (true, _) => {}
        (false, Some(n)) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        (false, None) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out
}

/// Ends a head begun by [`begin_head`] as it goes out: `connection: close` if
/// the connection closes after the response, and the date.
fn end_head(mut out: Vec<u8>, close: bool) -> Vec<u8> {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

#[cfg(test)]
mod differential;
