//! The `herald` binary's setup: logging, the open-file limit, the runtime,
//! configuration from flags, environment and file, and the listeners. It
//! builds the gateway with [`Herald::connect`], as an embedder would, and
//! hands it to [`run`](crate::run) until a signal.

use std::{io, net::SocketAddr, process::ExitCode};

use tokio::net::{TcpListener, TcpSocket};

use crate::{Args, Config, Herald, LogFormat, run, run::shutdown_signal};

/// The `herald` binary: configuration from flags, environment and file;
/// logs through `tracing` (level from `RUST_LOG`, default `info`; text or
/// JSON lines by `log-format`); exits non-zero with a message when the
/// configuration is invalid, the engine cannot be reached or a listener
/// cannot be bound.
pub fn main() -> ExitCode {
    let config = match Args::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(config.log_format);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(limit = n, "open-file limit raised to the hard limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    // On one core, one thread: the multi-threaded runtime would add a
    // worker thread beside this one, and with a second thread sharing the
    // file table every socket system call takes and drops a reference on
    // its file (the kernel's fast path is for single-threaded processes),
    // while its scheduler pays for work stealing that cannot happen.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = match one_core {
        true => tokio::runtime::Builder::new_current_thread(),
        false => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => {
            let threads = match one_core {
                true => "one thread (one core available)",
                false => "one worker thread per core",
            };
            tracing::info!(threads, "runtime started");
            rt
        }
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines to stderr in `format`, at the level `RUST_LOG` says (default
/// `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// Binds both listeners, builds the gateway and serves until a signal.
async fn serve(config: Config) -> Result<(), String> {
    warn_if_backlog_capped(config.listen_backlog);
    let bind = |addr| {
        listen(addr, config.listen_backlog).map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let public = bind(config.public_addr)?;
    let internal = bind(config.internal_addr)?;
    let herald = Herald::connect(config).await.map_err(|e| e.to_string())?;
    let (p, i) = (
        public.local_addr().map_err(|e| e.to_string())?,
        internal.local_addr().map_err(|e| e.to_string())?,
    );
    tracing::info!(public = %p, internal = %i, "herald listening");
    run(herald, public, internal, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// A listener on `addr` whose kernel queue holds up to `backlog`
/// connections not yet accepted (the standard library's bind asks for 128,
/// which a reconnect storm overflows: the clients over it wait for a SYN
/// retransmission, a second or more).
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The kernel caps every listen backlog at `net.core.somaxconn`: say so
/// when that is below the configured one.
fn warn_if_backlog_capped(backlog: u32) {
    let Some(max) = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return;
    };
    if max < backlog {
        tracing::warn!(
            listen_backlog = backlog,
            somaxconn = max,
            "net.core.somaxconn caps the listen backlog below listen-backlog; raise it with sysctl -w net.core.somaxconn={backlog}"
        );
    }
}
