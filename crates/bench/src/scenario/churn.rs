//! Churn: subscribers that connect, receive a few messages and disconnect,
//! over and over, while a publisher keeps messages flowing. A leak check,
//! not a speed test: server memory after the run must be back within 5 %
//! of its baseline.
//!
//! The run has two phases of the same load: a warm-up (allocator arenas,
//! history buffers and connection pools reach their steady size), then the
//! measured phase. Memory is read after each phase once every subscriber
//! has disconnected and a settle time has passed; growth is (after −
//! baseline) / baseline. Each session checks its own deliveries from the
//! first one it gets (it joins a running stream); sessions that fail or
//! get nothing count as errors.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Common, Shards, channel_names, report};
use crate::{Counts, Error, Latency, Publisher, Report, Tracker, payload::now_us, subscriber};

/// Churn settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent sessions (`subscribers`), channels, target.
    pub common: Common,
    /// Messages per second over all channels.
    pub rate: f64,
    /// Messages a session receives before it disconnects.
    pub per_session: u64,
    /// Measured phase.
    pub duration: Duration,
    /// Warm-up phase.
    pub warmup: Duration,
    /// Longest a session may wait for its messages.
    pub session_timeout: Duration,
    /// Largest memory growth that passes, percent.
    pub max_growth_pct: f64,
}

impl Config {
    /// 100 msg/s, 5 messages a session, 10 s after a 5 s warm-up, 5 %.
    pub fn new(common: Common) -> Config {
        Config {
            common,
            rate: 100.0,
            per_session: 5,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(5),
            session_timeout: Duration::from_secs(10),
            max_growth_pct: 5.0,
        }
    }
}

/// Totals of one phase.
#[derive(Default)]
struct Phase {
    counts: Counts,
    sessions: u64,
    errors: u64,
}

/// Runs churn. Fails when the publisher fails.
pub async fn run(cfg: &Config) -> Result<Report, Error> {
    let c = &cfg.common;
    c.target.supports(c.transport)?;
    let channels = channel_names(c.channels);
    let published = Arc::new(AtomicU64::new(0));
    let stop_pub = CancellationToken::new();
    let publisher = {
        let (channels, stop, published) = (channels.clone(), stop_pub.clone(), published.clone());
        let (target, rate) = (c.target, cfg.rate.max(0.1));
        tokio::spawn(async move {
            let mut p = Publisher::open(target).await?;
            let mut seq = vec![0u64; channels.len()];
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            for k in 0.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                let ch = k % channels.len();
                p.publish(&channels[ch], seq[ch], 1).await?;
                seq[ch] += 1;
                published.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Error>(())
        })
    };
    let hist = Arc::new(Shards::new());
    phase(cfg, &channels, &hist, cfg.warmup).await;
    tokio::time::sleep(c.settle).await;
    let baseline = c.probe.as_ref().map(|p| p.mem_kib());
    let cpu0 = c.probe.as_ref().map(|p| p.cpu_secs());
    let sampler = c
        .probe
        .as_ref()
        .map(|p| p.sample(Duration::from_millis(100)));
    let hist = Arc::new(Shards::new());
    let t0 = Instant::now();
    let main = phase(cfg, &channels, &hist, cfg.duration).await;
    let secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(c.settle).await;
    let after = c.probe.as_ref().map(|p| p.mem_kib());
    let cpu = c.probe.as_ref().zip(cpu0).map(|(p, c0)| p.cpu_secs() - c0);
    stop_pub.cancel();
    publisher.await.expect("publisher task")?;

    let mut r = report("churn", c);
    r.variant = format!("{} msg/s, {} per session", cfg.rate, cfg.per_session);
    r.secs = secs;
    r.published = published.load(Ordering::Relaxed);
    r.counts = main.counts;
    r.msgs_per_s = main.counts.received as f64 / secs;
    r.requests_per_s = Some(main.sessions as f64 / secs);
    r.errors = main.errors;
    r.latency_us = Latency::of(&hist.merged());
    r.baseline_kib = baseline;
    r.after_kib = after;
    r.mem = c.probe.as_ref().map(|p| p.mem());
    if let Some(s) = sampler {
        r.peak_kib = Some(s.finish().await);
    }
    r.cpu_s = cpu;
    r.cpu_s_per_million = cpu.map(|c| c / main.counts.received.max(1) as f64 * 1e6);
    r.growth_pct = baseline
        .zip(after)
        .map(|(b, a)| (a as f64 - b as f64) / b.max(1) as f64 * 100.0);
    r.ok = main.counts.clean()
        && main.errors == 0
        && main.sessions > 0
        && r.growth_pct.is_none_or(|g| g <= cfg.max_growth_pct);
    Ok(r)
}

/// Runs `subscribers` session loops for `length`; answers their totals.
async fn phase(cfg: &Config, channels: &[Arc<str>], hist: &Arc<Shards>, length: Duration) -> Phase {
    let c = &cfg.common;
    let stop = CancellationToken::new();
    let requests = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for i in 0..c.subscribers {
        let spec = c.spec(i, channels[i % channels.len()].clone(), &requests);
        let (stop, hist) = (stop.clone(), hist.clone());
        let (k, limit) = (cfg.per_session.max(1), cfg.session_timeout);
        set.spawn(async move {
            let mut total = Phase::default();
            while !stop.is_cancelled() {
                let mut t = Tracker::joining();
                let mut got = 0;
                let session = subscriber::run(
                    &spec,
                    || (),
                    &stop,
                    |seq, sent| {
                        t.record(seq);
                        hist.record(i, now_us().saturating_sub(sent));
                        got += 1;
                        got < k
                    },
                );
                match tokio::time::timeout(limit, session).await {
                    // Cut short by the end of the phase: neither a
                    // completed session nor a failure.
                    _ if stop.is_cancelled() && got < k => {}
                    Ok(Ok(())) => total.sessions += 1,
                    _ => total.errors += 1,
                }
                total.counts.add(&t.counts);
            }
            total
        });
    }
    tokio::time::sleep(length).await;
    stop.cancel();
    let mut all = Phase::default();
    while let Some(done) = set.join_next().await {
        let p = done.expect("session task");
        all.counts.add(&p.counts);
        all.sessions += p.sessions;
        all.errors += p.errors;
    }
    all
}
