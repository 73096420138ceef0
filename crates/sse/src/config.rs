//! The SSE transport's settings. Where they come from (flags, environment,
//! file) and whether they are sane together is the server's business.

use std::time::Duration;

/// How SSE streams behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Reconnection delay the browser is told once per stream (`retry:`,
    /// in milliseconds on the wire): how long an EventSource waits before it
    /// reconnects after the stream ended. Default 3 s.
    pub retry: Duration,
    /// Idle time after which a comment line is written, so that proxies and
    /// NATs keep the stream open and a dead client is noticed. Every write
    /// restarts it. Default 15 s.
    pub heartbeat: Duration,
    /// Longest life of one stream, after which it ends cleanly and the
    /// client reconnects with its Last-Event-ID (so that load balancers can
    /// rebalance). Default `None`: no limit.
    pub max_lifetime: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retry: Duration::from_secs(3),
            heartbeat: Duration::from_secs(15),
            max_lifetime: None,
        }
    }
}
