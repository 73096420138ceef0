//! herald's server: the embedding API, the two listeners and their routes,
//! the lean HTTP/1.1 path, graceful shutdown and the `herald` binary.
//!
//! Only this crate knows about listeners, signals, configuration sources and
//! log setup. A map, in the order a newcomer might read it:
//!
//! - herald.rs: [`Herald`], the embedding API. [`Herald::connect`] builds
//!   the engine the [`Config`] names (engine.rs), so an embedder gets what
//!   the binary gets; [`Herald::public_service`] and
//!   [`Herald::internal_service`] are the tower stacks (CORS, limits,
//!   tracing, JSON errors).
//! - public.rs and internal.rs: what each listener's routes do. Which path
//!   is which route is herald-http's [`Route`], parsed once.
//! - run.rs: [`run`], the lifecycle: both listeners until a shutdown
//!   future, then the drain; serve.rs accepts connections for it, and
//!   lean.rs (with rewind.rs) serves held requests on the public listener
//!   with less memory than hyper's HTTP/1 connection; stall.rs is the send
//!   deadline of hyper's connections.
//! - metrics.rs (with metrics/): `GET /metrics`, the Prometheus registry
//!   that reads the transports' counters at scrape time; ready.rs:
//!   `GET /readyz`.
//! - binary.rs: [`main`], the `herald` binary's setup (logs as text or JSON).
//! - config.rs and cli.rs: the configuration and where it comes from.

mod binary;
mod cli;
mod config;
mod engine;
mod error;
mod herald;
mod internal;
mod lean;
mod metrics;
mod public;
mod ready;
mod rewind;
mod run;
mod serve;
mod stall;

pub use binary::main;
pub use cli::Args;
pub use config::{Config, ConfigError, EngineKind, LogFormat};
pub use error::Error;
pub use herald::Herald;
pub use herald_bus as bus;
pub use herald_http::{Code, Listener, Route};
pub use run::run;
