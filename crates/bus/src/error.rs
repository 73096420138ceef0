//! The bus's one error type. It says what went wrong in bus terms; turning
//! it into an HTTP status is the HTTP glue's job, done in one place there.

/// Everything the bus can refuse or fail at.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A channel name broke the naming rule; the text says which part.
    #[error("invalid channel name: {0}")]
    InvalidChannel(String),
    /// An event name broke the naming rule.
    #[error("invalid event name: {0}")]
    InvalidEvent(String),
    /// A cursor could not be decoded. Old or foreign cursors are not errors
    /// (they are reported as gaps); only malformed text is.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// A subscription named more channels than allowed.
    #[error("too many channels: at most {max} per subscription")]
    TooManyChannels {
        /// The configured maximum.
        max: usize,
    },
    /// Text data that is not UTF-8.
    #[error("data is not valid UTF-8")]
    InvalidUtf8,
    /// Data declared as JSON that does not parse.
    #[error("data is not valid JSON: {0}")]
    InvalidJson(String),
    /// The engine cannot take or serve the request now (a remote store is
    /// unreachable). Retrying later may succeed.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// True for errors caused by the caller's input, false for failures of
    /// the gateway or its engine.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Error::Unavailable(_))
    }
}
