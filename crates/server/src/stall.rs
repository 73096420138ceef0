//! The send deadline on hyper's path: a connection that has response bytes
//! for its peer which the peer does not take for `--send-timeout` is
//! closed, as on the lean path (lean.rs) and on WebSockets.
//!
//! Why it is needed on top of the kernel's `TCP_USER_TIMEOUT`: over HTTP/2
//! a peer can keep its socket flowing (it answers pings and settings)
//! while never opening a stream's flow-control window. The socket is then
//! healthy and only that stream is stuck, with the bytes h2 buffered for
//! it, for as long as the connection lives.
//!
//! How it knows: hyper asks a response body for its next frame only once
//! it has room for it. HTTP/2 waits until the stream's window admits what
//! is buffered for the stream plus one byte; HTTP/1 until its write buffer
//! (16 KiB here) has drained. So each body is wrapped in a [`Watched`]
//! body: from the moment it hands hyper a frame until hyper asks again, the
//! body *owes* its peer bytes, and it tells the connection's [`Watchdog`]
//! so. Large frames are handed in pieces of at most [`PIECE`] bytes
//! (slices of the same buffer, no copy), so progress is counted per piece
//! and a slow reader that keeps taking bytes is not mistaken for a stalled
//! one. The watchdog, selected on next to the connection (serve.rs),
//! resolves once any body of the connection has owed for the send timeout,
//! and the connection is then dropped: for HTTP/2 the whole connection
//! goes, every stream on it included, since h2 cannot free one stream's
//! buffered bytes without a reset the peer could ignore.
//!
//! What it leaves out: bytes owed after a body's last frame (the body is
//! gone once hyper took that frame); the connection is then idle and the
//! idle limit closes it, and the kernel's user timeout covers a socket
//! that takes nothing. A frame hyper never asks for, because the peer does
//! not read its window open, is never produced: the body's next messages
//! stay on the bus.

