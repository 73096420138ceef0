//! The WebSocket handshake: checks the upgrade request, answers 101 itself
//! and hands the upgraded socket to a connection task.
//!
//! Everything that can be refused is refused here, with an HTTP JSON error,
//! before the upgrade: a malformed handshake (400), an Origin outside the
//! allow-list (403), and for `/ws/{channels}` a bad channel list or
//! `since`/`last` (400). After the 101 the client hears only WebSocket
//! frames. The protocol spoken on the socket is the connection module's.

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use herald_auth::Grant;
use herald_http::{
    Body, Code, ConnectionPermit, Context, Error, Query, authorize, channels, empty, header_str,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::task::TaskTracker;

use crate::{Config, access::Access, connection, frame, port::Port};

/// Bytes read from the socket at a time, allocated up front per connection.
/// Client frames are small JSON objects (a subscribe frame is well under
/// this), and an idle connection should cost little; a larger frame (up to
/// `max_frame`) grows the buffer as needed.
const READ_BUFFER: usize = 256;

/// Frames are gathered up to this many bytes before a socket write, so that
/// a batch of small messages leaves in a few writes. The buffer keeps its
/// capacity, so it is kept small: a connection that received a burst should
/// not stay large when it goes idle.
const WRITE_BUFFER: usize = 4096;

/// The WebSocket transport: `GET /ws` and `GET /ws/{channels}`.
#[derive(Clone)]
pub struct Ws {
    ctx: Context,
    config: Arc<Config>,
    tasks: TaskTracker,
}

impl Ws {
    /// A WebSocket handler over the shared transport context. Connection
    /// tasks are spawned on `tasks`, which the server waits for when it
    /// drains.
    pub fn new(ctx: Context, config: Config, tasks: TaskTracker) -> Self {
        Ws {
            ctx,
            config: Arc::new(config),
            tasks,
        }
    }

    /// Answers an upgrade request: `GET /ws` when `list` is `None`, `GET
    /// /ws/{channels}` (subscribed at once, from `since` or `last`)
    /// otherwise. The request must still carry hyper's upgrade extension.
    pub async fn handle(&self, req: Request<()>, list: Option<&str>) -> Response<Body> {
        self.upgrade(req, list)
            .await
            .unwrap_or_else(Error::into_response)
    }

    async fn upgrade(
        &self,
        mut req: Request<()>,
        list: Option<&str>,
    ) -> Result<Response<Body>, Error> {
        let accept = accept_key(req.headers())?;
        check_origin(req.headers(), &self.config.origins)?;
        let credentials = self.ctx.auth.credentials(&req);
        let (sub, greeting, grant) = match list {
            None => (self.ctx.bus.empty_subscription(), None, Grant::default()),
            Some(list) => {
                let limits = &self.ctx.limits;
                let channels = channels(list, limits)?;
                let max = self.config.max_subscriptions;
                if channels.len() > max {
                    return Err(frame::too_many(max));
                }
                let start = Query::parse(req.uri().query()).start(limits)?;
                // The handshake is HTTP: all-or-nothing, like the other
                // transports.
                let grant = authorize(&self.ctx, &req, &channels, "ws").await?;
                // Subscribed before the 101, so that whatever is published
                // once the client is connected is delivered.
                let sub = self
                    .ctx
                    .setup(self.ctx.bus.subscribe(&channels, &start))
                    .await?;
                let greeting = frame::subscribed(None, &channels, &sub.cursor());
                (sub, Some(greeting), grant)
            }
        };
        let access = Access::new(credentials, &grant);
        if req.extensions().get::<OnUpgrade>().is_none() {
            return Err(Error::new(
                Code::Internal,
                "the connection cannot be upgraded: serve it with hyper's upgrades enabled",
            ));
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        // The socket counts against the connection limits for as long as
        // this task serves it.
        let permit = req.extensions_mut().remove::<ConnectionPermit>();
        let ctx = self.ctx.clone();
        let config = self.config.clone();
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(config.max_frame))
            .max_frame_size(Some(config.max_frame));
        // What the connection starts with waits on the heap while the
        // upgrade completes: a task's captures stay in its state for its
        // whole life, moved out or not.
        let start = Box::new((sub, greeting, ctx, config, access, ws_config));
        let fut = async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket upgrade failed");
                    return;
                }
            };
            // Out of the box in a block of its own, so that the box is
            // freed now rather than when the task ends.
            let (sub, greeting, ctx, config, access, ws_config) = {
                let start = start;
                *start
            };
            let ws = WebSocketStream::from_raw_socket(
                Port::new(TokioIo::new(upgraded)),
                Role::Server,
                Some(ws_config),
            )
            .await;
            connection::serve(ws, sub, greeting, ctx, config, access).await;
            drop(permit);
        };
        self.tasks.spawn(fut);
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        Ok(res)
    }
}

