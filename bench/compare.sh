#!/usr/bin/env bash
# bench/compare.sh: herald side by side with nchan and Pushpin on this
# machine, same scenarios, same client (herald-bench), RUNS times each;
# writes docs/benchmarks.md (bench/intro.md, then the machine, the exact
# commands, the table of every run, the medians and the herald/peer
# ratios of the medians, then bench/analysis.md: the reading of a run,
# written by hand, which a rerun does not update). Server pinned to one
# core, load generator to the other. Loopback only.
#
# A run is every system in turn (SYSTEMS), each freshly started; the RUNS
# runs follow each other, so that a slow spell of the machine touches
# every system alike. Every idle run gets a freshly started server.
# The full comparison (3 systems, RUNS=3) takes about 70 minutes on 2
# cores (bench/intro.md says what each part costs); SCENARIOS picks a
# subset.
#
# Env:
#   RUNS (3)            repetitions of each scenario
#   SCENARIOS (all)     any of: saturation equal channels longpoll poll 304
#                       idle herd storm publish churn
#   SYSTEMS ("herald nchan pushpin"); "base" is a second herald build
#                       (BASE_BIN), reported as system "base"
#   HERALD_BIN          herald binary to measure [default: build target/release/herald]
#   BASE_BIN            the "base" system's herald binary
#   HERALD_LOG (info,herald::session=off)  herald's RUST_LOG: its line per
#                       subscriber session is its access log, and nchan
#                       runs with access_log off
#   FANOUT_N (10000)    subscribers of saturation, equal, channels
#   EQUAL_RATE (10)     msg/s of the equal-load runs (one channel)
#   CHANNELS (1000)     channels of the many-channels runs
#   CHANNELS_RATE (2000) msg/s of the many-channels equal-load runs
#   PUBLISHERS (4)      publisher connections of the many-channels runs
#   IDLE_N (19000) HERD_N (10000) POLL_N (1000) DURATION (10)
#   SERVER_CPU (0) CLIENT_CPU (1) PEERS (../shared/peers)
#   OUT (docs/benchmarks.md; for a subset, a file in the run's temporary
#   directory, printed at the end)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PEERS=${PEERS:-../shared/peers}
SYSTEMS=${SYSTEMS:-herald nchan pushpin}
RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-all}
FANOUT_N=${FANOUT_N:-10000} IDLE_N=${IDLE_N:-19000} HERD_N=${HERD_N:-10000}
POLL_N=${POLL_N:-1000} DURATION=${DURATION:-10}
EQUAL_RATE=${EQUAL_RATE:-10} CHANNELS=${CHANNELS:-1000}
CHANNELS_RATE=${CHANNELS_RATE:-2000} PUBLISHERS=${PUBLISHERS:-4}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
HERALD_BIN=${HERALD_BIN:-} BASE_BIN=${BASE_BIN:-}
HERALD_LOG=${HERALD_LOG:-info,herald::session=off}
# private ports and run dirs: peers someone else started are left alone
HERALD_PUB=127.0.0.1:28080 HERALD_INT=127.0.0.1:28081
export NCHAN_PORT=28180 NCHAN_WORKERS=1 NCHAN_RUN_DIR=/tmp/herald-compare/nchan
export PUSHPIN_PORT=27999 PUSHPIN_PUB_PORT=25561 PUSHPIN_ORIGIN_PORT=27998
export PUSHPIN_RUN_DIR=/tmp/herald-compare/pushpin
# held long polls must outlive the slowest idle set-up (19000 at 500/s)
export ORIGIN_LP_TIMEOUT=300

all="saturation equal channels longpoll poll 304 idle herd storm publish churn"
for s in $SCENARIOS; do
  [[ " all $all " == *" $s "* ]] || { echo "unknown scenario $s (know: $all)" >&2; exit 1; }
done
for s in $SYSTEMS; do
  [[ " herald base nchan pushpin " == *" $s "* ]] || { echo "unknown system $s" >&2; exit 1; }
done
[[ " $SYSTEMS " != *" base "* || -x "$BASE_BIN" ]] || { echo "system base needs BASE_BIN" >&2; exit 1; }
want() { [[ " $SCENARIOS " == *" all "* || " $SCENARIOS " == *" $1 "* ]]; }

