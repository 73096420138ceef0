//! The server's configuration: one plain struct, a documented default per
//! field, validated once at start-up.
//!
//! Each option that sets a field is declared once in [`options`]; where
//! values come from (flags, `HERALD_*` environment, a TOML file) is the CLI
//! module's business. This module says what the values are, which
//! combinations make sense, and keeps secrets out of `Debug`.

pub(crate) mod options;
pub(crate) mod unit;

#[cfg(test)]
mod docs;

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use herald_http::Limits;

/// Everything the server needs to run.
///
/// Its `Debug` never shows the publish token or the password in the Redis
/// URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Address of the public listener (subscribers). Default
    /// `127.0.0.1:8080`; port 0 picks a free port.
    pub public_addr: SocketAddr,
    /// Address of the internal listener (publish and admin). Default
    /// `127.0.0.1:8081`; port 0 picks a free port. Keep it unreachable from
    /// the reverse proxy that fronts the public listener.
    pub internal_addr: SocketAddr,
    /// Bearer token required on every internal endpoint when set. Default
    /// none.
    pub publish_token: Option<String>,
    /// Where ids, history and notifications live. Default
    /// [`EngineKind::Memory`].
    pub engine: EngineKind,
    /// How to reach Redis, used with [`EngineKind::Redis`]: URL (default
    /// `redis://127.0.0.1:6379`), key prefix (default `herald:`) and command
    /// timeout (default 2 s).
    pub redis: herald_redis::Config,
    /// History bounds per channel. Defaults: 100 messages, 1 MiB, 10 min.
    pub history: herald_bus::Config,
    /// Subscription limits. Defaults: 32 channels per subscription, 1000
    /// messages per response, 5 s for the engine reads before a hold,
    /// stream or subscription starts.
    pub limits: Limits,
    /// Long-poll hold times. Defaults: 25 s when the client gives no
    /// `timeout`, at most 55 s whatever it asks.
    pub longpoll: herald_longpoll::Config,
    /// Largest publish request body, in bytes. Default 64 KiB.
    pub max_body: usize,
    /// Messages in one batch publish. Default 1000.
    pub max_batch: usize,
    /// Open connections per listener, WebSockets included for their whole
    /// life; a connection over it is answered 503 `overloaded` and closed.
    /// Default 50,000.
    pub max_connections: usize,
    /// Open connections per listener from one peer IP address, counted by
    /// the socket's peer address (behind a reverse proxy every client is
    /// the proxy: limit per client there). Default 0: no per-address cap.
    pub max_connections_per_ip: usize,
    /// Connections the kernel may queue on each listener before herald
    /// accepts them (the `listen(2)` backlog), capped by the kernel's
    /// `net.core.somaxconn`. Only listeners herald binds itself use it.
    /// Default 4096.
    pub listen_backlog: u32,
    /// Time a connection's socket may accept no bytes while herald has
    /// bytes for it before the connection is closed; also the sockets'
    /// `TCP_USER_TIMEOUT` on Linux. Default 30 s.
    pub send_timeout: Duration,
    /// Time a connection served by hyper (HTTP/2, and HTTP/1.1 outside the
    /// lean path) may have no request in progress before it is closed.
    /// Default 60 s.
    pub idle_timeout: Duration,
    /// Time a client has to send its request headers. Default 10 s.
    pub header_read_timeout: Duration,
    /// Time a publish or admin request may take. Default 30 s.
    pub request_timeout: Duration,
    /// Time given to open requests and streams to end after a shutdown
    /// signal before the process exits anyway. Default 10 s.
    pub drain_timeout: Duration,
    /// Window over which a drain spreads the ends of held requests and
    /// streams, each at a random point of it, so that their clients do not
    /// all come back at the same instant. At most half of `drain_timeout`
    /// is used (a longer one is cut to that, so that the drain ends in
    /// time); zero ends them all at once. Default 5 s.
    pub drain_spread: Duration,
    /// Host names (with or without a port) the internal listener answers
    /// to; other `Host` headers get 403 `host_not_allowed` (the DNS
    /// rebinding defence). Default empty: loopback names (`localhost`,
    /// `127.0.0.1`, `[::1]`) when the internal listener is on a loopback
    /// address, no check otherwise (with a warning at start).
    pub internal_hosts: Vec<String>,
    /// Origins allowed to subscribe cross-origin (CORS) on the public
    /// listener; `*` allows any. Default `*`.
    pub cors_origins: Vec<String>,
    /// Server-Sent Events: reconnection delay (default 3 s), heartbeat
    /// (default 15 s) and maximum stream lifetime (default none).
    pub sse: herald_sse::Config,
    /// The WebSocket transport. Defaults: ping every 20 s, 20 s to answer,
    /// 30 s for the socket to accept writes, 64 KiB frames, 10 bad frames,
    /// 100 subscriptions per connection, 10 subscribe/unsubscribe frames
    /// per second (30 at once), any origin, `gap` for slow readers.
    pub ws: herald_ws::Config,
    /// How the binary writes its log lines to stderr. Default
    /// [`LogFormat::Text`]. Embedders set up their own logging.
    pub log_format: LogFormat,
    /// Subscriber authorization. Default: none, every channel public.
    pub auth: herald_auth::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            internal_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            publish_token: None,
            engine: EngineKind::Memory,
            redis: herald_redis::Config::default(),
            history: herald_bus::Config::default(),
            limits: Limits::default(),
            longpoll: herald_longpoll::Config::default(),
            max_body: 64 * 1024,
            max_batch: 1000,
            max_connections: 50_000,
            max_connections_per_ip: 0,
            listen_backlog: 4096,
            send_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            drain_spread: Duration::from_secs(5),
            internal_hosts: Vec::new(),
            cors_origins: vec!["*".into()],
            sse: herald_sse::Config::default(),
            ws: herald_ws::Config::default(),
            log_format: LogFormat::Text,
            auth: herald_auth::Config::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            public_addr,
            internal_addr,
            publish_token,
            engine,
            redis,
            history,
            limits,
            longpoll,
            max_body,
            max_batch,
            max_connections,
            max_connections_per_ip,
            listen_backlog,
            send_timeout,
            idle_timeout,
            header_read_timeout,
            request_timeout,
            drain_timeout,
            drain_spread,
            internal_hosts,
            cors_origins,
            sse,
            ws,
            log_format,
            auth,
        } = self;
        f.debug_struct("Config")
            .field("public_addr", public_addr)
            .field("internal_addr", internal_addr)
            .field("publish_token", &publish_token.as_ref().map(|_| Redacted))
            .field("engine", engine)
            .field("redis", redis)
            .field("history", history)
            .field("limits", limits)
            .field("longpoll", longpoll)
            .field("max_body", max_body)
            .field("max_batch", max_batch)
            .field("max_connections", max_connections)
            .field("max_connections_per_ip", max_connections_per_ip)
            .field("listen_backlog", listen_backlog)
            .field("send_timeout", send_timeout)
            .field("idle_timeout", idle_timeout)
            .field("header_read_timeout", header_read_timeout)
            .field("request_timeout", request_timeout)
            .field("drain_timeout", drain_timeout)
            .field("drain_spread", drain_spread)
            .field("internal_hosts", internal_hosts)
            .field("cors_origins", cors_origins)
            .field("sse", sse)
            .field("ws", ws)
            .field("log_format", log_format)
            // herald-auth's Debug redacts the secret.
            .field("auth", auth)
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The storage engine behind the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// In this process: one instance, nothing survives a restart.
    Memory,
    /// In Redis: several instances share ids, history and cursors.
    Redis,
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "memory" => Ok(EngineKind::Memory),
            "redis" => Ok(EngineKind::Redis),
            _ => Err(format!("{s:?} is not an engine; use memory or redis")),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Memory => "memory",
            EngineKind::Redis => "redis",
        })
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?} is not a log format; use text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// A configuration that cannot run; the text names the option.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// The drain spread in force: `drain_spread`, cut to half of
    /// `drain_timeout`.
    pub(crate) fn effective_drain_spread(&self) -> Duration {
        self.drain_spread.min(self.drain_timeout / 2)
    }

    /// Checks the values against each other. Fails naming the first option
    /// that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |s: &str| Err(ConfigError(s.to_string()));
        if self.history.max_messages == 0 {
            return fail("history-messages must be at least 1");
        }
        if self.history.max_bytes < self.max_body.saturating_add(128) {
            return fail(
                "history-bytes must exceed max-body by at least 128 bytes, so that every accepted message can be stored",
            );
        }
        if self.history.max_age.is_zero() {
            return fail("history-age must be at least 1 second");
        }
        if self.limits.max_channels == 0 {
            return fail("max-channels must be at least 1");
        }
        if self.limits.max_messages == 0 {
            return fail("max-messages must be at least 1");
        }
        if self.longpoll.timeout < Duration::from_secs(1) {
            return fail("longpoll-timeout must be at least 1 second");
        }
        if self.longpoll.max_timeout < Duration::from_secs(1) {
            return fail("longpoll-max-timeout must be at least 1 second");
        }
        if self.longpoll.timeout > self.longpoll.max_timeout {
            return fail("longpoll-timeout must not exceed longpoll-max-timeout");
        }
        if self.max_batch == 0 {
            return fail("max-batch must be at least 1");
        }
        if self.max_connections == 0 || self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return fail("max-connections must be between 1 and 2^61");
        }
        for (name, value) in [
            ("header-read-timeout", self.header_read_timeout),
            ("request-timeout", self.request_timeout),
            ("drain-timeout", self.drain_timeout),
            ("setup-timeout", self.limits.setup_timeout),
            ("send-timeout", self.send_timeout),
            ("idle-timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!("{name} must be at least 1 second")));
            }
        }
        if self.listen_backlog == 0 {
            return fail("listen-backlog must be at least 1");
        }
        if !origins_valid(&self.internal_hosts) || self.internal_hosts.iter().any(|h| h == "*") {
            return fail("internal-hosts must be a comma-separated list of host names");
        }
        if self.cors_origins.is_empty() {
            return fail("cors-origins must name at least one origin, or `*`");
        }
        if self.sse.heartbeat < Duration::from_secs(1) {
            return fail("sse-heartbeat must be at least 1 second");
        }
        if self
            .sse
            .max_lifetime
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return fail("sse-max-lifetime must be 0 (no limit) or at least 1 second");
        }
        if self.engine == EngineKind::Redis && self.redis.url.is_empty() {
            return fail("redis-url must not be empty with engine = redis");
        }
        if self.redis.tls_ca.is_some() && !self.redis.url.starts_with("rediss://") {
            return fail("redis-tls-ca needs a rediss:// redis-url");
        }
        if self.redis.timeout.is_zero() {
            return fail("redis-timeout must be more than 0");
        }
        if self.publish_token.as_deref() == Some("") {
            return fail("publish-token must not be empty when set");
        }
        if !origins_valid(&self.cors_origins) {
            return fail("cors-origins must be `*` or a comma-separated list of origins");
        }
        self.validate_ws()?;
        self.validate_auth()
    }

    /// The authorizer the `auth-*` options describe (reading the key file).
    /// Fails naming the option at fault.
    pub fn authorizer(&self) -> Result<herald_auth::Authorizer, ConfigError> {
        herald_auth::Authorizer::new(self.auth.clone()).map_err(|e| {
            let option = match e.field {
                "jwt_secret" => "auth-jwt-secret",
                "jwt_key" => "auth-jwt-key",
                "issuer" => "auth-issuer",
                "audience" => "auth-audience",
                "public_channels" => "public-channels",
                "cookie" => "auth-cookie",
                "hook_url" => "auth-url",
                "hook_timeout" => "auth-timeout",
                "hook_cache_entries" => "auth-cache-entries",
                "refresh_grace" => "auth-grace",
                other => other,
            };
            ConfigError(format!("{option}: {}", e.message))
        })
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let fail = |s: &str| Err(ConfigError(s.to_string()));
        self.authorizer()?;
        if self.auth.cookie.is_some() {
            // Browsers send cookies cross-origin only to an exact origin
            // that allows credentials, and a socket opened by another site
            // would ride on them.
            if self.cors_origins.iter().any(|o| o == "*") {
                return fail(
                    "auth-cookie needs cors-origins to list your pages' exact origins: browsers refuse credentials with `*`",
                );
            }
            if self.ws.origins.is_empty() || self.ws.origins.iter().any(|o| o == "*") {
                return fail(
                    "auth-cookie needs ws-origins to list your pages' exact origins, so that another site cannot open a WebSocket with your users' cookies",
                );
            }
        }
        if self.auth.refresh_grace.is_zero() {
            return fail("auth-grace must be at least 1 second");
        }
        Ok(())
    }

    fn validate_ws(&self) -> Result<(), ConfigError> {
        let fail = |s: &str| Err(ConfigError(s.to_string()));
        let ws = &self.ws;
        if ws.ping_interval < Duration::from_secs(1) {
            return fail("ws-ping-interval must be at least 1 second");
        }
        if ws.ping_timeout < Duration::from_secs(1) {
            return fail("ws-ping-timeout must be at least 1 second");
        }
        if ws.max_frame < 1024 {
            return fail(
                "ws-max-frame must be at least 1024 bytes, so that a subscribe frame fits",
            );
        }
        if ws.max_bad_frames == 0 {
            return fail("ws-max-bad-frames must be at least 1");
        }
        if ws.max_subscriptions == 0 {
            return fail("ws-max-subscriptions must be at least 1");
        }
        if ws.frame_rate == 0 {
            return fail("ws-frame-rate must be at least 1 frame per second");
        }
        if ws.frame_burst == 0 {
            return fail("ws-frame-burst must be at least 1");
        }
        if !origins_valid(&ws.origins) {
            return fail("ws-origins must be a comma-separated list of origins");
        }
        Ok(())
    }
}

