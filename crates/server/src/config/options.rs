//! Every option of the server, declared once: its name, where its value
//! lives in [`Config`] and in which unit, its help text, its section, and
//! whether it is a secret.
//!
//! Everything else is derived from this table: the flag `--name`, the
//! environment variable `HERALD_NAME`, the TOML key `name`, the merge of the
//! three, the `[default: …]` in `--help` (read out of [`Config::default`]
//! through the option's place, so it is the real default) and the tables
//! in docs/configuration.md (a test compares them). Range checks are not
//! here; [`Config::validate`] does them, naming the option.
//!
//! To add an option: give [`Config`] (or the transport's config) the field
//! with its documented default; add one [`Opt`] line to its section below,
//! with the unit from [`super::unit`] that reads its text (a new unit is one
//! small `Conversion`); add the range check to [`Config::validate`], naming
//! the option, if it has one; mark a secret `.secret()` and redact its field
//! in `Config`'s `Debug` (a test sets every secret and looks); then run
//! `UPDATE_DOCS=1 cargo test -p herald-server option_tables` to write the
//! doc row.

use super::{
    Config,
    unit::{
        Addr, Bytes, Choice, Count, List, Millis, OptionalText, Patterns, Secs, SecsOrNever, Text,
        Unit, at,
    },
};

/// One option.
pub(crate) struct Opt {
    /// Kebab-case: the long flag without its dashes and the TOML key.
    pub(crate) name: &'static str,
    /// Where the value goes and how its text reads.
    pub(crate) unit: &'static dyn Unit,
    /// One line for `--help` and the docs, units included.
    pub(crate) help: &'static str,
    /// The placeholder in `--help` when the unit's own would say too little.
    pub(crate) hint: Option<&'static str>,
    /// A secret is never shown: `--help` hides its environment value and
    /// [`Config`]'s `Debug` redacts it.
    pub(crate) secret: bool,
}

impl Opt {
    const fn new(name: &'static str, unit: &'static dyn Unit, help: &'static str) -> Self {
        Opt {
            name,
            unit,
            help,
            hint: None,
            secret: false,
        }
    }

    const fn hint(self, hint: &'static str) -> Self {
        Opt {
            hint: Some(hint),
            ..self
        }
    }

    const fn secret(self) -> Self {
        Opt {
            secret: true,
            ..self
        }
    }

    /// The environment variable: `HERALD_` and the name in upper snake case.
    pub(crate) fn env(&self) -> String {
        format!("HERALD_{}", self.name.to_uppercase().replace('-', "_"))
    }

    /// The default as `--help` and the docs show it.
    pub(crate) fn default_text(&self, defaults: &Config) -> String {
        self.unit
            .show(defaults)
            .unwrap_or_else(|| self.unit.unset().to_string())
    }
}

/// A group of options: a heading in `--help` and a table in the docs.
pub(crate) struct Section {
    /// The heading.
    pub(crate) title: &'static str,
    /// Its options, in the order shown.
    pub(crate) options: &'static [Opt],
}

