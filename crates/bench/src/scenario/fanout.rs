//! Fan-out: N subscribers on C channels, P publishers posting 100-byte
//! messages round-robin over the channels, at a fixed rate or as fast as
//! delivery keeps up, for a fixed time (and at most a fixed count).
//!
//! Measures delivered messages per second (summed over subscribers, from
//! the first publish to the last delivery), publish→receive latency of
//! every delivery, the delivery check (lost, duplicated, out of order: all
//! must be 0), server CPU per million deliveries and peak memory. "As fast
//! as delivery keeps up" means a window: a publisher's message k goes out
//! once every delivery of its message k − window has arrived (or after a
//! 1 s stall, which then shows as loss or latency). Polling transports also
//! report requests per second, which at a low rate is the cost of asking
//! when nothing changed.
//!
//! One publisher is one keep-alive connection posting one request at a
//! time. With many channels of few subscribers each (per-user
//! notifications), a message costs the server little more than its
//! publish, and one such connection cannot keep it busy; so `publishers`
//! connections post side by side, publisher j owning the channels
//! c ≡ j (mod P), which keeps every channel's messages in order. Message m
//! over all publishers is due at m / rate, so P = 1 and P > 1 publish the
//! same sequence at the same times.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Common, Measure, Ready, Shards, channel_names, open, report};
use crate::{Counts, Error, Latency, Publisher, Report, Tracker, payload::now_us, subscriber};

/// Fan-out settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Subscribers, channels, target.
    pub common: Common,
    /// Messages per second over all channels; 0 = as fast as delivery
    /// keeps up (see `window`).
    pub rate: f64,
    /// Publishing time.
    pub duration: Duration,
    /// Most messages published.
    pub max_messages: u64,
    /// Longest wait for the last deliveries after publishing stops.
    pub drain: Duration,
    /// Messages of one publisher whose deliveries may be outstanding when
    /// `rate` is 0.
    pub window: usize,
    /// Publishers, each on its own connection and its own share of the
    /// channels (at most one per channel).
    pub publishers: usize,
}

impl Config {
    /// 10 s at 100 msg/s, at most 1,000,000 messages, 5 s drain, window 8,
    /// one publisher.
    pub fn new(common: Common) -> Config {
        Config {
            common,
            rate: 100.0,
            duration: Duration::from_secs(10),
            max_messages: 1_000_000,
            drain: Duration::from_secs(5),
            window: 8,
            publishers: 1,
        }
    }

    /// Publishers that publish: at least one, at most one per channel.
    pub fn publishers(&self) -> usize {
        self.publishers.clamp(1, self.common.channels.max(1))
    }

    /// What tells runs of a fan-out apart besides transport, subscribers
    /// and channels: the rate (or `max`) and, when more than one, the
    /// publishers.
    pub fn variant(&self) -> String {
        let rate = if self.rate > 0.0 {
            format!("{} msg/s", self.rate)
        } else {
            "max".into()
        };
        match self.publishers() {
            1 => rate,
            p => format!("{rate}, {p} publishers"),
        }
    }
}

/// Deliveries so far, and a wake-up when they reach a mark.
#[derive(Default)]
struct Progress {
    deliveries: AtomicU64,
    wake_at: AtomicU64,
    notify: Notify,
}

