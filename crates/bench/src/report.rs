//! The result of one run: a JSON line for machines and a table row for
//! people. The markdown of many runs (medians, ratios) is `summary`'s.
//!
//! Every scenario fills the common fields and the few of its own; absent
//! figures are `null` in JSON and `-` in tables. A scenario the system
//! cannot run (Pushpin's short polling, nchan's batch publish) is a report
//! with `na` set, shown as "n/a", so that the tables say so rather than
//! leave a hole.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::{Counts, Mem};

/// One run's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// `fanout`, `idle`, `herd`, `publish` or `churn`.
    pub scenario: String,
    /// `herald`, `nchan` or `pushpin`.
    pub system: String,
    /// `ws`, `sse`, `longpoll`, `poll`, or `-` (publish without subscribers).
    pub transport: String,
    /// What else distinguishes this run from others of the scenario (rate,
    /// batch size), part of the key that pairs herald with a peer.
    pub variant: String,
    /// Subscribers (connections) asked for.
    pub subscribers: usize,
    /// Channels the subscribers are spread over.
    pub channels: usize,
    /// Length of the measured interval, seconds.
    pub secs: f64,
    /// Messages published.
    pub published: u64,
    /// Deliveries checked, summed over subscribers.
    #[serde(flatten)]
    pub counts: Counts,
    /// Delivered messages per second, summed over subscribers.
    pub msgs_per_s: f64,
    /// Subscriber connections that failed or ended early.
    pub errors: u64,
    /// Publish → receive latency (publish: request round trip), µs.
    pub latency_us: Option<Latency>,
    /// Server CPU seconds over the measured interval.
    pub cpu_s: Option<f64>,
    /// Server CPU seconds per million deliveries (publish: per million
    /// messages published).
    pub cpu_s_per_million: Option<f64>,
    /// Peak server memory over the run, KiB (sum over its process tree).
    pub peak_kib: Option<u64>,
    /// Which memory figure (`rss` or `pss`).
    pub mem: Option<Mem>,
    /// The load generator's own CPU seconds over the measured interval
    /// (this process and its workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_s: Option<f64>,
    /// The same, as a percentage of one core over the interval: near 100
    /// with the client pinned to one core, the client set the pace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_pct: Option<f64>,
    /// Requests per second (polling transports; publish requests).
    pub requests_per_s: Option<f64>,
    /// idle: server memory per connection, bytes ((loaded − baseline) / N).
    pub bytes_per_conn: Option<f64>,
    /// idle, churn: server memory before, KiB.
    pub baseline_kib: Option<u64>,
    /// idle: with all connections open; churn: after the run, KiB.
    pub after_kib: Option<u64>,
    /// churn: (after − baseline) / baseline, percent.
    pub growth_pct: Option<f64>,
    /// herd: time from the publish until the last held poll answered, ms.
    pub herd_ms: Option<f64>,
    /// storm: the listener's figures (connect time, from each client's
    /// connect call, is `latency_us`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<Storm>,
    /// Whether the run met its own checks (zero loss, every connection
    /// answered, memory back to baseline).
    pub ok: bool,
    /// Set when the run could not be made; says why (`failed: ...` for an
    /// error, otherwise what the system lacks).
    pub na: Option<String>,
}

