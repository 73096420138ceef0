//! Idle: N subscriptions that receive nothing, to measure what each costs
//! the server while it waits, then one message to prove every one of them
//! was still alive.
//!
//! Server memory is read before the first connection (baseline) and after
//! all are in place and a settle time has passed (loaded); the figure is
//! (loaded − baseline) / N. One process may hold only so many sockets (the
//! open-file hard limit, 20,000 on the machines this runs on), so shares
//! beyond `per_process` go to worker processes (this binary's hidden
//! `idle-worker` command) that open their share, say `ready`, wait for
//! `go`, and report how many of their connections received the message.
//! Connections spread over 127.0.0.x source addresses. No latency is
//! measured: the clocks of separate processes do not compare.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdout},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use super::{Common, Ready, open, report};
use crate::{Error, Publisher, Report, subscriber};

/// Idle settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections (`subscribers`), channels, target.
    pub common: Common,
    /// Connections one process holds at most; the rest go to workers.
    pub per_process: usize,
    /// Longest wait for the final message to reach every connection.
    pub timeout: Duration,
    /// The executable that runs `idle-worker` (this CLI). `None`: the
    /// current executable.
    pub worker_exe: Option<PathBuf>,
}

impl Config {
    /// 18,000 connections per process, 30 s for the final message.
    pub fn new(common: Common) -> Config {
        Config {
            common,
            per_process: 18_000,
            timeout: Duration::from_secs(30),
            worker_exe: None,
        }
    }
}

/// One process's share: connections that each wait for one message.
struct Share {
    ready: Arc<Ready>,
    received: Arc<AtomicU64>,
    stop: CancellationToken,
    set: JoinSet<()>,
    n: usize,
}

impl Share {
    async fn open(c: &Common, channels: &[Arc<str>], n: usize, first: usize) -> Share {
        let ready = Arc::new(Ready::default());
        let received = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let requests = Arc::new(AtomicU64::new(0));
        let set = open(
            c,
            channels,
            n,
            first,
            &ready,
            &requests,
            |_, spec, mut gate| {
                let (stop, received) = (stop.clone(), received.clone());
                async move {
                    let r = subscriber::run(
                        &spec,
                        || gate.up(),
                        &stop,
                        |_, _| {
                            received.fetch_add(1, Ordering::SeqCst);
                            false
                        },
                    )
                    .await;
                    if let Err(e) = &r {
                        gate.failed(e);
                    }
                }
            },
        )
        .await;
        Share {
            ready,
            received,
            stop,
            set,
            n,
        }
    }

    /// Waits until every connection received, at most `limit`; answers how
    /// many did.
    async fn received(mut self, limit: Duration) -> u64 {
        let _ = tokio::time::timeout(limit, async {
            while self.set.join_next().await.is_some() {}
        })
        .await;
        self.stop.cancel();
        self.set.shutdown().await;
        self.received.load(Ordering::SeqCst).min(self.n as u64)
    }
}

/// A worker process and its stdout.
struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn line(&mut self, word: &str) -> Result<Vec<u64>, Error> {
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or(Error::Protocol("an idle worker ended early"))?;
        let mut parts = line.split_whitespace();
        if parts.next() != Some(word) {
            return Err(Error::Protocol("an idle worker said something unexpected"));
        }
        Ok(parts.filter_map(|p| p.parse().ok()).collect())
    }
}

