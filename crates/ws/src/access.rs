//! A connection's authorization: the credentials it presented, when what
//! they granted ends, and the grace period after that.
//!
//! At the end of a grant the connection is told `expired` and stops
//! delivering (its subscription keeps its position, so nothing is lost);
//! a fresh token before the grace period ends resumes it, else the
//! connection is closed with [`EXPIRED_CLOSE`]. A grant with no end
//! (public channels, the backend hook, authorization turned off) never
//! expires. Deciding what credentials may read is herald-auth's business.

use herald_auth::{Credentials, Grant};
use tokio::time::Instant;

/// The close code of a connection whose token expired and was not
/// refreshed within the grace period (4000–4999: the application's own).
pub(crate) const EXPIRED_CLOSE: u16 = 4001;

/// What a connection's credentials grant, and until when.
#[derive(Debug)]
pub(crate) struct Access {
    /// Checked for every subscribe frame without a token of its own.
    pub(crate) credentials: Credentials,
    /// When the earliest grant still in force ends, if one does.
    expires: Option<Instant>,
    /// Set once expired: the moment the connection is closed unless a
    /// fresh token arrives.
    grace_until: Option<Instant>,
}

/// What the end of the grant, or of the grace period after it, means when
/// it comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// The grant ended: say `expired`, pause delivery, start the grace.
    Expired,
    /// The grace ended without a fresh token: close.
    GraceOver,
}

impl Access {
    /// A session for `credentials`, with what they were granted.
    pub(crate) fn new(credentials: Credentials, grant: &Grant) -> Self {
        Access {
            credentials,
            expires: deadline(grant),
            grace_until: None,
        }
    }

    /// When the session's timer fires next, and what it then means.
    pub(crate) fn due(&self) -> Option<(Instant, Due)> {
        match (self.grace_until, self.expires) {
            (Some(at), _) => Some((at, Due::GraceOver)),
            (None, Some(at)) => Some((at, Due::Expired)),
            (None, None) => None,
        }
    }

    /// Whether delivery is paused, waiting for a fresh token.
    pub(crate) fn paused(&self) -> bool {
        self.grace_until.is_some()
    }

    /// The grant ended: pause until `now + grace`.
    pub(crate) fn expire(&mut self, grace: std::time::Duration) {
        self.grace_until = Some(Instant::now() + grace);
    }

    /// More channels were granted (a subscribe frame): the session ends
    /// with the earliest grant, so that no channel outlives its token.
    pub(crate) fn add(&mut self, credentials: Credentials, grant: &Grant) {
        self.credentials = credentials;
        self.expires = match (self.expires, deadline(grant)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// A fresh token was accepted for every channel kept (an `auth`
    /// frame): its grant replaces the old one and delivery resumes.
    pub(crate) fn renew(&mut self, credentials: Credentials, grant: &Grant) {
        self.credentials = credentials;
        self.expires = deadline(grant);
        self.grace_until = None;
    }
}

/// When `grant` ends, on the tokio clock.
fn deadline(grant: &Grant) -> Option<Instant> {
    grant.remaining().map(|left| Instant::now() + left)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn grant(secs: u64) -> Grant {
        Grant {
            sub: None,
            expires_at: Some(SystemTime::now() + Duration::from_secs(secs)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_without_end_never_fires() {
        let s = Access::new(Credentials::default(), &Grant::default());
        assert_eq!(s.due(), None);
        assert!(!s.paused());
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_then_grace_then_renewal() {
        let mut s = Access::new(Credentials::default(), &grant(100));
        let (at, due) = s.due().unwrap();
        assert_eq!(due, Due::Expired);
        assert!(at > Instant::now() + Duration::from_secs(98));
        s.expire(Duration::from_secs(30));
        assert!(s.paused());
        assert_eq!(
            s.due(),
            Some((Instant::now() + Duration::from_secs(30), Due::GraceOver))
        );
        s.renew(Credentials::token_only("fresh"), &grant(600));
        assert!(!s.paused());
        assert_eq!(s.due().unwrap().1, Due::Expired);
        assert_eq!(s.credentials.token(), Some("fresh"));
    }

    #[tokio::test(start_paused = true)]
    async fn adding_a_grant_keeps_the_earliest_end() {
        let mut s = Access::new(Credentials::default(), &Grant::default());
        s.add(Credentials::token_only("a"), &grant(600));
        let later = s.due().unwrap().0;
        s.add(Credentials::token_only("b"), &grant(100));
        let sooner = s.due().unwrap().0;
        assert!(sooner < later);
        s.add(Credentials::token_only("c"), &Grant::default());
        assert_eq!(
            s.due().unwrap().0,
            sooner,
            "a grant without end changes nothing"
        );
    }
}
