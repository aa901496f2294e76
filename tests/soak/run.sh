#!/usr/bin/env bash
# tests/soak/run.sh [MINUTES] -- mixed traffic against a running aigw for MINUTES
# (default 30): RSS every minute, its slope, and not one request lost.
#
# Builds nothing: runs $AIGW_BIN (default build/aigw). Starts the mock upstreams
# (tests/soak/mock.py), writes a config in a temporary directory, starts aigw on
# it, runs the load driver (tests/soak/driver.py), stops aigw with SIGTERM and
# checks its exit status and its log. Everything listens on 127.0.0.1. Every
# process it started is stopped by its PID on any exit. See tests/soak/README.md.
#
# Environment (defaults in brackets):
#   AIGW_BIN [build/aigw]      SOAK_WORKERS [2]        SOAK_RPS [150]
#   SOAK_STREAMS [100]         SOAK_STREAM_GAP [0.3]   SOAK_RELOAD_MIN/MAX [30/60]
#   SOAK_MAX_SLOPE [see README] SOAK_SEED [time]       SOAK_DIR [a new /tmp/aigw-soak.*]
#   SOAK_ADMIN_KEY [none: the admin listener is tried with the client key, then none]
#   SOAK_ONLY [all: comma-separated kind names or their beginnings, e.g. stream_,chat]
#   PYTHON [/usr/bin/python3]
set -euo pipefail

MINUTES=${1:-30}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/soak"
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
BIN=${AIGW_BIN:-build/aigw}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
WORKERS=${SOAK_WORKERS:-2}

if ! [ -x "$BIN" ]; then
  echo "soak: no aigw binary at $BIN (make build, or set AIGW_BIN)" >&2
  exit 2
