//! Channel and event names: validated once, then cheap to clone and share.
//!
//! The channel alphabet (`A-Z a-z 0-9 _ - . : @ ~`) is URL-safe in a path
//! segment and excludes `,`, which separates channels in a subscription.

use std::{fmt, sync::Arc};

use crate::Error;

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;
/// Longest event name, in bytes.
pub const MAX_EVENT_LEN: usize = 64;
/// Event names herald keeps for its own signals (the SSE gap event is
/// `herald.gap`), so that a publisher can never forge one.
pub const RESERVED_EVENT_PREFIX: &str = "herald.";

/// A validated channel name: 1 to 128 bytes of `A-Z a-z 0-9 _ - . : @ ~`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Validates `name`. Fails with [`Error::InvalidChannel`] naming the rule
    /// that was broken.
    pub fn new(name: &str) -> Result<Self, Error> {
        if name.is_empty() {
            return Err(Error::InvalidChannel(
                "a channel name must not be empty".into(),
            ));
        }
        if name.len() > MAX_CHANNEL_LEN {
            return Err(Error::InvalidChannel(format!(
                "a channel name is at most {MAX_CHANNEL_LEN} bytes"
            )));
        }
        if let Some(c) = name.chars().find(|c| !is_channel_char(*c)) {
            return Err(Error::InvalidChannel(format!(
                "{c:?} is not allowed; use only A-Z a-z 0-9 _ - . : @ ~"
            )));
        }
        Ok(ChannelName(name.into()))
    }

    /// Parses a comma-separated list (`news,sports`) of at most `max`
    /// distinct channels; duplicates are folded, order is kept.
    pub fn parse_list(list: &str, max: usize) -> Result<Vec<ChannelName>, Error> {
        let mut out: Vec<ChannelName> = Vec::new();
        for part in list.split(',') {
            let name = ChannelName::new(part)?;
            if !out.contains(&name) {
                if out.len() == max {
                    return Err(Error::TooManyChannels { max });
                }
                out.push(name);
            }
        }
        Ok(out)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stable 64-bit hash of the name (FNV-1a), the same on every instance
    /// and every run, so that cursors can name channels compactly.
    pub(crate) fn stable_hash(&self) -> u64 {
        self.0.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '~')
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A validated event name: 1 to 64 bytes with no control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventName(Arc<str>);

impl EventName {
    /// Validates `name`; fails with [`Error::InvalidEvent`].
    pub fn new(name: &str) -> Result<Self, Error> {
        if name.is_empty() || name.len() > MAX_EVENT_LEN {
            return Err(Error::InvalidEvent(format!(
                "an event name is 1 to {MAX_EVENT_LEN} bytes"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::InvalidEvent(
                "an event name must not contain control characters".into(),
            ));
        }
        if name.starts_with(RESERVED_EVENT_PREFIX) {
            return Err(Error::InvalidEvent(format!(
                "event names starting with {RESERVED_EVENT_PREFIX:?} are reserved for herald's own events"
            )));
        }
        Ok(EventName(name.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_whole_alphabet() {
        assert!(ChannelName::new("Az09_-.:@~").is_ok());
        assert!(ChannelName::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "a b", "a,b", "a/b", "é", "a%20", &"a".repeat(129)] {
            assert!(
                matches!(ChannelName::new(bad), Err(Error::InvalidChannel(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lists_fold_duplicates_and_respect_the_maximum() {
        let l = ChannelName::parse_list("a,b,a", 2).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            ChannelName::parse_list("a,b,c", 2),
            Err(Error::TooManyChannels { max: 2 })
        );
        assert!(ChannelName::parse_list("a,,b", 5).is_err());
    }

    #[test]
    fn event_names() {
        assert!(EventName::new("update").is_ok());
        assert!(EventName::new("").is_err());
        assert!(EventName::new("a\nb").is_err());
        assert!(EventName::new(&"e".repeat(65)).is_err());
        assert!(EventName::new(&"e".repeat(64)).is_ok());
        assert!(EventName::new("herald.gap").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_list_never_panics(s in ".{0,300}") {
            let _ = ChannelName::parse_list(&s, 32);
        }
    }
}