/// Every option, by section.
pub(crate) static SECTIONS: &[Section] = &[
    Section {
        title: "Listeners and access",
        options: &[
            Opt::new(
                "public-addr",
                &Addr(at!(public_addr)),
                "Public listener (subscribers)",
            ),
            Opt::new(
                "internal-addr",
                &Addr(at!(internal_addr)),
                "Internal listener (publish, admin)",
            ),
            Opt::new(
                "publish-token",
                &OptionalText(at!(publish_token)),
                "Bearer token required on the internal listener",
            )
            .hint("TOKEN")
            .secret(),
            Opt::new(
                "cors-origins",
                &List(at!(cors_origins)),
                "Comma-separated origins allowed by CORS on the public listener, or `*`",
            ),
            Opt::new(
                "max-connections",
                &Count(at!(max_connections)),
                "Open connections per listener",
            ),
            Opt::new(
                "max-connections-per-ip",
                &Count(at!(max_connections_per_ip)),
                "Open connections per listener from one peer IP address; 0 = no cap",
            ),
            Opt::new(
                "listen-backlog",
                &Count(at!(listen_backlog)),
                "Connections the kernel queues per listener before they are accepted; capped by net.core.somaxconn",
            ),
            Opt::new(
                "send-timeout",
                &Secs(at!(send_timeout)),
                "Seconds a connection may take none of the response bytes waiting for it (over HTTP/2: a stream's window stays closed) before it is closed",
            ),
            Opt::new(
                "idle-timeout",
                &Secs(at!(idle_timeout)),
                "Seconds an HTTP/2 (or non-held HTTP/1.1) connection may carry no request before it is closed",
            ),
            Opt::new(
                "header-read-timeout",
                &Secs(at!(header_read_timeout)),
                "Seconds a client has to send request headers",
            ),
            Opt::new(
                "request-timeout",
                &Secs(at!(request_timeout)),
                "Seconds a publish or admin request may take",
            ),
            Opt::new(
                "drain-timeout",
                &Secs(at!(drain_timeout)),
                "Seconds to drain open requests and streams on shutdown",
            ),
            Opt::new(
                "drain-spread",
                &Secs(at!(drain_spread)),
                "Seconds over which a drain spreads the ends of held requests and streams; at most half of drain-timeout is used",
            ),
            Opt::new(
                "internal-hosts",
                &List(at!(internal_hosts)),
                "Comma-separated Host names the internal listener answers; empty = loopback names when it is on loopback",
            ),
        ],
    },
    Section {
        title: "Engine and history",
        options: &[
            Opt::new(
                "engine",
                &Choice(at!(engine)),
                "Storage engine: memory (one instance) or redis (several instances share one Redis)",
            ),
            Opt::new(
                "redis-url",
                &Text(at!(redis.url)),
                "Redis URL for engine = redis: redis://, rediss:// (TLS) or redis+sentinel://host:port[,host:port]/master; may carry a password",
            )
            .hint("URL")
            .secret(),
            Opt::new(
                "redis-tls-ca",
                &OptionalText(at!(redis.tls_ca)),
                "PEM file of the authorities that sign Redis's certificate, for rediss:// (none: the system's)",
            )
            .hint("FILE"),
            Opt::new(
                "redis-prefix",
                &Text(at!(redis.prefix)),
                "Prefix of every Redis key and pub/sub channel herald uses; deployments sharing one Redis need different prefixes",
            ),
            Opt::new(
                "redis-timeout",
                &Secs(at!(redis.timeout)),
                "Seconds a Redis command or connection attempt may take before it counts as failed",
            ),
            Opt::new(
                "history-messages",
                &Count(at!(history.max_messages)),
                "Messages kept per channel",
            ),
            Opt::new(
                "history-bytes",
                &Bytes(at!(history.max_bytes)),
                "Bytes kept per channel",
            ),
            Opt::new(
                "history-age",
                &Secs(at!(history.max_age)),
                "Seconds a message is kept",
            ),
        ],
    },
    Section {
        title: "Publishing and subscriptions",
        options: &[
            Opt::new(
                "max-body",
                &Bytes(at!(max_body)),
                "Largest publish body in bytes",
            ),
            Opt::new(
                "max-batch",
                &Count(at!(max_batch)),
                "Messages per batch publish",
            ),
            Opt::new(
                "max-channels",
                &Count(at!(limits.max_channels)),
                "Channels per subscription",
            ),
            Opt::new(
                "max-messages",
                &Count(at!(limits.max_messages)),
                "Messages per response or stream batch",
            ),
            Opt::new(
                "setup-timeout",
                &Secs(at!(limits.setup_timeout)),
                "Seconds the engine reads before a poll answer, hold, stream or WebSocket subscription may take; past it: 503",
            ),
        ],
    },
    Section {
        title: "Long polling",
        options: &[
            Opt::new(
                "longpoll-timeout",
                &Secs(at!(longpoll.timeout)),
                "Seconds a long poll is held when the client gives no `timeout`",
            ),
            Opt::new(
                "longpoll-max-timeout",
                &Secs(at!(longpoll.max_timeout)),
                "Longest long-poll hold in seconds a client may ask for; keep it below your proxy's read timeout",
            ),
        ],
    },
    Section {
        title: "Server-Sent Events",
        options: &[
            Opt::new(
                "sse-retry",
                &Millis(at!(sse.retry)),
                "Milliseconds an SSE client waits before reconnecting (sent as `retry:`)",
            ),
            Opt::new(
                "sse-heartbeat",
                &Secs(at!(sse.heartbeat)),
                "Seconds of silence after which an SSE stream gets a heartbeat comment",
            ),
            Opt::new(
                "sse-max-lifetime",
                &SecsOrNever(at!(sse.max_lifetime)),
                "Seconds after which an SSE stream ends so that the client reconnects; 0 = never",
            ),
        ],
    },
    Section {
        title: "WebSocket",
        options: &[
            Opt::new(
                "ws-ping-interval",
                &Secs(at!(ws.ping_interval)),
                "Seconds between the server's WebSocket pings",
            ),
            Opt::new(
                "ws-ping-timeout",
                &Secs(at!(ws.ping_timeout)),
                "Seconds a WebSocket peer has to answer a ping before it is closed",
            ),
            Opt::new(
                "ws-max-frame",
                &Bytes(at!(ws.max_frame)),
                "Largest WebSocket client frame in bytes; larger closes with 1009",
            ),
            Opt::new(
                "ws-max-bad-frames",
                &Count(at!(ws.max_bad_frames)),
                "Bad WebSocket client frames before the connection is closed with 1008",
            ),
            Opt::new(
                "ws-max-subscriptions",
                &Count(at!(ws.max_subscriptions)),
                "Channels one WebSocket connection may subscribe to",
            ),
            Opt::new(
                "ws-frame-rate",
                &Count(at!(ws.frame_rate)),
                "WebSocket subscribe/unsubscribe frames per second per connection; faster ones get `rate_limited`",
            ),
            Opt::new(
                "ws-frame-burst",
                &Count(at!(ws.frame_burst)),
                "WebSocket subscribe/unsubscribe frames a connection may send at once before ws-frame-rate applies",
            ),
            Opt::new(
                "ws-origins",
                &List(at!(ws.origins)),
                "Comma-separated origins allowed to open a WebSocket; empty allows any",
            ),
            Opt::new(
                "ws-slow-policy",
                &Choice(at!(ws.slow_policy)),
                "A WebSocket reader that falls behind the history: `gap` or `close` (1013)",
            ),
        ],
    },
    Section {
        title: "Subscriber authorization",
        options: &[
            Opt::new(
                "public-channels",
                &Patterns(at!(auth.public_channels)),
                "Comma-separated channels and `prefix*` patterns anyone may read once authorization is on; empty with no other auth option = every channel public",
            ),
            Opt::new(
                "auth-jwt-secret",
                &OptionalText(at!(auth.jwt_secret)),
                "HS256 secret (at least 32 bytes) subscriber tokens are signed with",
            )
            .hint("SECRET")
            .secret(),
            Opt::new(
                "auth-jwt-key",
                &OptionalText(at!(auth.jwt_key)),
                "PEM public key file subscriber tokens are signed for: RSA (RS256) or P-256 (ES256)",
            )
            .hint("FILE"),
            Opt::new(
                "auth-issuer",
                &OptionalText(at!(auth.issuer)),
                "The `iss` every subscriber token must carry",
            ),
            Opt::new(
                "auth-audience",
                &OptionalText(at!(auth.audience)),
                "The `aud` every subscriber token must name",
            ),
            Opt::new(
                "auth-cookie",
                &OptionalText(at!(auth.cookie)),
                "Name of a cookie that may carry the subscriber token; needs exact cors-origins and ws-origins",
            )
            .hint("NAME"),
            Opt::new(
                "auth-url",
                &OptionalText(at!(auth.hook_url)),
                "http:// URL of the backend hook asked about each subscription",
            )
            .hint("URL")
            .secret(),
            Opt::new(
                "auth-timeout",
                &Millis(at!(auth.hook_timeout)),
                "Milliseconds the backend hook has to answer before the subscriber gets a 503",
            ),
            Opt::new(
                "auth-cache-entries",
                &Count(at!(auth.hook_cache_entries)),
                "Backend hook answers remembered at once (for their Cache-Control max-age)",
            ),
            Opt::new(
                "auth-grace",
                &Secs(at!(auth.refresh_grace)),
                "Seconds a WebSocket whose token expired has to send a fresh one before it is closed with 4001",
            ),
        ],
    },
    Section {
        title: "Logs",
        options: &[Opt::new(
            "log-format",
            &Choice(at!(log_format)),
            "Log lines on stderr: `text` or `json` (one object per line); level from `RUST_LOG`",
        )],
    },
];

