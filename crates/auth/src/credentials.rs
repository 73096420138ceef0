//! Where a subscriber's credentials travel, read from a request head.
//!
//! A token is taken from, in this order: `Authorization: Bearer`, the
//! `token` query parameter (the only way a plain `EventSource` can send
//! one), then the cookie named by the configuration. The raw `Cookie` and
//! `Authorization` headers are kept as well, for the backend hook, which
//! sees what the browser sent.
//!
//! A query-string token ends up in whatever logs request lines, so
//! [`redact_query`] is what herald's own request logs print instead of the
//! URI. Nothing here decides whether the credentials are good.

use std::{borrow::Cow, fmt};

use http::{HeaderMap, HeaderValue, Request, Uri, header};

/// The query parameter that carries a token.
pub const TOKEN_PARAM: &str = "token";

/// What a subscriber presented. `Debug` never prints the token or headers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The bearer token, from whichever place it was found first.
    token: Option<String>,
    /// The `Authorization` header as sent, for the hook.
    authorization: Option<HeaderValue>,
    /// Every `Cookie` header as sent, joined with `; `, for the hook.
    cookie: Option<HeaderValue>,
}

impl Credentials {
    /// Reads a request's head; `cookie_name` is the cookie that may carry a
    /// token (`--auth-cookie`).
    pub fn from_request<B>(req: &Request<B>, cookie_name: Option<&str>) -> Self {
        Credentials::from_head(req.headers(), req.uri(), cookie_name)
    }

    /// Reads headers and a URI.
    pub fn from_head(headers: &HeaderMap, uri: &Uri, cookie_name: Option<&str>) -> Self {
        let authorization = headers.get(header::AUTHORIZATION).cloned();
        let cookie = joined_cookies(headers);
        let token = authorization
            .as_ref()
            .and_then(bearer)
            .or_else(|| uri.query().and_then(query_token))
            .or_else(|| {
                let name = cookie_name?;
                cookie.as_ref().and_then(|c| cookie_value(c, name))
            });
        Credentials {
            token,
            authorization,
            cookie,
        }
    }

    /// Credentials made of a token alone (a WebSocket frame's `token`).
    pub fn token_only(token: impl Into<String>) -> Self {
        Credentials {
            token: Some(token.into()),
            ..Credentials::default()
        }
    }

    /// The same credentials with `token` instead of the one found in the
    /// head (a WebSocket subscribe frame's `token` wins over the upgrade's).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The token, if one was presented.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether nothing at all was presented.
    pub fn is_empty(&self) -> bool {
        self.token.is_none() && self.authorization.is_none() && self.cookie.is_none()
    }

    /// What the hook is sent as `Authorization`: the header as the client
    /// sent it or, when it sent a token another way, that token as a
    /// bearer.
    pub(crate) fn authorization_for_hook(&self) -> Option<HeaderValue> {
        self.authorization.clone().or_else(|| {
            let token = self.token.as_deref()?;
            HeaderValue::try_from(format!("Bearer {token}")).ok()
        })
    }

    /// The `Cookie` header for the hook.
    pub(crate) fn cookie(&self) -> Option<&HeaderValue> {
        self.cookie.as_ref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |present: bool| if present { "<redacted>" } else { "-" };
        f.debug_struct("Credentials")
            .field("token", &shown(self.token.is_some()))
            .field("authorization", &shown(self.authorization.is_some()))
            .field("cookie", &shown(self.cookie.is_some()))
            .finish()
    }
}

/// `uri` as text with the value of every `token` query parameter replaced,
/// for logs. Borrows when there is nothing to hide.
pub fn redact_query(uri: &Uri) -> Cow<'_, str> {
    let Some(query) = uri.query() else {
        return Cow::Borrowed(uri.path());
    };
    if !query.split('&').any(is_token_pair) {
        return match uri.path_and_query() {
            Some(pq) => Cow::Borrowed(pq.as_str()),
            None => Cow::Borrowed(uri.path()),
        };
    }
    let redacted: Vec<&str> = query
        .split('&')
        .map(|pair| {
            if is_token_pair(pair) {
                "token=<redacted>"
            } else {
                pair
            }
        })
        .collect();
    Cow::Owned(format!("{}?{}", uri.path(), redacted.join("&")))
}

/// Whether a `key=value` query pair names the token, however its key is
/// percent-encoded.
fn is_token_pair(pair: &str) -> bool {
    form_urlencoded::parse(pair.as_bytes())
        .next()
        .is_some_and(|(key, _)| key == TOKEN_PARAM)
}

fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, value)| key == TOKEN_PARAM && !value.is_empty())
        .map(|(_, value)| value.into_owned())
}

fn bearer(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

fn joined_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(header::COOKIE).iter();
    let first = all.next()?;
    let rest: Vec<&[u8]> = all.map(HeaderValue::as_bytes).collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for value in rest {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value);
    }
    HeaderValue::from_bytes(&joined).ok()
}

fn cookie_value(cookie: &HeaderValue, name: &str) -> Option<String> {
    cookie.to_str().ok()?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (key.trim() == name && !value.is_empty()).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(uri: &str, headers: &[(&str, &str)], cookie: Option<&str>) -> Credentials {
        let mut req = Request::builder().uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        Credentials::from_request(&req.body(()).unwrap(), cookie)
    }

    #[test]
    fn a_bearer_header_wins_over_the_query_and_the_cookie() {
        let c = creds(
            "/sse/a?token=q",
            &[("authorization", "Bearer h"), ("cookie", "t=c")],
            Some("t"),
        );
        assert_eq!(c.token(), Some("h"));
        let c = creds("/sse/a?token=q", &[("cookie", "t=c")], Some("t"));
        assert_eq!(c.token(), Some("q"));
        let c = creds("/sse/a", &[("cookie", "x=1; t=c")], Some("t"));
        assert_eq!(c.token(), Some("c"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_carry_no_token() {
        assert_eq!(
            creds("/", &[("authorization", "bearer  abc ")], None).token(),
            Some("abc")
        );
        let basic = creds("/", &[("authorization", "Basic dXNlcjpwYXNz")], None);
        assert_eq!(basic.token(), None);
        assert!(!basic.is_empty(), "the header still goes to the hook");
        assert_eq!(
            creds("/", &[("authorization", "Bearer ")], None).token(),
            None
        );
    }

    #[test]
    fn the_query_token_is_percent_decoded() {
        let c = creds("/sse/a?since=3&token=a%2Eb%2Bc", &[], None);
        assert_eq!(c.token(), Some("a.b+c"));
        assert_eq!(creds("/sse/a?token=", &[], None).token(), None);
    }

    #[test]
    fn the_cookie_is_read_only_when_named() {
        assert_eq!(creds("/", &[("cookie", "t=c")], None).token(), None);
        assert_eq!(
            creds("/", &[("cookie", "t=c")], Some("other")).token(),
            None
        );
        assert_eq!(
            creds("/", &[("cookie", r#"a=1; t="quoted""#)], Some("t")).token(),
            Some("quoted")
        );
        assert_eq!(
            creds("/", &[("cookie", "a=1"), ("cookie", "t=second")], Some("t")).token(),
            Some("second"),
            "HTTP/2 may split cookies over several headers"
        );
    }

    #[test]
    fn the_hook_gets_the_headers_as_sent_or_the_token_as_a_bearer() {
        let c = creds("/?token=q", &[("cookie", "s=1")], None);
        assert_eq!(c.authorization_for_hook().unwrap(), "Bearer q");
        assert_eq!(c.cookie().unwrap(), "s=1");
        let c = creds("/", &[("authorization", "Session xyz")], None);
        assert_eq!(c.authorization_for_hook().unwrap(), "Session xyz");
        assert!(creds("/", &[], None).is_empty());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = creds(
            "/?token=s3cret",
            &[("authorization", "Bearer s3cret"), ("cookie", "t=s3cret")],
            Some("t"),
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn redaction_hides_every_token_parameter_and_nothing_else() {
        let uri: Uri = "/sse/a?since=5&token=abc&x=1&tok%65n=def".parse().unwrap();
        let shown = redact_query(&uri);
        assert_eq!(
            shown,
            "/sse/a?since=5&token=<redacted>&x=1&token=<redacted>"
        );
        let plain: Uri = "/sse/a?since=5".parse().unwrap();
        assert!(matches!(
            redact_query(&plain),
            Cow::Borrowed("/sse/a?since=5")
        ));
        let bare: Uri = "/sse/a".parse().unwrap();
        assert_eq!(redact_query(&bare), "/sse/a");
        let tokenish: Uri = "/sse/a?tokens=1&atoken=2".parse().unwrap();
        assert_eq!(redact_query(&tokenish), "/sse/a?tokens=1&atoken=2");
    }
}
