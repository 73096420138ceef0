//! What every transport is handed: the bus, the subscription limits and the
//! shutdown signal.
//!
//! The shutdown token is how long-lived responses end cleanly: the server
//! cancels it when draining begins, and every held request, stream and
//! socket selects on it (long polls answer, SSE bodies end, WebSockets close
//! with 1001).

use herald_auth::Authorizer;
use herald_bus::Bus;
use tokio_util::sync::CancellationToken;

/// Limits shared by every subscriber transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Channels in one subscription (`/sse/a,b,c`). Default 32.
    pub max_channels: usize,
    /// Messages in one response or one batch of a stream. Default 1000.
    pub max_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_channels: 32,
            max_messages: 1000,
        }
    }
}

/// Shared state of the subscriber transports. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// The event bus.
    pub bus: Bus,
    /// Subscription limits.
    pub limits: Limits,
    /// Cancelled when the server starts draining.
    pub shutdown: CancellationToken,
    /// Who may read which channels; the default lets everyone read
    /// everything.
    pub auth: Authorizer,
}
