//! herald's server: configuration, the two listeners, routing, tower
//! layers, the publish and admin endpoints, and graceful shutdown.
//!
//! Only this crate knows about listeners, signals, configuration sources and
//! log setup. Embedders use [`Herald`]: it builds the bus and the services,
//! so that an application can mount herald's subscriber routes in its own
//! hyper/tower stack ([`Herald::public_service`]) and publish in-process
//! ([`Herald::bus`]). [`run`] serves both listeners until a shutdown future
//! resolves; [`main`] is the `herald` binary.

mod cli;
mod config;
mod internal;
mod lean;
mod public;
mod serve;

use std::{convert::Infallible, future::Future, io, process::ExitCode, sync::Arc, time::Duration};

use bytes::Bytes;
use herald_bus::Bus;
use herald_http::{Body, Context, json_errors};
use http::{HeaderName, HeaderValue, Method, Request, Response, header};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::{ServiceBuilder, service_fn, util::BoxCloneSyncService};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

pub use cli::Args;
pub use config::{Config, ConfigError, EngineKind};
pub use herald_bus as bus;

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
    /// A gateway on the in-memory engine. Call it inside a tokio runtime
    /// (the engine starts its sweeper there). Fails if `config` does not
    /// validate.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let bus = Bus::memory(config.history.clone());
        Self::with_bus(config, bus)
    }

    /// A gateway on an existing bus (another engine, or a bus the
    /// application already publishes to). Fails if `config` does not
    /// validate.
    pub fn with_bus(config: Config, bus: Bus) -> Result<Self, ConfigError> {
        config.validate()?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ctx = Context {
            bus: bus.clone(),
            limits: config.limits.clone(),
            shutdown: shutdown.clone(),
        };
        let public = public::Public::new(ctx, tasks.clone(), &config);
        let internal = internal::Internal::new(bus.clone(), &config);
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
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_response(json_errors)
                .layer(TraceLayer::new_for_http())
                .layer(self.cors())
                .service(routes),
        )
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
                .layer(TraceLayer::new_for_http())
                .layer(RequestBodyLimitLayer::new(self.inner.config.max_body))
                .layer(TimeoutLayer::with_status_code(
                    http::StatusCode::REQUEST_TIMEOUT,
                    self.inner.config.request_timeout,
                ))
                .service(routes),
        )
    }

    fn cors(&self) -> CorsLayer {
        let origins = &self.inner.config.cors_origins;
        let allow = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([
                header::IF_NONE_MATCH,
                HeaderName::from_static("last-event-id"),
                header::CACHE_CONTROL,
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

/// Serves `herald` on both listeners until `signal` resolves, then drains:
/// stops accepting, tells every long-lived response to end, and waits for
/// open connections and tasks for at most the configured drain time.
pub async fn run(
    herald: Herald,
    public: TcpListener,
    internal: TcpListener,
    signal: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = herald.config().clone();
    let graceful = GracefulShutdown::new();
    let stop = CancellationToken::new();
    let limits = || serve::ConnLimits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
    };
    let lean = lean::Routes {
        service: herald.public_service(),
        held: public::held,
    };
    tokio::select! {
        () = serve::accept(public, herald.public_service(), Some(lean), limits(), &graceful, stop.clone()) => {}
        () = serve::accept(internal, herald.internal_service(), None, limits(), &graceful, stop.clone()) => {}
        () = signal => {}
    }
    tracing::info!("shutting down: no longer accepting connections");
    stop.cancel();
    herald.shutdown();
    let drained = async {
        graceful.shutdown().await;
        herald.drained().await;
    };
    if tokio::time::timeout(config.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(after = ?config.drain_timeout, "drain time over; exiting with connections still open");
    } else {
        tracing::info!("drained");
    }
    Ok(())
}

/// The `herald` binary: configuration from flags, environment and file;
/// logs through `tracing` (level from `RUST_LOG`, default `info`); exits
/// non-zero with a message when the configuration is invalid or a listener
/// cannot be bound.
pub fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let config = match Args::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(limit = n, "open-file limit raised to the hard limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_main(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_main(config: Config) -> Result<(), String> {
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let public = bind(config.public_addr).await?;
    let internal = bind(config.internal_addr).await?;
    let bus = match config.engine {
        EngineKind::Memory => Bus::memory(config.history.clone()),
        EngineKind::Redis => {
            let engine = herald_redis::RedisEngine::connect(&config.redis, config.history.clone())
                .await
                .map_err(|e| format!("cannot use Redis at {}: {e}", redacted(&config.redis.url)))?;
            tracing::info!(url = %redacted(&config.redis.url), "using the Redis engine");
            Bus::new(engine)
        }
    };
    let herald = Herald::with_bus(config, bus).map_err(|e| e.to_string())?;
    let (p, i) = (
        public.local_addr().map_err(|e| e.to_string())?,
        internal.local_addr().map_err(|e| e.to_string())?,
    );
    tracing::info!(public = %p, internal = %i, "herald listening");
    run(herald, public, internal, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// A URL without its password, for logs and error messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            tracing::warn!("cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
