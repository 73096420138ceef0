//! Request parsing shared by the transports: the channel list in the path
//! and the query parameters that say where to start.
//!
//! `since` is the cursor parameter everywhere; `last=N` asks for the N most
//! recent retained messages per channel. Both cannot be given at once.
//!
//! Both run on every poll, so they borrow from the request instead of
//! copying: a segment or query without escapes (a channel name, a base64url
//! cursor) is used as it is, and only one with `%` or `+` is decoded.

use std::borrow::Cow;

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

fn decode(segment: &str) -> Result<Cow<'_, str>, Error> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| Error::new(Code::InvalidChannel, "channel names are ASCII"))
}

/// A header's value as text, if present and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The decoded query string, borrowed from the request.
#[derive(Debug, Default)]
pub struct Query<'a> {
    /// The query as it came, when it has nothing to decode.
    plain: &'a str,
    /// The decoded pairs, when it has (`%` escapes or `+` for a space).
    decoded: Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
}

impl<'a> Query<'a> {
    /// Decodes `query` (the part after `?`, if any).
    pub fn parse(query: Option<&'a str>) -> Self {
        let q = query.unwrap_or_default();
        if q.bytes().any(|b| b == b'%' || b == b'+') {
            Query {
                plain: "",
                decoded: Some(form_urlencoded::parse(q.as_bytes()).collect()),
            }
        } else {
            Query {
                plain: q,
                decoded: None,
            }
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        match &self.decoded {
            Some(pairs) => pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_ref()),
            None => plain_pairs(self.plain)
                .find(|(k, _)| *k == name.as_bytes())
                .and_then(|(_, v)| std::str::from_utf8(v).ok()),
        }
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

/// The pairs of a query with nothing to decode, split exactly as
/// `form_urlencoded::parse` splits them: on `&`, skipping empty pairs, then
/// at the first `=` (a pair without one has an empty value). Bytes, not
/// `str` patterns: a query is a few dozen bytes, read on every poll.
fn plain_pairs(query: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .as_bytes()
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(at) => (&p[..at], &p[at + 1..]),
            None => (p, &[][..]),
        })
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

    #[test]
    fn escaped_and_plain_queries_read_alike() {
        let q = Query::parse(Some("a=1&&b&since=x%2By+z&a=2"));
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some(""));
        assert_eq!(q.get("since"), Some("x+y z"));
        assert_eq!(q.get("c"), None);
        let q = Query::parse(Some("a=1&&b&since=x=y&a=2"));
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some(""));
        assert_eq!(q.get("since"), Some("x=y"));
        assert_eq!(Query::parse(None).get("a"), None);
    }

    proptest::proptest! {
        /// The borrowed reading of a query without escapes is exactly
        /// what `form_urlencoded` decodes.
        #[test]
        fn plain_pairs_are_form_urlencoded_pairs(q in "[a-z0-9=&_.~-]{0,40}", name in "[a-z]{0,2}") {
            let q = Query::parse(Some(&q));
            let reference = form_urlencoded::parse(q.plain.as_bytes())
                .find(|(k, _)| k == &name)
                .map(|(_, v)| v.into_owned());
            proptest::prop_assert!(q.decoded.is_none());
            proptest::prop_assert_eq!(q.get(&name).map(str::to_owned), reference);
        }
    }
}
