//! The lifecycle: serve both listeners until a shutdown future resolves,
//! then drain in three steps (stop accepting, tell every long-lived
//! response to end, wait for them with a bound), and the process signals
//! that start it in the binary.
//!
//! Accepting connections is serve.rs's; what a connection carries is the
//! services' ([`Herald`]).

use std::{future::Future, io};

use herald_http::{Listener, Route};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{Herald, internal, lean, serve};

/// Serves `herald` on both listeners until `signal` resolves, then drains:
/// stops accepting, tells every long-lived response to end (held HTTP/1.1
/// responses end spread over the configured drain spread), and waits for
/// open connections and tasks for at most the configured drain time. The
/// listeners keep the backlog they were made with; warnings about an
/// exposed internal listener are logged at start.
pub async fn run(
    herald: Herald,
    public: TcpListener,
    internal: TcpListener,
    signal: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = herald.config().clone();
    if let Ok(addr) = internal.local_addr() {
        internal::warn_if_exposed(&config, addr);
    }
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    let limits = || serve::ConnLimits {
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        header_read_timeout: config.header_read_timeout,
        send_timeout: config.send_timeout,
        idle_timeout: config.idle_timeout,
        drain_spread: config.effective_drain_spread(),
    };
    let lean = lean::Routes {
        service: herald.public_service(),
        held,
    };
    tokio::select! {
        () = serve::accept(public, herald.public_service(), Some(lean), limits(), connections.clone(), stop.clone()) => {}
        () = serve::accept(internal, herald.internal_service(), None, limits(), connections.clone(), stop.clone()) => {}
        () = signal => {}
    }
    tracing::info!("shutting down: no longer accepting connections");
    stop.cancel();
    herald.shutdown();
    let drained = async {
        connections.close();
        connections.wait().await;
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

/// Whether a public `GET` or `HEAD` of `path` (without its query) is held:
/// what the lean path serves.
pub(crate) fn held(method: &http::Method, path: &str) -> bool {
    Route::parse(Listener::Public, method, path).is_ok_and(|r| r.is_held())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub(crate) async fn shutdown_signal() {
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
