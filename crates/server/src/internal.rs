//! The internal listener's routes: publishing, channel admin and health.
//!
//! Publishing answers once the engine has stored the message (202), never
//! after delivery: fan-out to subscribers happens after the answer, so a
//! publisher's latency does not grow with the number of subscribers.
//!
//! The listener serves backends, never browsers. A web page on the same
//! host could otherwise publish with a `text/plain` POST (no preflight) or,
//! through DNS rebinding, read and delete: so a request carrying `Origin`
//! is refused, the `Host` must be one of the internal names, and a batch
//! must say it is JSON (which a page cannot send without a preflight that
//! this listener never answers).

use bytes::Bytes;
use herald_bus::{Bus, ChannelName, Draft, EventName, Health, Payload};
use herald_http::{Body, Code, Error, Listener, Query, Route, header_str, json, write_json_str};
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::Config;

/// The host names a loopback internal listener answers by default.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// The internal routes, before tower layers.
pub(crate) struct Internal {
    bus: Bus,
    token: Option<String>,
    max_batch: usize,
    /// Lower-case `Host` names (a port optional) answered; `None`: any.
    hosts: Option<Vec<String>>,
}

impl Internal {
    pub(crate) fn new(bus: Bus, config: &Config) -> Self {
        Internal {
            bus,
            token: config.publish_token.clone(),
            max_batch: config.max_batch,
            hosts: allowed_hosts(config),
        }
    }

