//! Request parsing shared by the transports: the channel list in the path
//! and the query parameters that say where to start.
//!
//! `since` is the cursor parameter everywhere; `last=N` asks for the N most
//! recent retained messages per channel. Both cannot be given at once.

use herald_bus::{ChannelName, Cursor, Start};
use http::{HeaderMap, header::HeaderName};

use crate::{Code, Error, Limits};

/// Parses a comma-separated channel list from a path segment, after
/// percent-decoding it (browsers' `encodeURIComponent` encodes `@` and `:`).
pub fn channels(segment: &str, limits: &Limits) -> Result<Vec<ChannelName>, Error> {
    Ok(ChannelName::parse_list(
        &decode(segment)?,
        limits.max_channels,
    )?)
}

/// Parses one channel name from a path segment, after percent-decoding it.
pub fn channel(segment: &str) -> Result<ChannelName, Error> {
    Ok(ChannelName::new(&decode(segment)?)?)
}

fn decode(segment: &str) -> Result<std::borrow::Cow<'_, str>, Error> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| Error::new(Code::InvalidChannel, "channel names are ASCII"))
}

/// A header's value as text, if present and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The decoded query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Decodes `query` (the part after `?`, if any).
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Query { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Where to start, from `since` or `last`; [`Start::Now`] without either.
    /// Fails with 400 `invalid_cursor` or `invalid_query`.
    pub fn start(&self, limits: &Limits) -> Result<Start, Error> {
        match (self.get("since"), self.get("last")) {
            (Some(_), Some(_)) => Err(Error::new(
                Code::InvalidQuery,
                "give either since or last, not both",
            )),
            (Some(since), None) => Ok(Start::From(Cursor::parse(since)?)),
            (None, Some(last)) => {
                let n = self.number("last")?.unwrap_or_default();
                let _ = last;
                Ok(Start::Last((n as usize).min(limits.max_messages)))
            }
            (None, None) => Ok(Start::Now),
        }
    }

    /// A non-negative integer parameter. Fails with 400 `invalid_query`
    /// naming the parameter when it is not one.
    pub fn number(&self, name: &str) -> Result<Option<u64>, Error> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::new(
                        Code::InvalidQuery,
                        format!("{name} must be a non-negative integer, got {v:?}"),
                    )
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_segments_are_percent_decoded() {
        let l = Limits::default();
        let got = channels("a%40b,c%3Ad", &l).unwrap();
        assert_eq!(got[0].as_str(), "a@b");
        assert_eq!(got[1].as_str(), "c:d");
        assert_eq!(channel("x%7E").unwrap().as_str(), "x~");
        assert_eq!(channel("a%20b").unwrap_err().code(), "invalid_channel");
        assert_eq!(channel("%FF").unwrap_err().code(), "invalid_channel");
    }

    #[test]
    fn start_from_query() {
        let l = Limits::default();
        assert_eq!(Query::parse(None).start(&l).unwrap(), Start::Now);
        assert_eq!(
            Query::parse(Some("last=5")).start(&l).unwrap(),
            Start::Last(5)
        );
        assert_eq!(
            Query::parse(Some("last=99999")).start(&l).unwrap(),
            Start::Last(1000)
        );
        for bad in ["last=-1", "last=x", "since=!!", "since=a&last=1", "since="] {
            let e = Query::parse(Some(bad)).start(&l).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
    }
}
