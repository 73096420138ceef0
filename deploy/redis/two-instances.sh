#!/usr/bin/env bash
# Two herald instances sharing one Redis, on this machine.
#
# Starts redis-server (no persistence) on $REDIS_PORT and two herald
# instances (A: public 8080 / internal 8081, B: public 8090 / internal 8091),
# publishes through A, polls through B, and with --check exits after that
# demonstration; otherwise it keeps running until Ctrl-C and stops them all.
#
# Needs redis-server on PATH and a built herald (cargo build --release), or
# HERALD=/path/to/herald.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
HERALD=${HERALD:-$root/target/release/herald}
REDIS_PORT=${REDIS_PORT:-6390}
redis_url="redis://127.0.0.1:$REDIS_PORT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

start() { # name public internal
  "$HERALD" --engine redis --redis-url "$redis_url" \
    --public-addr "127.0.0.1:$2" --internal-addr "127.0.0.1:$3" 2>"/tmp/herald-$1.log" &
  pids+=($!)
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$3/healthz" >/dev/null && return; sleep 0.1; done
  echo "herald $1 did not start; see /tmp/herald-$1.log" >&2; exit 1
}
start a 8080 8081
start b 8090 8091

cursor=$(curl -sf http://127.0.0.1:8090/poll/demo | sed -E 's/.*"cursor":"([^"]*)".*/\1/')
curl -sf -X POST --data 'hello from A' http://127.0.0.1:8081/publish/demo >/dev/null
echo "published on A, polled on B:"
curl -sf "http://127.0.0.1:8090/poll/demo?since=$cursor"
echo

if [[ "${1:-}" == "--check" ]]; then exit 0; fi
echo "running: A on :8080/:8081, B on :8090/:8091, Redis on :$REDIS_PORT (Ctrl-C stops all)"
wait
