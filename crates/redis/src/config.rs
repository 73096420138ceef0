//! The engine's own settings: where Redis is and how patient to be with it.
//! History bounds and the clock are not here: they are the bus's
//! [`herald_bus::Config`], the one value either engine is built from, so that
//! both behave alike.

use std::time::Duration;

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
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
