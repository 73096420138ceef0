//! How an option's text becomes a value inside [`Config`] and back: whole
//! seconds, milliseconds, bytes, counts, addresses, names, comma lists, and
//! "0 = none".
//!
//! Each unit holds a [`Place`]: where in [`Config`] its value lives. The
//! same text is accepted from a flag, an environment variable or the TOML
//! file, and the default shown in `--help` and the docs is read back out of
//! [`Config::default`] through the same place, so it cannot drift from the
//! real default. Range checks are not here: [`Config::validate`] does them
//! once, naming the option.

use std::{fmt::Display, net::SocketAddr, str::FromStr, time::Duration};

use super::Config;

/// Where an option's value lives inside [`Config`]; built with [`at!`].
pub(crate) struct Place<T> {
    pub(crate) get: fn(&Config) -> &T,
    pub(crate) set: fn(&mut Config) -> &mut T,
}

/// `at!(longpoll.timeout)`: the [`Place`] of `config.longpoll.timeout`.
macro_rules! at {
    ($($path:tt)+) => {
        $crate::config::unit::Place {
            get: |c| &c.$($path)+,
            set: |c| &mut c.$($path)+,
        }
    };
}
pub(crate) use at;

/// What the option table needs from a unit, whatever its value type.
pub(crate) trait Unit: Sync {
    /// The placeholder in `--help` (`--max-body <BYTES>`).
    fn hint(&self) -> &'static str;
    /// Parses `text` without storing it; the error says what was expected.
    fn check(&self, text: &str) -> Result<(), String>;
    /// Parses `text` into its place in `config`.
    fn apply(&self, config: &mut Config, text: &str) -> Result<(), String>;
    /// The value in `config` as an operator would type it; `None` when
    /// unset (shown as [`Unit::unset`]).
    fn show(&self, config: &Config) -> Option<String>;
    /// How an unset value reads in `--help` and the docs.
    fn unset(&self) -> &'static str {
        "none"
    }
}

/// One conversion between text and a typed value; every `Conversion` is a
/// [`Unit`].
trait Conversion: Sync {
    type Value;
    const HINT: &'static str;
    fn place(&self) -> &Place<Self::Value>;
    fn parse(text: &str) -> Result<Self::Value, String>;
    fn show(value: &Self::Value) -> Option<String>;
    fn unset() -> &'static str {
        "none"
    }
}

impl<C: Conversion> Unit for C {
    fn hint(&self) -> &'static str {
        C::HINT
    }

    fn check(&self, text: &str) -> Result<(), String> {
        C::parse(text).map(drop)
    }

    fn apply(&self, config: &mut Config, text: &str) -> Result<(), String> {
        *(self.place().set)(config) = C::parse(text)?;
        Ok(())
    }

    fn show(&self, config: &Config) -> Option<String> {
        C::show((self.place().get)(config))
    }

    fn unset(&self) -> &'static str {
        C::unset()
    }
}

fn parse<T: FromStr<Err: Display>>(text: &str) -> Result<T, String> {
    text.parse().map_err(|e: T::Err| e.to_string())
}

