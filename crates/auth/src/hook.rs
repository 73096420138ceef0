//! The backend hook: asking the application whether a subscriber may read,
//! for applications that keep sessions rather than mint tokens.
//!
//! For each subscription herald POSTs `{"channels":[...],"transport":...}`
//! to the configured URL with the subscriber's `Cookie` and
//! `Authorization` headers (a token sent another way goes as a bearer).
//! The backend answers:
//! - 2xx: allowed. A JSON body `{"channels":[...]}` narrows the grant to
//!   the listed names and `prefix*` patterns; a `sub` names the subscriber
//!   in logs. Any other body is ignored.
//! - 401: unauthorized; 403: forbidden.
//! - anything else, a redirect, a body over [`MAX_BODY`], an unreadable JSON
//!   body or no answer within the timeout: unavailable. A hook failure is
//!   never an allow.
//!
//! Answers that carry `Cache-Control: max-age=N` are remembered for N
//! seconds per (credentials, channels, transport); `no-store` and
//! `no-cache` are honoured. Failures are never remembered.
//!
//! Left out: TLS (the hook is meant for a backend on the same network; use
//! `http://`), retries (the subscriber's reconnect is the retry) and
//! proxies from the environment.

use std::{sync::Arc, time::Duration};

use herald_bus::ChannelName;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use crate::{Credentials, Patterns, cache::Cache};

/// Largest hook answer body read, in bytes; a longer one is a failure.
pub const MAX_BODY: usize = 64 * 1024;

/// What the backend answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 2xx: allowed, possibly only for `only`.
    Allow {
        only: Option<Patterns>,
        sub: Option<Arc<str>>,
    },
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// No usable answer.
    Unavailable,
}

/// What an answer is remembered under: exactly what the backend saw.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    authorization: Option<HeaderValue>,
    cookie: Option<HeaderValue>,
    channels: Vec<ChannelName>,
    transport: &'static str,
}

/// A client of one backend hook.
pub(crate) struct Hook {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL as logs show it: without credentials or query.
    shown: String,
    timeout: Duration,
    cache: Cache<Key, Answer>,
}

#[derive(serde::Serialize)]
struct Ask<'a> {
    channels: Vec<&'a str>,
    transport: &'a str,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    sub: Option<String>,
}

impl Hook {
    /// A client of `url` (an `http://` URL) that waits at most `timeout`
    /// for a whole answer and remembers at most `cache_entries` answers.
    /// Fails when the URL is not a usable `http://` URL.
    pub(crate) fn new(url: &str, timeout: Duration, cache_entries: usize) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if url.scheme() != "http" || url.host_str().is_none() {
            return Err("the hook URL must be an http:// URL with a host".into());
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the hook client: {e}"))?;
        let shown = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + url.path();
        Ok(Hook {
            client,
            url,
            shown,
            timeout,
            cache: Cache::new(cache_entries),
        })
    }

    /// Asks the backend (or the cache) about `channels`.
    pub(crate) async fn ask(
        &self,
        credentials: &Credentials,
        channels: &[ChannelName],
        transport: &'static str,
    ) -> Answer {
        let mut sorted = channels.to_vec();
        sorted.sort();
        let key = Key {
            authorization: credentials.authorization_for_hook(),
            cookie: credentials.cookie().cloned(),
            channels: sorted,
            transport,
        };
        if let Some(answer) = self.cache.get(&key) {
            return answer;
        }
        let asked = tokio::time::timeout(self.timeout, self.call(&key, channels)).await;
        let (answer, ttl) = match asked {
            Ok(Ok(answered)) => answered,
            Ok(Err(why)) => {
                tracing::warn!(url = %self.shown, "authorization hook failed: {why}");
                return Answer::Unavailable;
            }
            Err(_) => {
                tracing::warn!(url = %self.shown, timeout = ?self.timeout, "authorization hook timed out");
                return Answer::Unavailable;
            }
        };
        if let Some(ttl) = ttl {
            self.cache.insert(key, answer.clone(), ttl);
        }
        answer
    }

