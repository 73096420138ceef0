//! How long a long poll may be held: the default hold, the ceiling, and the
//! clamping of a client's `timeout` parameter between 1 s and that ceiling.
//!
//! It does not validate the two values against each other; the server does
//! that once at start-up, naming its options. Clamping here never panics
//! whatever the values, so an embedder's odd config degrades to short holds.

use std::time::Duration;

use herald_http::{Error, Query};

/// The shortest hold a client can ask for: `timeout=0` would turn a long
/// poll into a busy short poll.
pub(crate) const MIN_HOLD: Duration = Duration::from_secs(1);

/// Hold times of the long-polling transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Hold time when the request gives no `timeout`. Default 25 s: well
    /// below every common proxy's idle timeout, long enough that an idle
    /// client costs one request per 25 s.
    pub timeout: Duration,
    /// Longest hold a client may ask for with `timeout`; larger values are
    /// clamped to it. Default 55 s, below nginx's default 60 s
    /// `proxy_read_timeout`, so that herald answers before the proxy gives
    /// up.
    pub max_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(25),
            max_timeout: Duration::from_secs(55),
        }
    }
}

impl Config {
    /// The hold for a request: its `timeout` (whole seconds) clamped to
    /// [1 s, `max_timeout`], or the default `timeout` without one. Fails with
    /// 400 `invalid_query` when `timeout` is not a non-negative integer
    /// (negative, fractional or not a number); a number too large to
    /// represent is simply clamped.
    pub(crate) fn hold(&self, query: &Query) -> Result<Duration, Error> {
        let asked = match query.number("timeout") {
            Ok(Some(secs)) => Duration::from_secs(secs),
            Ok(None) => self.timeout,
            Err(_) if query.get("timeout").is_some_and(all_digits) => Duration::MAX,
            Err(e) => return Err(e),
        };
        // min then max rather than `clamp`, which panics when the configured
        // ceiling is below the floor.
        Ok(asked.min(self.max_timeout).max(MIN_HOLD))
    }
}

fn all_digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(config: &Config, query: &str) -> Result<Duration, Error> {
        config.hold(&Query::parse(Some(query)))
    }

    #[test]
    fn timeout_is_clamped_to_one_second_and_the_ceiling() {
        let c = Config::default();
        let secs = Duration::from_secs;
        assert_eq!(hold(&c, "").unwrap(), secs(25));
        assert_eq!(hold(&c, "timeout=10").unwrap(), secs(10));
        assert_eq!(hold(&c, "timeout=0").unwrap(), secs(1));
        assert_eq!(hold(&c, "timeout=100").unwrap(), secs(55));
        assert_eq!(
            hold(&c, "timeout=99999999999999999999999").unwrap(),
            secs(55)
        );
        let low = Config {
            timeout: secs(90),
            max_timeout: secs(30),
        };
        assert_eq!(
            hold(&low, "").unwrap(),
            secs(30),
            "default above the ceiling"
        );
    }

    #[test]
    fn timeout_that_is_not_a_whole_number_is_refused() {
        let c = Config::default();
        for bad in [
            "timeout=-1",
            "timeout=abc",
            "timeout=1.5",
            "timeout=",
            "timeout=1e3",
        ] {
            let e = hold(&c, bad).unwrap_err();
            assert_eq!(
                (e.status().as_u16(), e.code().as_str()),
                (400, "invalid_query"),
                "{bad}"
            );
        }
    }

    #[test]
    fn nonsense_config_does_not_panic() {
        let c = Config {
            timeout: Duration::ZERO,
            max_timeout: Duration::ZERO,
        };
        assert_eq!(hold(&c, "timeout=5").unwrap(), MIN_HOLD);
    }
}
