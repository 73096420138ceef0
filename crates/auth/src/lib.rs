//! Subscriber authorization: whether a credential may read a set of
//! channels.
//!
//! One [`Authorizer`], built once from a [`Config`], answers every
//! transport with a [`Decision`]. Credentials are read from a request head
//! ([`Credentials`]): a bearer header, a `token` query parameter or a
//! cookie. They are checked against the public channel list
//! ([`Patterns`]), a signed token (JWT: HS256, RS256 or ES256, `exp`
//! required, a `channels` claim of names and `prefix*` patterns), or the
//! application's backend hook.
//!
//! The crate knows nothing of transports, status codes or the server: the
//! HTTP glue turns decisions into 401/403/503 answers, transports watch a
//! grant's expiry. Publishing is not its concern either: the internal
//! listener and its token guard that.

mod authorizer;
mod cache;
mod config;
mod credentials;
mod decision;
mod error;
mod hook;
mod pattern;
mod token;

pub use authorizer::Authorizer;
pub use config::Config;
pub use credentials::{Credentials, TOKEN_PARAM, redact_query};
pub use decision::{Decision, Grant, Reason};
pub use error::Error;
pub use hook::MAX_BODY as MAX_HOOK_BODY;
pub use pattern::{Pattern, Patterns};
pub use token::MIN_SECRET_LEN;
