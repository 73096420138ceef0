//! The socket of one WebSocket connection, shared by its task and by the
//! publishing task, which writes new messages to it directly (see
//! herald-bus's tap module).
//!
//! Two writers on one socket must never interleave inside a frame. The
//! connection's task writes through tungstenite, which may hand the socket
//! any prefix of its buffer; so this wrapper takes every write whole: what
//! the socket does not accept at once is kept here (`rest`) and goes out
//! before anything else, and while it waits the publishing task writes
//! nothing and lets its subscription's task take over. The bytes kept are
//! bounded by what the task hands over before it waits for a flush
//! (connection.rs's `WRITE_CAP`, plus one frame).
//!
//! It also counts the bytes the socket accepted, so that the connection can
//! tell a slow reader (the count moves) from a stalled one (it does not)
//! without a timer per write. The lock is held for one non-blocking call at
//! a time, never across an `.await`.

use std::{
    future::poll_fn,
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use futures::FutureExt;
use herald_bus::{Message, Outlet, Run, Sent};
use herald_http::Tally;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::frame;

/// The connection's socket `S`, shared. Clones are handles on the same
/// socket.
pub(crate) struct Port<S> {
    inner: Arc<Mutex<Inner<S>>>,
}

struct Inner<S> {
    io: S,
    /// Bytes the socket has accepted so far.
    written: u64,
    /// Accepted from a writer, not yet by the socket: written before
    /// anything else.
    rest: Bytes,
}

impl<S> Port<S> {
    pub(crate) fn new(io: S) -> Self {
        Port {
            inner: Arc::new(Mutex::new(Inner {
                io,
                written: 0,
                rest: Bytes::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes the socket has accepted so far.
    pub(crate) fn written(&self) -> u64 {
        self.lock().written
    }

    /// Whether bytes wait for the socket (a frame the publishing task or a
    /// writer began): the connection must flush them.
    pub(crate) fn has_rest(&self) -> bool {
        !self.lock().rest.is_empty()
    }
}

impl<S> Port<S>
where
    S: AsyncWrite + Unpin + Send + 'static,
{
    /// The outlet through which the publishing task writes this
    /// connection's messages, counting them in `tally`.
    pub(crate) fn outlet(&self, tally: Arc<Tally>) -> Arc<dyn Outlet> {
        Arc::new(Direct {
            inner: self.inner.clone(),
            tally,
        })
    }
}

impl<S: AsyncWrite + Unpin> Inner<S> {
    /// Writes what waits; ready once nothing does.
    fn poll_rest(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.rest.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n as u64;
            self.rest.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `bytes` whole: what the socket does not take now is kept.
    /// Pending (taking nothing) only while earlier bytes still wait.
    fn poll_whole(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_rest(cx))?;
        let n = match Pin::new(&mut self.io).poll_write(cx, bytes) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => 0,
        };
        self.written += n as u64;
        if n < bytes.len() {
            self.rest = Bytes::copy_from_slice(&bytes[n..]);
        }
        Poll::Ready(Ok(bytes.len()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Port<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Port<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.lock().poll_whole(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        std::task::ready!(inner.poll_rest(cx))?;
        Pin::new(&mut inner.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        std::task::ready!(inner.poll_rest(cx))?;
        Pin::new(&mut inner.io).poll_shutdown(cx)
    }
}

/// The publishing task's side of a port.
struct Direct<S> {
    inner: Arc<Mutex<Inner<S>>>,
    tally: Arc<Tally>,
}

impl<S: AsyncWrite + Unpin + Send + 'static> Outlet for Direct<S> {
    fn send(&self, message: &Arc<Message>) -> Sent {
        self.send_many(std::slice::from_ref(message)).1
    }

    /// The frames of a run of messages, in one write.
    fn send_many(&self, messages: &[Arc<Message>]) -> (usize, Sent) {
        let Run { bytes, count } = Run::of(messages, frame::wire);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.rest.is_empty() {
            return (0, Sent::Nothing);
        }
        // Never waits: a socket that would block answers at once, and the
        // waker it keeps is a no-op (the connection's task registers its
        // own when it takes over). Outside tokio's cooperative budget: one
        // pass writes to thousands of sockets within one poll, and the
        // budget would refuse all but the first hundred or so.
        let io = &mut inner.io;
        let write = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, &bytes));
        let n = match tokio::task::unconstrained(write).now_or_never() {
            Some(Ok(n)) if n > 0 => n,
            _ => return (0, Sent::Nothing),
        };
        inner.written += n as u64;
        self.tally.delivered(count, bytes.len());
        if n < bytes.len() {
            inner.rest = bytes.slice(n..);
            return (count, Sent::Part);
        }
        (count, Sent::All)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    fn message(id: u64) -> Arc<Message> {
        let draft = herald_bus::Draft {
            channel: herald_bus::ChannelName::new("c").unwrap(),
            event: None,
            payload: herald_bus::Payload::text("x").unwrap(),
        };
        Arc::new(Message::new(draft, id, 0, 1))
    }

    #[tokio::test]
    async fn one_pass_writes_to_more_sockets_than_the_cooperative_budget_allows() {
        let stats = herald_http::Stats::default();
        let mut session = stats.session(herald_http::Transport::Ws, 1);
        let tally = session.tally();
        let mut ends = Vec::new();
        let mut outlets = Vec::new();
        for _ in 0..300 {
            let (a, b) = duplex(1024);
            outlets.push(Port::new(a).outlet(tally.clone()));
            ends.push(b);
        }
        // All in one poll of this task, as a pass is.
        let m = message(1);
        let sent: Vec<Sent> = outlets.iter().map(|o| o.send(&m)).collect();
        assert!(sent.iter().all(|s| *s == Sent::All), "{sent:?}");
    }

    #[tokio::test]
    async fn several_messages_go_in_one_write() {
        let (a, mut b) = duplex(1 << 16);
        let stats = herald_http::Stats::default();
        let mut session = stats.session(herald_http::Transport::Ws, 1);
        let port = Port::new(a);
        let outlet = port.outlet(session.tally());
        let run = [message(1), message(2), message(3)];
        assert_eq!(outlet.send_many(&run), (3, Sent::All));
        let mut want = Vec::new();
        for m in &run {
            want.extend_from_slice(&frame::wire(m));
        }
        let mut got = vec![0u8; want.len()];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, want, "whole frames, in order");
        assert_eq!(port.written(), want.len() as u64);
    }

    #[tokio::test]
    async fn a_write_the_socket_cannot_take_whole_is_kept_and_goes_first() {
        let (a, mut b) = duplex(4);
        let mut port = Port::new(a);
        // The pipe takes 4 bytes; the write is still accepted whole.
        assert_eq!(port.write(b"abcdefgh").await.unwrap(), 8);
        assert!(port.has_rest());
        assert_eq!(port.written(), 4);
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        port.flush().await.unwrap();
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"efgh");
        assert!(!port.has_rest());
        assert_eq!(port.written(), 8);
    }
}
