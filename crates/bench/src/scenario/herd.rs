//! Herd: N long polls held on one channel, one publish, and the time until
//! every one of them has answered.
//!
//! Measures the herd time (publish to the last answer), the distribution
//! of answer latencies, and how many never answered (lost). The transport
//! is long polling whatever the common settings say; a poll whose hold
//! expires before the publish is simply asked again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::{Common, Measure, Ready, Shards, channel_names, open, report};
use crate::{Error, Latency, Publisher, Report, Transport, payload::now_us, subscriber};

/// Herd settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Held polls (`subscribers`), target. `transport` is forced to
    /// long polling and `channels` to 1.
    pub common: Common,
    /// Longest wait for every poll to answer.
    pub timeout: Duration,
}

impl Config {
    /// 30 s to answer.
    pub fn new(common: Common) -> Config {
        Config {
            common,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Runs a herd. Fails when the polls cannot be set up or the publish
/// fails; polls that never answer are counted lost.
pub async fn run(cfg: &Config) -> Result<Report, Error> {
    let mut c = cfg.common.clone();
    c.transport = Transport::Longpoll;
    c.channels = 1;
    c.target.supports(c.transport)?;
    let channels = channel_names(1);
    let stop = CancellationToken::new();
    let ready = Arc::new(Ready::default());
    let requests = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Shards::new());
    let mut set = open(
        &c,
        &channels,
        c.subscribers,
        0,
        &ready,
        &requests,
        |i, spec, mut gate| {
            let (stop, answered, hist) = (stop.clone(), answered.clone(), hist.clone());
            async move {
                let mut at = 0;
                let r = subscriber::run(
                    &spec,
                    || gate.up(),
                    &stop,
                    |_, sent| {
                        at = now_us();
                        hist.record(i, at.saturating_sub(sent));
                        answered.fetch_add(1, Ordering::SeqCst);
                        false
                    },
                )
                .await;
                if let Err(e) = &r {
                    gate.failed(e);
                }
                at
            }
        },
    )
    .await;
    ready.wait(c.subscribers, c.ready_timeout).await?;
    tokio::time::sleep(c.settle).await;

    let measure = Measure::start(&c.probe);
    let mut publisher = Publisher::open(c.target).await?;
    let t0 = now_us();
    publisher.publish(&channels[0], 0, 1).await?;
    let mut last = t0;
    let _ = tokio::time::timeout(cfg.timeout, async {
        while let Some(done) = set.join_next().await {
            last = last.max(done.expect("poll task"));
        }
    })
    .await;
    stop.cancel();
    set.shutdown().await;
    let n = answered.load(Ordering::SeqCst);
    let mut r = report("herd", &c);
    measure.finish(&mut r, n).await;
    r.published = 1;
    r.counts.received = n;
    r.counts.lost = c.subscribers as u64 - n.min(c.subscribers as u64);
    r.errors = ready.errors();
    r.secs = (last - t0) as f64 / 1e6;
    r.herd_ms = Some((last - t0) as f64 / 1e3);
    r.msgs_per_s = n as f64 / r.secs.max(1e-6);
    r.latency_us = Latency::of(&hist.merged());
    r.ok = n == c.subscribers as u64 && r.errors == 0;
    Ok(r)
}
