//! WebSocket: `GET /ws` and `GET /ws/{channels}` upgrade to a connection
//! that carries many subscriptions, changed by the client as it goes, with a
//! small JSON protocol in text frames (docs/protocol.md, "WebSocket").
//!
//! The one bidirectional transport, and the cheapest per message: a
//! message's frame is encoded once and shared by every connection, and a
//! batch leaves in as few writes as the socket allows. Each connection is
//! one task that holds one [`herald_bus::Subscription`] and no queue of its
//! own; it answers the client's pings, pings the client, and closes with
//! 1001 when the server shuts down. What a hostile client can cost is
//! bounded per connection: the bytes waiting for its socket, the time its
//! socket may take to accept them, the pongs that count as liveness, and how
//! often it may subscribe (docs/security.md). Routing, listeners and option
//! parsing are the server's.

mod access;
mod config;
mod connection;
mod frame;
mod port;
mod rate;
mod upgrade;

pub use config::{Config, SlowPolicy};
pub use upgrade::Ws;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use frame::fuzz_parse;