/// A unit whose text is its type's `FromStr` and `Display`.
macro_rules! plain {
    ($(#[doc = $doc:literal])* $name:ident $(<$t:ident>)? ($ty:ty) = $hint:literal) => {
        $(#[doc = $doc])*
        pub(crate) struct $name $(<$t>)? (pub(crate) Place<$ty>);

        impl $(<$t: FromStr<Err: Display> + Display>)? Conversion for $name $(<$t>)? {
            type Value = $ty;
            const HINT: &'static str = $hint;
            fn place(&self) -> &Place<$ty> {
                &self.0
            }
            fn parse(text: &str) -> Result<$ty, String> {
                parse(text)
            }
            fn show(value: &$ty) -> Option<String> {
                Some(value.to_string())
            }
        }
    };
}

plain!(
    /// A size in bytes.
    Bytes(usize) = "BYTES"
);
plain!(
    /// A number of things (messages, channels, connections).
    Count<T>(T) = "N"
);
plain!(
    /// One of a few names (`memory`, `redis`); the type's `FromStr` error
    /// lists them.
    Choice<T>(T) = "NAME"
);
plain!(
    /// A socket address, `host:port`.
    Addr(SocketAddr) = "ADDR"
);
plain!(
    /// Text taken as it is.
    Text(String) = "TEXT"
);

/// Whole seconds.
pub(crate) struct Secs(pub(crate) Place<Duration>);

impl Conversion for Secs {
    type Value = Duration;
    const HINT: &'static str = "SECONDS";
    fn place(&self) -> &Place<Duration> {
        &self.0
    }
    fn parse(text: &str) -> Result<Duration, String> {
        parse(text).map(Duration::from_secs)
    }
    fn show(value: &Duration) -> Option<String> {
        Some(value.as_secs().to_string())
    }
}

/// Whole seconds, where 0 means no limit.
pub(crate) struct SecsOrNever(pub(crate) Place<Option<Duration>>);

impl Conversion for SecsOrNever {
    type Value = Option<Duration>;
    const HINT: &'static str = "SECONDS";
    fn place(&self) -> &Place<Option<Duration>> {
        &self.0
    }
    fn parse(text: &str) -> Result<Option<Duration>, String> {
        <Secs as Conversion>::parse(text).map(|d| (!d.is_zero()).then_some(d))
    }
    fn show(value: &Option<Duration>) -> Option<String> {
        <Secs as Conversion>::show(&value.unwrap_or_default())
    }
}

/// Whole milliseconds.
pub(crate) struct Millis(pub(crate) Place<Duration>);

impl Conversion for Millis {
    type Value = Duration;
    const HINT: &'static str = "MILLISECONDS";
    fn place(&self) -> &Place<Duration> {
        &self.0
    }
    fn parse(text: &str) -> Result<Duration, String> {
        parse(text).map(Duration::from_millis)
    }
    fn show(value: &Duration) -> Option<String> {
        Some(value.as_millis().to_string())
    }
}

/// Text that may be left unset.
pub(crate) struct OptionalText(pub(crate) Place<Option<String>>);

impl Conversion for OptionalText {
    type Value = Option<String>;
    const HINT: &'static str = "TEXT";
    fn place(&self) -> &Place<Option<String>> {
        &self.0
    }
    fn parse(text: &str) -> Result<Option<String>, String> {
        Ok(Some(text.to_string()))
    }
    fn show(value: &Option<String>) -> Option<String> {
        value.clone()
    }
}

/// A comma-separated list: `a, b,,c` is `["a", "b", "c"]`.
pub(crate) struct List(pub(crate) Place<Vec<String>>);

impl Conversion for List {
    type Value = Vec<String>;
    const HINT: &'static str = "LIST";
    fn place(&self) -> &Place<Vec<String>> {
        &self.0
    }
    fn parse(text: &str) -> Result<Vec<String>, String> {
        Ok(text
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }
    fn show(value: &Vec<String>) -> Option<String> {
        (!value.is_empty()).then(|| value.join(","))
    }
    fn unset() -> &'static str {
        "empty"
    }
}

/// Comma-separated channel names and `prefix*` patterns.
pub(crate) struct Patterns(pub(crate) Place<herald_auth::Patterns>);

impl Conversion for Patterns {
    type Value = herald_auth::Patterns;
    const HINT: &'static str = "LIST";
    fn place(&self) -> &Place<herald_auth::Patterns> {
        &self.0
    }
    fn parse(text: &str) -> Result<herald_auth::Patterns, String> {
        herald_auth::Patterns::parse_list(text)
    }
    fn show(value: &herald_auth::Patterns) -> Option<String> {
        (!value.is_empty()).then(|| value.to_string())
    }
    fn unset() -> &'static str {
        "empty"
    }
}
