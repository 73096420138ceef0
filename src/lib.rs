//! herald, a push gateway: backends publish messages to named channels with
//! an HTTP POST; browsers subscribe by short polling, long polling,
//! Server-Sent Events or WebSocket.
//!
//! This package is the facade: it re-exports the server crate's embedding
//! API ([`Herald`], [`Config`], [`run`]), its routes ([`Route`],
//! [`Listener`]) and error codes ([`Code`]), and the bus, and builds the
//! `herald` binary. The end-to-end tests in `tests/` run that binary.

pub use herald_server::{
    Args, Code, Config, ConfigError, EngineKind, Error, Herald, Listener, Route, bus, run,
};
