//! The markdown of a comparison, rendered from a file of JSON lines: every
//! run as a row, then for each run repeated (same scenario, transport,
//! variant, subscribers, channels) on each system the median of every
//! figure with its spread (min–max), then herald's medians divided by each
//! peer's.
//!
//! One run on a shared machine can be off by a wide margin, so a figure to
//! judge by is a median of several; the spread says how far to trust it.
//! Runs that could not be made (`na`) are listed but enter no median; a
//! median over fewer runs than were made says so ("2 of 3"). Left out:
//! means and confidence intervals (three runs do not support them).

use std::fmt::Write;

use crate::{
    Report,
    report::{COLUMNS, Key},
};

/// A figure of the summary: its heading, how a run gives it, its
/// decimals, and whether herald's divided by a peer's means something.
struct Metric {
    name: &'static str,
    get: fn(&Report) -> Option<f64>,
    digits: usize,
    ratio: bool,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "msg/s",
        get: |r| (r.msgs_per_s > 0.0).then_some(r.msgs_per_s),
        digits: 0,
        ratio: true,
    },
    Metric {
        name: "p50 ms",
        get: |r| r.latency_us.map(|l| l.p50 as f64 / 1e3),
        digits: 2,
        ratio: true,
    },
    Metric {
        name: "p99 ms",
        get: |r| r.latency_us.map(|l| l.p99 as f64 / 1e3),
        digits: 2,
        ratio: true,
    },
    Metric {
        name: "CPU µs/dlv",
        get: |r| r.cpu_s_per_million,
        digits: 2,
        ratio: true,
    },
    Metric {
        name: "peak MiB",
        get: |r| r.peak_kib.map(|k| k as f64 / 1024.0),
        digits: 1,
        ratio: false,
    },
    Metric {
        name: "B/conn",
        get: |r| r.bytes_per_conn,
        digits: 0,
        ratio: true,
    },
    Metric {
        name: "herd ms",
        get: |r| r.herd_ms,
        digits: 1,
        ratio: true,
    },
    Metric {
        name: "req/s",
        get: |r| r.requests_per_s,
        digits: 0,
        ratio: true,
    },
    Metric {
        name: "overflows",
        get: |r| r.storm.as_ref().map(|s| s.listen_overflows as f64),
        digits: 0,
        ratio: false,
    },
    Metric {
        name: "client CPU %",
        get: |r| r.client_cpu_pct,
        digits: 0,
        ratio: false,
    },
];

/// The runs of one key on one system.
struct Group<'a> {
    key: Key,
    system: String,
    runs: Vec<&'a Report>,
}

impl Group<'_> {
    /// The runs that were made.
    fn made(&self) -> impl Iterator<Item = &Report> {
        self.runs.iter().copied().filter(|r| r.na.is_none())
    }

    /// Median, min and max of `m` over the runs made.
    fn stats(&self, m: &Metric) -> Option<(f64, f64, f64)> {
        let mut v: Vec<f64> = self.made().filter_map(m.get).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some((median, v[0], v[n - 1]))
    }

    fn cell(&self, m: &Metric) -> String {
        let d = m.digits;
        match self.stats(m) {
            None => "-".into(),
            Some((med, lo, hi)) => {
                let (med, lo, hi) = (
                    format!("{med:.d$}"),
                    format!("{lo:.d$}"),
                    format!("{hi:.d$}"),
                );
                if lo == hi {
                    med
                } else {
                    format!("{med} ({lo}–{hi})")
                }
            }
        }
    }

    /// Runs made, of runs listed; then whether their checks passed.
    fn counts(&self) -> (String, String) {
        let made = self.made().count();
        let runs = if made == self.runs.len() {
            made.to_string()
        } else {
            format!("{made} of {}", self.runs.len())
        };
        let failed = self.made().filter(|r| !r.ok).count();
        let checks = match (made, failed) {
            (0, _) => format!("n/a: {}", self.runs[0].na.as_deref().unwrap_or_default()),
            (_, 0) => "ok".into(),
            (_, f) => format!("FAILED in {f}"),
        };
        (runs, checks)
    }
}

/// The runs grouped by key and system, keys and systems in the order they
/// first appear.
fn groups(reports: &[Report]) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for r in reports {
        let key = r.key();
        match out
            .iter_mut()
            .find(|g| g.key == key && g.system == r.system)
        {
            Some(g) => g.runs.push(r),
            None => out.push(Group {
                key,
                system: r.system.clone(),
                runs: vec![r],
            }),
        }
    }
    let first = |k: &Key| out.iter().position(|g| &g.key == k);
    let order: Vec<usize> = out.iter().map(|g| first(&g.key).unwrap_or(0)).collect();
    let mut indexed: Vec<(usize, Group)> = order.into_iter().zip(out).collect();
    // Stable: systems keep their order within a key.
    indexed.sort_by_key(|(k, _)| *k);
    indexed.into_iter().map(|(_, g)| g).collect()
}

