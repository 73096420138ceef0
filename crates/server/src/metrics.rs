//! `GET /metrics`: the Prometheus registry and what it reads at scrape time.
//!
//! The transports count into herald-http's [`Stats`] (relaxed atomics in
//! per-thread shards, nothing else on the delivery path); this module owns
//! the one [`Registry`] and turns those counts, the engine's channel count
//! and health, the publish counters and the process's own figures
//! (process.rs) into the Prometheus text format when scraped. Publishing is
//! counted here directly, around the engine's answer. What is left out:
//! pushing metrics anywhere, and any label carrying a channel name (their
//! number is unbounded).

mod engine;
mod process;

use std::time::Duration;

use herald_bus::{Bus, Health};
use herald_http::{Body, Code, Error, Stats, Transport, WS_CLOSE_LABELS};
use http::{HeaderValue, Response, header};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

pub(crate) use engine::Counted;

/// The registry and the metrics counted outside the transports.
pub(crate) struct Metrics {
    registry: Registry,
    published: Counter,
    publish_duration: Histogram,
}

impl Metrics {
    /// Metrics over the transports' `stats`, the `bus` and the engine's
    /// error counter (counted by [`Counted`], when the engine is wrapped).
    pub(crate) fn new(stats: Stats, bus: Bus, engine_errors: Counter) -> Self {
        let mut registry = Registry::default();
        let published = Counter::default();
        // 100 µs to about 6.5 s: a memory publish sits in the first
        // buckets, a Redis round trip in the middle ones.
        let publish_duration = Histogram::new(exponential_buckets(0.0001, 4.0, 9));
        registry.register(
            "herald_messages_published",
            "Messages stored through the publish endpoints",
            published.clone(),
        );
        registry.register(
            "herald_publish_duration_seconds",
            "Time the engine took to store one publish request (one message or one batch)",
            publish_duration.clone(),
        );
        registry.register(
            "herald_engine_errors",
            "Engine operations that failed (the store was unreachable)",
            engine_errors,
        );
        registry.register_collector(Box::new(Transports { stats, bus }));
        registry.register_collector(Box::new(process::Process));
        Metrics {
            registry,
            published,
            publish_duration,
        }
    }

    /// A publish request stored `messages` messages in `took`.
    pub(crate) fn published(&self, messages: usize, took: Duration) {
        self.published.inc_by(messages as u64);
        self.publish_duration.observe(took.as_secs_f64());
    }

    /// The scrape's answer, in the Prometheus text format.
    pub(crate) fn render(&self) -> Response<Body> {
        let mut text = String::with_capacity(8 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            return Error::new(Code::Internal, format!("cannot encode metrics: {e}"))
                .into_response();
        }
        let mut res = Response::new(herald_http::full(text));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
        );
        res
    }
}

/// Reads the transports' counts and the engine's state at scrape time.
struct Transports {
    stats: Stats,
    bus: Bus,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports").finish_non_exhaustive()
    }
}

impl Collector for Transports {
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.stats.snapshot();
        let gauges: [(&str, &str, [i64; 4]); 2] = [
            (
                "herald_connections",
                "Open subscriber sessions: SSE streams, WebSocket connections, long polls held (short polls are not sessions)",
                s.connections,
            ),
            (
                "herald_subscriptions",
                "Channels subscribed by open sessions (a session on three channels counts three)",
                s.subscriptions,
            ),
        ];
        for (name, help, values) in gauges {
            per_transport(
                &mut out,
                name,
                help,
                MetricType::Gauge,
                values.map(ConstGauge::new),
            )?;
        }
        let counters: [(&str, &str, [u64; 4]); 4] = [
            (
                "herald_deliveries",
                "Messages delivered to subscribers",
                s.deliveries,
            ),
            (
                "herald_bytes_sent",
                "Bytes of responses, events and frames handed to subscriber sockets",
                s.bytes,
            ),
            (
                "herald_gaps",
                "Gap notices sent: a subscriber was told it missed messages",
                s.gaps,
            ),
            (
                "herald_slow_closes",
                "Subscribers closed because they fell behind the retained history",
                s.slow_closes,
            ),
        ];
        for (name, help, values) in counters {
            let values = values.map(ConstCounter::new);
            per_transport(&mut out, name, help, MetricType::Counter, values)?;
        }
        let mut m = out.encode_descriptor(
            "herald_ws_closes",
            "WebSocket connections ended, by the close code herald sent (1006: no close frame; client: the client closed first)",
            None,
            MetricType::Counter,
        )?;
        for (code, v) in WS_CLOSE_LABELS.iter().zip(s.ws_closes) {
            ConstCounter::new(v).encode(m.encode_family(&[("code", *code)])?)?;
        }
        gauge(
            &mut out,
            "herald_longpolls_held",
            "Long polls being held",
            s.connections[Transport::LongPoll as usize],
        )?;
        if let Some(channels) = self.bus.channels() {
            gauge(
                &mut out,
                "herald_channels",
                "Channels this instance holds: with retained messages or subscribers (memory engine), with subscribers here (Redis engine)",
                channels as i64,
            )?;
        }
        let up = matches!(self.bus.health(), Health::Up);
        gauge(
            &mut out,
            "herald_engine_up",
            "1 when the engine is reachable, 0 when not",
            i64::from(up),
        )
    }
}

/// One metric with a value per transport, labelled `transport`.
fn per_transport(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: [impl EncodeMetric; 4],
) -> Result<(), std::fmt::Error> {
    let mut m = out.encode_descriptor(name, help, None, kind)?;
    for (t, v) in Transport::ALL.iter().zip(values) {
        v.encode(m.encode_family(&[("transport", t.as_str())])?)?;
    }
    Ok(())
}

/// One unlabelled gauge.
fn gauge(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(out.encode_descriptor(name, help, None, MetricType::Gauge)?)
}
