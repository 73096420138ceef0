//! The public listener's routes: the subscriber transports and a health
//! check. Nothing here can publish or administer; that lives on the internal
//! listener, so that a reverse proxy fronting this one can never reach it.

use herald_http::{Body, Context, Error, json};
use herald_longpoll::LongPoll;
use herald_poll::Poll;
use herald_sse::Sse;
use herald_ws::Ws;
use http::{Method, Request, Response, StatusCode};

use crate::Config;

/// Whether `path` (with its query) is a route whose requests are held:
/// long polls and SSE streams. The lean HTTP/1.1 path serves those.
pub(crate) fn held(path: &str) -> bool {
    path.starts_with("/longpoll/") || path.starts_with("/sse/")
}

/// The public routes, before tower layers.
pub(crate) struct Public {
    poll: Poll,
    longpoll: LongPoll,
    sse: Sse,
    ws: Ws,
}

impl Public {
    pub(crate) fn new(ctx: Context, tasks: tokio_util::task::TaskTracker, config: &Config) -> Self {
        Public {
            poll: Poll::new(ctx.clone()),
            longpoll: LongPoll::new(ctx.clone(), config.longpoll.clone()),
            sse: Sse::new(ctx.clone(), config.sse.clone()),
            ws: Ws::new(ctx, config.ws.clone(), tasks),
        }
    }

    /// Routes a subscriber request. Subscriber requests carry no body, so
    /// it is dropped here and transports see the head only (extensions
    /// included, so that a WebSocket upgrade still works).
    pub(crate) async fn route<B>(&self, req: Request<B>) -> Response<Body> {
        let req = req.map(drop);
        let path = req.uri().path().to_owned();
        let mut segments = path.trim_start_matches('/').splitn(2, '/');
        let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
        match (segments.next(), segments.next()) {
            (Some("healthz"), None) if is_get => json(StatusCode::OK, r#"{"status":"ok"}"#),
            (Some("poll"), Some(list)) if is_get => self.poll.handle(&req, list).await,
            (Some("longpoll"), Some(list)) if is_get => self.longpoll.handle(&req, list).await,
            (Some("sse"), Some(list)) if is_get => self.sse.handle(&req, list).await,
            (Some("ws"), list) if req.method() == Method::GET => self.ws.handle(req, list).await,
            (Some("healthz"), None)
            | (Some("poll" | "longpoll" | "sse"), Some(_))
            | (Some("ws"), _) => Error::method_not_allowed().into_response(),
            _ => Error::not_found().into_response(),
        }
    }
}
