//! The engine's own settings: where Redis is and how patient to be with it.
//! History bounds and the clock are not here: they are the bus's
//! [`herald_bus::Config`], the one value either engine is built from, so that
//! both behave alike.
//!
//! The URL may carry a password, so `Debug` shows it without one.

use std::{fmt, time::Duration};

/// How to reach Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Redis URL (`redis://[user:password@]host:port[/db]`, or `rediss://`
    /// when the client is built with TLS). Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// Prefix of every key and pub/sub channel herald uses, so that other
    /// data in the same database is never touched. Default `herald:`.
    pub prefix: String,
    /// Time a command or a connection attempt may take before it counts as
    /// failed (publish then answers 503). Default 2 s.
    pub timeout: Duration,
    /// How often the engine checks that Redis answers and still holds the
    /// same epoch, and pings the pub/sub connection. Default 1 s.
    pub check_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "herald:".into(),
            timeout: Duration::from_secs(2),
            check_interval: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// The URL without its user and password (`redis://***@host:6379`), for
    /// logs and error messages.
    pub fn redacted_url(&self) -> String {
        match (self.url.split_once("://"), self.url.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
            _ => self.url.clone(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("check_interval", &self.check_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let c = Config {
            url: "redis://user:hunter2@db.example:6379/0".into(),
            ..Config::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://***@db.example:6379/0"), "{shown}");
        assert!(format!("{:?}", Config::default()).contains("redis://127.0.0.1:6379"));
    }

    #[test]
    fn passwords_are_redacted() {
        let redacted = |url: &str| {
            Config {
                url: url.into(),
                ..Config::default()
            }
            .redacted_url()
        };
        assert_eq!(
            redacted("redis://user:s3cret@10.0.0.5:6379/2"),
            "redis://***@10.0.0.5:6379/2"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
