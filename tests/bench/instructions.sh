#!/usr/bin/env bash
# instructions.sh -- instructions aigw executes per request, counted by callgrind: steadier
# than req/s on a shared machine, and what results.md's per-step tables use.
#
#   tests/bench/instructions.sh tests/bench/aigw-balanced.lua [N1 N2]
#
# Runs aigw under callgrind twice with the config, sends N1 (200) and then N2 (1200)
# non-stream chat requests (wrk/chat-request.json) over one keep-alive connection, and
# prints (Ir(N2) - Ir(N1)) / (N2 - N1): start-up and shutdown cancel out. The config must
# listen on 127.0.0.1:18080 with the bench key (as the bench configs do); the mock upstream
# (mock/nginx.conf, :18000) is started here unless something already listens there.
# Needs valgrind (Debian: valgrind), nginx and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Ports 18000 and 18080 are fixed, and aigw listens with SO_REUSEPORT: a second run at the
# same time would share its connections. Runs on one machine take turns.
exec 9>"${TMPDIR:-/tmp}/aigw-bench-ports.lock"
flock 9
CONF=${1:?usage: instructions.sh CONF [N1 N2]}
N1=${2:-200}
N2=${3:-1200}
AIGW_BIN=${AIGW_BIN:-build/aigw}
WORK=$(mktemp -d)
MOCK_PID=
cleanup() {
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }

listening() { python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $1)))"; }

if ! listening 18000; then
  mkdir -p "$WORK/mock-tmp"
  nginx -p "$WORK/" -c "$PWD/tests/bench/mock/nginx.conf" -e "$WORK/mock-error.log" 9>&- &
  MOCK_PID=$!
  for _ in $(seq 100); do listening 18000 && break; sleep 0.05; done
fi

send() {  # n requests over one connection; each must be a 200
  python3 - "$1" <<'PY'
import http.client, sys
n = int(sys.argv[1])
body = open("tests/bench/wrk/chat-request.json", "rb").read()
c = http.client.HTTPConnection("127.0.0.1", 18080, timeout=30)
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body,
              {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-0001"})
    r = c.getresponse()
    d = r.read()
    assert r.status == 200, (r.status, d[:200])
PY
}

count() {  # n -> instructions for a run serving n requests
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" "$AIGW_BIN" run "$CONF" \
    >"$WORK/vg.log" 2>&1 9>&- &
  local pid=$!
  for _ in $(seq 200); do listening 18080 && break; sleep 0.1; done
  if ! send "$1"; then
    kill -INT "$pid"
    echo "instructions.sh: a request failed (see $WORK/vg.log)" >&2
    exit 1
  fi
  kill -INT "$pid"
  wait "$pid" || true
  grep -h "^summary:" "$WORK"/cg.* | awk '{ s += $2 } END { print s }'
  rm -f "$WORK"/cg.*
}

a=$(count "$N1") || exit 1
b=$(count "$N2") || exit 1
echo "$CONF: $(( (b - a) / (N2 - N1) )) instructions/request"
