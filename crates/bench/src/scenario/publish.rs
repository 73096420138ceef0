//! Publish: how many publish requests per second the gateway takes, one
//! message per request or a batch, with no subscribers or with M of them
//! checking every delivery.
//!
//! `concurrency` publishers each post back to back on their own keep-alive
//! connection and their own channel (so that each channel's order is one
//! publisher's order, and subscribers can check it), for a fixed time.
//! Measures requests and messages per second, the request round trip
//! (p50/p99/max), server CPU per million messages, and, with subscribers,
//! the delivery check.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Common, Measure, Ready, Shards, channel_names, open, report};
use crate::{Counts, Error, Latency, Publisher, Report, Tracker, payload::now_us, subscriber};

/// Publish settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Subscribers (0 for none) and their transport, target. `channels` is
    /// set to `concurrency`.
    pub common: Common,
    /// Messages per request; 1 posts to the single-message endpoint.
    pub batch: usize,
    /// Publishers posting at once.
    pub concurrency: usize,
    /// Publishing time.
    pub duration: Duration,
    /// Longest wait for the last deliveries.
    pub drain: Duration,
}

impl Config {
    /// Single messages, 4 publishers, 10 s, 5 s drain.
    pub fn new(common: Common) -> Config {
        Config {
            common,
            batch: 1,
            concurrency: 4,
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(5),
        }
    }
}

/// Runs the publish scenario. Fails when subscribers cannot be set up or a
/// publisher fails.
pub async fn run(cfg: &Config) -> Result<Report, Error> {
    let mut c = cfg.common.clone();
    c.channels = cfg.concurrency.max(1);
    if cfg.batch > 1 {
        c.target.supports_batch()?;
    }
    if c.subscribers > 0 {
        c.target.supports(c.transport)?;
    }
    let channels = channel_names(c.channels);
    let stop = CancellationToken::new();
    let ready = Arc::new(Ready::default());
    let requests = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let nch = channels.len();
    let mut subs = open(
        &c,
        &channels,
        c.subscribers,
        0,
        &ready,
        &requests,
        |i, spec, mut gate| {
            let (stop, delivered) = (stop.clone(), delivered.clone());
            async move {
                let mut t = Tracker::new();
                let r = subscriber::run(
                    &spec,
                    || gate.up(),
                    &stop,
                    |seq, _| {
                        t.record(seq);
                        delivered.fetch_add(1, Ordering::Relaxed);
                        true
                    },
                )
                .await;
                if let Err(e) = &r {
                    gate.failed(e);
                }
                (i % nch, t)
            }
        },
    )
    .await;
    ready.wait(c.subscribers, c.ready_timeout).await?;
    if c.subscribers > 0 {
        tokio::time::sleep(c.settle).await;
    }

    let measure = Measure::start(&c.probe);
    let hist = Arc::new(Shards::new());
    let mut pubs = JoinSet::new();
    let t0 = Instant::now();
    for (p, ch) in channels.iter().enumerate() {
        let (ch, hist, target) = (ch.clone(), hist.clone(), c.target);
        let (batch, until) = (cfg.batch.max(1), t0 + cfg.duration);
        pubs.spawn(async move {
            let mut publisher = Publisher::open(target).await?;
            let (mut seq, mut reqs) = (0u64, 0u64);
            while Instant::now() < until {
                let t = now_us();
                publisher.publish(&ch, seq, batch).await?;
                hist.record(p, now_us() - t);
                seq += batch as u64;
                reqs += 1;
            }
            Ok::<_, Error>((p, seq, reqs))
        });
    }
    let (mut published, mut reqs) = (vec![0u64; nch], 0);
    while let Some(done) = pubs.join_next().await {
        let (p, seq, n) = done.expect("publisher task")?;
        published[p] = seq;
        reqs += n;
    }
    let secs = t0.elapsed().as_secs_f64();
    let total: u64 = published.iter().sum();
    let mut r = report("publish", &c);
    measure.finish(&mut r, total).await;

    let per_channel = |ch: usize| (c.subscribers + nch - 1 - ch) as u64 / nch as u64;
    let expected: u64 = (0..nch).map(|ch| published[ch] * per_channel(ch)).sum();
    let deadline = Instant::now() + cfg.drain;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let mut counts = Counts::default();
    while let Some(done) = subs.join_next().await {
        let (ch, t) = done.expect("subscriber task");
        counts.add(&t.finish(published[ch]));
    }
    if c.subscribers == 0 {
        r.transport = "-".into();
    }
    r.variant = format!("batch {} x{}", cfg.batch.max(1), nch);
    r.secs = secs;
    r.published = total;
    r.counts = counts;
    r.msgs_per_s = total as f64 / secs;
    r.requests_per_s = Some(reqs as f64 / secs);
    r.errors = ready.errors();
    r.latency_us = Latency::of(&hist.merged());
    r.ok = counts.clean() && r.errors == 0 && total > 0;
    Ok(r)
}
