#!/usr/bin/env bash
# bench/redis.sh: what the Redis engine costs against the memory engine,
# measured side by side in one run with the same client (herald-bench).
# Appends (or replaces) the section "## The Redis engine" of
# docs/benchmarks.md (the tables, then bench/redis-analysis.md, the reading
# of a run written by hand); run it after bench/compare.sh. About 3 minutes.
#
# Runs: fan-out over WebSocket to FANOUT_N subscribers with the memory
# engine; the same with the Redis engine, subscribers split evenly over
# instances A and B and every publish through A (so half the deliveries
# cross Redis to another instance, and all of them go through it); publish
# throughput (single messages, no subscribers) through the memory engine,
# through one Redis instance, and through two Redis instances at once.
# herald on SERVER_CPU, redis-server on REDIS_CPU (by default the same core,
# so that the whole server side is measured on one core, as the memory
# engine is; give Redis a core of its own with REDIS_CPU), load on
# CLIENT_CPU. The publish runs use PUB_CONCURRENCY publishers at once (each
# on its own connection and channel): few publishers measure the round trip
# more than the capacity.
#
# Env: FANOUT_N (2000), DURATION (10), SERVER_CPU (0), REDIS_CPU
# (SERVER_CPU), CLIENT_CPU (1), PUB_CONCURRENCY (4), REDIS_PORT (26390),
# OUT (docs/benchmarks.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
FANOUT_N=${FANOUT_N:-2000} DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
REDIS_CPU=${REDIS_CPU:-$SERVER_CPU} PUB_CONCURRENCY=${PUB_CONCURRENCY:-4}
REDIS_PORT=${REDIS_PORT:-26390} OUT=${OUT:-docs/benchmarks.md}
A_PUB=127.0.0.1:28080 A_INT=127.0.0.1:28081 B_PUB=127.0.0.1:28090 B_INT=127.0.0.1:28091