use std::{
    collections::BTreeSet,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use herald_http::Body;
use http_body::{Frame, SizeHint};
use tokio::{sync::Notify, time::Instant};

/// The most one frame handed to hyper carries: HTTP/2's default frame size
/// and hyper's HTTP/1 write buffer here, so that taking one piece is what
/// lets hyper ask for the next.
pub(crate) const PIECE: usize = 16 * 1024;

/// The bodies of one connection that owe their peer bytes, and since when.
pub(crate) struct Watchdog {
    send_timeout: Duration,
    owing: Mutex<Owing>,
    /// Told when a body starts owing while none did.
    started: Notify,
}

#[derive(Default)]
struct Owing {
    next_id: u64,
    /// (since, body id): the oldest first.
    since: BTreeSet<(Instant, u64)>,
}

impl Watchdog {
    pub(crate) fn new(send_timeout: Duration) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            send_timeout,
            owing: Mutex::default(),
            started: Notify::new(),
        })
    }

    /// Resolves once some body of the connection has owed its peer bytes
    /// for the send timeout.
    pub(crate) async fn stalled(&self) {
        loop {
            let started = self.started.notified();
            let oldest = self.lock().since.first().map(|&(since, _)| since);
            match oldest {
                None => started.await,
                Some(since) => {
                    let due = since + self.send_timeout;
                    if Instant::now() >= due {
                        return;
                    }
                    // Woken at the oldest's deadline; it may have been
                    // paid meanwhile, and the loop looks again.
                    tokio::time::sleep_until(due).await;
                }
            }
        }
    }

    /// `body` as a body this watchdog watches.
    pub(crate) fn watch(self: &Arc<Self>, body: Body) -> Watched {
        let id = {
            let mut owing = self.lock();
            owing.next_id += 1;
            owing.next_id
        };
        Watched {
            body,
            rest: Bytes::new(),
            dog: self.clone(),
            id,
            owes_since: None,
        }
    }

    fn owe(&self, id: u64, old: Option<Instant>, now: Instant) {
        let mut owing = self.lock();
        if let Some(old) = old {
            owing.since.remove(&(old, id));
        }
        let was_empty = owing.since.is_empty();
        owing.since.insert((now, id));
        drop(owing);
        if was_empty {
            self.started.notify_one();
        }
    }

    fn paid(&self, id: u64, since: Instant) {
        self.lock().since.remove(&(since, id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owing> {
        self.owing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A response body that tells its connection's [`Watchdog`] when it owes
/// its peer bytes; otherwise the body itself, handed in pieces of at most
/// [`PIECE`] bytes.
pub(crate) struct Watched {
    body: Body,
    /// What is left of the last data frame, handed before the body is
    /// asked again.
    rest: Bytes,
    dog: Arc<Watchdog>,
    id: u64,
    /// Since when the last frame handed has not been taken.
    owes_since: Option<Instant>,
}

impl Watched {
    /// The next piece of `rest`, now owed.
    fn piece(&mut self) -> Frame<Bytes> {
        let n = self.rest.len().min(PIECE);
        let piece = self.rest.split_to(n);
        self.owe();
        Frame::data(piece)
    }

    fn owe(&mut self) {
        let now = Instant::now();
        self.dog.owe(self.id, self.owes_since.replace(now), now);
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        // hyper asks again: it took what was handed.
        if let Some(since) = this.owes_since.take() {
            this.dog.paid(this.id, since);
        }
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(this.piece())));
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    this.rest = data;
                    Poll::Ready(Some(Ok(this.piece())))
                }
                Err(frame) => {
                    this.owe();
                    Poll::Ready(Some(Ok(frame)))
                }
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.remaining() as u64;
        let inner = self.body.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(since) = self.owes_since.take() {
            self.dog.paid(self.id, since);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use futures::FutureExt;
    use http_body::Body as _;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn next(body: &mut Watched) -> Poll<Option<Frame<Bytes>>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(body)
            .poll_frame(&mut cx)
            .map(|f| f.map(|f| f.unwrap()))
    }

    fn data(frame: Poll<Option<Frame<Bytes>>>) -> Bytes {
        match frame {
            Poll::Ready(Some(f)) => f.into_data().expect("a data frame"),
            other => panic!("not a frame: {other:?}"),
        }
    }

    /// Whether the watchdog has fired by now (paused time advances only
    /// through the sleeps of the test).
    fn fired(dog: &Watchdog) -> bool {
        dog.stalled().now_or_never().is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_not_taken_for_the_send_timeout_fires_the_watchdog() {
        let dog = Watchdog::new(TIMEOUT);
        let mut body = dog.watch(herald_http::full("hello"));
        assert!(!fired(&dog), "nothing handed, nothing owed");
        assert_eq!(data(next(&mut body)), "hello");
        let started = Instant::now();
        dog.stalled().await;
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_asked_again_in_time_owes_nothing() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
        let dog = Watchdog::new(TIMEOUT);
        let mut body = dog.watch(StreamBody::new(rx).boxed_unsync());
        for i in 0..5 {
            tx.unbounded_send(Ok(Frame::data(Bytes::from(format!("m{i}")))))
                .unwrap();
            assert_eq!(data(next(&mut body)), format!("m{i}"));
            tokio::time::sleep(TIMEOUT - Duration::from_secs(1)).await;
            assert!(!fired(&dog), "taken within the deadline each time");
        }
        // Asked again with nothing to send: a quiet stream owes nothing,
        // however long it stays quiet.
        assert!(next(&mut body).is_pending());
        tokio::time::sleep(TIMEOUT * 10).await;
        assert!(!fired(&dog));
    }

    #[tokio::test(start_paused = true)]
    async fn large_frames_are_handed_and_timed_in_pieces() {
        let big = Bytes::from(vec![7u8; 2 * PIECE + 100]);
        let dog = Watchdog::new(TIMEOUT);
        let mut body = dog.watch(herald_http::full(big.clone()));
        assert_eq!(body.size_hint().exact(), Some(big.len() as u64));
        let mut got = Vec::new();
        for want in [PIECE, PIECE, 100] {
            assert!(!body.is_end_stream());
            let piece = data(next(&mut body));
            assert_eq!(piece.len(), want);
            got.extend_from_slice(&piece);
            // A reader that takes a piece just inside each deadline is
            // slow, not stalled.
            tokio::time::sleep(TIMEOUT - Duration::from_secs(1)).await;
            assert!(!fired(&dog));
        }
        assert_eq!(got, big);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        // The last piece is still owed: not taken for the whole deadline.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(fired(&dog));
    }

    #[tokio::test(start_paused = true)]
    async fn one_stalled_body_fires_though_another_flows() {
        let dog = Watchdog::new(TIMEOUT);
        let mut stalled = dog.watch(herald_http::full("never taken"));
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
        let mut flowing = dog.watch(StreamBody::new(rx).boxed_unsync());
        let _ = data(next(&mut stalled));
        let stalled_at = Instant::now();
        let watch = tokio::spawn({
            let dog = dog.clone();
            async move {
                dog.stalled().await;
                Instant::now()
            }
        });
        for _ in 0..10 {
            tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"m"))))
                .unwrap();
            let _ = data(next(&mut flowing));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let fired_after = watch.await.unwrap() - stalled_at;
        assert_eq!(fired_after, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dropped_while_owing_owes_nothing() {
        let dog = Watchdog::new(TIMEOUT);
        let watch = tokio::spawn({
            let dog = dog.clone();
            async move {
                dog.stalled().await;
                Instant::now()
            }
        });
        let mut body = dog.watch(herald_http::full("x"));
        let _ = data(next(&mut body));
        tokio::time::sleep(TIMEOUT / 2).await;
        drop(body);
        tokio::time::sleep(TIMEOUT * 4).await;
        assert!(
            !watch.is_finished(),
            "the watchdog fired for a dropped body"
        );
        // It still watches the bodies that come later.
        let mut later = dog.watch(herald_http::full("y"));
        let _ = data(next(&mut later));
        let started = Instant::now();
        assert_eq!(watch.await.unwrap() - started, TIMEOUT);
    }
}
