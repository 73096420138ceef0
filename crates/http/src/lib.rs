//! The HTTP glue every herald transport shares, written once.
//!
//! It turns request parts into bus terms (channel lists in paths, `since` /
//! `last` parameters), bus results into the JSON envelope, and every error
//! into the one JSON error shape `{"error":{"code","message"}}` from one
//! table of codes ([`Code`]). It parses herald's routes ([`Route`]) so that
//! the server and embedders agree on them, but dispatches nothing and holds
//! no transport logic: the server routes, transports speak their wire
//! format.

mod auth;
mod body;
mod code;
mod context;
mod direct;
mod envelope;
mod error;
mod permit;
mod request;
mod route;
mod stats;

pub use auth::{authorize, refusal};
pub use body::{Body, empty, full, json};
pub use code::Code;
pub use context::{Context, Limits};
pub use direct::{Direct, Pieces};
pub use envelope::{batch_json, message_fields, only_message, write_json_str};
pub use error::{Error, Public, RequestId, json_errors};
pub use permit::ConnectionPermit;
pub use request::{Query, channel, channels, header_str};
pub use route::{Listener, Route};
pub use stats::{Session, Snapshot, Stats, Tally, Transport, WS_CLOSE_LABELS};
