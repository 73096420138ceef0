//! The embedding API: [`Herald`] builds the bus and the transports from a
//! [`Config`] and hands them out as tower services, without listeners.
//!
//! An application mounts [`Herald::public_service`] in its own hyper/tower
//! stack (herald's [`Route`](herald_http::Route) says which paths are
//! herald's) and publishes in-process through [`Herald::bus`]. Listening,
//! the lean HTTP/1.1 path and draining are `run`'s (run.rs); the routes
//! themselves are public.rs's and internal.rs's.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use herald_bus::Bus;
use herald_http::{Body, Context, Stats, json_errors};
use http::{HeaderValue, Method, Request, Response, header};
use prometheus_client::metrics::counter::Counter;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::{ServiceBuilder, service_fn, util::BoxCloneSyncService};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{Config, ConfigError, EngineKind, Error, engine, internal, metrics::Metrics, public};

/// An embeddable gateway: the bus, the subscriber transports and the
/// publish/admin endpoints, without listeners.
#[derive(Clone)]
pub struct Herald {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    bus: Bus,
    public: public::Public,
    internal: internal::Internal,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Herald {
    /// A gateway on the engine `config.engine` names, with `config.history`
    /// as its history bounds: exactly what the `herald` binary runs. Call it
    /// inside a tokio runtime (engines start background tasks there). Fails
    /// if `config` does not validate or the engine cannot be reached (Redis
    /// down, a bad URL); the error never shows a Redis password.
    pub async fn connect(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let engine_errors = Counter::default();
        let bus = engine::bus(&config, engine_errors.clone()).await?;
        Ok(Self::assemble(config, bus, engine_errors)?)
    }

    /// A gateway on the in-memory engine, without awaiting anything. Call it
    /// inside a tokio runtime (the engine starts its sweeper there). Fails if
    /// `config` does not validate, or if it names another engine than
    /// memory: use [`Herald::connect`] for those, rather than silently
    /// getting a different engine than the configuration says.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        if config.engine != EngineKind::Memory {
            return Err(ConfigError(
                "engine: Herald::new runs the memory engine only; use Herald::connect".into(),
            ));
        }
        let bus = Bus::memory(config.history.clone());
        Self::with_bus(config, bus)
    }

    /// A gateway on an existing bus (an engine built by the application, or
    /// a bus it already publishes to). `config.engine`, `config.redis`
    /// and `config.history` are not used to build anything: the bus's
    /// engine keeps the bounds it was built with. Fails if `config` does not
    /// validate.
    pub fn with_bus(config: Config, bus: Bus) -> Result<Self, ConfigError> {
        Self::assemble(config, bus, Counter::default())
    }

    /// The gateway over `bus`, whose engine counts its failures in
    /// `engine_errors` (or does not, and the metric stays at zero).
    fn assemble(config: Config, bus: Bus, engine_errors: Counter) -> Result<Self, ConfigError> {
        config.validate()?;
        let auth = config.authorizer()?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let stats = Stats::default();
        let metrics = Metrics::new(stats.clone(), bus.clone(), engine_errors);
        let ctx = Context {
            bus: bus.clone(),
            limits: config.limits.clone(),
            shutdown: shutdown.clone(),
            stats,
            auth,
        };
        let public = public::Public::new(ctx, tasks.clone(), &config);
        let internal =
            internal::Internal::new(bus.clone(), &config, shutdown.clone(), Arc::new(metrics));
        Ok(Herald {
            inner: Arc::new(Inner {
                config,
                bus,
                public,
                internal,
                shutdown,
                tasks,
            }),
        })
    }

    /// The bus, for publishing in-process.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The subscriber routes (`/poll`, `/longpoll`, `/sse`, `/ws`,
    /// `/healthz`) with CORS and request tracing, as a tower service that
    /// never fails: every error is a JSON response.
    pub fn public_service<B>(&self) -> BoxCloneSyncService<Request<B>, Response<Body>, Infallible>
    where
        B: http_body::Body + Send + 'static,
    {
        let me = self.clone();
        let routes = service_fn(move |req: Request<B>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.inner.public.route(req).await) }
        });
        BoxCloneSyncService::new(Shared::new(
            ServiceBuilder::new()
                .map_response(json_errors)
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(self.cors())
                .service(routes),
        ))
    }

    /// The publish and admin routes, with the body limit, request timeout
    /// and tracing layers. Never fails: every error is a JSON response.
    pub fn internal_service<B>(&self) -> BoxCloneSyncService<Request<B>, Response<Body>, Infallible>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let me = self.clone();
        let routes = service_fn(move |req: Request<tower_http::body::Limited<B>>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.inner.internal.route(req).await) }
        });
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_response(json_errors)
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(RequestBodyLimitLayer::new(self.inner.config.max_body))
                .layer(TimeoutLayer::with_status_code(
                    http::StatusCode::REQUEST_TIMEOUT,
                    self.inner.config.request_timeout,
                ))
                .service(routes),
        )
    }

    /// CORS for subscribers: `cors_origins`, the methods and headers the
    /// subscriber transports read, and the `ETag` short polling answers.
    fn cors(&self) -> CorsLayer {
        let config = &self.inner.config;
        let origins = &config.cors_origins;
        let any = origins.iter().any(|o| o == "*");
        let allow = if any {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        // Cookies cross origins only to an exact, echoed origin that allows
        // credentials: for the token cookie, and for the session cookies the
        // backend hook reads. Never with `*` (validation refuses a token
        // cookie with `*`; the hook then stays same-origin).
        let credentials = !any && (config.auth.cookie.is_some() || config.auth.hook_url.is_some());
        CorsLayer::new()
            .allow_origin(allow)
            .allow_credentials(credentials)
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([
                header::IF_NONE_MATCH,
                herald_sse::LAST_EVENT_ID,
                header::CACHE_CONTROL,
                header::AUTHORIZATION,
            ])
            .expose_headers([header::ETAG])
            .max_age(Duration::from_secs(3600))
    }

    /// Starts draining: held long polls answer, SSE streams end, WebSockets
    /// close with 1001. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Waits until every long-lived task the transports started has ended
    /// (after [`Herald::shutdown`]).
    pub async fn drained(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// One service stack shared by all its clones. A connection clones its
/// service for every request it serves; cloning the stack itself would copy
/// the CORS configuration (and allocate) each time, while a clone of this is
/// one reference count. `poll_ready` and `call` take the lock only while
/// they run (`call` builds the response future; the future runs unlocked),
/// and every layer of the public stack is always ready, so a clone never
/// waits on readiness another clone reserved.
struct Shared<S>(Arc<std::sync::Mutex<S>>);

impl<S> Shared<S> {
    fn new(service: S) -> Self {
        Shared(Arc::new(std::sync::Mutex::new(service)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S: tower::Service<R>, R> tower::Service<R> for Shared<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.lock().poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.lock().call(req)
    }
}

/// The span every request is logged in. Its URI has the value of any
/// `token` query parameter replaced: a subscriber token must never reach
/// the logs. `sub` is filled in once a subscription is authorized.
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        uri = %herald_auth::redact_query(req.uri()),
        version = ?req.version(),
        sub = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn new_refuses_an_engine_it_would_not_run() {
        let redis = Config {
            engine: EngineKind::Redis,
            ..Config::default()
        };
        let e = Herald::new(redis).err().expect("refused");
        assert!(e.to_string().contains("engine"), "{e}");
        assert!(Herald::new(Config::default()).is_ok());
    }
}
