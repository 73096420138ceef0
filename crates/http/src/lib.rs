//! The HTTP glue every herald transport shares, written once.
//!
//! It turns request parts into bus terms (channel lists in paths, `since` /
//! `last` parameters), bus results into the JSON envelope, and every error
//! into the one JSON error shape `{"error":{"code","message"}}`. It holds no
//! routing and no transport logic: the server routes, transports speak their
//! wire format.

mod body;
mod context;
mod envelope;
mod error;
mod request;

pub use body::{Body, empty, full, json};
pub use context::{Context, Limits};
pub use envelope::{batch_json, message_fields, write_json_str};
pub use error::{Error, json_errors};
pub use request::{Query, channel, channels, header_str};
