//! Why an authorization configuration cannot be used. Only start-up fails
//! this way: a refused subscriber is a [`Decision`](crate::Decision), not an
//! error.

/// A configuration that cannot be used, naming the [`Config`](crate::Config)
/// field at fault so that the server can name its option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Error {
    /// The `Config` field at fault (`jwt_secret`, `hook_url`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Error {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Error {
            field,
            message: message.into(),
        }
    }
}