/// A storm's figures: the host's listen counters over the connection
/// storm and over the restart, and how the crowd came back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Storm {
    /// `TcpExtListenOverflows` over the connection storm (host-wide).
    pub listen_overflows: u64,
    /// `TcpExtListenDrops` over the connection storm (host-wide).
    pub listen_drops: u64,
    /// `TcpExtTCPSynRetrans` over the connection storm (host-wide).
    pub syn_retrans: u64,
    /// SSE response head after the client's connect call, µs.
    pub stream_head_us: Option<Latency>,
    /// When the connect calls were made, after the start signal, µs: the
    /// load generator's own spread (connect time is counted from each call).
    #[serde(default)]
    pub connect_issue_us: Option<Latency>,
    /// Connections not established when their connect call returned, timed
    /// when the client saw them (an upper bound).
    #[serde(default)]
    pub connects_waited: u64,
    /// Streams and polls that ended before any restart (opened again).
    pub early_ends: u64,
    /// `TcpExtListenOverflows` from the restart until all were back.
    pub restart_listen_overflows: Option<u64>,
    /// `TcpExtListenDrops` from the restart until all were back.
    pub restart_listen_drops: Option<u64>,
    /// `TcpExtTCPSynRetrans` from the restart until all were back.
    pub restart_syn_retrans: Option<u64>,
    /// Back after the restart command started, µs.
    pub reconnect_us: Option<Latency>,
    /// First to last subscriber back, ms.
    pub reconnect_spread_ms: Option<f64>,
    /// Subscribers in place before the restart and not back in time.
    pub not_back: Option<u64>,
}

/// Latency percentiles, µs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Maximum.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `h`; `None` when it is empty.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

pub(crate) const COLUMNS: [&str; 15] = [
    "scenario",
    "system",
    "transport",
    "variant",
    "subs",
    "chans",
    "msg/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "lost/dup/ooo",
    "errors",
    "CPU µs/dlv",
    "peak MiB",
    "notes",
];

impl Report {
    /// A report that says the system cannot run this scenario.
    pub fn not_available(scenario: &str, system: &str, transport: &str, why: String) -> Report {
        Report {
            scenario: scenario.into(),
            system: system.into(),
            transport: transport.into(),
            na: Some(why),
            ..Report::default()
        }
    }

    /// One JSON line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report serialises")
    }

    pub(crate) fn cells(&self) -> Vec<String> {
        let f = |v: Option<f64>, d: usize| v.map_or("-".into(), |v| format!("{v:.d$}"));
        let ms = |v: Option<u64>| f(v.map(|v| v as f64 / 1000.0), 2);
        let mut notes = vec![];
        if let Some(why) = &self.na {
            notes.push(format!("n/a: {why}"));
        }
        if let Some(v) = self.requests_per_s {
            notes.push(format!("{v:.0} req/s"));
        }
        if let Some(v) = self.bytes_per_conn {
            notes.push(format!("{:.0} B/conn", v));
        }
        if let Some(v) = self.herd_ms {
            notes.push(format!("herd {v:.1} ms"));
            if let Some(c) = self.client_cpu_pct {
                notes.push(format!("client CPU {c:.0}%"));
            }
        }
        if let Some(s) = &self.storm {
            notes.push(format!(
                "overflows {}, SYN retrans {}",
                s.listen_overflows, s.syn_retrans
            ));
            if let Some(l) = s.connect_issue_us {
                notes.push(format!(
                    "connects issued over {:.0} ms, {} waited",
                    l.max as f64 / 1e3,
                    s.connects_waited
                ));
            }
            if let Some(l) = s.stream_head_us {
                notes.push(format!("SSE head p99 {:.1} ms", l.p99 as f64 / 1e3));
            }
            if let (Some(o), Some(spread)) = (s.restart_listen_overflows, s.reconnect_spread_ms) {
                notes.push(format!(
                    "restart: overflows {o}, spread {spread:.0} ms, not back {}",
                    s.not_back.unwrap_or_default()
                ));
            }
        }
        if let Some(v) = self.growth_pct {
            notes.push(format!("memory {v:+.1}%"));
        }
        if self.na.is_none() && !self.ok {
            notes.push("CHECK FAILED".into());
        }
        let c = &self.counts;
        let na = self.na.is_some();
        let [scenario, transport, variant, subs, chans] = self.key().cells();
        vec![
            scenario,
            self.system.clone(),
            transport,
            variant,
            subs,
            chans,
            if na {
                "n/a".into()
            } else {
                format!("{:.0}", self.msgs_per_s)
            },
            ms(self.latency_us.map(|l| l.p50)),
            ms(self.latency_us.map(|l| l.p99)),
            ms(self.latency_us.map(|l| l.max)),
            if na {
                "-".into()
            } else {
                format!("{}/{}/{}", c.lost, c.duplicated, c.out_of_order)
            },
            self.errors.to_string(),
            f(self.cpu_s_per_million, 2),
            f(self.peak_kib.map(|k| k as f64 / 1024.0), 1),
            notes.join("; "),
        ]
    }

    /// What makes runs the same run: repeats of it are summarised
    /// together, and herald's is paired with a peer's.
    pub(crate) fn key(&self) -> Key {
        Key {
            scenario: self.scenario.clone(),
            transport: self.transport.clone(),
            variant: self.variant.clone(),
            subscribers: self.subscribers,
            channels: self.channels.max(1),
        }
    }
}

