//! Where configuration comes from: command-line flags, `HERALD_*`
//! environment variables and an optional TOML file, with one set of names
//! for all three (`--max-body`, `HERALD_MAX_BODY`, `max-body = ...`).
//!
//! Precedence: flag, then environment, then file, then the default. The
//! options themselves are declared once, in `config::options`; this module
//! only builds the clap command from that table, reads the file and merges.
//! It does not check ranges: [`Config::validate`] does, once.

use std::{ffi::OsString, path::PathBuf};

use clap::{Arg, ArgMatches, Command, parser::ValueSource};

use crate::{
    Config,
    config::{
        ConfigError,
        options::{self, Opt, SECTIONS},
    },
};

/// The configuration sources of the `herald` binary, as parsed from the
/// command line and environment. Its values may hold secrets, so it has no
/// `Debug`.
pub struct Args {
    matches: ArgMatches,
}

impl Args {
    /// Parses flags and environment, then the TOML file they name. Prints
    /// help or a usage error and exits on bad flags, like any clap program;
    /// fails with a message naming the file or the option otherwise.
    pub fn load() -> Result<Config, ConfigError> {
        Args {
            matches: command().get_matches(),
        }
        .resolve()
    }

    /// Parses `argv` (program name first) and the environment. Fails on an
    /// unknown flag or a value that does not parse, naming the flag.
    pub fn try_parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = command().try_get_matches_from(argv)?;
        Ok(Args { matches })
    }

    /// Merges the file named by `--config` (if any), then validates. Fails
    /// naming the file, or the option that is unknown or out of range.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let config = match self.matches.get_one::<PathBuf>("config") {
            Some(path) => {
                let in_file = |e: String| ConfigError(format!("{}: {e}", path.display()));
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                let table = parse_file(&text).map_err(in_file)?;
                self.merge(Some(&table)).map_err(in_file)?
            }
            None => self.merge(None).map_err(ConfigError)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Starts from [`Config::default`] and applies, per option, the flag or
    /// environment value (already checked by clap), else the file's. Fails
    /// naming the option whose file value does not parse.
    fn merge(&self, file: Option<&toml::Table>) -> Result<Config, String> {
        let mut config = Config::default();
        for opt in options::all() {
            let given = match self.matches.value_source(opt.name) {
                Some(ValueSource::CommandLine | ValueSource::EnvVariable) => {
                    self.matches.get_one::<String>(opt.name).cloned()
                }
                _ => None,
            };
            let text = match (given, file.and_then(|f| f.get(opt.name))) {
                (Some(text), _) => text,
                (None, Some(value)) => {
                    toml_text(value).map_err(|e| format!("{}: {e}", opt.name))?
                }
                (None, None) => continue,
            };
            opt.unit
                .apply(&mut config, &text)
                .map_err(|e| format!("{}: {e}", opt.name))?;
        }
        Ok(config)
    }
}

/// The clap command: `--config` and one argument per declared option, under
/// its section's heading.
pub(crate) fn command() -> Command {
    let defaults = Config::default();
    let config = Arg::new("config")
        .long("config")
        .env("HERALD_CONFIG")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("TOML file with any of the options below (keys as the long flag names, without dashes in front)");
    let mut cmd = Command::new("herald")
        .version(env!("CARGO_PKG_VERSION"))
        .about(
            "herald: a push gateway. Backends publish over HTTP; browsers subscribe by short \
             polling, long polling, Server-Sent Events or WebSocket.",
        )
        .arg(config);
    for section in SECTIONS {
        for opt in section.options {
            cmd = cmd.arg(arg(opt, &defaults).help_heading(section.title));
        }
    }
    cmd
}

fn arg(opt: &'static Opt, defaults: &Config) -> Arg {
    Arg::new(opt.name)
        .long(opt.name)
        .env(opt.env())
        .hide_env_values(opt.secret)
        .value_name(opt.hint.unwrap_or(opt.unit.hint()))
        .value_parser(move |text: &str| opt.unit.check(text).map(|()| text.to_string()))
        .help(format!(
            "{} [default: {}]",
            opt.help,
            opt.default_text(defaults)
        ))
}

/// Reads a TOML file's keys; fails on a syntax error (naming the line) or
/// an unknown key.
fn parse_file(text: &str) -> Result<toml::Table, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        // The message without the quoted line, which may hold a secret.
        let start = e.span().map_or(0, |s| s.start.min(text.len()));
        let line = 1 + text.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format!("line {line}: {}", e.message())
    })?;
    match table.keys().find(|k| options::find(k).is_none()) {
        Some(key) => Err(format!("unknown option `{key}`")),
        None => Ok(table),
    }
}

