//! The `herald-bench` command line: parses options into a scenario config,
//! runs it, prints one JSON line on stdout and a table on stderr. `report`
//! renders a file of JSON lines as the markdown of docs/benchmarks.md.
//! All measuring lives in the library; nothing here but wiring.

use std::{io::Write, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use herald_bench::{
    Error, Mem, Probe, Report, System, Target, Transport,
    scenario::{Common, churn, fanout, herd, idle, publish, storm},
};

/// Load generator for herald, nchan and Pushpin (loopback only).
#[derive(Parser)]
#[command(name = "herald-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N subscribers, a publisher at a rate; msg/s, latency, loss, CPU.
    Fanout {
        #[command(flatten)]
        c: CommonArgs,
        /// Messages per second over all channels; 0 = as fast as delivery keeps up.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Publishing time, seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Most messages published.
        #[arg(long, default_value_t = 1_000_000)]
        max_messages: u64,
        /// Longest wait for the last deliveries, seconds.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        /// Messages in flight per publisher when --rate is 0.
        #[arg(long, default_value_t = 8)]
        window: usize,
        /// Publishers side by side, each on its own connection and its
        /// share of the channels (at most one per channel).
        #[arg(long, default_value_t = 1)]
        publishers: usize,
    },
    /// N idle subscriptions; server memory per connection, then one message to all.
    Idle {
        #[command(flatten)]
        c: CommonArgs,
        /// Connections per client process; more go to worker processes.
        #[arg(long, default_value_t = 18_000)]
        per_process: usize,
        /// Longest wait for the final message, seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// N held long polls, one publish; time until all answered.
    Herd {
        #[command(flatten)]
        c: CommonArgs,
        /// Longest wait for every answer, seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Publish throughput, single or batch, with --subscribers 0 or more.
    Publish {
        #[command(flatten)]
        c: CommonArgs,
        /// Messages per request (1 = single-message endpoint).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Publishers at once, each on its own connection and channel.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Publishing time, seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Longest wait for the last deliveries, seconds.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
    },
    /// Subscribers connect, receive, disconnect in a loop; memory must return to baseline.
    Churn {
        #[command(flatten)]
        c: CommonArgs,
        /// Messages per second over all channels.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Messages a session receives before disconnecting.
        #[arg(long, default_value_t = 5)]
        per_session: u64,
        /// Measured phase, seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Warm-up phase, seconds.
        #[arg(long, default_value_t = 5.0)]
        warmup: f64,
        /// Largest memory growth that passes, percent.
        #[arg(long, default_value_t = 5.0)]
        max_growth: f64,
    },
    /// N clients (half SSE, half long poll) connect at once, then optionally
    /// a restart under them; listen overflows, connect p50/p99, reconnect spread.
    Storm {
        #[command(flatten)]
        c: CommonArgs,
        /// Shell command that restarts the server on the same address
        /// (run with `sh -c` once every client is in place).
        #[arg(long)]
        restart: Option<String>,
        /// Milliseconds between reconnection attempts while refused.
        #[arg(long, default_value_t = 100)]
        retry_ms: u64,
        /// Longest wait for every client to be back after the restart, seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Renders a file of JSON lines as markdown: every run, the medians of
    /// repeated runs with their spread, herald/peer ratios of the medians.
    Report {
        /// The JSON lines.
        file: PathBuf,
    },
    /// One share of an `idle` run (started by `idle` itself).
    #[command(hide = true)]
    IdleWorker {
        #[command(flatten)]
        c: CommonArgs,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        timeout: u64,
    },
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// The gateway.
    #[arg(long, value_enum, default_value_t = System::Herald)]
    system: System,
    /// Name of the system in the report [default: --system], to tell two
    /// builds of one gateway apart.
    #[arg(long)]
    label: Option<String>,
    /// Subscriber address [default: the system's usual one].
    #[arg(long)]
    sub: Option<SocketAddr>,
    /// Another subscriber address (repeatable): subscribers are spread
    /// round-robin over `--sub` and these, for several instances of one
    /// gateway (fanout, publish and churn; not idle).
    #[arg(long = "also-sub")]
    also_sub: Vec<SocketAddr>,
    /// Publish address [default: the system's usual one].
    #[arg(long = "pub")]
    publish: Option<SocketAddr>,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    transport: Transport,
    /// Subscribers (connections) in total [default: 100; storm: 10000].
    #[arg(long)]
    subscribers: Option<usize>,
    /// Channels the subscribers are spread over.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Seconds to wait after subscribing, before measuring.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// New connections per second (0 = unpaced).
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Connection set-ups at once.
    #[arg(long, default_value_t = 256)]
    connecting: usize,
    /// Source addresses 127.0.0.1.. to spread connections over.
    #[arg(long, default_value_t = 16)]
    spread: usize,
    /// Short polling: milliseconds between polls that found nothing.
    #[arg(long, default_value_t = 100)]
    poll_interval_ms: u64,
    /// Long polling: hold asked of herald, seconds.
    #[arg(long, default_value_t = 30)]
    hold: u64,
    /// Longest wait for subscribers to be in place, seconds.
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
    /// PID of the server (repeatable); its process tree is measured.
    #[arg(long = "server-pid")]
    server_pid: Vec<u32>,
    /// File with the server's PID (repeatable), read at start.
    #[arg(long = "server-pid-file")]
    server_pid_file: Vec<PathBuf>,
    /// Memory figure [default: rss for herald, pss for nchan and Pushpin].
    #[arg(long, value_enum)]
    mem: Option<Mem>,
    /// Also append the JSON line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No table on stderr.
    #[arg(long)]
    quiet: bool,
}

impl CommonArgs {
    fn common(&self) -> Result<Common, Error> {
        let d = Target::default_for(self.system);
        let target = Target::new(
            self.system,
            self.sub.unwrap_or(d.sub),
            self.publish.unwrap_or(d.publish),
        )?;
        let mut pids = self.server_pid.clone();
        for f in &self.server_pid_file {
            let text = std::fs::read_to_string(f)?;
            pids.push(
                text.trim()
                    .parse()
                    .map_err(|_| Error::Usage(format!("{}: not a PID", f.display())))?,
            );
        }
        let mem = self.mem.unwrap_or(match self.system {
            System::Herald => Mem::Rss,
            _ => Mem::Pss,
        });
        let mut c = Common::new(target, self.transport);
        for &a in &self.also_sub {
            // Checked like the main addresses: loopback only.
            Target::new(self.system, a, target.publish)?;
        }
        c.also_sub = self.also_sub.clone();
        c.subscribers = self.subscribers.unwrap_or(100);
        c.channels = self.channels.max(1);
        c.settle = Duration::from_secs_f64(self.settle);
        c.ramp = self.ramp;
        c.connecting = self.connecting;
        c.spread = self.spread;
        c.poll_interval = Duration::from_millis(self.poll_interval_ms);
        c.hold_secs = self.hold;
        c.ready_timeout = Duration::from_secs(self.ready_timeout);
        c.probe = Probe::new(pids, mem);
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Many subscribers need many sockets: take the hard limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> Result<(), Error> {
    let secs = Duration::from_secs_f64;
    let (name, args, result) = match cmd {
        Cmd::Report { file } => {
            let text = std::fs::read_to_string(&file)?;
            let reports = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<Vec<Report>, _>>()
                .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
            print!("{}", herald_bench::markdown(&reports));
            return Ok(());
        }
        Cmd::IdleWorker {
            c,
            prefix,
            first,
            timeout,
        } => return idle::worker(&c.common()?, &prefix, first, secs(timeout as f64)).await,
        Cmd::Fanout {
            c,
            rate,
            duration,
            max_messages,
            drain,
            window,
            publishers,
        } => {
            let mut cfg = fanout::Config::new(c.common()?);
            cfg.rate = rate;
            cfg.duration = secs(duration);
            cfg.max_messages = max_messages;
            cfg.drain = secs(drain);
            cfg.window = window;
            cfg.publishers = publishers;
            let variant = cfg.variant();
            ("fanout", (c, variant), fanout::run(&cfg).await)
        }
        Cmd::Idle {
            c,
            per_process,
            timeout,
        } => {
            let mut cfg = idle::Config::new(c.common()?);
            cfg.per_process = per_process;
            cfg.timeout = secs(timeout as f64);
            ("idle", (c, String::new()), idle::run(&cfg).await)
        }
        Cmd::Herd { c, timeout } => {
            let mut cfg = herd::Config::new(c.common()?);
            cfg.timeout = secs(timeout as f64);
            ("herd", (c, String::new()), herd::run(&cfg).await)
        }
        Cmd::Storm {
            mut c,
            restart,
            retry_ms,
            timeout,
        } => {
            c.subscribers.get_or_insert(10_000);
            let mut cfg = storm::Config::new(c.common()?);
            cfg.restart = restart;
            cfg.retry = Duration::from_millis(retry_ms);
            cfg.timeout = secs(timeout as f64);
            let variant = if cfg.restart.is_some() { "restart" } else { "" };
            ("storm", (c, variant.to_string()), storm::run(&cfg).await)
        }
        Cmd::Publish {
            mut c,
            batch,
            concurrency,
            duration,
            drain,
        } => {
            let mut cfg = publish::Config::new(c.common()?);
            cfg.batch = batch;
            cfg.concurrency = concurrency;
            cfg.duration = secs(duration);
            cfg.drain = secs(drain);
            let variant = format!("batch {} x{}", batch.max(1), concurrency.max(1));
            // A channel per publisher, as the run reports it, so that a
            // run that cannot be made pairs with the others.
            c.channels = concurrency.max(1);
            ("publish", (c, variant), publish::run(&cfg).await)
        }
        Cmd::Churn {
            c,
            rate,
            per_session,
            duration,
            warmup,
            max_growth,
        } => {
            let mut cfg = churn::Config::new(c.common()?);
            cfg.rate = rate;
            cfg.per_session = per_session;
            cfg.duration = secs(duration);
            cfg.warmup = secs(warmup);
            cfg.max_growth_pct = max_growth;
            let variant = format!("{rate} msg/s, {per_session} per session");
            ("churn", (c, variant), churn::run(&cfg).await)
        }
    };
    let (c, variant) = args;
    let mut failed = None;
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            // A run that cannot be made still gets its line, so that the
            // comparison's table shows the hole and why.
            let why = match e {
                Error::Unsupported(why) => why,
                e => {
                    let why = format!("failed: {e}");
                    failed = Some(e);
                    why
                }
            };
            let transport = if name == "publish" && c.subscribers == Some(0) {
                "-".to_string()
            } else if name == "herd" {
                Transport::Longpoll.to_string()
            } else if name == "storm" {
                "sse+longpoll".to_string()
            } else {
                c.transport.to_string()
            };
            Report {
                subscribers: c.subscribers.unwrap_or(100),
                channels: c.channels,
                variant,
                ..Report::not_available(name, &c.system.to_string(), &transport, why)
            }
        }
    };
    if let Some(label) = &c.label {
        report.system.clone_from(label);
    }
    let line = report.json();
    println!("{line}");
    if let Some(path) = &c.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{line}")?;
    }
    if !c.quiet {
        eprint!("{}", herald_bench::table(std::slice::from_ref(&report)));
    }
    failed.map_or(Ok(()), Err)
}
