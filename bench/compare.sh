#!/usr/bin/env bash
# bench/compare.sh: herald side by side with nchan and Pushpin on this
# machine, same scenarios, same client (herald-bench); writes
# docs/benchmarks.md (bench/intro.md, then the machine, the exact
# commands and the tables, then bench/analysis.md: the reading of a run,
# written by hand, which a rerun does not update). Server pinned to one
# core, load generator to the other. Loopback only. About 20 minutes on 2
# cores.
#
# Env: SYSTEMS ("herald nchan pushpin"), FANOUT_N (10000), IDLE_N (19000),
# HERD_N (10000), POLL_N (1000), DURATION (10), SERVER_CPU (0),
# CLIENT_CPU (1), OUT (docs/benchmarks.md), PEERS (../shared/peers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PEERS=${PEERS:-../shared/peers}
SYSTEMS=${SYSTEMS:-herald nchan pushpin}
FANOUT_N=${FANOUT_N:-10000} IDLE_N=${IDLE_N:-19000} HERD_N=${HERD_N:-10000}
POLL_N=${POLL_N:-1000} DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
OUT=${OUT:-docs/benchmarks.md}
# private ports and run dirs: peers someone else started are left alone
HERALD_PUB=127.0.0.1:28080 HERALD_INT=127.0.0.1:28081
export NCHAN_PORT=28180 NCHAN_WORKERS=1 NCHAN_RUN_DIR=/tmp/herald-compare/nchan
export PUSHPIN_PORT=27999 PUSHPIN_PUB_PORT=25561 PUSHPIN_ORIGIN_PORT=27998
export PUSHPIN_RUN_DIR=/tmp/herald-compare/pushpin
# held long polls must outlive the slowest idle set-up (19000 at 500/s)
export ORIGIN_LP_TIMEOUT=300

work=$(mktemp -d /tmp/herald-compare.XXXXXX)
results=$work/results.jsonl commands=$work/commands.txt
started=$(date +%s)
: >"$results"; : >"$commands"
log() { echo "== $*" >&2; }

command -v taskset >/dev/null || { echo "taskset is required (util-linux)" >&2; exit 1; }
[ -x "$PEERS/nchan/start" ] || { echo "no peers scripts at $PEERS" >&2; exit 1; }

log "building herald and herald-bench (release)"
cargo build --release -p herald -p herald-bench
bench_bin=$root/target/release/herald-bench

# bench SCENARIO ARGS...: one run, load generator pinned; its JSON line
# goes to $results (a failed run gets a line saying so).
bench() {
  local cmd=(taskset -c "$CLIENT_CPU" target/release/herald-bench "$@" "${target[@]}")
  echo "${cmd[*]}" >>"$commands"
  log "${cmd[*]}"
  "${cmd[@]}" --out "$results" >/dev/null || true
}

herald_pid=""
start() {
  case $1 in
    herald)
      taskset -c "$SERVER_CPU" target/release/herald --public-addr "$HERALD_PUB" \
        --internal-addr "$HERALD_INT" --max-connections 70000 \
        >"$work/herald.log" 2>&1 &
      herald_pid=$!
      for _ in $(seq 100); do grep -q "herald listening" "$work/herald.log" && break; sleep 0.1; done
      echo "taskset -c $SERVER_CPU target/release/herald --public-addr $HERALD_PUB --internal-addr $HERALD_INT --max-connections 70000" >>"$commands"
      target=(--system herald --sub "$HERALD_PUB" --pub "$HERALD_INT" --server-pid "$herald_pid") ;;
    nchan)
      taskset -c "$SERVER_CPU" "$PEERS/nchan/start" >&2
      echo "NCHAN_WORKERS=1 NCHAN_PORT=$NCHAN_PORT taskset -c $SERVER_CPU $PEERS/nchan/start" >>"$commands"
      target=(--system nchan --sub "127.0.0.1:$NCHAN_PORT" --pub "127.0.0.1:$NCHAN_PORT"
              --server-pid-file "$NCHAN_RUN_DIR/nginx.pid") ;;
    pushpin)
      taskset -c "$SERVER_CPU" "$PEERS/pushpin/start" >&2
      echo "ORIGIN_LP_TIMEOUT=$ORIGIN_LP_TIMEOUT PUSHPIN_PORT=$PUSHPIN_PORT taskset -c $SERVER_CPU $PEERS/pushpin/start" >>"$commands"
      target=(--system pushpin --sub "127.0.0.1:$PUSHPIN_PORT" --pub "127.0.0.1:$PUSHPIN_PUB_PORT"
              --server-pid-file "$PUSHPIN_RUN_DIR/pushpin.pid" --server-pid-file "$PUSHPIN_RUN_DIR/origin.pid"
              --settle 2 --ramp 500) ;;
  esac
}