command -v redis-server >/dev/null || { echo "redis-server is required" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset is required (util-linux)" >&2; exit 1; }
[ -f "$OUT" ] || { echo "$OUT does not exist: run bench/compare.sh first" >&2; exit 1; }

work=$(mktemp -d /tmp/herald-redis-bench.XXXXXX)
commands=$work/commands.txt
: >"$commands"
log() { echo "== $*" >&2; }

cargo build --release -p herald -p herald-bench
bench_bin=$root/target/release/herald-bench

# One process tree per system, so that the tool sums the CPU and memory of
# everything on the server side (redis-server and both instances).
tree_pid=""
start_tree() { # memory | redis
  if [ "$1" = memory ]; then
    taskset -c "$SERVER_CPU" target/release/herald --public-addr "$A_PUB" --internal-addr "$A_INT" \
      --max-connections 70000 >"$work/a.log" 2>&1 &
    tree_pid=$!
    echo "taskset -c $SERVER_CPU target/release/herald --public-addr $A_PUB --internal-addr $A_INT --max-connections 70000" >>"$commands"
  else
    url="redis://127.0.0.1:$REDIS_PORT"
    taskset -c "$SERVER_CPU" bash -c "
      taskset -c $REDIS_CPU redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no >'$work/redis.log' 2>&1 &
      for _ in \$(seq 50); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
      target/release/herald --engine redis --redis-url $url --public-addr $A_PUB --internal-addr $A_INT --max-connections 70000 >'$work/a.log' 2>&1 &
      target/release/herald --engine redis --redis-url $url --public-addr $B_PUB --internal-addr $B_INT --max-connections 70000 >'$work/b.log' 2>&1 &
      trap 'kill \$(jobs -p) 2>/dev/null; wait' TERM INT
      wait" &
    tree_pid=$!
    echo "taskset -c $REDIS_CPU: redis-server --port $REDIS_PORT --save '' --appendonly no; taskset -c $SERVER_CPU: two herald --engine redis --redis-url $url (A: $A_PUB/$A_INT, B: $B_PUB/$B_INT)" >>"$commands"
  fi
  for _ in $(seq 100); do
    if grep -q "herald listening" "$work/a.log" 2>/dev/null && { [ "$1" = memory ] || grep -q "herald listening" "$work/b.log" 2>/dev/null; }; then
      return
    fi
    sleep 0.1
  done
  echo "herald did not start" >&2; exit 1
}
stop_tree() {
  kill -TERM "$tree_pid" 2>/dev/null || true
  wait "$tree_pid" 2>/dev/null || true
  tree_pid=""
}
trap '[ -n "$tree_pid" ] && stop_tree' EXIT

# bench LABEL ARGS...: one run, its JSON line labelled with the system LABEL.
bench() {
  local label=$1; shift
  local cmd=(taskset -c "$CLIENT_CPU" target/release/herald-bench "$@" --server-pid "$tree_pid")
  echo "${cmd[*]}" >>"$commands"
  log "$label: ${cmd[*]}"
  "${cmd[@]}" --out "$work/run.jsonl" >/dev/null || true
  sed "s/\"system\":\"herald\"/\"system\":\"$label\"/" "$work/run.jsonl" >>"$work/results.jsonl"
  : >"$work/run.jsonl"
}

: >"$work/results.jsonl"; : >"$work/run.jsonl"
log "memory engine"
start_tree memory
bench herald fanout --transport ws --subscribers "$FANOUT_N" --rate 0 --duration "$DURATION" --sub "$A_PUB" --pub "$A_INT"
bench herald publish --transport ws --subscribers 0 --batch 1 --concurrency "$PUB_CONCURRENCY" --duration "$DURATION" --sub "$A_PUB" --pub "$A_INT"
stop_tree

log "redis engine"
start_tree redis
bench herald-redis fanout --transport ws --subscribers "$FANOUT_N" --rate 0 --duration "$DURATION" --sub "$A_PUB" --also-sub "$B_PUB" --pub "$A_INT"
bench herald-redis publish --transport ws --subscribers 0 --batch 1 --concurrency "$PUB_CONCURRENCY" --duration "$DURATION" --sub "$A_PUB" --pub "$A_INT"
# Two instances at once: two publish runs in parallel, one per instance.
log "herald-redis-2: two publish runs at once"
pubs=()
for side in a b; do
  if [ $side = a ]; then s=$A_PUB p=$A_INT; else s=$B_PUB p=$B_INT; fi
  cmd=(taskset -c "$CLIENT_CPU" target/release/herald-bench publish --transport ws --subscribers 0 --batch 1 --concurrency "$PUB_CONCURRENCY" --duration "$DURATION" --sub "$s" --pub "$p" --server-pid "$tree_pid")
  echo "${cmd[*]} &" >>"$commands"
  "${cmd[@]}" --out "$work/two-$side.jsonl" >/dev/null &
  pubs+=($!)
done
wait "${pubs[@]}" || true
for side in a b; do
  sed "s/\"system\":\"herald\"/\"system\":\"herald-redis-2($side)\"/" "$work/two-$side.jsonl" >>"$work/results.jsonl"
done
stop_tree

section=$work/section.md
{
  echo "## The Redis engine"
  echo
  echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'), herald $(git rev-parse --short HEAD), by \`bench/redis.sh\`"
  echo "(FANOUT_N=$FANOUT_N DURATION=$DURATION SERVER_CPU=$SERVER_CPU REDIS_CPU=$REDIS_CPU PUB_CONCURRENCY=$PUB_CONCURRENCY)."
  echo "\`herald\` is the memory engine; \`herald-redis\` is two"
  echo "instances on one Redis with the subscribers split evenly over A and B and every"
  echo "publish through A; \`herald-redis-2(a)\`/\`(b)\` are two publish runs at once, one per"
  echo "instance (their sum is the two-instance publish rate). CPU and memory are summed over"
  echo "the server-side process tree (redis-server and both instances). The ratio table"
  echo "divides the memory engine's figures by the Redis engine's."
  echo
  echo '```sh'
  cat "$commands"
  echo '```'
  echo
  "$bench_bin" report "$work/results.jsonl" | sed 's/^## /### /; s/^### Ratios herald \/ peer/### Ratios memory engine \/ Redis engine/'
  if [ -f bench/redis-analysis.md ]; then
    echo
    cat bench/redis-analysis.md
  fi
} >"$section"

# Replace the section if an earlier run wrote one, else append it.
python3 - "$OUT" "$section" <<'PY'
import re, sys
out, section = sys.argv[1], open(sys.argv[2]).read()
text = open(out).read()
text = re.sub(r"\n## The Redis engine\n.*?(?=\n## |\Z)", "", text, flags=re.S).rstrip() + "\n\n" + section
open(out, "w").write(text)
PY
cp "$work/results.jsonl" "${OUT%.md}-redis.jsonl"
log "done: section appended to $OUT, raw results in ${OUT%.md}-redis.jsonl"
