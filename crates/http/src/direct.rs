//! A held response's socket, handed to the transport so that the publishing
//! task can write its messages there itself (herald-bus's taps).
//!
//! Whoever serves the connection and knows its framing offers it as a
//! request extension ([`Direct`]); the server's lean HTTP/1.1 path does, for
//! the streams it serves, and frames each piece as one chunk. Requests
//! served otherwise (HTTP/2, hyper's HTTP/1) carry none, and their streams
//! are written by their own task as before.

use std::sync::Arc;

use bytes::Bytes;
use herald_bus::Sent;

/// Writes pieces of a response body without waiting.
pub trait Pieces: Send + Sync + 'static {
    /// Writes `data` as the body's next piece, in the connection's framing,
    /// if that can be done now; called from the publishing task. Must
    /// answer [`Sent::Nothing`] while the connection's own writer is
    /// busy, and keep what it began ([`Sent::Part`]) for that writer to
    /// finish first.
    fn send(&self, data: &Bytes) -> Sent;
}

/// The request extension that offers a response's socket.
#[derive(Clone)]
pub struct Direct(pub Arc<dyn Pieces>);
