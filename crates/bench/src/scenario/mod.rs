//! The six scenarios, each a library function from a config to a
//! [`Report`](crate::Report), plus what they share: the common settings,
//! opening a crowd of subscribers at a bounded pace, waiting until they are
//! in place, and latency histograms that many subscriber tasks write to.
//!
//! Scenario files own their sequence of steps and their checks; none of
//! them parses options or prints (that is the CLI's job).

pub mod churn;
pub mod fanout;
pub mod herd;
pub mod idle;
pub mod publish;
pub mod storm;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

use crate::{Error, Probe, Target, Transport, net, subscriber::Spec};

/// Settings every scenario shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// The gateway.
    pub target: Target,
    /// More subscriber addresses (other instances of the gateway):
    /// subscriber `i` connects to `target.sub` when `i % (n + 1)` is 0, else
    /// to `also_sub[i % (n + 1) - 1]`.
    pub also_sub: Vec<SocketAddr>,
    /// Subscriber transport.
    pub transport: Transport,
    /// Subscribers (connections), in total.
    pub subscribers: usize,
    /// Channels the subscribers are spread over (subscriber `i` on channel
    /// `i % channels`).
    pub channels: usize,
    /// Wait after every subscriber is in place, before measuring: lets the
    /// gateway finish registering (Pushpin asks its origin again about 1 s
    /// after a channel's first subscriber).
    pub settle: Duration,
    /// New connections per second; 0 = as fast as `connecting` allows.
    pub ramp: f64,
    /// Connections being set up at once.
    pub connecting: usize,
    /// Source addresses to spread connections over (`127.0.0.1..`).
    pub spread: usize,
    /// Short polling: wait between polls that found nothing.
    pub poll_interval: Duration,
    /// Long polling: hold asked of herald, seconds.
    pub hold_secs: u64,
    /// Longest wait for the subscribers to be in place.
    pub ready_timeout: Duration,
    /// The server's process tree, for CPU and memory; `None` measures
    /// neither.
    pub probe: Option<Probe>,
}

impl Common {
    /// Defaults for `target` and `transport`: 100 subscribers on one
    /// channel, 1 s settle, no ramp, 16 source addresses.
    pub fn new(target: Target, transport: Transport) -> Common {
        Common {
            target,
            also_sub: Vec::new(),
            transport,
            subscribers: 100,
            channels: 1,
            settle: Duration::from_secs(1),
            ramp: 0.0,
            connecting: 256,
            spread: 16,
            poll_interval: Duration::from_millis(100),
            hold_secs: 30,
            ready_timeout: Duration::from_secs(60),
            probe: None,
        }
    }

    /// The spec of subscriber `i` (global index, for the source address).
    pub(crate) fn spec(&self, i: usize, channel: Arc<str>, requests: &Arc<AtomicU64>) -> Spec {
        let mut target = self.target;
        if let Some(k) = (i % (self.also_sub.len() + 1)).checked_sub(1) {
            target.sub = self.also_sub[k];
        }
        Spec {
            target,
            transport: self.transport,
            channel,
            from: net::source(target.sub, i, self.spread),
            poll_interval: self.poll_interval,
            hold_secs: self.hold_secs,
            requests: Some(requests.clone()),
        }
    }
}

/// Fresh channel names for one run, so that runs never see each other's
/// messages, even runs at the same moment in one process:
/// `hb<pid>x<time>x<run>-<n>`.
pub fn channel_names(n: usize) -> Vec<Arc<str>> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = format!(
        "hb{}x{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 1_000_000_000),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    named(&run, n)
}

/// Channel names `<prefix>-0 .. <prefix>-<n-1>`.
pub fn named(prefix: &str, n: usize) -> Vec<Arc<str>> {
    (0..n.max(1))
        .map(|c| format!("{prefix}-{c}").into())
        .collect()
}

/// How many subscribers are in place, and how many failed.
#[derive(Default)]
pub(crate) struct Ready {
    ready: AtomicU64,
    errors: AtomicU64,
    notify: Notify,
    /// The first subscriber error, to explain a run where none subscribed.
    first_error: Mutex<Option<String>>,
}