/// Checks an upgrade request's headers (RFC 6455, 4.2.1) and answers the
/// `Sec-WebSocket-Accept` value. Fails with 400 and a code naming what is
/// wrong.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<String, Error> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(Error::new(
            Code::WebsocketUpgradeRequired,
            "this endpoint needs a WebSocket handshake (Connection: upgrade, Upgrade: websocket)",
        ));
    }
    if header_str(headers, &header::SEC_WEBSOCKET_VERSION).map(str::trim) != Some("13") {
        return Err(Error::new(
            Code::UnsupportedWebsocketVersion,
            "Sec-WebSocket-Version must be 13",
        ));
    }
    let key = header_str(headers, &header::SEC_WEBSOCKET_KEY)
        .map(str::trim)
        .filter(|k| STANDARD.decode(k).is_ok_and(|raw| raw.len() == 16))
        .ok_or_else(|| {
            Error::new(
                Code::InvalidWebsocketKey,
                "Sec-WebSocket-Key must be 16 random bytes in base64",
            )
        })?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// Refuses a browser page from an origin outside `allowed` (403
/// `origin_not_allowed`). An empty list, or one holding `*`, allows any;
/// a request without `Origin` does not come from a browser page and is
/// let through (a non-browser client can claim any origin anyway).
pub(crate) fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), Error> {
    if allowed.is_empty() || allowed.iter().any(|o| o == "*") {
        return Ok(());
    }
    match header_str(headers, &header::ORIGIN) {
        None => Ok(()),
        Some(origin) if allowed.iter().any(|o| o.eq_ignore_ascii_case(origin)) => Ok(()),
        Some(origin) => Err(Error::new(
            Code::OriginNotAllowed,
            format!("origin {origin:?} may not open a WebSocket here"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const GOOD: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn accepts_the_rfc_example() {
        // RFC 6455, section 1.3.
        assert_eq!(
            accept_key(&headers(GOOD)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refuses_bad_handshakes_with_codes() {
        let without = |name: &str| -> Vec<(&'static str, &'static str)> {
            GOOD.iter().filter(|(k, _)| *k != name).copied().collect()
        };
        let with = |name: &'static str, value: &'static str| {
            let mut v = without(name);
            v.push((name, value));
            v
        };
        for (h, code) in [
            (without("connection"), "websocket_upgrade_required"),
            (with("upgrade", "h2c"), "websocket_upgrade_required"),
            (
                with("sec-websocket-version", "8"),
                "unsupported_websocket_version",
            ),
            (without("sec-websocket-key"), "invalid_websocket_key"),
            (
                with("sec-websocket-key", "c2hvcnQ="),
                "invalid_websocket_key",
            ),
            (
                with("sec-websocket-key", "not base64!!"),
                "invalid_websocket_key",
            ),
        ] {
            let e = accept_key(&headers(&h)).unwrap_err();
            assert_eq!(
                (e.status().as_u16(), e.code().as_str()),
                (400, code),
                "{h:?}"
            );
        }
    }

    #[test]
    fn origin_allow_list() {
        let allowed = vec!["https://app.example.com".to_string()];
        let from = |o: &str| headers(&[("origin", o)]);
        assert!(check_origin(&from("https://evil.example"), &[]).is_ok());
        assert!(check_origin(&from("https://APP.example.com"), &allowed).is_ok());
        assert!(check_origin(&HeaderMap::new(), &allowed).is_ok());
        let e = check_origin(&from("https://evil.example"), &allowed).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (403, "origin_not_allowed")
        );
        assert!(check_origin(&from("https://evil.example"), &["*".into()]).is_ok());
    }
}
