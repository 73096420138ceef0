//! herald in-process: the same `Herald` and `run` the binary uses, on
//! listeners bound to `127.0.0.1:0` by the test, stopped by a future the
//! test controls, on a runtime of its own (as in the binary). Much faster than a process per test, and the addresses
//! are known without reading a log.
//!
//! What it leaves out: what only the binary does — flags and environment
//! read from the process, the TOML file lookup at start, signals, the log
//! format, exit codes. Tests of those use [`crate::Binary`].

use std::{io, net::SocketAddr, ops::Deref};

use herald_server::{Args, Config, Herald};
use tokio::{net::TcpListener, runtime::Runtime, sync::oneshot, task::JoinHandle};

use crate::Endpoints;

/// A running in-process herald. Dereferences to its [`Endpoints`]. Drop
/// ends it without draining; [`Server::stop`] drains.
pub struct Server {
    endpoints: Endpoints,
    config: Config,
    herald: Herald,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    /// The server's own runtime, as the binary has: the test's runtime
    /// (often one thread) neither slows it down nor blocks it when a test
    /// makes a blocking call.
    runtime: Option<Runtime>,
}

impl Server {
    /// Starts herald configured by command-line `flags`, exactly as the
    /// binary would read them (`&["--max-body", "1000"]`), on
    /// `127.0.0.1:0`. Panics if the flags do not make a valid
    /// configuration or the engine cannot start.
    pub async fn start(flags: &[&str]) -> Server {
        Self::with_config(flags_config(flags)).await
    }

    /// Starts herald with `config`, on the addresses it names (use
    /// `127.0.0.1:0` for ephemeral ports).
    pub async fn with_config(config: Config) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("herald-server")
            .enable_all()
            .build()
            .expect("a runtime for the server");
        let (stop, stopped) = oneshot::channel::<()>();
        let started = runtime.spawn({
            let config = config.clone();
            async move {
                let public = bind(config.public_addr).await;
                let internal = bind(config.internal_addr).await;
                let endpoints = Endpoints {
                    public: public.local_addr().expect("public address"),
                    internal: internal.local_addr().expect("internal address"),
                };
                let herald = herald(config).await;
                let stopped = async move {
                    let _ = stopped.await;
                };
                let task = tokio::spawn(herald_server::run(
                    herald.clone(),
                    public,
                    internal,
                    stopped,
                ));
                (endpoints, herald, task)
            }
        });
        let (endpoints, herald, task) = started.await.expect("the server started");
        Server {
            endpoints,
            config,
            herald,
            stop: Some(stop),
            task: Some(task),
            runtime: Some(runtime),
        }
    }

    /// The embedded gateway (its bus, its configuration).
    pub fn herald(&self) -> &Herald {
        &self.herald
    }

    /// Stops accepting and drains (long polls answer, streams end,
    /// WebSockets close with 1001), bounded by the configured drain time;
    /// answers what `run` returned. Idempotent.
    pub async fn stop(&mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("the server task panicked"),
            None => Ok(()),
        }
    }

    /// Stops (draining) and starts a new herald with the same
    /// configuration on the same ports, as an operator's restart would. A
    /// memory engine starts empty; a Redis engine finds its data.
    pub async fn restart(&mut self) {
        self.stop().await.expect("a clean stop");
        let mut config = self.config.clone();
        config.public_addr = self.endpoints.public;
        config.internal_addr = self.endpoints.internal;
        let fresh = Server::with_config(config).await;
        let old = std::mem::replace(self, fresh);
        drop(old);
    }
}

/// The one place the kit builds a gateway from a configuration: the
/// engine the configuration names, exactly as the binary gets it.
async fn herald(config: Config) -> Herald {
    Herald::connect(config)
        .await
        .unwrap_or_else(|e| panic!("herald cannot start: {e}"))
}

async fn bind(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"))
}

impl Deref for Server {
    type Target = Endpoints;

    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.herald.shutdown();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Flags to a [`Config`] through the server's own parser, after ephemeral
/// listener addresses, so a test names options exactly as an operator
/// does. Panics with the parser's message when they are not valid.
fn flags_config(flags: &[&str]) -> Config {
    let argv = ["herald", "--public-addr", "127.0.0.1:0"]
        .into_iter()
        .chain(["--internal-addr", "127.0.0.1:0"])
        .chain(flags.iter().copied());
    Args::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("bad flags {flags:?}: {e}"))
        .resolve()
        .unwrap_or_else(|e| panic!("bad configuration {flags:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;

    /// The status of a poll on four channels (over a limit of three).
    async fn four_channels(s: &Server) -> u16 {
        let res = client().get(s.url("/poll/a,b,c,d")).send().await.unwrap();
        res.status().as_u16()
    }

    #[tokio::test]
    async fn flags_reach_the_config_and_a_restart_keeps_the_ports() {
        let mut s = Server::start(&["--max-channels", "3"]).await;
        assert_eq!(four_channels(&s).await, 400);
        let before = *s;
        s.publish("c", "1").await;
        s.restart().await;
        assert_eq!(*s, before, "same ports after a restart");
        assert_eq!(four_channels(&s).await, 400, "same configuration");
        // A memory engine starts empty, and the new server answers.
        assert_eq!(s.subscribers("c").await, 0);
        assert!(s.stop().await.is_ok());
        assert!(s.stop().await.is_ok(), "stop is idempotent");
    }
}