    pub(crate) async fn route<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.respond(req).await.unwrap_or_else(Error::into_response)
    }

    async fn respond<B>(&self, req: Request<B>) -> Result<Response<Body>, Error>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.refuse_browsers(&req)?;
        self.authorize(&req)?;
        let path = req.uri().path().to_owned();
        match Route::parse(Listener::Internal, req.method(), &path)? {
            Route::Publish(channel) => self.publish_one(channel, req).await,
            Route::PublishBatch => self.publish_batch(req).await,
            Route::ChannelInfo(channel) => self.info(channel).await,
            Route::DeleteChannel(channel) => self.delete(channel).await,
            Route::Health => Ok(self.health()),
            // The public listener's routes never parse here.
            _ => Err(Error::from(Code::NotFound)),
        }
    }

    /// Refuses what a browser page would send: an `Origin`, or a `Host`
    /// outside the internal names.
    fn refuse_browsers<B>(&self, req: &Request<B>) -> Result<(), Error> {
        if req.headers().contains_key(header::ORIGIN) {
            return Err(Error::new(
                Code::OriginNotAllowed,
                "the internal listener does not serve browser pages",
            ));
        }
        let Some(hosts) = &self.hosts else {
            return Ok(());
        };
        let host = header_str(req.headers(), &header::HOST)
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        match host {
            Some(host) if !host_allowed(host, hosts) => Err(Error::new(
                Code::HostNotAllowed,
                "this host name is not one of internal-hosts",
            )),
            _ => Ok(()),
        }
    }

    fn authorize<B>(&self, req: &Request<B>) -> Result<(), Error> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = header_str(req.headers(), &header::AUTHORIZATION)
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, t)| t.trim());
        if same_secret(given.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(Error::from(Code::Unauthorized))
        }
    }

    async fn publish_one<B>(&self, channel: &str, req: Request<B>) -> Result<Response<Body>, Error>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let channel = herald_http::channel(channel)?;
        let query = Query::parse(req.uri().query());
        let event = query.get("event").map(EventName::new).transpose()?;
        let is_json = header_str(req.headers(), &header::CONTENT_TYPE).is_some_and(is_json_type);
        let body = read_body(req.into_body()).await?;
        let payload = if is_json {
            Payload::json(body)?
        } else {
            Payload::text(body)?
        };
        let published = self
            .bus
            .publish(vec![Draft {
                channel,
                event,
                payload,
            }])
            .await?;
        let Some(first) = published.first() else {
            return Err(Error::new(Code::Internal, "the engine stored nothing"));
        };
        let mut out = String::new();
        published_json(&mut out, first);
        Ok(json(StatusCode::ACCEPTED, out))
    }

    async fn publish_batch<B>(&self, req: Request<B>) -> Result<Response<Body>, Error>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct BatchIn<'a> {
            #[serde(borrow)]
            messages: Vec<Item<'a>>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Item<'a> {
            channel: &'a str,
            #[serde(default)]
            event: Option<&'a str>,
            #[serde(borrow)]
            data: &'a RawValue,
        }
        if !header_str(req.headers(), &header::CONTENT_TYPE).is_some_and(is_json_type) {
            return Err(Error::new(
                Code::InvalidJson,
                "a batch must be sent with Content-Type: application/json",
            ));
        }
        let body = read_body(req.into_body()).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| Error::new(Code::InvalidUtf8, "body is not UTF-8"))?;
        let batch: BatchIn<'_> = serde_json::from_str(text).map_err(|e| {
            // Tell "not JSON at all" from "JSON of the wrong shape"; the
            // second parse runs only on this error path.
            if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
                Error::new(Code::InvalidJson, format!("body is not valid JSON: {e}"))
            } else {
                Error::new(
                    Code::InvalidBatch,
                    format!("expected {{\"messages\":[{{\"channel\",\"event\",\"data\"}}]}}: {e}"),
                )
            }
        })?;
        if batch.messages.is_empty() || batch.messages.len() > self.max_batch {
            return Err(Error::new(
                Code::InvalidBatch,
                format!(
                    "a batch holds 1 to {} messages, got {}",
                    self.max_batch,
                    batch.messages.len()
                ),
            ));
        }
        let mut drafts = Vec::with_capacity(batch.messages.len());
        for (i, item) in batch.messages.iter().enumerate() {
            let at =
                |e: herald_bus::Error| Error::new(Code::from(&e), format!("messages[{i}]: {e}"));
            let channel = ChannelName::new(item.channel).map_err(at)?;
            let event = item.event.map(EventName::new).transpose().map_err(at)?;
            let raw = item.data.get();
            let payload = match serde_json::from_str::<String>(raw) {
                Ok(text) => Payload::text(text),
                Err(_) => Payload::json(Bytes::copy_from_slice(raw.as_bytes())),
            }
            .map_err(at)?;
            drafts.push(Draft {
                channel,
                event,
                payload,
            });
        }
        let published = self.bus.publish(drafts).await?;
        let mut out = String::from("{\"messages\":[");
        for (i, p) in published.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            published_json(&mut out, p);
        }
        out.push_str("]}");
        Ok(json(StatusCode::ACCEPTED, out))
    }

    async fn info(&self, channel: &str) -> Result<Response<Body>, Error> {
        let channel = herald_http::channel(channel)?;
        let info = self.bus.info(&channel).await?;
        let opt = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        let mut out = String::from("{\"channel\":");
        write_json_str(&mut out, channel.as_str());
        out.push_str(&format!(
            ",\"retained\":{},\"bytes\":{},\"first_id\":{},\"last_id\":{},\"subscribers\":{}}}",
            info.retained,
            info.bytes,
            opt(info.first_id),
            opt(info.last_id),
            info.subscribers
        ));
        Ok(json(StatusCode::OK, out))
    }

    async fn delete(&self, channel: &str) -> Result<Response<Body>, Error> {
        let channel = herald_http::channel(channel)?;
        let existed = self.bus.delete(&channel).await?;
        let mut out = String::from("{\"channel\":");
        write_json_str(&mut out, channel.as_str());
        out.push_str(if existed {
            ",\"deleted\":true}"
        } else {
            ",\"deleted\":false}"
        });
        Ok(json(StatusCode::OK, out))
    }

    fn health(&self) -> Response<Body> {
        match self.bus.health() {
            Health::Up => json(StatusCode::OK, r#"{"status":"ok","engine":"up"}"#),
            Health::Down(why) => {
                let mut out =
                    String::from("{\"status\":\"degraded\",\"engine\":\"down\",\"reason\":");
                write_json_str(&mut out, &why);
                out.push('}');
                json(StatusCode::SERVICE_UNAVAILABLE, out)
            }
        }
    }
}

