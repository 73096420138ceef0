#!/usr/bin/env bash
# Two herald instances sharing one Redis, on this machine.
#
# Starts redis-server (no persistence) on $REDIS_PORT and two herald
# instances (A: public $A_PUBLIC / internal $A_INTERNAL, B: public $B_PUBLIC /
# internal $B_INTERNAL; 8080/8081 and 8090/8091 by default), publishes
# through A, polls through B, and with --check exits after that
# demonstration; otherwise it keeps running until Ctrl-C and stops them all.
#
# Needs redis-server on PATH (Debian/Ubuntu: apt install redis-server; macOS:
# brew install redis), curl, and a built herald (cargo build --release), or
# HERALD=/path/to/herald. Every port must be free: the script refuses to
# start rather than talk to whatever already listens there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
HERALD=${HERALD:-$root/target/release/herald}
REDIS_PORT=${REDIS_PORT:-6390}
A_PUBLIC=${A_PUBLIC:-8080} A_INTERNAL=${A_INTERNAL:-8081}
B_PUBLIC=${B_PUBLIC:-8090} B_INTERNAL=${B_INTERNAL:-8091}
redis_url="redis://127.0.0.1:$REDIS_PORT"

fail() { echo "two-instances: $*" >&2; exit 1; }
command -v redis-server >/dev/null || fail "redis-server not found on PATH; install Redis (e.g. apt install redis-server)"
command -v curl >/dev/null || fail "curl not found on PATH"
[ -x "$HERALD" ] || fail "$HERALD is not an executable; run cargo build --release or set HERALD"

# Something already listening on one of our ports would answer in place of
# the process we start: refuse instead.
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$REDIS_PORT" "$A_PUBLIC" "$A_INTERNAL" "$B_PUBLIC" "$B_INTERNAL"; do
  if in_use "$port"; then
    fail "port $port is already in use; stop what listens there or choose other ports (REDIS_PORT, A_PUBLIC, A_INTERNAL, B_PUBLIC, B_INTERNAL)"
  fi
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/herald-two-instances.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  >"$logs/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 50); do in_use "$REDIS_PORT" && break; sleep 0.1; done
kill -0 "$redis_pid" 2>/dev/null || fail "redis-server did not start; see $logs/redis.log"

start() { # name public internal
  local log="$logs/herald-$1.log"
  "$HERALD" --engine redis --redis-url "$redis_url" \
    --public-addr "127.0.0.1:$2" --internal-addr "127.0.0.1:$3" 2>"$log" &
  local pid=$!
  pids+=("$pid")
  # Ours once our process says it listens on both ports and is still alive
  # (it exits at once when it cannot bind or reach Redis).
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || fail "herald $1 exited; see $log"
    if grep "herald listening" "$log" | grep "127.0.0.1:$2" | grep -q "127.0.0.1:$3" &&
      curl -sf "http://127.0.0.1:$3/healthz" >/dev/null; then
      return
    fi
    sleep 0.1
  done
  fail "herald $1 did not start; see $log"
}
start a "$A_PUBLIC" "$A_INTERNAL"
start b "$B_PUBLIC" "$B_INTERNAL"

cursor=$(curl -sf "http://127.0.0.1:$B_PUBLIC/poll/demo" | sed -E 's/.*"cursor":"([^"]*)".*/\1/')
curl -sf -X POST --data 'hello from A' "http://127.0.0.1:$A_INTERNAL/publish/demo" >/dev/null
echo "published on A, polled on B:"
curl -sf "http://127.0.0.1:$B_PUBLIC/poll/demo?since=$cursor"
echo

if [[ "${1:-}" == "--check" ]]; then exit 0; fi
echo "running: A on :$A_PUBLIC/:$A_INTERNAL, B on :$B_PUBLIC/:$B_INTERNAL, Redis on :$REDIS_PORT (Ctrl-C stops all; logs in $logs)"
wait
