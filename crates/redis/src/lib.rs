//! herald's Redis engine: several gateway instances share one Redis, and so
//! share ids, history, cursors and order.
//!
//! [`RedisEngine`] implements the bus's [`Engine`](herald_bus::Engine) trait.
//! Publishes are stored by a Lua script that assigns each message its
//! channel's next id, stores it in the channel's bounded history, sets the
//! keys' expiry and PUBLISHes a notification that carries the message, so
//! that the instances watching the channel need not read it back. One call
//! carries every publish that queued while the instance's previous call was
//! in flight (see `publisher.rs`). An instance SUBSCRIBEs only to the
//! channels its own subscribers watch, and keeps a small cache of their
//! recent messages, fed by notifications and by its own publishes' answers,
//! so that one message is read by all its subscribers without a round trip
//! each.
//!
//! What it leaves out: gap detection, merging and positions (the bus's
//! [`Subscription`](herald_bus::Subscription) does that for every engine),
//! Redis Cluster (one Redis, a TLS one, or the primary Sentinel names: see
//! `target.rs`), and anything about HTTP. The key layout, the script steps and what each failure
//! does are in docs/architecture.md ("The Redis engine").

mod config;
mod engine;
mod error;
mod keys;
mod publisher;
mod pubsub;
mod recent;
mod script;
mod target;

pub use config::Config;
pub use engine::RedisEngine;
pub use error::Error;
