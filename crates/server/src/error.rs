//! Why a gateway could not be built. Errors of requests are not here: they
//! are herald-http's [`Code`](herald_http::Code)s, answered, never raised.

use crate::ConfigError;

/// Why [`Herald::connect`](crate::Herald::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration does not validate; the text names the option.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine could not start (Redis unreachable, a bad URL).
    #[error("cannot use Redis at {url}: {source}")]
    Engine {
        /// The engine's URL, without its password.
        url: String,
        /// What went wrong.
        source: herald_redis::Error,
    },
}
