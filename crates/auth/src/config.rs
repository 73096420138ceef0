//! What the operator decides about subscriber authorization.
//!
//! With every field at its default nothing is checked and every channel is
//! public, as herald has always been. Setting a verifier (a secret or a
//! key), the hook, or a public list turns checking on: then only public
//! channels are readable without credentials. Loading files and naming
//! options are the server's job; this is the plain value it builds.

use std::{fmt, time::Duration};

use crate::Patterns;

/// Subscriber authorization settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// HS256 shared secret tokens are signed with, at least 32 bytes.
    /// Default none. Never printed.
    pub jwt_secret: Option<String>,
    /// Path of a PEM public key file (RSA for RS256, P-256 for ES256),
    /// read once when the [`Authorizer`](crate::Authorizer) is built.
    /// Default none. Exclusive with `jwt_secret`.
    pub jwt_key: Option<String>,
    /// The `iss` tokens must carry. Default none (not checked).
    pub issuer: Option<String>,
    /// The `aud` tokens must name. Default none (a token with an `aud` is
    /// then refused).
    pub audience: Option<String>,
    /// Channels readable without credentials once checking is on. Default
    /// none.
    pub public_channels: Patterns,
    /// Name of a cookie that may carry the token. Default none.
    pub cookie: Option<String>,
    /// The backend hook's `http://` URL. Default none.
    pub hook_url: Option<String>,
    /// How long the hook may take to answer before the subscriber gets a
    /// 503. Default 2 s.
    pub hook_timeout: Duration,
    /// Most hook answers remembered at once. Default 10 000.
    pub hook_cache_entries: usize,
    /// How long a WebSocket whose token expired may take to send a fresh
    /// one before it is closed. Default 30 s.
    pub refresh_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            jwt_secret: None,
            jwt_key: None,
            issuer: None,
            audience: None,
            public_channels: Patterns::none(),
            cookie: None,
            hook_url: None,
            hook_timeout: Duration::from_secs(2),
            hook_cache_entries: 10_000,
            refresh_grace: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Whether any check is asked for; when not, every channel is public.
    pub fn is_enabled(&self) -> bool {
        self.jwt_secret.is_some()
            || self.jwt_key.is_some()
            || self.hook_url.is_some()
            || !self.public_channels.is_empty()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "jwt_key",
                &self
                    .jwt_key
                    .as_ref()
                    .map(|k| format!("<{} bytes>", k.len())),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("public_channels", &self.public_channels)
            .field("cookie", &self.cookie)
            .field("hook_url", &self.hook_url.as_ref().map(|_| "<set>"))
            .field("hook_timeout", &self.hook_timeout)
            .field("hook_cache_entries", &self.hook_cache_entries)
            .field("refresh_grace", &self.refresh_grace)
            .finish()
    }
}