stop() {
  case $1 in
    herald) kill -TERM "$herald_pid" 2>/dev/null || true; wait "$herald_pid" 2>/dev/null || true ;;
    nchan) "$PEERS/nchan/stop" >&2 ;;
    pushpin) "$PEERS/pushpin/stop" >&2 ;;
  esac
}

current=""
trap '[ -n "$current" ] && stop "$current"' EXIT

for sys in $SYSTEMS; do
  log "$sys"
  current=$sys
  start "$sys"
  for t in ws sse; do
    bench fanout --transport "$t" --subscribers "$FANOUT_N" --rate 0 --duration "$DURATION"
    # the same load for every system, to compare latency at equal work
    bench fanout --transport "$t" --subscribers "$FANOUT_N" --rate 5 --duration "$DURATION"
  done
  bench fanout --transport longpoll --subscribers "$POLL_N" --rate 0 --duration "$DURATION"
  bench fanout --transport poll --subscribers "$POLL_N" --rate 10 --poll-interval-ms 100 --duration "$DURATION"
  # the 304 path: pollers asking back to back, almost nothing published
  bench fanout --transport poll --subscribers 64 --rate 1 --poll-interval-ms 0 --duration "$DURATION"
  # idle memory from a fresh server: after the fan-outs, freed memory in the
  # allocator would absorb part of the growth and flatter the figure
  stop "$sys"
  start "$sys"
  for t in ws sse longpoll; do
    bench idle --transport "$t" --subscribers "$IDLE_N" --hold 300 --timeout 60
  done
  bench herd --subscribers "$HERD_N" --hold 300
  for subs in 0 1000; do
    for batch in 1 100; do
      bench publish --transport ws --subscribers "$subs" --batch "$batch" --duration "$DURATION"
    done
  done
  for t in ws sse; do
    # 100 sessions of 20 messages at 100 msg/s: ~500 connects/s, what Pushpin takes
    bench churn --transport "$t" --subscribers 100 --rate 100 --per-session 20 --duration "$DURATION" --warmup 5
  done
  stop "$sys"
  current=""
done

elapsed=$(( $(date +%s) - started ))
log "writing $OUT (comparison took ${elapsed}s)"
{
  cat bench/intro.md
  echo
  echo "---"
  echo
  echo "## Results"
  echo
  echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'), herald $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (modified)'), ${elapsed} s in all."
  echo
  echo "### Machine"
  echo
  echo '```'
  echo "$(uname -srm); $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  free -m | awk '/^Mem:/ {print "memory: " $2 " MiB"}'
  echo "open files: soft $(ulimit -Sn), hard $(ulimit -Hn)"
  echo "nginx: $(nginx -v 2>&1 | sed 's|.*/||'), nchan: $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
  echo "pushpin: $(dpkg-query -W -f='${Version}' pushpin 2>/dev/null || echo '?')"
  echo "rustc: $(rustc --version)"
  echo '```'
  echo
  echo "Server on CPU $SERVER_CPU, load generator on CPU $CLIENT_CPU (taskset); Pushpin's"
  echo "processes all inherit CPU $SERVER_CPU too."
  echo
  echo "### Commands"
  echo
  echo '```sh'
  echo "bench/compare.sh   # with: SYSTEMS='$SYSTEMS' FANOUT_N=$FANOUT_N IDLE_N=$IDLE_N HERD_N=$HERD_N POLL_N=$POLL_N DURATION=$DURATION"
  cat "$commands"
  echo '```'
  echo
  echo "### Every run"
  echo
  "$bench_bin" report "$results"
  if [ -f bench/analysis.md ]; then
    echo
    cat bench/analysis.md
  fi
} >"$OUT"
cp "$results" "${OUT%.md}.jsonl"
log "done: $OUT, raw results in ${OUT%.md}.jsonl"
