//! Accepting connections: hyper-util's auto builder (HTTP/1.1 and cleartext
//! HTTP/2) on each listener, a cap on open connections, a header read
//! timeout, and connection-level graceful shutdown.
//!
//! Graceful shutdown here only stops accepting and lets in-flight requests
//! finish; long-lived responses end because their transports watch the
//! shutdown token (see `Herald::shutdown`). Upgraded WebSocket connections
//! are tracked by the transport's task tracker, not by this module.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use herald_http::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;

use crate::{
    lean::{self, Lean, Outcome},
    rewind::Rewind,
};

/// The largest request head, on both paths.
const MAX_HEAD: usize = 16 * 1024;

/// Per-listener connection settings.
pub(crate) struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Accepts on `listener` until `stop` is cancelled, serving each connection
/// with `service` under `graceful`'s watch. With `lean`, a connection's held
/// requests are served by the lean path first (see `lean.rs`) and hyper
/// takes over at the first request that path does not serve.
pub(crate) async fn accept(
    listener: TcpListener,
    service: BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>,
    lean: Option<lean::Routes>,
    limits: ConnLimits,
    graceful: &GracefulShutdown,
    stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Small idle connections matter more than a large read buffer: a
        // subscriber sends one request and then only reads.
        .max_buf_size(MAX_HEAD);
    // HTTP/2 has no header read timeout; keep-alive pings find dead peers
    // (and idle connections that hold no stream) instead.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let lean = lean.map(|routes| {
        Arc::new(Lean {
            routes,
            max_head: MAX_HEAD,
            header_read_timeout: limits.header_read_timeout,
        })
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Watching from the start, so that a drain waits for connections
        // that are still on the lean path.
        let watcher = graceful.watcher();
        let (builder, service, lean, stop) =
            (builder.clone(), service.clone(), lean.clone(), stop.clone());
        tokio::spawn(async move {
            let (stream, prefix) = match &lean {
                Some(lean) => match lean::serve(stream, lean, &stop).await {
                    Outcome::Closed => return drop((permit, watcher)),
                    Outcome::Handover(stream, prefix) => (stream, prefix),
                },
                None => (stream, Bytes::new()),
            };
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(Rewind::new(stream, prefix)),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}
