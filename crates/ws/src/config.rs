//! The WebSocket transport's settings: liveness, limits on what a client may
//! send, the Origin allow-list and what happens to a reader that falls
//! behind.
//!
//! Values only; the server decides where they come from (flags,
//! environment, file) and checks them once at start-up.

use std::{fmt, str::FromStr, time::Duration};

use serde::Deserialize;

/// Settings of the WebSocket transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How often the server pings each connection, so that dead peers and
    /// idle-killing proxies are noticed. Default 20 s.
    pub ping_interval: Duration,
    /// How long a peer has to answer a ping with a pong before it is
    /// closed with 4408. Only a pong echoing the latest ping's payload
    /// counts, so a client cannot stay alive with pongs it sends on its own.
    /// Default 20 s.
    pub ping_timeout: Duration,
    /// How long the socket may take to accept what the connection has
    /// handed it (at most 256 KiB plus one message frame) before the peer
    /// counts as stalled and the connection is closed with 4408. Default
    /// 30 s; the server sets it from `--send-timeout`, its one send deadline
    /// for every transport.
    pub send_timeout: Duration,
    /// Largest client message (and frame), in bytes; a larger one closes the
    /// connection with 1009. Default 65,536.
    pub max_frame: usize,
    /// Bad client frames (invalid JSON, unknown type, invalid channel or
    /// cursor, too many subscriptions, binary) tolerated on one connection;
    /// the one that reaches this count closes it with 1008. Default 10.
    pub max_bad_frames: u32,
    /// Channels one connection may be subscribed to at once; a `subscribe`
    /// frame listing more is refused before its names are even compared.
    /// Default 100.
    pub max_subscriptions: usize,
    /// `subscribe` and `unsubscribe` frames a connection may send per
    /// second, on average (a token bucket refilled at this rate). A frame
    /// over the limit is answered with a `rate_limited` error and counts as
    /// a bad frame. Default 10.
    pub frame_rate: u32,
    /// `subscribe` and `unsubscribe` frames a connection may send at once
    /// before [`frame_rate`](Self::frame_rate) applies (the bucket's size).
    /// Default 30.
    pub frame_burst: u32,
    /// Origins allowed to open a WebSocket (`https://app.example.com`); a
    /// handshake with another `Origin` gets 403. Empty allows any origin.
    /// Default empty.
    pub origins: Vec<String>,
    /// What happens to a reader whose socket does not drain and that falls
    /// behind the retained history. Default [`SlowPolicy::Gap`].
    pub slow_policy: SlowPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            send_timeout: Duration::from_secs(30),
            max_frame: 64 * 1024,
            max_bad_frames: 10,
            max_subscriptions: 100,
            frame_rate: 10,
            frame_burst: 30,
            origins: Vec::new(),
            slow_policy: SlowPolicy::Gap,
        }
    }
}

/// What to do with a reader that fell behind the retained history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowPolicy {
    /// Send a `gap` frame and continue from the oldest retained message.
    #[default]
    Gap,
    /// Close the connection with 1013 (try again later); the client
    /// reconnects with its last cursor and learns about the gap then.
    Close,
}

impl FromStr for SlowPolicy {
    type Err = String;

    /// Parses `gap` or `close`; fails naming the accepted values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gap" => Ok(SlowPolicy::Gap),
            "close" => Ok(SlowPolicy::Close),
            other => Err(format!("expected `gap` or `close`, got {other:?}")),
        }
    }
}

impl fmt::Display for SlowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlowPolicy::Gap => "gap",
            SlowPolicy::Close => "close",
        })
    }
}