/// The `Host` names the internal listener answers: `internal-hosts` when
/// set; else the loopback names when it listens on loopback; else any.
fn allowed_hosts(config: &Config) -> Option<Vec<String>> {
    if !config.internal_hosts.is_empty() {
        return Some(
            config
                .internal_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        );
    }
    config
        .internal_addr
        .ip()
        .is_loopback()
        .then(|| LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect())
}

/// Whether `host` (a `Host` header, a port optional) is one of `allowed`:
/// an entry with a port must match whole, one without matches any port.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = without_port(&host);
    allowed.iter().any(|a| *a == host || a == name)
}

/// `host` without its `:port`, brackets of an IPv6 address kept.
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Logs at start what leaves the internal listener open to more than the
/// backends on this host: a non-loopback address without a publish token,
/// or without `internal-hosts`.
pub(crate) fn warn_if_exposed(config: &Config, addr: std::net::SocketAddr) {
    if addr.ip().is_loopback() {
        return;
    }
    if config.publish_token.is_none() {
        tracing::warn!(%addr, "the internal listener is not on loopback and no publish-token is set: anyone who reaches it can publish and delete");
    }
    if config.internal_hosts.is_empty() {
        tracing::warn!(%addr, "the internal listener is not on loopback and internal-hosts is not set: any Host header is answered (set it to defend against DNS rebinding)");
    }
}

/// Compares a given token with the secret in time that depends only on the
/// secret's length, so that neither the secret's bytes nor its length leak.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    let mut same = subtle::Choice::from(u8::from(given.len() == secret.len()));
    for (i, b) in secret.iter().enumerate() {
        same &= given.get(i).unwrap_or(&0).ct_eq(b);
    }
    same.into()
}

fn is_json_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence[..essence.len() - 5].contains('/')
            && essence.to_ascii_lowercase().ends_with("+json"))
}

fn published_json(out: &mut String, p: &herald_bus::Published) {
    out.push_str("{\"channel\":");
    write_json_str(out, p.message.channel.as_str());
    out.push_str(&format!(
        ",\"id\":{},\"cursor\":\"{}\"}}",
        p.message.id, p.cursor
    ));
}

/// Reads a whole request body. The size limit itself is tower-http's
/// `RequestBodyLimitLayer`; its error is recognised here and becomes 413.
async fn read_body<B>(body: B) -> Result<Bytes, Error>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            if e.is::<http_body_util::LengthLimitError>() {
                Err(Error::new(
                    Code::BodyTooLarge,
                    "request body exceeds max-body",
                ))
            } else {
                Err(Error::new(
                    Code::BodyUnreadable,
                    "request body could not be read",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_match_with_or_without_a_port() {
        let loopback: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        for ok in [
            "localhost",
            "LOCALHOST:8081",
            "127.0.0.1:1",
            "[::1]:8081",
            "[::1]",
        ] {
            assert!(host_allowed(ok, &loopback), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8081",
            "127.0.0.2",
            "localhost.evil:80",
            "[::2]:80",
            "",
        ] {
            assert!(!host_allowed(bad, &loopback), "{bad}");
        }
        let listed = vec!["herald.internal".to_string(), "10.0.0.5:8081".to_string()];
        assert!(host_allowed("herald.internal:9000", &listed));
        assert!(host_allowed("10.0.0.5:8081", &listed));
        assert!(
            !host_allowed("10.0.0.5:9000", &listed),
            "a listed port must match"
        );
    }

    #[test]
    fn default_hosts_follow_the_listener_address() {
        let mut c = Config::default();
        assert!(allowed_hosts(&c).is_some_and(|h| h.contains(&"localhost".to_string())));
        c.internal_addr = "0.0.0.0:8081".parse().unwrap();
        assert_eq!(allowed_hosts(&c), None);
        c.internal_hosts = vec!["Herald.Internal".into()];
        assert_eq!(allowed_hosts(&c), Some(vec!["herald.internal".to_string()]));
    }
}
