//! The result of one run: a JSON line for machines, a table row for people,
//! and the markdown tables of docs/benchmarks.md (rows plus herald/peer
//! ratios) rendered from a file of JSON lines.
//!
//! Every scenario fills the common fields and the few of its own; absent
//! figures are `null` in JSON and `-` in tables. A scenario the system
//! cannot run (Pushpin's short polling, nchan's batch publish) is a report
//! with `na` set, shown as "n/a", so that the tables say so rather than
//! leave a hole.

use std::{collections::BTreeMap, fmt::Write};

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

const COLUMNS: [&str; 14] = [
    "scenario",
    "system",
    "transport",
    "variant",
    "subs",
    "msg/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "lost/dup/ooo",
    "errors",
    "CPU s/M",
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

    fn cells(&self) -> Vec<String> {
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
        vec![
            self.scenario.clone(),
            self.system.clone(),
            self.transport.clone(),
            if self.variant.is_empty() {
                "-".into()
            } else {
                self.variant.clone()
            },
            self.subscribers.to_string(),
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

    /// The key that pairs a herald run with the same run on a peer.
    fn key(&self) -> (String, String, String, usize) {
        (
            self.scenario.clone(),
            self.transport.clone(),
            self.variant.clone(),
            self.subscribers,
        )
    }
}

/// A plain-text table of `reports`, columns aligned, for a terminal.
pub fn table(reports: &[Report]) -> String {
    let rows: Vec<Vec<String>> = reports.iter().map(Report::cells).collect();
    let mut width: Vec<usize> = COLUMNS.iter().map(|c| c.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// Markdown: every run as a row, then the ratios herald / peer for every
/// run both have (msg/s, p99, CPU per million, bytes per idle connection,
/// herd time; above 1 means herald does more of it, or takes longer).
pub fn markdown(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", COLUMNS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(COLUMNS.len()));
    for r in reports {
        let _ = writeln!(out, "| {} |", r.cells().join(" | "));
    }
    let herald: BTreeMap<_, _> = reports
        .iter()
        .filter(|r| r.system == "herald")
        .map(|r| (r.key(), r))
        .collect();
    let _ = writeln!(
        out,
        "\n### Ratios herald / peer\n\n| scenario | transport | variant | subs | peer | msg/s | p99 | CPU s/M | B/conn | herd |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    for peer in reports.iter().filter(|r| r.system != "herald") {
        let (s, t, v, n) = peer.key();
        let Some(h) = herald.get(&peer.key()) else {
            continue;
        };
        let cells = if peer.na.is_some() || h.na.is_some() {
            vec!["n/a".to_string(); 5]
        } else {
            let p99 = |r: &Report| r.latency_us.map(|l| l.p99 as f64);
            vec![
                ratio(Some(h.msgs_per_s), Some(peer.msgs_per_s)),
                ratio(p99(h), p99(peer)),
                ratio(h.cpu_s_per_million, peer.cpu_s_per_million),
                ratio(h.bytes_per_conn, peer.bytes_per_conn),
                ratio(h.herd_ms, peer.herd_ms),
            ]
        };
        let v = if v.is_empty() { "-".into() } else { v };
        let _ = writeln!(
            out,
            "| {s} | {t} | {v} | {n} | {} | {} |",
            peer.system,
            cells.join(" | ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(system: &str, rate: f64) -> Report {
        Report {
            scenario: "fanout".into(),
            system: system.into(),
            transport: "ws".into(),
            subscribers: 100,
            msgs_per_s: rate,
            ok: true,
            ..Report::default()
        }
    }

    #[test]
    fn json_round_trip_and_tables() {
        let rs = vec![
            run("herald", 3000.0),
            run("nchan", 2000.0),
            Report {
                subscribers: 100,
                ..Report::not_available("fanout", "pushpin", "ws", "no".into())
            },
        ];
        let back: Report = serde_json::from_str(&rs[0].json()).unwrap();
        assert_eq!(back.msgs_per_s, 3000.0);
        assert!(table(&rs).lines().count() == 4);
        let md = markdown(&rs);
        assert!(
            md.contains("| fanout | ws | - | 100 | nchan | 1.50 |"),
            "{md}"
        );
        assert!(md.contains("n/a"));
    }
}