/// True when every entry is `*` or usable as a header value.
fn origins_valid(origins: &[String]) -> bool {
    origins
        .iter()
        .all(|o| o == "*" || http::HeaderValue::from_str(o).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn ws_options_are_checked_by_name() {
        let mut c = Config::default();
        c.ws.ping_interval = Duration::ZERO;
        assert!(c.validate().unwrap_err().0.contains("ws-ping-interval"));
        let mut c = Config::default();
        c.ws.max_bad_frames = 0;
        assert!(c.validate().unwrap_err().0.contains("ws-max-bad-frames"));
        let mut c = Config::default();
        c.ws.frame_rate = 0;
        assert!(c.validate().unwrap_err().0.contains("ws-frame-rate"));
        let mut c = Config::default();
        c.ws.frame_burst = 0;
        assert!(c.validate().unwrap_err().0.contains("ws-frame-burst"));
        let mut c = Config::default();
        c.limits.setup_timeout = Duration::ZERO;
        assert!(c.validate().unwrap_err().0.contains("setup-timeout"));
        let mut c = Config::default();
        c.ws.origins = vec!["bad\norigin".into()];
        assert!(c.validate().unwrap_err().0.contains("ws-origins"));
    }

    #[test]
    fn connection_options_are_checked_by_name() {
        for (c, option) in [
            (
                Config {
                    send_timeout: Duration::ZERO,
                    ..Config::default()
                },
                "send-timeout",
            ),
            (
                Config {
                    listen_backlog: 0,
                    ..Config::default()
                },
                "listen-backlog",
            ),
            (
                Config {
                    internal_hosts: vec!["*".into()],
                    ..Config::default()
                },
                "internal-hosts",
            ),
        ] {
            assert!(c.validate().unwrap_err().0.contains(option), "{option}");
        }
    }

    #[test]
    fn the_drain_spread_fits_in_the_drain() {
        let secs = Duration::from_secs;
        let c = Config::default();
        assert_eq!(c.effective_drain_spread(), secs(5));
        let c = Config {
            drain_timeout: secs(4),
            ..Config::default()
        };
        c.validate().unwrap();
        assert_eq!(c.effective_drain_spread(), secs(2));
    }

    #[test]
    fn a_redis_ca_file_needs_a_tls_url() {
        let mut c = Config::default();
        c.redis.tls_ca = Some("ca.pem".into());
        assert!(c.validate().unwrap_err().0.contains("redis-tls-ca"));
        c.redis.url = "rediss://db.example:6380".into();
        c.validate().unwrap();
    }

    #[test]
    fn engine_names_parse() {
        assert_eq!("redis".parse(), Ok(EngineKind::Redis));
        assert_eq!("memory".parse(), Ok(EngineKind::Memory));
        assert!("mongo".parse::<EngineKind>().is_err());
        let mut c = Config {
            engine: EngineKind::Redis,
            ..Config::default()
        };
        c.validate().unwrap();
        c.redis.url.clear();
        assert!(c.validate().unwrap_err().0.contains("redis-url"));
    }

    #[test]
    fn history_bytes_must_fit_the_largest_body() {
        let mut c = Config::default();
        c.history.max_bytes = c.max_body;
        let e = c.validate().unwrap_err();
        assert!(e.0.contains("history-bytes"));
    }

    #[test]
    fn longpoll_hold_times_are_checked() {
        let secs = Duration::from_secs;
        let with = |timeout, max_timeout| Config {
            longpoll: herald_longpoll::Config {
                timeout,
                max_timeout,
            },
            ..Config::default()
        };
        with(secs(1), secs(1)).validate().unwrap();
        for (c, option) in [
            (with(secs(0), secs(55)), "longpoll-timeout"),
            (with(secs(0), secs(0)), "longpoll-timeout"),
            (with(secs(1), secs(0)), "longpoll-max-timeout"),
            (with(secs(56), secs(55)), "longpoll-timeout must not exceed"),
        ] {
            let e = c.validate().unwrap_err();
            assert!(e.0.contains(option), "{e}");
        }
    }
}