/// Runs the idle scenario. Fails when connections cannot be set up in time
/// or a worker misbehaves; connections that never receive are counted
/// lost.
pub async fn run(cfg: &Config) -> Result<Report, Error> {
    let c = &cfg.common;
    c.target.supports(c.transport)?;
    let channels = super::channel_names(c.channels);
    let baseline = c.probe.as_ref().map(|p| p.mem_kib());
    let n = c.subscribers;
    let per = cfg.per_process.max(1);
    let local_n = n.min(per);

    let mut workers = vec![];
    let mut first = local_n;
    while first < n {
        let share = (n - first).min(per);
        workers.push(spawn_worker(cfg, &channels, first, share)?);
        first += share;
    }
    let local = Share::open(c, &channels, local_n, 0).await;
    local.ready.wait(local_n, c.ready_timeout).await?;
    let (mut ready, mut errors) = (local.ready.ready(), local.ready.errors());
    for w in &mut workers {
        let v = w.line("ready").await?;
        ready += v.first().copied().unwrap_or(0);
        errors += v.get(1).copied().unwrap_or(0);
    }
    tokio::time::sleep(c.settle).await;
    let loaded = c.probe.as_ref().map(|p| p.mem_kib());

    let mut publisher = Publisher::open(c.target).await?;
    for w in &mut workers {
        let stdin = w.child.stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
    }
    for ch in &channels {
        publisher.publish(ch, 0, 1).await?;
    }
    let mut received = local.received(cfg.timeout).await;
    for w in &mut workers {
        received += w.line("received").await?.first().copied().unwrap_or(0);
        let _ = w.child.wait().await;
    }

    let mut r = report("idle", c);
    r.published = channels.len() as u64;
    r.counts.received = received;
    r.counts.lost = n as u64 - received.min(n as u64);
    r.errors = errors;
    r.baseline_kib = baseline;
    r.after_kib = loaded;
    r.mem = c.probe.as_ref().map(|p| p.mem());
    r.peak_kib = loaded;
    if let (Some(b), Some(l)) = (baseline, loaded) {
        r.bytes_per_conn = Some((l as f64 - b as f64) * 1024.0 / ready.max(1) as f64);
    }
    r.ok = ready == n as u64 && received == n as u64 && errors == 0;
    Ok(r)
}

fn spawn_worker(
    cfg: &Config,
    channels: &[Arc<str>],
    first: usize,
    share: usize,
) -> Result<Worker, Error> {
    let c = &cfg.common;
    let exe = match &cfg.worker_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let prefix = channels[0]
        .rsplit_once('-')
        .map_or(&*channels[0], |(p, _)| p)
        .to_string();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("idle-worker")
        .args(["--system", &c.target.system.to_string()])
        .args(["--sub", &c.target.sub.to_string()])
        .args(["--pub", &c.target.publish.to_string()])
        .args(["--transport", &c.transport.to_string()])
        .args(["--subscribers", &share.to_string()])
        .args(["--channels", &channels.len().to_string()])
        .args(["--prefix", &prefix])
        .args(["--first", &first.to_string()])
        .args(["--spread", &c.spread.to_string()])
        .args(["--ramp", &c.ramp.to_string()])
        .args(["--hold", &c.hold_secs.to_string()])
        .args(["--ready-timeout", &c.ready_timeout.as_secs().to_string()])
        .args(["--timeout", &cfg.timeout.as_secs().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    Ok(Worker {
        child,
        lines: BufReader::new(stdout).lines(),
    })
}

/// The worker side: opens `share` connections numbered from `first` on
/// channels `<prefix>-<n>`, prints `ready <ready> <failed>`, waits for `go`
/// on stdin, then prints `received <n>` once its connections received (or
/// `timeout` passed). Fails only when stdin or stdout do.
pub async fn worker(
    c: &Common,
    prefix: &str,
    first: usize,
    timeout: Duration,
) -> Result<(), Error> {
    let channels = super::named(prefix, c.channels);
    let share = Share::open(c, &channels, c.subscribers, first).await;
    let _ = share.ready.wait(c.subscribers, c.ready_timeout).await;
    let mut out = tokio::io::stdout();
    let line = format!("ready {} {}\n", share.ready.ready(), share.ready.errors());
    out.write_all(line.as_bytes()).await?;
    out.flush().await?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(l) = stdin.next_line().await? {
        if l.trim() == "go" {
            break;
        }
    }
    let received = share.received(timeout).await;
    out.write_all(format!("received {received}\n").as_bytes())
        .await?;
    out.flush().await?;
    Ok(())
}
