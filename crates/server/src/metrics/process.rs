//! The process's own figures, in the names every Prometheus exporter uses
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, …), read from `/proc/self` at scrape time.
//!
//! Linux only: elsewhere nothing is reported, rather than something
//! approximate. A figure that cannot be read is left out of the scrape
//! instead of failing it.

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

/// Collects the process metrics on each scrape.
#[derive(Debug)]
pub(super) struct Process;

impl Collector for Process {
    #[cfg(target_os = "linux")]
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        linux::encode(&mut out)
    }

    #[cfg(not(target_os = "linux"))]
    fn encode(&self, _out: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs;

    use prometheus_client::{
        encoding::{DescriptorEncoder, EncodeMetric},
        metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    };

    /// Clock ticks per second in `/proc/self/stat`. The kernel reports
    /// USER_HZ, which is 100 on every Linux architecture herald builds for.
    const TICKS: f64 = 100.0;

    pub(super) fn encode(out: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(seconds) = cpu_seconds(&read("/proc/self/stat")) {
            ConstCounter::new(seconds).encode(out.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                MetricType::Counter,
            )?)?;
        }
        let status = read("/proc/self/status");
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                status_kib(&status, "VmRSS:").map(|k| k * 1024),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                status_kib(&status, "VmSize:").map(|k| k * 1024),
            ),
            (
                "process_threads",
                "Operating system threads",
                status_kib(&status, "Threads:"),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            ),
            (
                "process_max_fds",
                "The open-file limit",
                max_fds(&read("/proc/self/limits")),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                ConstGauge::new(v as i64).encode(out.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Gauge,
                )?)?;
            }
        }
        Ok(())
    }

    fn read(path: &str) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    /// utime + stime of `/proc/self/stat`, fields 14 and 15, counted after
    /// the command name (which may hold spaces, so it is skipped up to its
    /// closing parenthesis).
    pub(super) fn cpu_seconds(stat: &str) -> Option<f64> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some((utime + stime) as f64 / TICKS)
    }

    /// The number after `key` in `/proc/self/status` (kB for sizes).
    pub(super) fn status_kib(status: &str, key: &str) -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    }

    /// The soft limit of `Max open files` in `/proc/self/limits`.
    pub(super) fn max_fds(limits: &str) -> Option<u64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn proc_files_parse() {
            let stat =
                "28537 (a (b) c) R 28491 28491 20079 0 -1 4194304 99 0 0 0 250 50 0 0 20 0 1 0";
            assert_eq!(cpu_seconds(stat), Some(3.0));
            let status = "Name:\tx\nVmSize:\t    3892 kB\nVmRSS:\t    1976 kB\nThreads:\t7\n";
            assert_eq!(status_kib(status, "VmRSS:"), Some(1976));
            assert_eq!(status_kib(status, "Threads:"), Some(7));
            let limits = "Limit Soft Hard Units\nMax open files            20000                40000                files     \n";
            assert_eq!(max_fds(limits), Some(20000));
        }

        #[test]
        fn this_process_is_read() {
            let mut text = String::new();
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(super::super::Process));
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_open_fds ",
                "process_max_fds ",
            ] {
                assert!(text.contains(name), "{name} missing from {text}");
            }
        }
    }
}
