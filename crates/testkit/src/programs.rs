//! Outside programs a test needs (redis-server, node, nginx, chromium):
//! found on the PATH or the test skips with a loud message — unless `CI`
//! says everything must run, then it fails. Also the free-port helper for
//! programs that cannot report the port they picked.
//!
//! What it leaves out: installing anything (the CI script does that).

use std::path::{Path, PathBuf};

use crate::redis::RedisServer;

/// True when outside programs must be present (CI sets `CI=true`).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Finds `program` on the PATH. Without it, a test skips with a loud
/// message, or fails when running in CI.
pub fn need(program: &str) -> Option<PathBuf> {
    // Daemons such as nginx live in sbin, which a non-root PATH may lack.
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(sbin)
        .map(|p| p.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        skip(&format!(
            "{program} not found on PATH; install it to run this test"
        ));
    }
    found
}

/// Panics under CI, otherwise prints a message no one can miss.
fn skip(why: &str) {
    if required() {
        panic!("required in CI: {why}");
    }
    eprintln!("\n*** SKIPPED: {why} ***\n");
}

/// A free TCP port on 127.0.0.1 (bound and released; for programs that
/// cannot report the port they picked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The `tests/js` folder of the repository, with its npm packages.
fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/js")
}

/// The `node` binary, once it and the npm packages of `tests/js` are
/// installed (`npm ci --prefix tests/js`). Without either, a test skips
/// with a loud message, or fails when running in CI.
pub fn need_node_packages() -> Option<PathBuf> {
    let node = need("node")?;
    if !js_dir().join("node_modules").is_dir() {
        skip("tests/js/node_modules missing; run `npm ci --prefix tests/js` to run this test");
        return None;
    }
    Some(node)
}

/// A script of `tests/js`, by file name.
pub fn js_script(name: &str) -> PathBuf {
    js_dir().join(name)
}

/// A fresh `redis-server` on a free port, or `None` (a loud skip, or a
/// failure in CI) when it is not installed.
pub fn redis() -> Option<RedisServer> {
    need("redis-server").map(|program| RedisServer::start(&program))
}
