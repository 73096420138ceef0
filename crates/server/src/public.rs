//! The public listener's routes: the subscriber transports and a health
//! check. Nothing here can publish or administer; that lives on the internal
//! listener, so that a reverse proxy fronting this one can never reach it.

use herald_http::{Body, Code, Context, Error, Listener, Route, json};
use herald_longpoll::LongPoll;
use herald_poll::Poll;
use herald_sse::Sse;
use herald_ws::Ws;
use http::{Request, Response, StatusCode};

use crate::Config;

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
            // One send deadline for every transport: `--send-timeout`.
            ws: Ws::new(
                ctx,
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
    pub(crate) async fn route<B>(&self, req: Request<B>) -> Response<Body> {
        let req = req.map(drop);
        let path = req.uri().path().to_owned();
        match Route::parse(Listener::Public, req.method(), &path) {
            Ok(Route::Health) => json(StatusCode::OK, r#"{"status":"ok"}"#),
            Ok(Route::Poll(list)) => self.poll.handle(&req, list).await,
            Ok(Route::LongPoll(list)) => self.longpoll.handle(&req, list).await,
            Ok(Route::Sse(list)) => self.sse.handle(&req, list).await,
            Ok(Route::Ws(list)) => self.ws.handle(req, list).await,
            // The internal listener's routes never parse here.
            Ok(_) => Error::from(Code::NotFound).into_response(),
            Err(e) => e.into_response(),
        }
    }
}
