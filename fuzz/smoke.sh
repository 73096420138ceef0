#!/usr/bin/env bash
# The fuzz smoke check for CI: every committed seed (and every saved crash
# input) runs through its target under a plain `cargo test` on the stable
# toolchain, so that the targets keep compiling and the seeds keep passing
# without installing cargo-fuzz (which alone takes minutes to build).
#
#   fuzz/smoke.sh            replay the corpus
#   fuzz/smoke.sh 10         also fuzz each target for 10 s, when cargo-fuzz
#                            is installed
#
# The fuzz package is outside herald's workspace; it builds into the
# workspace's target directory so that the dependencies it shares with
# herald are not compiled twice.
set -euo pipefail
cd "$(dirname "$0")"
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/../target} cargo test --locked
if [ "${1:-0}" -gt 0 ]; then
  if cargo fuzz --version >/dev/null 2>&1; then
    ./run.sh "$1"
  else
    echo "smoke: cargo-fuzz is not installed; skipped fuzzing for $1 s" >&2
  fi
fi