work=$(mktemp -d /tmp/herald-compare.XXXXXX)
results=$work/results.jsonl commands=$work/commands.txt
if [ -z "${OUT:-}" ]; then
  if [[ " $SCENARIOS " == *" all "* ]]; then OUT=docs/benchmarks.md; else OUT=$work/benchmarks.md; fi
fi
started=$(date +%s)
: >"$results"; : >"$commands"
log() { echo "== $*" >&2; }

command -v taskset >/dev/null || { echo "taskset is required (util-linux)" >&2; exit 1; }
[ -x "$PEERS/nchan/start" ] || { echo "no peers scripts at $PEERS" >&2; exit 1; }

if [ -n "$HERALD_BIN" ]; then
  log "building herald-bench (release); herald is $HERALD_BIN"
  cargo build --release -p herald-bench
else
  log "building herald and herald-bench (release)"
  cargo build --release -p herald -p herald-bench
  HERALD_BIN=$root/target/release/herald
fi
bench_bin=$root/target/release/herald-bench

run=1
# bench SCENARIO ARGS...: one run, load generator pinned; its JSON line
# goes to $results (a failed run gets a line saying so). The commands of
# the first run are listed in the output; the others repeat them.
bench() {
  local cmd=(taskset -c "$CLIENT_CPU" target/release/herald-bench "$@" "${target[@]}")
  [ "$run" = 1 ] && echo "${cmd[*]}" >>"$commands"
  log "run $run/$RUNS: ${cmd[*]}"
  "${cmd[@]}" --out "$results" >/dev/null || true
}

herald_pid=""
start() {
  case $1 in
    herald|base)
      local bin=$HERALD_BIN label=()
      if [ "$1" = base ]; then bin=$BASE_BIN label=(--label base); fi
      local args=(--public-addr "$HERALD_PUB" --internal-addr "$HERALD_INT" --max-connections 70000)
      RUST_LOG=$HERALD_LOG taskset -c "$SERVER_CPU" "$bin" "${args[@]}" >"$work/herald.log" 2>&1 &
      herald_pid=$!
      for _ in $(seq 100); do grep -q "herald listening" "$work/herald.log" && break; sleep 0.1; done
      grep -q "herald listening" "$work/herald.log" || { cat "$work/herald.log" >&2; echo "$1 did not start" >&2; exit 1; }
      [ "$run" = 1 ] && echo "RUST_LOG=$HERALD_LOG taskset -c $SERVER_CPU $bin ${args[*]}" >>"$commands"
      target=(--system herald "${label[@]}" --sub "$HERALD_PUB" --pub "$HERALD_INT" --server-pid "$herald_pid") ;;
    nchan)
      taskset -c "$SERVER_CPU" "$PEERS/nchan/start" >&2
      [ "$run" = 1 ] && echo "NCHAN_WORKERS=1 NCHAN_PORT=$NCHAN_PORT taskset -c $SERVER_CPU $PEERS/nchan/start" >>"$commands"
      target=(--system nchan --sub "127.0.0.1:$NCHAN_PORT" --pub "127.0.0.1:$NCHAN_PORT"
              --server-pid-file "$NCHAN_RUN_DIR/nginx.pid") ;;
    pushpin)
      taskset -c "$SERVER_CPU" "$PEERS/pushpin/start" >&2
      [ "$run" = 1 ] && echo "ORIGIN_LP_TIMEOUT=$ORIGIN_LP_TIMEOUT PUSHPIN_PORT=$PUSHPIN_PORT taskset -c $SERVER_CPU $PEERS/pushpin/start" >>"$commands"
      target=(--system pushpin --sub "127.0.0.1:$PUSHPIN_PORT" --pub "127.0.0.1:$PUSHPIN_PUB_PORT"
              --server-pid-file "$PUSHPIN_RUN_DIR/pushpin.pid" --server-pid-file "$PUSHPIN_RUN_DIR/origin.pid"
              --settle 2 --ramp 500) ;;
  esac
  current=$1
}

stop() {
  case $1 in
    herald|base) kill -TERM "$herald_pid" 2>/dev/null || true; wait "$herald_pid" 2>/dev/null || true ;;
    nchan) "$PEERS/nchan/stop" >&2 ;;
    pushpin) "$PEERS/pushpin/stop" >&2 ;;
  esac
  current=""
}

