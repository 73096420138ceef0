//! The connection permit: what a connection holds against the server's
//! connection limits for as long as it lives.
//!
//! The server's accept loop makes one per connection and puts a clone in
//! every request's extensions. A transport that takes the socket over (the
//! WebSocket upgrade) moves that clone into the task that serves the
//! socket, so the connection keeps counting against `max-connections`
//! after the HTTP connection that carried the handshake has ended. What the
//! permit releases when the last clone drops is the server's business; this
//! crate only carries it, so that transports need not know the server.

use std::{any::Any, fmt, sync::Arc};

/// A connection's place under the connection limits, released when the
/// last clone is dropped. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionPermit(#[allow(dead_code)] Arc<dyn Any + Send + Sync>);

impl ConnectionPermit {
    /// A permit that releases its place by dropping `held`.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        ConnectionPermit(Arc::new(held))
    }
}

impl fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionPermit")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Count(Arc<AtomicUsize>);

    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn released_when_the_last_clone_drops() {
        let released = Arc::new(AtomicUsize::new(0));
        let permit = ConnectionPermit::new(Count(released.clone()));
        let moved = permit.clone();
        drop(permit);
        assert_eq!(released.load(Ordering::SeqCst), 0);
        drop(moved);
        assert_eq!(released.load(Ordering::SeqCst), 1);
    }
}