fn row(out: &mut String, cells: impl IntoIterator<Item = String>) {
    let cells: Vec<String> = cells.into_iter().collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn header(out: &mut String, cells: &[&str]) {
    row(out, cells.iter().map(|c| c.to_string()));
    let _ = writeln!(out, "|{}", "---|".repeat(cells.len()));
}

/// Markdown: every run as a row; the medians (with min–max) of every
/// group of repeated runs; the ratios of herald's medians to each peer's
/// for every key both have (msg/s, latency, CPU per delivery, bytes per
/// idle connection, herd time, requests/s; above 1 means herald does more
/// of it, or takes longer). Columns no run fills are left out.
pub fn markdown(reports: &[Report]) -> String {
    let mut out = String::new();
    header(&mut out, &COLUMNS);
    for r in reports {
        row(&mut out, r.cells());
    }

    let groups = groups(reports);
    let shown: Vec<&Metric> = METRICS
        .iter()
        .filter(|m| groups.iter().any(|g| g.stats(m).is_some()))
        .collect();
    let _ = writeln!(
        out,
        "\n### Medians\n\nMedian of the runs made, with the spread (min–max) when runs differ.\n"
    );
    let mut head = vec![
        "scenario",
        "transport",
        "variant",
        "subs",
        "chans",
        "system",
        "runs",
    ];
    head.extend(shown.iter().map(|m| m.name));
    head.push("checks");
    header(&mut out, &head);
    for g in &groups {
        let (runs, checks) = g.counts();
        row(
            &mut out,
            g.key
                .cells()
                .into_iter()
                .chain([g.system.clone(), runs])
                .chain(shown.iter().map(|m| g.cell(m)))
                .chain([checks]),
        );
    }

    let ratios: Vec<&Metric> = shown.iter().copied().filter(|m| m.ratio).collect();
    let _ = writeln!(out, "\n### Ratios herald / peer\n");
    let _ = writeln!(
        out,
        "herald's median divided by the peer's, for every run both made.\n"
    );
    let mut head = vec!["scenario", "transport", "variant", "subs", "chans", "peer"];
    head.extend(ratios.iter().map(|m| m.name));
    header(&mut out, &head);
    for peer in groups.iter().filter(|g| g.system != "herald") {
        let Some(h) = groups
            .iter()
            .find(|g| g.system == "herald" && g.key == peer.key)
        else {
            continue;
        };
        let cells = ratios.iter().map(|m| {
            if h.made().count() == 0 || peer.made().count() == 0 {
                return "n/a".to_string();
            }
            match (h.stats(m), peer.stats(m)) {
                (Some((a, ..)), Some((b, ..))) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            }
        });
        row(
            &mut out,
            peer.key
                .cells()
                .into_iter()
                .chain([peer.system.clone()])
                .chain(cells),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Latency;

    fn run(system: &str, rate: f64, p99_ms: u64) -> Report {
        Report {
            scenario: "fanout".into(),
            system: system.into(),
            transport: "ws".into(),
            variant: "10 msg/s".into(),
            subscribers: 100,
            channels: 1,
            msgs_per_s: rate,
            latency_us: Some(Latency {
                p50: 1000,
                p99: p99_ms * 1000,
                max: p99_ms * 1000,
            }),
            ok: true,
            ..Report::default()
        }
    }

    /// A run of the same shape as `run`'s that could not be made.
    fn unmade(system: &str, channels: usize, why: &str) -> Report {
        Report {
            subscribers: 100,
            channels,
            variant: "10 msg/s".into(),
            ..Report::not_available("fanout", system, "ws", why.into())
        }
    }

    fn line<'a>(md: &'a str, start: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{md}"))
    }

    #[test]
    fn medians_spread_and_ratios_of_medians() {
        let rs = vec![
            run("herald", 3000.0, 30),
            run("nchan", 2000.0, 40),
            run("herald", 1000.0, 10),
            run("nchan", 2000.0, 40),
            run("herald", 2000.0, 20),
            unmade("nchan", 1, "failed: boom"),
        ];
        let md = markdown(&rs);
        // Every run is listed.
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| fanout")).count(),
            6 + 2 + 1
        );
        assert_eq!(
            line(&md, "| fanout | ws | 10 msg/s | 100 | 1 | herald | 3 |"),
            "| fanout | ws | 10 msg/s | 100 | 1 | herald | 3 | 2000 (1000–3000) | 1.00 | 20.00 (10.00–30.00) | ok |"
        );
        // Runs that failed enter no median; equal runs show no spread.
        assert_eq!(
            line(&md, "| fanout | ws | 10 msg/s | 100 | 1 | nchan | 2 of 3 |"),
            "| fanout | ws | 10 msg/s | 100 | 1 | nchan | 2 of 3 | 2000 | 1.00 | 40.00 | ok |"
        );
        assert_eq!(
            line(&md, "| fanout | ws | 10 msg/s | 100 | 1 | nchan | 1.00"),
            "| fanout | ws | 10 msg/s | 100 | 1 | nchan | 1.00 | 1.00 | 0.50 |"
        );
    }

    #[test]
    fn keys_differ_by_channels_and_unmade_runs_say_why() {
        let mut many = run("herald", 500.0, 5);
        many.channels = 10;
        let rs = vec![
            run("herald", 100.0, 5),
            many,
            unmade("pushpin", 10, "no such thing"),
        ];
        let md = markdown(&rs);
        assert!(
            md.contains("| fanout | ws | 10 msg/s | 100 | 1 | herald | 1 | 100 |"),
            "{md}"
        );
        assert!(
            md.contains("| fanout | ws | 10 msg/s | 100 | 10 | herald | 1 | 500 |"),
            "{md}"
        );
        assert!(
            md.contains("| 10 | pushpin | 0 of 1 | - | - | - | n/a: no such thing |"),
            "{md}"
        );
        assert!(
            md.contains("| fanout | ws | 10 msg/s | 100 | 10 | pushpin | n/a | n/a | n/a |"),
            "{md}"
        );
        // No peer made the one-channel run: no ratio row for it.
        assert!(!md.contains("| 100 | 1 | pushpin |"), "{md}");
    }

    #[test]
    fn even_counts_take_the_mean_of_the_middle_two() {
        let rs = vec![run("herald", 100.0, 1), run("herald", 300.0, 1)];
        let g = groups(&rs);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].stats(&METRICS[0]), Some((200.0, 100.0, 300.0)));
    }
}
