//! The public listener's routes: the subscriber transports, a health
//! check and the readiness check. Nothing here can publish or administer; that lives on the internal
//! listener, so that a reverse proxy fronting this one can never reach it.

use futures::future::BoxFuture;
use herald_http::{Body, Code, Context, Error, Listener, Route, json};
use herald_longpoll::LongPoll;
use herald_poll::Poll;
use herald_sse::Sse;
use herald_ws::Ws;
use http::{Request, Response, StatusCode};

use crate::Config;

/// The public routes, before tower layers.
pub(crate) struct Public {
    ctx: Context,
    poll: Poll,
    longpoll: LongPoll,
    sse: Sse,
    ws: Ws,
}

impl Public {
    pub(crate) fn new(ctx: Context, tasks: tokio_util::task::TaskTracker, config: &Config) -> Self {
        Public {
            ctx: ctx.clone(),
            poll: Poll::new(ctx.clone()),
            longpoll: LongPoll::new(ctx.clone(), config.longpoll.clone()),
            sse: Sse::new(ctx.clone(), config.sse.clone()),
            // One send deadline for every transport: `--send-timeout`.
            ws: Ws::new(
                ctx.clone(),
                herald_ws::Config {
                    send_timeout: config.send_timeout,
                    ..config.ws.clone()
                },
                tasks,
            ),
        }
    }

    /// Routes a subscriber request. Subscriber requests carry no body, so
    /// it is dropped here and transports see the head only (extensions
    /// included, so that a WebSocket upgrade still works).
    ///
    /// The answer is a boxed future of the one transport that serves the
    /// request: every layer of the tower stack moves its inner future once,
    /// so a poll moves a pointer rather than a future sized for the largest
    /// transport.
    pub(crate) fn route<B>(&self, req: Request<B>) -> BoxFuture<'_, Response<Body>> {
        let req = req.map(drop);
        // A clone of the path shares the request's bytes.
        let uri = req.uri().clone();
        match Route::parse(Listener::Public, req.method(), uri.path()) {
            Ok(Route::Health) => ready(json(StatusCode::OK, r#"{"status":"ok"}"#)),
            Ok(Route::Ready) => ready(crate::ready::ready(&self.ctx.bus, &self.ctx.shutdown)),
            Ok(Route::Poll(list)) => {
                let n = list.len();
                Box::pin(async move { self.poll.handle(&req, tail(&uri, n)).await })
            }
            // The transport takes the request and lets go of it when the
            // hold begins; no copy of the path is kept.
            Ok(Route::LongPoll(list)) => Box::pin(self.longpoll.handle(req, list)),
            Ok(Route::Sse(list)) => {
                let n = list.len();
                Box::pin(async move { self.sse.handle(&req, tail(&uri, n)).await })
            }
            Ok(Route::Ws(list)) => {
                let n = list.map(str::len);
                Box::pin(async move { self.ws.handle(req, n.map(|n| tail(&uri, n))).await })
            }
            // The internal listener's routes never parse here.
            Ok(_) => ready(Error::from(Code::NotFound).into_response()),
            Err(e) => ready(e.into_response()),
        }
    }
}

/// A future of a response already made.
fn ready<'a>(res: Response<Body>) -> BoxFuture<'a, Response<Body>> {
    Box::pin(std::future::ready(res))
}

/// The last `n` bytes of the path: a route's segment is the end of its
/// path, so the transport's future, which owns the path, takes it from
/// there.
fn tail(uri: &http::Uri, n: usize) -> &str {
    let path = uri.path();
    path.get(path.len().saturating_sub(n)..).unwrap_or_default()
}
