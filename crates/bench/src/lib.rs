//! herald-bench: drives herald, nchan or Pushpin through the same client
//! code and measures what a push gateway is judged by: delivered messages
//! per second and publish→receive latency under fan-out, server memory per
//! idle connection, the time a herd of held long polls takes to answer,
//! publish throughput, whether memory comes back after churn, and how the
//! listener takes a crowd connecting at once (storm).
//!
//! Every payload carries its sequence number and send time ([`payload`]),
//! so each subscriber checks every delivery ([`Tracker`]). Server CPU and
//! memory come from `/proc` ([`Probe`]). Scenarios are library functions
//! ([`scenario`]) so that tests call them directly; the `herald-bench`
//! binary is a thin CLI over them. Every run is bounded in time and count,
//! and only loopback addresses are accepted as targets. The crate knows
//! nothing of herald's internals: it speaks to every gateway over the wire.

pub mod net;
pub mod payload;
mod probe;
mod publisher;
mod report;
pub mod scenario;
pub mod subscriber;
mod summary;
mod target;
mod tracker;

pub use probe::{Mem, Probe, Sampler};
pub use publisher::Publisher;
pub use report::{Latency, Report, Storm, table};
pub use summary::markdown;
pub use target::{System, Target, Transport};
pub use tracker::{Counts, Tracker};

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The system has no such transport or operation; the report says n/a.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A bad option or combination of options.
    #[error("{0}")]
    Usage(String),
    /// A socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// An HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// A request could not be built.
    #[error("request: {0}")]
    Request(#[from] http::Error),
    /// A WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The gateway answered an unexpected status.
    #[error("unexpected status {0}")]
    Status(u16),
    /// The gateway ended a stream that should have stayed open.
    #[error("the server closed the connection")]
    Closed,
    /// The gateway's answer could not be understood.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// No subscriber could subscribe; the first one's error.
    #[error("no subscriber could subscribe: {0}")]
    NoSubscriber(String),
    /// Not every subscriber was ready in time.
    #[error("{0}")]
    Timeout(String),
}
