//! The crate's one error type: why the engine could not start. Once running,
//! the engine reports failures as the bus's
//! [`Error::Unavailable`](herald_bus::Error::Unavailable) and through
//! [`health`](herald_bus::Engine::health), never with this type.

/// Why [`RedisEngine::connect`](crate::RedisEngine::connect) failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The URL does not parse as a Redis URL.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The CA file for `rediss://` cannot be read or holds no usable
    /// certificate, or is given with a URL that is not `rediss://`.
    #[error("Redis TLS: {0}")]
    Certificate(String),
    /// Redis did not answer (refused, timed out, or rejected the login).
    #[error("Redis is unreachable: {0}")]
    Unreachable(String),
    /// Redis holds something under herald's prefix that herald did not
    /// write (another application uses the same keys).
    #[error("Redis holds data herald did not write: {0}")]
    Malformed(String),
}
