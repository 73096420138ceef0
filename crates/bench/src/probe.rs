//! What the server costs, read from `/proc`: CPU time and memory summed
//! over the server's process tree (nginx's master and workers, Pushpin's
//! runner, its services and the origin, or herald's one process).
//!
//! Memory is RSS or PSS per process. PSS divides shared pages among the
//! processes that map them, so for multi-process servers (nginx's shared
//! zone, Pushpin's libraries) the PSS sum is the honest total; for a single
//! process RSS and PSS differ only by shared libraries, and RSS is cheaper
//! to read. A sampler task keeps the peak while a scenario runs. Without
//! PIDs, every figure is `None`: the tool still runs against a server it
//! cannot see (another machine's user, a container).

use std::{
    collections::BTreeSet,
    fs,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Which memory figure to sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mem {
    /// Resident set size (`VmRSS` in `/proc/PID/status`).
    Rss,
    /// Proportional set size (`Pss` in `/proc/PID/smaps_rollup`).
    Pss,
}

/// The server's process tree: the given roots and all their descendants,
/// looked up afresh at every reading (workers may be restarted).
#[derive(Debug, Clone)]
pub struct Probe {
    roots: Vec<u32>,
    mem: Mem,
}

impl Probe {
    /// A probe of the trees under `roots`; `None` when `roots` is empty.
    pub fn new(roots: Vec<u32>, mem: Mem) -> Option<Probe> {
        (!roots.is_empty()).then_some(Probe { roots, mem })
    }

    /// The memory figure this probe sums.
    pub fn mem(&self) -> Mem {
        self.mem
    }

    /// Every live PID of the tree.
    pub fn pids(&self) -> Vec<u32> {
        let mut all = BTreeSet::new();
        let mut todo = self.roots.clone();
        while let Some(p) = todo.pop() {
            if !all.insert(p) {
                continue;
            }
            let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                    todo.extend(s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
                }
            }
        }
        all.into_iter().filter(|p| alive(*p)).collect()
    }

    /// CPU seconds (user + system) the tree has used so far.
    pub fn cpu_secs(&self) -> f64 {
        let ticks: u64 = self.pids().into_iter().map(cpu_ticks).sum();
        ticks as f64 / clock_ticks() as f64
    }

    /// Memory of the tree now, KiB.
    pub fn mem_kib(&self) -> u64 {
        self.pids().into_iter().map(|p| mem_kib(p, self.mem)).sum()
    }

    /// Starts sampling memory every `every`; the sampler stops and answers
    /// the peak (KiB) when [`Sampler::finish`] is called.
    pub fn sample(&self, every: Duration) -> Sampler {
        let peak = Arc::new(AtomicU64::new(self.mem_kib()));
        let stop = CancellationToken::new();
        let (probe, p, s) = (self.clone(), peak.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = s.cancelled() => break,
                }
                let probe = probe.clone();
                let now = tokio::task::spawn_blocking(move || probe.mem_kib())
                    .await
                    .unwrap_or(0);
                p.fetch_max(now, Ordering::Relaxed);
            }
        });
        Sampler {
            peak,
            stop,
            task,
            probe: self.clone(),
        }
    }
}

/// A running memory sampler.
pub struct Sampler {
    peak: Arc<AtomicU64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    probe: Probe,
}

impl Sampler {
    /// Stops sampling; answers the peak memory seen, KiB (a last reading
    /// included).
    pub async fn finish(self) -> u64 {
        self.stop.cancel();
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed).max(self.probe.mem_kib())
    }
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_fields(&s).and_then(|f| f.first().map(|st| *st != "Z")))
        .unwrap_or(false)
}

/// Fields of `/proc/PID/stat` after the command name (field 3 onwards).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

fn cpu_ticks(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let f = stat_fields(&s)?;
            // utime and stime are fields 14 and 15; field 3 is f[0].
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn mem_kib(pid: u32, mem: Mem) -> u64 {
    let (file, key) = match mem {
        Mem::Rss => ("status", "VmRSS:"),
        Mem::Pss => ("smaps_rollup", "Pss:"),
    };
    fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we run).
fn clock_ticks() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        for mem in [Mem::Rss, Mem::Pss] {
            let p = Probe::new(vec![me], mem).unwrap();
            assert!(p.pids().contains(&me));
            assert!(p.mem_kib() > 0, "{mem:?}");
        }
        let p = Probe::new(vec![me], Mem::Rss).unwrap();
        let t0 = p.cpu_secs();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(p.cpu_secs() > t0);
        assert!(Probe::new(vec![], Mem::Rss).is_none());
    }

    #[test]
    fn stat_after_the_command_name() {
        let s = "12 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0";
        let f = stat_fields(s).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!((f[11], f[12]), ("250", "50"));
    }
}