    /// One request; the answer and how long it may be remembered, or why
    /// there is no usable answer.
    async fn call(
        &self,
        key: &Key,
        channels: &[ChannelName],
    ) -> Result<(Answer, Option<Duration>), String> {
        let mut request = self.client.post(self.url.clone()).json(&Ask {
            channels: channels.iter().map(ChannelName::as_str).collect(),
            transport: key.transport,
        });
        if let Some(value) = &key.authorization {
            request = request.header(header::AUTHORIZATION, value.clone());
        }
        if let Some(value) = &key.cookie {
            request = request.header(header::COOKIE, value.clone());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        let ttl = max_age(response.headers());
        let answer = match status {
            StatusCode::UNAUTHORIZED => Answer::Unauthorized,
            StatusCode::FORBIDDEN => Answer::Forbidden,
            s if s.is_success() => {
                let json = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim_start().starts_with("application/json"));
                let body = read_bounded(&mut response).await?;
                allow(json, &body)?
            }
            s => return Err(format!("answered {s}")),
        };
        Ok((answer, ttl))
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes.
async fn read_bounded(response: &mut reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("answered with a body over {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The allow answer a 2xx body gives.
fn allow(json: bool, body: &[u8]) -> Result<Answer, String> {
    if !json || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Answer::Allow {
            only: None,
            sub: None,
        });
    }
    let reply: Reply =
        serde_json::from_slice(body).map_err(|e| format!("answered unreadable JSON: {e}"))?;
    let only = reply
        .channels
        .map(|items| Patterns::from_items(&items))
        .transpose()
        .map_err(|e| format!("answered a bad channel pattern: {e}"))?;
    Ok(Answer::Allow {
        only,
        sub: reply.sub.map(Arc::from),
    })
}

/// How long an answer may be remembered, from its `Cache-Control`.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut age = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim();
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return None;
            }
            if let Some(secs) = lower.strip_prefix("max-age=") {
                age = secs.trim_matches('"').parse::<u64>().ok();
            }
        }
    }
    age.filter(|s| *s > 0).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::CACHE_CONTROL, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn max_age_is_read_and_no_store_wins() {
        assert_eq!(
            max_age(&headers(&["max-age=30"])),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            max_age(&headers(&["private, Max-Age=5"])),
            Some(Duration::from_secs(5))
        );
        assert_eq!(max_age(&headers(&["max-age=30, no-store"])), None);
        assert_eq!(max_age(&headers(&["no-cache", "max-age=30"])), None);
        assert_eq!(max_age(&headers(&["max-age=0"])), None);
        assert_eq!(max_age(&headers(&["max-age=soon"])), None);
        assert_eq!(max_age(&headers(&[])), None);
    }

    #[test]
    fn a_2xx_body_narrows_only_when_it_is_json_with_channels() {
        let all = Answer::Allow {
            only: None,
            sub: None,
        };
        assert_eq!(allow(false, b"OK"), Ok(all.clone()));
        assert_eq!(allow(true, b" \n"), Ok(all.clone()));
        assert_eq!(allow(true, br#"{"ok":true}"#), Ok(all));
        let Ok(Answer::Allow { only, sub }) = allow(true, br#"{"channels":["a","u.*"],"sub":"u"}"#)
        else {
            panic!("not an allow")
        };
        assert_eq!(only.unwrap().to_string(), "a,u.*");
        assert_eq!(sub.as_deref(), Some("u"));
        assert!(allow(true, b"{not json").is_err());
        assert!(allow(true, br#"{"channels":["a*b"]}"#).is_err());
    }

    #[test]
    fn only_http_urls_are_accepted() {
        let t = Duration::from_secs(2);
        assert!(Hook::new("http://127.0.0.1:9/auth", t, 10).is_ok());
        assert!(Hook::new("https://app.example/auth", t, 10).is_err());
        assert!(Hook::new("not a url", t, 10).is_err());
        assert!(Hook::new("file:///etc/passwd", t, 10).is_err());
    }
}
