//! Fan-out: N subscribers on C channels, one publisher posting 100-byte
//! messages round-robin over the channels, at a fixed rate or as fast as
//! delivery keeps up, for a fixed time (and at most a fixed count).
//!
//! Measures delivered messages per second (summed over subscribers, from
//! the first publish to the last delivery), publish→receive latency, the
//! delivery check (lost, duplicated, out of order: all must be 0), server
//! CPU per million deliveries and peak memory. "As fast as delivery keeps
//! up" means a window: message k goes out once every delivery of message
//! k − window has arrived (or after a 1 s stall, which then shows as loss
//! or latency). Polling transports also report requests per second, which
//! at a low rate is the cost of asking when nothing changed.

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
    /// Messages whose deliveries may be outstanding when `rate` is 0.
    pub window: usize,
}

impl Config {
    /// 10 s at 100 msg/s, at most 1,000,000 messages, 5 s drain, window 8.
    pub fn new(common: Common) -> Config {
        Config {
            common,
            rate: 100.0,
            duration: Duration::from_secs(10),
            max_messages: 1_000_000,
            drain: Duration::from_secs(5),
            window: 8,
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

/// Runs a fan-out. Fails when subscribers cannot be set up in time or the
/// publisher fails; subscriber failures during the run are counted.
pub async fn run(cfg: &Config) -> Result<Report, Error> {
    let c = &cfg.common;
    c.target.supports(c.transport)?;
    let channels = channel_names(c.channels);
    let per_channel: Vec<u64> = (0..channels.len())
        .map(|ch| (c.subscribers + channels.len() - 1 - ch) as u64 / channels.len() as u64)
        .collect();
    let stop = CancellationToken::new();
    let ready = Arc::new(Ready::default());
    let requests = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Progress::default());
    let hist = Arc::new(Shards::new());
    let nch = channels.len();
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
                        progress.delivered();
                        true
                    },
                )
                .await;
                if let Err(e) = &r {
                    gate.failed(e);
                }
                (i % nch, t, last)
            }
        },
    )
    .await;
    ready.wait(c.subscribers, c.ready_timeout).await?;
    tokio::time::sleep(c.settle).await;

    let measure = Measure::start(&c.probe);
    let requests0 = requests.load(Ordering::Relaxed);
    let mut publisher = Publisher::open(c.target).await?;
    let mut published = vec![0u64; nch];
    let (mut expected, mut outstanding) = (0u64, VecDeque::new());
    let t0 = Instant::now();
    let t0_us = now_us();
    for k in 0..cfg.max_messages {
        if t0.elapsed() >= cfg.duration {
            break;
        }
        if cfg.rate > 0.0 {
            let at = t0 + Duration::from_secs_f64(k as f64 / cfg.rate);
            tokio::time::sleep_until(at.into()).await;
        } else if outstanding.len() >= cfg.window.max(1) {
            let mark = outstanding.pop_front().expect("non-empty");
            progress.reach(mark, Duration::from_secs(1)).await;
        }
        let ch = k as usize % nch;
        publisher.publish(&channels[ch], published[ch], 1).await?;
        published[ch] += 1;
        expected += per_channel[ch];
        outstanding.push_back(expected);
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    progress.reach(expected, cfg.drain).await;
    let polls = requests.load(Ordering::Relaxed) - requests0;
    let mut r = report("fanout", c);
    measure
        .finish(&mut r, progress.deliveries.load(Ordering::SeqCst))
        .await;
    stop.cancel();

    let (mut counts, mut last) = (Counts::default(), t0_us);
    while let Some(done) = set.join_next().await {
        let (ch, t, l) = done.expect("subscriber task");
        counts.add(&t.finish(published[ch]));
        last = last.max(l);
    }
    let secs = ((last - t0_us) as f64 / 1e6).max(publish_secs).max(1e-6);
    r.variant = if cfg.rate > 0.0 {
        format!("{} msg/s", cfg.rate)
    } else {
        "max".into()
    };
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
