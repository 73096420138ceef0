//! What an authorization check answers, in terms a transport can act on
//! without knowing where the answer came from (a token, the backend hook or
//! the public list).
//!
//! It says nothing of status codes or frames: the HTTP glue maps
//! [`Decision`] to 401, 403 and 503 answers, the WebSocket transport to
//! `error` frames.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use herald_bus::ChannelName;

/// What a credential was granted: who it is and until when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The subject (`sub` claim, or the hook's `sub`), for logs and
    /// metrics. Never the token itself.
    pub sub: Option<Arc<str>>,
    /// When the grant ends (the token's `exp`); `None` when it does not
    /// (public channels, the hook). A stream or socket that outlives it is
    /// told so and ended or asked to re-authorize.
    pub expires_at: Option<SystemTime>,
}

impl Grant {
    /// Time left before the grant ends, from now: zero once it has passed,
    /// `None` when it does not end.
    pub fn remaining(&self) -> Option<Duration> {
        let at = self.expires_at?;
        Some(at.duration_since(SystemTime::now()).unwrap_or_default())
    }
}

/// The answer to "may these credentials read these channels?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every channel asked for may be read.
    Allowed(Grant),
    /// The credentials are missing or unusable; the client should get a
    /// fresh token or log in.
    Unauthorized(Reason),
    /// The credentials are good but do not cover `refused`. The grant holds
    /// for the other channels asked for (a WebSocket subscribes to those; an
    /// HTTP request is all-or-nothing and refuses the whole request).
    Forbidden {
        /// The channels not covered, in the order asked.
        refused: Vec<ChannelName>,
        /// What the credentials grant for the remaining channels.
        grant: Grant,
    },
    /// The backend hook could not be asked (timeout, error answer): a
    /// temporary failure, never an allow.
    Unavailable,
}

impl Decision {
    /// The grant when every channel was allowed.
    pub fn allowed(&self) -> Option<&Grant> {
        match self {
            Decision::Allowed(grant) => Some(grant),
            _ => None,
        }
    }
}

/// Why credentials were refused as unusable (a 401). The text is safe to
/// show a client: it never repeats the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No token, cookie or header was sent.
    Missing,
    /// The token is not a well-formed JWT of the expected shape (including
    /// `alg: none` and claims of the wrong type).
    Malformed,
    /// The token is signed with another algorithm than the configured one.
    WrongAlgorithm,
    /// The signature does not match the configured key.
    BadSignature,
    /// The token has no `exp` claim.
    NoExpiry,
    /// The token's `exp` has passed.
    Expired,
    /// The token's `iss`, `aud` or `nbf` does not match.
    Invalid,
    /// The backend hook answered 401 or 403.
    Refused,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Missing => "a token is required to read this channel",
            Reason::Malformed => "the token is malformed",
            Reason::WrongAlgorithm => {
                "the token is signed with an algorithm this server does not accept"
            }
            Reason::BadSignature => "the token's signature is invalid",
            Reason::NoExpiry => "the token has no exp claim",
            Reason::Expired => "the token has expired",
            Reason::Invalid => "the token's issuer, audience or start time is not accepted",
            Reason::Refused => "the application refused these credentials",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_never_goes_negative() {
        let open = Grant::default();
        assert_eq!(open.remaining(), None);
        let past = Grant {
            expires_at: Some(SystemTime::now() - Duration::from_secs(5)),
            ..Grant::default()
        };
        assert_eq!(past.remaining(), Some(Duration::ZERO));
        let future = Grant {
            expires_at: Some(SystemTime::now() + Duration::from_secs(60)),
            ..Grant::default()
        };
        assert!(future.remaining().unwrap() > Duration::from_secs(50));
    }
}
