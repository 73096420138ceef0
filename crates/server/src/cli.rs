//! Where configuration comes from: command-line flags, `HERALD_*`
//! environment variables and an optional TOML file, with one set of names
//! for all three (`--max-body`, `HERALD_MAX_BODY`, `max-body = ...`).
//!
//! Precedence: flag, then environment, then file, then the default. Every
//! option is declared once, in the `options!` list below, which generates the
//! clap arguments, the TOML keys and the merge.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use serde::Deserialize;

use crate::{
    Config,
    config::{ConfigError, EngineKind},
};

macro_rules! options {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $env:literal ),* $(,)?) => {
        /// herald: a push gateway. Backends publish over HTTP; browsers
        /// subscribe by short polling, long polling, Server-Sent Events or
        /// WebSocket.
        #[derive(Debug, Default, Parser, Deserialize)]
        #[command(name = "herald", version)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct Args {
            /// TOML file with any of the options below (keys as the long
            /// flag names, without dashes in front).
            #[arg(long, env = "HERALD_CONFIG")]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env)]
                pub $name: Option<$ty>,
            )*
        }

        impl Args {
            /// Fills every option not given by flag or environment from
            /// `file`.
            fn or(self, file: Args) -> Args {
                Args { config: self.config, $( $name: self.$name.or(file.$name), )* }
            }
        }
    };
}

options! {
    /// Public listener (subscribers) [default: 127.0.0.1:8080].
    public_addr: SocketAddr = "HERALD_PUBLIC_ADDR",
    /// Internal listener (publish, admin) [default: 127.0.0.1:8081].
    internal_addr: SocketAddr = "HERALD_INTERNAL_ADDR",
    /// Bearer token required on the internal listener [default: none].
    publish_token: String = "HERALD_PUBLISH_TOKEN",
    /// Storage engine: memory (one instance) or redis (several instances share one Redis) [default: memory].
    engine: EngineKind = "HERALD_ENGINE",
    /// Redis URL for engine = redis [default: redis://127.0.0.1:6379].
    redis_url: String = "HERALD_REDIS_URL",
    /// Messages kept per channel [default: 100].
    history_messages: usize = "HERALD_HISTORY_MESSAGES",
    /// Bytes kept per channel [default: 1048576].
    history_bytes: usize = "HERALD_HISTORY_BYTES",
    /// Seconds a message is kept [default: 600].
    history_age: u64 = "HERALD_HISTORY_AGE",
    /// Channels per subscription [default: 32].
    max_channels: usize = "HERALD_MAX_CHANNELS",
    /// Messages per response or stream batch [default: 1000].
    max_messages: usize = "HERALD_MAX_MESSAGES",
    /// Seconds a long poll is held when the client gives no `timeout` [default: 25].
    longpoll_timeout: u64 = "HERALD_LONGPOLL_TIMEOUT",
    /// Longest long-poll hold in seconds a client may ask for; keep it below your proxy's read timeout [default: 55].
    longpoll_max_timeout: u64 = "HERALD_LONGPOLL_MAX_TIMEOUT",
    /// Largest publish body in bytes [default: 65536].
    max_body: usize = "HERALD_MAX_BODY",
    /// Messages per batch publish [default: 1000].
    max_batch: usize = "HERALD_MAX_BATCH",
    /// Open connections per listener [default: 50000].
    max_connections: usize = "HERALD_MAX_CONNECTIONS",
    /// Seconds a client has to send request headers [default: 10].
    header_read_timeout: u64 = "HERALD_HEADER_READ_TIMEOUT",
    /// Seconds a publish or admin request may take [default: 30].
    request_timeout: u64 = "HERALD_REQUEST_TIMEOUT",
    /// Seconds to drain open requests and streams on shutdown [default: 10].
    drain_timeout: u64 = "HERALD_DRAIN_TIMEOUT",
    /// Comma-separated origins allowed by CORS on the public listener, or `*` [default: *].
    cors_origins: String = "HERALD_CORS_ORIGINS",
    /// Milliseconds an SSE client waits before reconnecting (sent as `retry:`) [default: 3000].
    sse_retry: u64 = "HERALD_SSE_RETRY",
    /// Seconds of silence after which an SSE stream gets a heartbeat comment [default: 15].
    sse_heartbeat: u64 = "HERALD_SSE_HEARTBEAT",
    /// Seconds after which an SSE stream ends so that the client reconnects; 0 = never [default: 0].
    sse_max_lifetime: u64 = "HERALD_SSE_MAX_LIFETIME",
    /// Seconds between the server's WebSocket pings [default: 20].
    ws_ping_interval: u64 = "HERALD_WS_PING_INTERVAL",
    /// Seconds a WebSocket peer has to answer a ping before it is closed [default: 20].
    ws_ping_timeout: u64 = "HERALD_WS_PING_TIMEOUT",
    /// Largest WebSocket client frame in bytes; larger closes with 1009 [default: 65536].
    ws_max_frame: usize = "HERALD_WS_MAX_FRAME",
    /// Bad WebSocket client frames before the connection is closed with 1008 [default: 10].
    ws_max_bad_frames: u32 = "HERALD_WS_MAX_BAD_FRAMES",
    /// Channels one WebSocket connection may subscribe to [default: 100].
    ws_max_subscriptions: usize = "HERALD_WS_MAX_SUBSCRIPTIONS",
    /// Comma-separated origins allowed to open a WebSocket; empty allows any [default: empty].
    ws_origins: String = "HERALD_WS_ORIGINS",
    /// A WebSocket reader that falls behind the history: `gap` or `close` (1013) [default: gap].
    ws_slow_policy: herald_ws::SlowPolicy = "HERALD_WS_SLOW_POLICY",
}