impl Progress {
    fn delivered(&self) {
        let d = self.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
        if d == self.wake_at.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    /// Waits until `mark` deliveries arrived; false after `limit`.
    async fn reach(&self, mark: u64, limit: Duration) -> bool {
        self.wake_at.store(mark, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        while self.deliveries.load(Ordering::SeqCst) < mark {
            if tokio::time::timeout_at(deadline, self.notify.notified())
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

/// Runs a fan-out. Fails when subscribers cannot be set up in time or a
/// publisher fails; subscriber failures during the run are counted.
pub async fn run(cfg: &Config) -> Result<Report, Error> {
    let c = &cfg.common;
    c.target.supports(c.transport)?;
    let channels = channel_names(c.channels);
    let nch = channels.len();
    let per_channel: Vec<u64> = (0..nch)
        .map(|ch| (c.subscribers + nch - 1 - ch) as u64 / nch as u64)
        .collect();
    let npub = cfg.publishers();
    let stop = CancellationToken::new();
    let ready = Arc::new(Ready::default());
    let requests = Arc::new(AtomicU64::new(0));
    // One per publisher: a subscriber of channel ch reports to ch % P.
    let progress: Arc<Vec<Progress>> = Arc::new((0..npub).map(|_| Progress::default()).collect());
    let hist = Arc::new(Shards::new());
    let mut set = open(
        c,
        &channels,
        c.subscribers,
        0,
        &ready,
        &requests,
        |i, spec, mut gate| {
            let (stop, progress, hist) = (stop.clone(), progress.clone(), hist.clone());
            async move {
                let ch = i % nch;
                let mut t = Tracker::new();
                let mut last = 0;
                let r = subscriber::run(
                    &spec,
                    || gate.up(),
                    &stop,
                    |seq, sent| {
                        let now = now_us();
                        t.record(seq);
                        hist.record(i, now.saturating_sub(sent));
                        last = now;
                        progress[ch % npub].delivered();
                        true
                    },
                )
                .await;
                if let Err(e) = &r {
                    gate.failed(e);
                }
                (ch, t, last)
            }
        },
    )
    .await;
    ready.wait(c.subscribers, c.ready_timeout).await?;
    tokio::time::sleep(c.settle).await;

    let measure = Measure::start(&c.probe);
    let requests0 = requests.load(Ordering::Relaxed);
    let mut publishers = Vec::with_capacity(npub);
    for _ in 0..npub {
        publishers.push(Publisher::open(c.target).await?);
    }
    let t0 = Instant::now();
    let t0_us = now_us();
    let shares = publishers
        .into_iter()
        .enumerate()
        .map(|(j, publisher)| Share {
            j,
            publisher,
            channels: (j..nch).step_by(npub).collect(),
            progress: &progress[j],
        });
    let done = futures::future::try_join_all(
        shares.map(|s| s.run(cfg, &channels, &per_channel, npub, t0)),
    )
    .await?;
    let publish_secs = t0.elapsed().as_secs_f64();
    let mut published = vec![0u64; nch];
    let mut drains = Vec::with_capacity(npub);
    for (j, (counts, expected)) in done.into_iter().enumerate() {
        for (ch, n) in counts {
            published[ch] = n;
        }
        drains.push(progress[j].reach(expected, cfg.drain));
    }
    futures::future::join_all(drains).await;
    let polls = requests.load(Ordering::Relaxed) - requests0;
    let mut r = report("fanout", c);
    let delivered = progress
        .iter()
        .map(|p| p.deliveries.load(Ordering::SeqCst))
        .sum::<u64>();
    measure.finish(&mut r, delivered).await;
    stop.cancel();

    let (mut counts, mut last) = (Counts::default(), t0_us);
    while let Some(done) = set.join_next().await {
        let (ch, t, l) = done.expect("subscriber task");
        counts.add(&t.finish(published[ch]));
        last = last.max(l);
    }
    let secs = ((last - t0_us) as f64 / 1e6).max(publish_secs).max(1e-6);
    r.variant = cfg.variant();
    r.secs = secs;
    r.published = published.iter().sum();
    r.counts = counts;
    r.msgs_per_s = counts.received as f64 / secs;
    r.errors = ready.errors();
    r.latency_us = Latency::of(&hist.merged());
    if matches!(
        c.transport,
        crate::Transport::Poll | crate::Transport::Longpoll
    ) {
        r.requests_per_s = Some(polls as f64 / secs);
    }
    r.ok = counts.clean() && r.errors == 0 && r.published > 0;
    Ok(r)
}

/// One publisher and the channels it owns.
struct Share<'a> {
    /// Its index: its k-th message is message k·P + j over all publishers.
    j: usize,
    publisher: Publisher,
    /// The channels it publishes to, round-robin.
    channels: Vec<usize>,
    /// Deliveries of its messages.
    progress: &'a Progress,
}

impl Share<'_> {
    /// Publishes until the duration or the message cap is reached; answers
    /// the messages published per channel, and the deliveries they should
    /// make.
    async fn run(
        mut self,
        cfg: &Config,
        names: &[Arc<str>],
        per_channel: &[u64],
        npub: usize,
        t0: Instant,
    ) -> Result<(Vec<(usize, u64)>, u64), Error> {
        let mut published = vec![0u64; self.channels.len()];
        let (mut expected, mut outstanding) = (0u64, VecDeque::new());
        for k in 0.. {
            let m = k * npub as u64 + self.j as u64;
            if m >= cfg.max_messages || t0.elapsed() >= cfg.duration {
                break;
            }
            if cfg.rate > 0.0 {
                let at = t0 + Duration::from_secs_f64(m as f64 / cfg.rate);
                tokio::time::sleep_until(at.into()).await;
            } else if outstanding.len() >= cfg.window.max(1) {
                let mark = outstanding.pop_front().expect("non-empty");
                self.progress.reach(mark, Duration::from_secs(1)).await;
            }
            let i = k as usize % self.channels.len();
            let ch = self.channels[i];
            self.publisher.publish(&names[ch], published[i], 1).await?;
            published[i] += 1;
            expected += per_channel[ch];
            outstanding.push_back(expected);
        }
        Ok((self.channels.into_iter().zip(published).collect(), expected))
    }
}