/// Every option, in order.
pub(crate) fn all() -> impl Iterator<Item = &'static Opt> {
    SECTIONS.iter().flat_map(|s| s.options)
}

/// The option named `name` (kebab-case).
pub(crate) fn find(name: &str) -> Option<&'static Opt> {
    all().find(|o| o.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_kebab_case() {
        let mut seen = HashSet::new();
        for opt in all() {
            assert!(seen.insert(opt.name), "{} declared twice", opt.name);
            assert!(
                opt.name
                    .split('-')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
                "{} is not kebab-case",
                opt.name
            );
        }
    }

    /// The default shown in `--help` and the docs, typed back in, gives the
    /// real default: it is exact, not rounded or reworded.
    #[test]
    fn each_shown_default_reads_back_as_the_default() {
        let defaults = Config::default();
        for opt in all() {
            let Some(text) = opt.unit.show(&defaults) else {
                continue;
            };
            let mut c = Config::default();
            opt.unit.apply(&mut c, &text).unwrap();
            assert!(c == defaults, "{}: {text}", opt.name);
        }
    }

    /// The server's default is each crate's own documented default, not a
    /// second copy.
    #[test]
    fn defaults_are_the_crates_own() {
        let c = Config::default();
        assert_eq!(c.history, herald_bus::Config::default());
        assert_eq!(c.limits, herald_http::Limits::default());
        assert_eq!(c.longpoll, herald_longpoll::Config::default());
        assert_eq!(c.sse, herald_sse::Config::default());
        assert_eq!(c.ws, herald_ws::Config::default());
        assert_eq!(c.redis, herald_redis::Config::default());
        assert_eq!(c.auth, herald_auth::Config::default());
    }

    /// Each option writes its own place: some value changes the config,
    /// and no two options share a place.
    #[test]
    fn each_option_has_its_own_place() {
        let defaults = Config::default();
        let set = |opt: &Opt, mut c: Config, text: &str| {
            opt.unit.apply(&mut c, text).ok()?;
            (c != defaults).then_some(c)
        };
        let changed: Vec<_> = all()
            .map(|opt| {
                ["7", "8", "127.0.0.1:7", "redis", "close", "json", "x"]
                    .into_iter()
                    .find_map(|text| Some((opt, text, set(opt, Config::default(), text)?)))
                    .unwrap_or_else(|| panic!("{}: no value changes it", opt.name))
            })
            .collect();
        for (i, (a, _, with_a)) in changed.iter().enumerate() {
            for (b, text, with_b) in &changed[i + 1..] {
                let both = set(b, with_a.clone(), text).unwrap();
                assert!(
                    both != *with_a && both != *with_b,
                    "{} and {} write the same field",
                    a.name,
                    b.name
                );
            }
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let secret = "redis://user:s3cret-value@db.example:6379";
        let mut c = Config::default();
        for opt in all().filter(|o| o.secret) {
            opt.unit.apply(&mut c, secret).unwrap();
        }
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(shown.contains("db.example:6379"), "{shown}");
        assert!(shown.contains("publish_token: Some(<redacted>)"), "{shown}");
    }
}
