//! herald's test kit, shared by every end-to-end test (and by any crate
//! whose tests need a running gateway). Dev-only: never a normal dependency.
//!
//! - [`Server`]: herald in-process on `127.0.0.1:0`, through the public
//!   [`herald_server::run`] API; stop (drain) and restart on the same ports.
//! - [`Binary`]: the `herald` executable as a subprocess, for what only the
//!   binary does (flags, environment, TOML, signals, exit codes, logs).
//! - [`Endpoints`]: what both of them answer on — URLs and the publish and
//!   admin calls, a short poll. [`client()`], [`get_json`], [`data`] and
//!   [`cursor`] make plain requests and read replies.
//! - [`sse`] and [`ws`]: one client per streaming transport (short and
//!   long polls are plain GETs through [`client()`]).
//! - [`nginx`]: a throwaway nginx running a site file in front of herald.
//! - [`redis`]: a throwaway `redis-server`; [`need`] finds an outside
//!   program or skips loudly (fails under `CI=true`).
//!
//! What it leaves out: assertions about herald's behaviour. Those stay in
//! the tests; the kit only starts things and reads what comes back.

mod binary;
mod endpoints;
pub mod nginx;
mod programs;
pub mod redis;
mod server;
pub mod sse;
pub mod ws;

pub use binary::Binary;
pub use endpoints::{Endpoints, client, cursor, data, get_json};
pub use programs::{free_port, js_script, need, need_node_packages, redis, required};
pub use server::Server;