/// A file value as the text a flag would carry: strings as they are,
/// numbers and booleans written out (so that `max-body = 1.5` fails like
/// `--max-body 1.5`). Lists are one comma-separated string, as in a flag.
fn toml_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            Err("expected a string or a number (lists are one comma-separated string)".into())
        }
        other => Ok(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
        let argv = std::iter::once("herald").chain(args.iter().copied());
        Args::try_parse_from(argv).unwrap().resolve()
    }

    /// The config from a file's text alone, before validation.
    fn from_file(text: &str) -> Result<Config, ConfigError> {
        let table = parse_file(text).map_err(ConfigError)?;
        let args = Args::try_parse_from(["herald"]).unwrap();
        args.merge(Some(&table)).map_err(ConfigError)
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
        let c =
            from_file("ws-slow-policy = \"close\"\nws-origins = \"https://a.example\"\n").unwrap();
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

    #[test]
    fn redis_options() {
        let c = resolve(&[]).unwrap();
        assert_eq!(c.redis, herald_redis::Config::default());
        let c = resolve(&[
            "--redis-url",
            "redis://10.0.0.5:6380/2",
            "--redis-prefix",
            "staging:",
            "--redis-timeout",
            "5",
        ])
        .unwrap();
        assert_eq!(c.redis.url, "redis://10.0.0.5:6380/2");
        assert_eq!(c.redis.prefix, "staging:");
        assert_eq!(c.redis.timeout, Duration::from_secs(5));
        let e = resolve(&["--redis-timeout", "0"]).unwrap_err();
        assert!(e.0.contains("redis-timeout"), "{e}");
        let c = from_file("redis-prefix = \"blue:\"\n").unwrap();
        assert_eq!(c.redis.prefix, "blue:");
    }

    #[test]
    fn file_values_are_read_like_flags() {
        let c = from_file("max-body = 2048\nhistory-age = \"60\"\ncors-origins = \"https://a.example, https://b.example\"\n").unwrap();
        assert_eq!(c.max_body, 2048);
        assert_eq!(c.history.max_age, Duration::from_secs(60));
        assert_eq!(c.cors_origins, ["https://a.example", "https://b.example"]);
        let e = from_file("max-body = \"lots\"\n").unwrap_err();
        assert!(e.0.contains("max-body"), "{e}");
        let e = from_file("max-body = 1.5\n").unwrap_err();
        assert!(e.0.contains("max-body"), "{e}");
        let e = from_file("ws-origins = [\"https://a.example\"]\n").unwrap_err();
        assert!(e.0.contains("ws-origins"), "{e}");
        let e = from_file("no-such-option = 1\n").unwrap_err();
        assert!(e.0.contains("no-such-option"), "{e}");
        let e = from_file("config = \"other.toml\"\n").unwrap_err();
        assert!(e.0.contains("config"), "{e}");
        let e = from_file("history-age = 1\npublish-token = \"s3cret\n").unwrap_err();
        assert!(e.0.contains("line 2"), "{e}");
        assert!(
            !e.0.contains("s3cret"),
            "a syntax error does not quote the secret: {e}"
        );
    }

    #[test]
    fn a_flag_value_that_does_not_parse_names_the_flag() {
        let e = Args::try_parse_from(["herald", "--max-body", "lots"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("--max-body"), "{e}");
        let e = Args::try_parse_from(["herald", "--engine", "mongo"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("--engine"), "{e}");
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../../deploy/herald.toml");
        let c = from_file(text).unwrap();
        c.validate().unwrap();
        assert_ne!(c, Config::default(), "the example sets something");
    }

    #[test]
    fn help_shows_each_option_with_its_env_and_real_default() {
        let help = command().render_long_help().to_string();
        let defaults = Config::default();
        for opt in options::all() {
            assert!(help.contains(&format!("--{} <", opt.name)), "{}", opt.name);
            assert!(help.contains(&opt.env()), "{}", opt.name);
            let shown = format!("[default: {}]", opt.default_text(&defaults));
            assert!(help.contains(&shown), "{}: {shown}", opt.name);
        }
    }

    #[test]
    fn secrets_hide_their_environment_value_in_help() {
        let cmd = command();
        for opt in options::all() {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == opt.name)
                .unwrap();
            assert_eq!(arg.is_hide_env_values_set(), opt.secret, "{}", opt.name);
        }
        for secret in ["publish-token", "redis-url"] {
            assert!(options::find(secret).unwrap().secret, "{secret}");
        }
    }
}