/// A plain-text table of `reports`, columns aligned, for a terminal.
pub fn table(reports: &[Report]) -> String {
    let rows: Vec<Vec<String>> = reports.iter().map(Report::cells).collect();
    let len = |c: &str| c.chars().count();
    let mut width: Vec<usize> = COLUMNS.iter().map(|c| len(c)).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(len(c));
        }
    }
    let mut out = String::new();
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - len(c))))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// The scenario, transport, variant, subscribers and channels of a run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) scenario: String,
    pub(crate) transport: String,
    pub(crate) variant: String,
    pub(crate) subscribers: usize,
    pub(crate) channels: usize,
}

impl Key {
    /// The key's cells in a table row.
    pub(crate) fn cells(&self) -> [String; 5] {
        [
            self.scenario.clone(),
            self.transport.clone(),
            if self.variant.is_empty() {
                "-".into()
            } else {
                self.variant.clone()
            },
            self.subscribers.to_string(),
            self.channels.to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_table() {
        let rs = vec![
            Report {
                scenario: "herd".into(),
                system: "herald".into(),
                transport: "longpoll".into(),
                subscribers: 100,
                msgs_per_s: 3000.0,
                herd_ms: Some(12.5),
                client_cpu_pct: Some(41.0),
                ok: true,
                ..Report::default()
            },
            Report {
                subscribers: 100,
                ..Report::not_available("fanout", "pushpin", "ws", "no".into())
            },
        ];
        let back: Report = serde_json::from_str(&rs[0].json()).unwrap();
        assert_eq!(back.msgs_per_s, 3000.0);
        assert_eq!(back.client_cpu_pct, Some(41.0));
        let t = table(&rs);
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(t.contains("herd 12.5 ms; client CPU 41%"), "{t}");
        assert!(t.contains("n/a: no"), "{t}");
        // Columns line up although a heading has a two-byte character.
        let at = |line: &str| line.find("lost/dup/ooo").or_else(|| line.find("0/0/0"));
        let cols: Vec<usize> = t
            .lines()
            .filter_map(|l| at(l).map(|b| l[..b].chars().count()))
            .collect();
        assert_eq!(cols, vec![cols[0]; 2], "{t}");
    }

    #[test]
    fn lines_of_earlier_runs_still_parse() {
        let old = r#"{"scenario":"fanout","system":"nchan","transport":"ws","variant":"5 msg/s","subscribers":10000,"channels":1,"secs":10.0,"published":50,"received":500000,"lost":0,"duplicated":0,"out_of_order":0,"msgs_per_s":50000.0,"errors":0,"latency_us":{"p50":30000,"p99":72000,"max":80000},"cpu_s":0.3,"cpu_s_per_million":5.8,"peak_kib":9000,"mem":"pss","requests_per_s":null,"bytes_per_conn":null,"baseline_kib":null,"after_kib":null,"growth_pct":null,"herd_ms":null,"ok":true,"na":null}"#;
        let r: Report = serde_json::from_str(old).unwrap();
        assert_eq!(r.client_cpu_s, None);
        assert_eq!(r.key().channels, 1);
    }
}