impl Ready {
    pub(crate) fn up(&self) {
        self.ready.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub(crate) fn failed(&self, e: &Error) {
        self.first_error
            .lock()
            .expect("never poisoned")
            .get_or_insert_with(|| e.to_string());
        self.errors.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub(crate) fn ready(&self) -> u64 {
        self.ready.load(Ordering::SeqCst)
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }

    /// Waits until `n` subscribers are in place or failed, at most `limit`.
    /// Fails when that takes longer, or when every one of them failed (the
    /// gateway refuses the transport: measuring it would say nothing).
    pub(crate) async fn wait(&self, n: usize, limit: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.ready() + self.errors() < n as u64 {
            if tokio::time::timeout_at(deadline, self.notify.notified())
                .await
                .is_err()
            {
                return Err(Error::Timeout(format!(
                    "{} of {n} subscribers in place after {limit:?} ({} failed)",
                    self.ready(),
                    self.errors()
                )));
            }
        }
        if n > 0 && self.ready() == 0 {
            let first = self.first_error.lock().expect("never poisoned").clone();
            return Err(Error::NoSubscriber(first.unwrap_or_default()));
        }
        Ok(())
    }
}

/// Opens `n` subscribers: `task(i, spec, ready)` runs each, and is started
/// at the configured ramp with at most `connecting` set-ups at once (the
/// permit is released by calling the `ready` closure the task receives, or
/// when the task ends). `first` offsets the global index (source addresses
/// of another process's share).
pub(crate) async fn open<R, F, Fut>(
    common: &Common,
    channels: &[Arc<str>],
    n: usize,
    first: usize,
    ready: &Arc<Ready>,
    requests: &Arc<AtomicU64>,
    task: F,
) -> JoinSet<R>
where
    F: Fn(usize, Spec, Gate) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let mut set = JoinSet::new();
    let gate = Arc::new(Semaphore::new(common.connecting.max(1)));
    let mut tick = (common.ramp > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / common.ramp));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    for i in 0..n {
        if let Some(t) = &mut tick {
            t.tick().await;
        }
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        let channel = channels[i % channels.len()].clone();
        let spec = common.spec(first + i, channel, requests);
        let g = Gate {
            permit: Some(permit),
            ready: ready.clone(),
        };
        set.spawn(task(i, spec, g));
    }
    set
}

/// A subscriber's slot in the set-up: `up()` once subscribed releases it.
pub(crate) struct Gate {
    permit: Option<OwnedSemaphorePermit>,
    ready: Arc<Ready>,
}

impl Gate {
    /// The subscriber is in place.
    pub(crate) fn up(&mut self) {
        if self.permit.take().is_some() {
            self.ready.up();
        }
    }

    /// The subscriber failed with `e` (before or after it was in place).
    pub(crate) fn failed(&mut self, e: &Error) {
        self.permit.take();
        self.ready.failed(e);
    }
}

/// Latency histograms (µs) sharded by subscriber, so that thousands of
/// tasks record without contending on one lock.
pub(crate) struct Shards(Vec<Mutex<Histogram<u64>>>);

impl Shards {
    pub(crate) fn new() -> Shards {
        Shards(
            (0..32)
                .map(|_| Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")))
                .collect(),
        )
    }

    pub(crate) fn record(&self, i: usize, us: u64) {
        let mut h = self.0[i % self.0.len()].lock().expect("never poisoned");
        h.saturating_record(us.max(1));
    }

    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds");
        for h in &self.0 {
            all.add(&*h.lock().expect("never poisoned"))
                .expect("same bounds");
        }
        all
    }
}

/// CPU and memory over a measured interval: the server's, and the load
/// generator's own CPU (this process and its workers), which shows whether
/// the client rather than the server set the pace.
pub(crate) struct Measure {
    probe: Option<(Probe, f64, crate::Sampler)>,
    client: Option<(Probe, f64)>,
    t0: std::time::Instant,
}

impl Measure {
    pub(crate) fn start(probe: &Option<Probe>) -> Measure {
        let client = Probe::new(vec![std::process::id()], crate::Mem::Rss).map(|p| {
            let cpu = p.cpu_secs();
            (p, cpu)
        });
        Measure {
            probe: probe.as_ref().map(|p| {
                (
                    p.clone(),
                    p.cpu_secs(),
                    p.sample(Duration::from_millis(100)),
                )
            }),
            client,
            t0: std::time::Instant::now(),
        }
    }

    /// Fills the report's CPU and memory; `per` is what CPU is counted per
    /// million of.
    pub(crate) async fn finish(self, report: &mut crate::Report, per: u64) {
        let wall = self.t0.elapsed().as_secs_f64();
        if let Some((p, cpu0)) = self.client {
            let cpu = p.cpu_secs() - cpu0;
            report.client_cpu_s = Some(cpu);
            report.client_cpu_pct = (wall > 0.0).then(|| cpu / wall * 100.0);
        }
        if let Some((p, cpu0, sampler)) = self.probe {
            let cpu = p.cpu_secs() - cpu0;
            report.cpu_s = Some(cpu);
            report.cpu_s_per_million = (per > 0).then(|| cpu / per as f64 * 1e6);
            report.peak_kib = Some(sampler.finish().await);
            report.mem = Some(p.mem());
        }
    }
}

/// A report with the common fields of `common` filled in.
pub(crate) fn report(scenario: &str, common: &Common) -> crate::Report {
    crate::Report {
        scenario: scenario.into(),
        system: common.target.system.to_string(),
        transport: common.transport.to_string(),
        subscribers: common.subscribers,
        channels: common.channels.max(1),
        ..crate::Report::default()
    }
}
