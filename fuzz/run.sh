#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600) with cargo-fuzz
# (libFuzzer) on the stable compiler, and prints executions and crashes per
# target. Inputs that found new coverage go to a scratch corpus; the
# committed seeds under corpus/ are read, never written. A crash is saved
# under artifacts/<target>/ and named in the summary.
#
#   fuzz/run.sh [SECONDS]        all targets, one after another
#   JOBS=2 fuzz/run.sh 600       two targets at a time
#   TARGETS="cursor since" fuzz/run.sh 60
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). RUSTC_BOOTSTRAP lets the
# stable compiler accept the -Z flags cargo-fuzz passes; no nightly is used.
# No sanitizer: herald forbids unsafe code, and the targets look for panics,
# 5xx answers, broken error bodies, hangs and runaway memory, which
# libFuzzer catches on its own at about twice the speed of an ASan build.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
jobs=${JOBS:-1}
targets=${TARGETS:-$(cargo fuzz list)}
work=${FUZZ_WORK:-target/fuzz-work}
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none

one() {
  local t=$1 log="$work/$1.log"
  mkdir -p "$work/corpus/$t" "artifacts/$t"
  set +e
  cargo fuzz run -s none "$t" "$work/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1
  local rc=$?
  set -e
  local runs crashes
  # The final stats are missing when the target died: then the last
  # progress line's count (#N) is the best figure.
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  crashes=$(grep -c 'Test unit written to' "$log" || true)
  # exit is libFuzzer's status: 0 for a clean run, non-zero for a crash,
  # a leak, a timeout or a signal libFuzzer does not catch.
  printf '%-14s %10s executions in %ss  crashes: %s  exit %s  (log %s)\n' \
    "$t" "${runs:-?}" "$secs" "$crashes" "$rc" "$log"
  grep 'Test unit written to' "$log" || true
}

mkdir -p "$work"
running=0
for t in $targets; do
  one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
