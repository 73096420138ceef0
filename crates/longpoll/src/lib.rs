//! Long polling: `GET /longpoll/{channels}?since={cursor}&timeout={seconds}`
//! answers as soon as there is something after the cursor, or with nothing
//! (and the same cursor) when the hold ends.
//!
//! The transport that works through every proxy and firewall: each response
//! is an ordinary JSON document in the short-poll envelope, and the client's
//! loop is always "send the cursor you got", so nothing published between
//! two requests is lost. The hold lives in the request's own future (no task
//! and one timer per held request) and ends early when the server drains.
//! Routing, CORS and listeners are the server's; ordering, history and gaps
//! are the bus's.

mod config;
mod hold;

pub use config::Config;
pub use hold::LongPoll;
