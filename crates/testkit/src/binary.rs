//! The `herald` executable as a subprocess, for what only the binary does:
//! flags, `HERALD_*` variables and the TOML file, signals and drain, exit
//! codes, and its log (stderr), which tests read line by line.
//!
//! What it leaves out: everything else — tests of the protocol use the
//! in-process [`crate::Server`], which starts in a fraction of the time.
//! The executable is the one Cargo built for the test being run
//! (`CARGO_BIN_EXE_herald`), so only the root package's tests can use this.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    ops::Deref,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::Endpoints;

/// A running `herald` process, killed on drop. Dereferences to its
/// [`Endpoints`].
pub struct Binary {
    child: Option<Child>,
    endpoints: Endpoints,
    /// Log lines (stderr) up to and including the "listening" line.
    pub startup: Vec<String>,
    /// Log lines after the "listening" line, as they come.
    pub log: mpsc::Receiver<String>,
}

impl Binary {
    /// The `herald` executable: the one Cargo names for the test being
    /// run, else the one beside the test executable (`target/<profile>/`).
    /// Panics when there is neither.
    pub fn program() -> PathBuf {
        if let Some(exe) = std::env::var_os("CARGO_BIN_EXE_herald") {
            return PathBuf::from(exe);
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|t| Some(t.parent()?.parent()?.join("herald")))
            .filter(|p| p.is_file());
        beside.expect(
            "no herald executable: run the binary tests through cargo in the herald package",
        )
    }

    /// Runs herald with exactly `args` and `env` added to the test's
    /// environment, to completion (for `--help` and refusals at start-up);
    /// answers its exit status and output.
    pub fn output(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new(Self::program());
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run herald")
    }

    /// Starts herald with `args` added to ephemeral listener addresses.
    pub fn start(args: &[&str]) -> Binary {
        Self::start_with_env(args, &[])
    }

    /// Starts herald with extra arguments and environment variables, and
    /// waits (bounded) for it to report its listeners in its log.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Binary {
        Self::launch(Command::new(Self::program()), args, env)
    }

    /// Starts herald as [`start`](Binary::start) does, allowed one CPU
    /// (the first of the test's own) by `taskset`, as a deployment pinned
    /// to one core is. `None` when `taskset` is missing (the test skips,
    /// or fails in CI).
    pub fn start_on_one_core(args: &[&str]) -> Option<Binary> {
        let taskset = crate::programs::need("taskset")?;
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let cpu = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(|list| list.trim().split([',', '-']).next())
            .expect("the test's allowed CPUs")
            .to_owned();
        let mut cmd = Command::new(taskset);
        cmd.args(["-c", &cpu]).arg(Self::program());
        Some(Self::launch(cmd, args, &[]))
    }

    /// Runs `cmd` (herald, or a program that runs it) with herald's
    /// arguments, and waits for the listeners.
    fn launch(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Binary {
        cmd.args([
            "--public-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start herald");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned by a `Binary` from here on, so that a failed start kills
        // and reaps the process (on drop) instead of leaving it running.
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut binary = Binary {
            child: Some(child),
            endpoints: Endpoints {
                public: unknown,
                internal: unknown,
            },
            startup: Vec::new(),
            log: rx,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = binary
                .log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("herald did not report its listeners"));
            let listening = line.contains("herald listening");
            if listening {
                binary.endpoints = Endpoints {
                    public: logged_addr(&line, "public"),
                    internal: logged_addr(&line, "internal"),
                };
            }
            binary.startup.push(line);
            if listening {
                return binary;
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; answers
    /// its exit status success.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

/// The address after `key` in the "herald listening" log line.
/// The address logged as `key` in a text line (`public=ADDR`) or a JSON
/// line (`"public":"ADDR"`).
fn logged_addr(line: &str, key: &str) -> SocketAddr {
    let at = [format!("{key}="), format!("\"{key}\":\"")]
        .iter()
        .find_map(|k| Some(line.find(k.as_str())? + k.len()))
        .expect("address in log");
    line[at..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {key} address in {line:?}"))
}

impl Deref for Binary {
    type Target = Endpoints;

    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