current=""
trap '[ -n "$current" ] && stop "$current"' EXIT

# Everything but idle, on one server process.
scenarios() {
  for t in ws sse; do
    # lossless capacity: as fast as delivery keeps up
    want saturation && bench fanout --transport "$t" --subscribers "$FANOUT_N" --rate 0 --duration "$DURATION"
    # the same load for every system, to compare latency and CPU at equal work
    want equal && bench fanout --transport "$t" --subscribers "$FANOUT_N" --rate "$EQUAL_RATE" --duration "$DURATION"
  done
  if want channels; then
    # per-user notifications: few subscribers per channel, publishes
    # spread over the channels by several publishers
    for t in ws sse; do
      bench fanout --transport "$t" --subscribers "$FANOUT_N" --channels "$CHANNELS" \
        --publishers "$PUBLISHERS" --window 64 --rate 0 --duration "$DURATION"
      bench fanout --transport "$t" --subscribers "$FANOUT_N" --channels "$CHANNELS" \
        --publishers "$PUBLISHERS" --rate "$CHANNELS_RATE" --duration "$DURATION"
    done
  fi
  want longpoll && bench fanout --transport longpoll --subscribers "$POLL_N" --rate 0 --duration "$DURATION"
  want poll && bench fanout --transport poll --subscribers "$POLL_N" --rate 10 --poll-interval-ms 100 --duration "$DURATION"
  # the 304 path: pollers asking back to back, almost nothing published
  want 304 && bench fanout --transport poll --subscribers 64 --rate 1 --poll-interval-ms 0 --duration "$DURATION"
  want herd && bench herd --subscribers "$HERD_N" --hold 300
  # the listener under a crowd connecting at once (half SSE, half long poll)
  want storm && bench storm --subscribers "$HERD_N" --hold 50
  if want publish; then
    for subs in 0 1000; do
      for batch in 1 100; do
        bench publish --transport ws --subscribers "$subs" --batch "$batch" --duration "$DURATION"
      done
    done
  fi
  if want churn; then
    for t in ws sse; do
      # 100 sessions of 20 messages at 100 msg/s: ~500 connects/s, what Pushpin takes
      bench churn --transport "$t" --subscribers 100 --rate 100 --per-session 20 --duration "$DURATION" --warmup 5
    done
  fi
  return 0
}

needs_server=false
for s in saturation equal channels longpoll poll 304 herd storm publish churn; do
  want "$s" && needs_server=true
done

for run in $(seq "$RUNS"); do
  for sys in $SYSTEMS; do
    log "run $run/$RUNS: $sys"
    if $needs_server; then
      start "$sys"
      scenarios
      stop "$sys"
    fi
    if want idle; then
      # idle memory from a fresh server each time: after other runs, freed
      # memory in the allocator would absorb part of the growth and
      # flatter the figure
      for t in ws sse longpoll; do
        start "$sys"
        bench idle --transport "$t" --subscribers "$IDLE_N" --hold 300 --timeout 60
        stop "$sys"
      done
    fi
  done
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
  # a binary given from outside is named by its path and a hash of it
  binary() { echo "$1 (sha256 $(sha256sum "$1" | cut -c1-12), built $(date -u -r "$1" '+%Y-%m-%d %H:%M UTC'))"; }
  if [ "$HERALD_BIN" = "$root/target/release/herald" ]; then
    version="herald $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (modified)')"
  else
    version="herald $(binary "$HERALD_BIN")"
  fi
  if [[ " $SYSTEMS " == *" base "* ]]; then version="$version, base $(binary "$BASE_BIN")"; fi
  echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'), $version, $RUNS run(s) of each scenario, ${elapsed} s in all."
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
  echo "bench/compare.sh   # with: RUNS=$RUNS SCENARIOS='$SCENARIOS' SYSTEMS='$SYSTEMS' FANOUT_N=$FANOUT_N EQUAL_RATE=$EQUAL_RATE CHANNELS=$CHANNELS CHANNELS_RATE=$CHANNELS_RATE PUBLISHERS=$PUBLISHERS IDLE_N=$IDLE_N HERD_N=$HERD_N POLL_N=$POLL_N DURATION=$DURATION"
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
