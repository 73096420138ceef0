//! End-to-end in a real browser: runs the browser suite of herald.js
//! (`npm test --prefix clients/js`: headless Chromium driven by
//! playwright-core, against this build's binary behind a TCP proxy the
//! tests control). The scenarios live in `clients/js/test/`; this file only
//! makes `cargo test` run them, and skips loudly (fails under `CI=true`)
//! when node, the npm packages or Chromium are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Chromium as Debian installs it, unless `CHROMIUM` names another.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What is missing to run the browser suite, if anything.
fn missing(client: &Path) -> Option<String> {
    if herald_testkit::need("node").is_none() || herald_testkit::need("npm").is_none() {
        return Some("node or npm".into());
    }
    if !client.join("node_modules/playwright-core").is_dir() {
        return Some("clients/js/node_modules (run `npm ci --prefix clients/js`)".into());
    }
    let chromium = chromium();
    if !chromium.is_file() {
        return Some(format!("{} (apt-get install chromium)", chromium.display()));
    }
    None
}

#[test]
fn herald_js_in_chromium() {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    if let Some(what) = missing(&client) {
        if herald_testkit::required() {
            panic!("the browser tests need {what}, which is missing in CI");
        }
        eprintln!("\n*** SKIPPED: browser tests need {what} ***\n");
        return;
    }
    let status = Command::new("npm")
        .args(["test", "--prefix"])
        .arg(&client)
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .status()
        .expect("run npm test");
    assert!(
        status.success(),
        "npm test --prefix clients/js failed: {status}"
    );
}