fi
if ! [[ "$MINUTES" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "usage: tests/soak/run.sh [MINUTES]" >&2
  exit 2
fi

DIR=${SOAK_DIR:-$(mktemp -d /tmp/aigw-soak.XXXXXX)}
mkdir -p "$DIR"
echo "soak: $MINUTES min against $BIN ($WORKERS worker(s)); files in $DIR"

MOCK_PID=""
AIGW_PID=""
# The mock and aigw run under setsid, away from the terminal: Ctrl-C reaches the
# driver, which stops the load and reports, and this script then stops them.
SETSID=$(command -v setsid || true)

stop_pid() {            # stop_pid PID: SIGTERM, up to 15 s, then SIGKILL
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$AIGW_PID"
  stop_pid "$MOCK_PID"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# -- the mock upstreams: {"good": PORT, "hang": PORT, "dead": PORT} on their first
# line; "dead" is bound but not listening (connections refused) for as long as
# the mock runs
$SETSID "$PY" "$HERE/mock.py" >"$DIR/mock.out" 2>"$DIR/mock.err" &
MOCK_PID=$!
for _ in $(seq 1 100); do
  [ -s "$DIR/mock.out" ] && break
  kill -0 "$MOCK_PID" 2>/dev/null || { echo "soak: the mock did not start:" >&2; cat "$DIR/mock.err" >&2; exit 2; }
  sleep 0.1
done
read -r GOOD HANG DEAD < <("$PY" -c 'import json,sys; d = json.loads(sys.stdin.readline()); print(d["good"], d["hang"], d["dead"])' <"$DIR/mock.out")

PORT=$(free_port)
ADMIN=$(free_port)

# -- the config: the default plugin chain, access log at info, as users run it
cat >"$DIR/soak.lua" <<EOF
-- written by tests/soak/run.sh
local up = "http://127.0.0.1:$GOOD"
local t = { connect = 2, read = 10, total = 60 }
return {
  listen       = "127.0.0.1:$PORT",
  admin_listen = "127.0.0.1:$ADMIN",
  workers      = $WORKERS,
  log_level    = "info",
  api_keys     = { "sk-soak-client" },
  server = {
    max_body_size = "256k",
    drain_timeout = 10,
  },
  shared  = { limits = "8m", cache = "32m" },
  plugins = { "key-auth", "error-mapping", "access-log" },
  providers = {
    openai    = { kind = "openai", base_url = up .. "/v1", api_key = "sk-up-openai",
                  models = { "gpt-soak", "gpt-soak-mini" }, timeouts = t },
    anthropic = { kind = "anthropic", base_url = up, api_key = "sk-up-anthropic", timeouts = t },
    gemini    = { kind = "gemini", base_url = up, api_key = "sk-up-gemini", timeouts = t },
    -- connect refused
    dead      = { kind = "openai", base_url = "http://127.0.0.1:$DEAD/v1", api_key = "sk-up-dead",
                  timeouts = t },
    -- accepts, reads, never answers: the read timeout gives 504
    hang      = { kind = "openai", base_url = "http://127.0.0.1:$HANG/v1", api_key = "sk-up-hang",
                  timeouts = { connect = 2, read = 1, total = 5 } },
    mock      = { kind = "mock" },
  },
  models = {
    -- every request tries the refused target first, then the good one
    ["soak-failover"] = { strategy = "priority", breaker = false, targets = {
      { provider = "dead", model = "gpt-dead" }, { provider = "openai", model = "gpt-soak" } } },
    -- every request waits 0.3 s for the hanging target's first byte, then the good one
    ["soak-ttfb-failover"] = { strategy = "priority", breaker = false, targets = {
      { provider = "hang", model = "gpt-hang", ttfb_timeout = 0.3 },
      { provider = "openai", model = "gpt-soak" } } },
    -- the breaker opens on the refused target, probes it after each cooldown
    ["soak-breaker"] = { strategy = "priority", targets = {
      { provider = "dead", model = "gpt-dead" }, { provider = "openai", model = "gpt-soak" } } },
  },
}
EOF

"$BIN" check "$DIR/soak.lua" >/dev/null

# -- the gateway
AIGW_PREFIX="$ROOT" $SETSID "$BIN" run "$DIR/soak.lua" >"$DIR/aigw.stdout" 2>"$DIR/aigw.log" &
AIGW_PID=$!
"$PY" - "$PORT" "$AIGW_PID" <<'EOF' || { echo "soak: aigw did not serve /health:" >&2; tail -20 "$DIR/aigw.log" >&2; exit 2; }
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF

# -- the load
set +e
"$PY" "$HERE/driver.py" --port "$PORT" --admin-port "$ADMIN" --pid "$AIGW_PID" \
  --log "$DIR/aigw.log" --mock-port "$GOOD" --mock-pid "$MOCK_PID" --minutes "$MINUTES" \
  --rps "${SOAK_RPS:-150}" --streams "${SOAK_STREAMS:-100}" \
  --stream-gap "${SOAK_STREAM_GAP:-0.3}" \
  --reload-min "${SOAK_RELOAD_MIN:-30}" --reload-max "${SOAK_RELOAD_MAX:-60}" \
  ${SOAK_MAX_SLOPE:+--max-slope "$SOAK_MAX_SLOPE"} ${SOAK_SEED:+--seed "$SOAK_SEED"} \
  --tsv "$DIR/memory.tsv" --summary "$DIR/summary.json"
DRIVER_RC=$?
set -e

# -- stop the gateway: it must drain and exit 0
FAIL=0
AIGW_RC=""
if kill -0 "$AIGW_PID" 2>/dev/null; then
  kill -TERM "$AIGW_PID"
  for _ in $(seq 1 250); do
    kill -0 "$AIGW_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$AIGW_PID" 2>/dev/null; then
    echo "SOAK FAIL: aigw still running 25 s after SIGTERM: killed" >&2
    kill -KILL "$AIGW_PID" 2>/dev/null || true
    FAIL=1
  fi
fi
set +e
wait "$AIGW_PID"
AIGW_RC=$?
set -e
AIGW_PID=""
if [ "$AIGW_RC" -ne 0 ]; then
  echo "SOAK FAIL: aigw exited with status $AIGW_RC"
  FAIL=1
fi

# -- the log: no error line, no crash or sanitizer report
ERRORS=$(grep -cE '^[0-9]{4}-[0-9-]+T[^ ]+Z error \[' "$DIR/aigw.log" || true)
CRASH='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |WARNING: ThreadSanitizer|Segmentation fault|Aborted \(core dumped\)'
CRASHES=$(grep -cE "$CRASH" "$DIR/aigw.log" || true)
if [ "$ERRORS" -ne 0 ]; then
  echo "SOAK FAIL: $ERRORS error line(s) in the gateway's log; the first ones:"
  grep -E '^[0-9]{4}-[0-9-]+T[^ ]+Z error \[' "$DIR/aigw.log" | head -10 | cut -c1-400
  FAIL=1
fi
if [ "$CRASHES" -ne 0 ]; then
  echo "SOAK FAIL: crash or sanitizer report in the gateway's log:"
  grep -E -A5 "$CRASH" "$DIR/aigw.log" | head -40
  FAIL=1
fi
[ "$DRIVER_RC" -eq 0 ] || FAIL=1

echo "soak: log $DIR/aigw.log, memory samples $DIR/memory.tsv, figures $DIR/summary.json"
if [ "$FAIL" -ne 0 ]; then
  echo "soak: FAILED"
  exit 1
fi
echo "soak: passed (aigw exited 0, no error line)"
