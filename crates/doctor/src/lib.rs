//! `herald doctor PUBLIC_URL`: checks a deployed herald from the outside,
//! the way a browser reaches it (through every proxy, load balancer and CDN
//! in front), and says in plain words what is wrong: SSE buffered on the
//! way, held requests cut by a proxy's read timeout, WebSocket upgrades
//! refused, missing CORS headers, a skewed clock. One line per check; exit
//! status 0 when all pass, 1 when one found a problem, 2 for bad arguments.
//!
//! It is its own crate so that the server never carries an HTTP client:
//! the `herald` binary dispatches `herald doctor …` here before it reads
//! any server option. What it leaves out: `https://` URLs (the client is
//! built without TLS; run it against the plain-HTTP side of the TLS
//! terminator, or from a host inside it), and load (one client, a few
//! requests).

mod checks;

use std::{process::ExitCode, time::Duration};

use clap::Parser;

pub use checks::Outcome;

/// `herald doctor`'s arguments.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "herald doctor",
    about = "Checks a deployed herald through its proxies, the way a browser reaches it"
)]
pub struct Args {
    /// The public URL browsers use (http://host[:port][/prefix]).
    pub public_url: String,
    /// herald's internal URL: with it, a diagnostic channel gets messages
    /// and their delivery time through the public URL is measured; without
    /// it, herald's own opening comment on a stream is timed.
    #[arg(long)]
    pub internal_url: Option<String>,
    /// The publish token, when the internal listener requires one (better
    /// in the environment, as HERALD_PUBLISH_TOKEN: arguments are visible to
    /// every user of the machine).
    #[arg(long, env = "HERALD_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,
    /// An origin to check CORS for (https://app.example); not checked
    /// without it.
    #[arg(long)]
    pub origin: Option<String>,
    /// Seconds to hold a long poll: more than the longest hold herald is
    /// configured for (--longpoll-max-timeout), to see a proxy cut it first.
    #[arg(long, default_value_t = 55)]
    pub hold: u64,
    /// The channel the checks use.
    #[arg(long, default_value = "herald-doctor")]
    pub channel: String,
}

impl Args {
    /// How long a held long poll runs.
    fn hold(&self) -> Duration {
        Duration::from_secs(self.hold)
    }
}

/// Runs `herald doctor` with `args` (the words after `doctor`); prints one
/// line per check on standard output.
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match Args::try_parse_from(std::iter::once("herald doctor".into()).chain(args)) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald doctor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcomes = runtime.block_on(checks::run(&args));
    let mut healthy = true;
    for o in &outcomes {
        println!("{o}");
        healthy &= !o.is_problem();
    }
    if healthy {
        println!("healthy: every check passed");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