impl Args {
    /// Parses flags and environment, then the TOML file they name.
    /// Fails with a message naming the file or the option.
    pub fn load() -> Result<Config, ConfigError> {
        Self::parse().resolve()
    }

    /// Merges the file named by `--config` (if any) and builds the config.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let args = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                let file: Args = toml::from_str(&text)
                    .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
                self.or(file)
            }
            None => self,
        };
        let config = args.into_config();
        config.validate()?;
        Ok(config)
    }

    fn into_config(self) -> Config {
        let mut c = Config::default();
        let secs = Duration::from_secs;
        if let Some(v) = self.public_addr {
            c.public_addr = v;
        }
        if let Some(v) = self.internal_addr {
            c.internal_addr = v;
        }
        if let Some(v) = self.publish_token {
            c.publish_token = Some(v);
        }
        if let Some(v) = self.engine {
            c.engine = v;
        }
        if let Some(v) = self.redis_url {
            c.redis_url = v;
        }
        if let Some(v) = self.history_messages {
            c.history.max_messages = v;
        }
        if let Some(v) = self.history_bytes {
            c.history.max_bytes = v;
        }
        if let Some(v) = self.history_age {
            c.history.max_age = secs(v);
        }
        if let Some(v) = self.max_channels {
            c.limits.max_channels = v;
        }
        if let Some(v) = self.max_messages {
            c.limits.max_messages = v;
        }
        if let Some(v) = self.longpoll_timeout {
            c.longpoll.timeout = secs(v);
        }
        if let Some(v) = self.longpoll_max_timeout {
            c.longpoll.max_timeout = secs(v);
        }
        if let Some(v) = self.max_body {
            c.max_body = v;
        }
        if let Some(v) = self.max_batch {
            c.max_batch = v;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.header_read_timeout {
            c.header_read_timeout = secs(v);
        }
        if let Some(v) = self.request_timeout {
            c.request_timeout = secs(v);
        }
        if let Some(v) = self.drain_timeout {
            c.drain_timeout = secs(v);
        }
        if let Some(v) = self.cors_origins {
            c.cors_origins = comma_list(&v);
        }
        if let Some(v) = self.ws_ping_interval {
            c.ws.ping_interval = secs(v);
        }
        if let Some(v) = self.ws_ping_timeout {
            c.ws.ping_timeout = secs(v);
        }
        if let Some(v) = self.ws_max_frame {
            c.ws.max_frame = v;
        }
        if let Some(v) = self.ws_max_bad_frames {
            c.ws.max_bad_frames = v;
        }
        if let Some(v) = self.ws_max_subscriptions {
            c.ws.max_subscriptions = v;
        }
        if let Some(v) = self.ws_origins {
            c.ws.origins = comma_list(&v);
        }
        if let Some(v) = self.ws_slow_policy {
            c.ws.slow_policy = v;
        }
        if let Some(v) = self.sse_retry {
            c.sse.retry = Duration::from_millis(v);
        }
        if let Some(v) = self.sse_heartbeat {
            c.sse.heartbeat = secs(v);
        }
        if let Some(v) = self.sse_max_lifetime {
            c.sse.max_lifetime = (v > 0).then(|| secs(v));
        }
        c
    }
}

/// `a, b,,c` → `["a", "b", "c"]`.
fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
        let argv = std::iter::once("herald").chain(args.iter().copied());
        Args::try_parse_from(argv).unwrap().resolve()
    }

    #[test]
    fn ws_options() {
        let c = resolve(&[]).unwrap();
        assert_eq!(c.ws, herald_ws::Config::default());
        let c = resolve(&[
            "--ws-ping-interval",
            "5",
            "--ws-ping-timeout",
            "7",
            "--ws-max-frame",
            "4096",
            "--ws-max-bad-frames",
            "2",
            "--ws-max-subscriptions",
            "3",
            "--ws-origins",
            "https://a.example, https://b.example",
            "--ws-slow-policy",
            "close",
        ])
        .unwrap();
        assert_eq!(c.ws.ping_interval, Duration::from_secs(5));
        assert_eq!(c.ws.ping_timeout, Duration::from_secs(7));
        assert_eq!(c.ws.max_frame, 4096);
        assert_eq!(c.ws.max_bad_frames, 2);
        assert_eq!(c.ws.max_subscriptions, 3);
        assert_eq!(c.ws.origins, ["https://a.example", "https://b.example"]);
        assert_eq!(c.ws.slow_policy, herald_ws::SlowPolicy::Close);
        let e = resolve(&["--ws-max-frame", "10"]).unwrap_err();
        assert!(e.0.contains("ws-max-frame"), "{e}");
        let file: Args =
            toml::from_str("ws-slow-policy = \"close\"\nws-origins = \"https://a.example\"\n")
                .unwrap();
        let c = Args::default().or(file).into_config();
        assert_eq!(c.ws.slow_policy, herald_ws::SlowPolicy::Close);
    }

    #[test]
    fn sse_options() {
        let c = resolve(&[]).unwrap();
        assert_eq!(c.sse, herald_sse::Config::default());
        let c = resolve(&[
            "--sse-retry",
            "250",
            "--sse-heartbeat",
            "2",
            "--sse-max-lifetime",
            "60",
        ])
        .unwrap();
        assert_eq!(c.sse.retry, Duration::from_millis(250));
        assert_eq!(c.sse.heartbeat, Duration::from_secs(2));
        assert_eq!(c.sse.max_lifetime, Some(Duration::from_secs(60)));
        let c = resolve(&["--sse-max-lifetime", "0"]).unwrap();
        assert_eq!(c.sse.max_lifetime, None, "0 means no limit");
        let e = resolve(&["--sse-heartbeat", "0"]).unwrap_err();
        assert!(e.0.contains("sse-heartbeat"), "{e}");
    }
}
