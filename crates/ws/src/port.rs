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
use herald_bus::{Message, Outlet, Sent};
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
        let bytes = frame::wire(message);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.rest.is_empty() {
            return Sent::Nothing;
        }
        // Never waits: a socket that would block answers at once, and the
        // waker it keeps is a no-op (the connection's task registers its
        // own when it takes over). Outside tokio's cooperative budget: one
        // pass writes to thousands of sockets within one poll of the
        // publishing task, and the budget would refuse all but the first
        // hundred or so.
        let io = &mut inner.io;
        let write = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, &bytes));
        let n = match tokio::task::unconstrained(write).now_or_never() {
            Some(Ok(n)) if n > 0 => n,
            _ => return Sent::Nothing,
        };
        inner.written += n as u64;
        self.tally.delivered(bytes.len());
        if n < bytes.len() {
            inner.rest = bytes.slice(n..);
            return Sent::Part;
        }
        Sent::All
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

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
