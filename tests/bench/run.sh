#!/usr/bin/env bash
# tests/bench/run.sh -- aigw side-by-side benchmark (`make bench`).
#
# In one run, one worker each, all on 127.0.0.1, against one mock OpenAI upstream:
#   direct  the mock itself (nginx + echo module)                   :18000  mock/nginx.conf
#   nginx   plain nginx proxy_pass, upstream keep-alive 256          :18001  nginx-plain.conf
#   aigw             $AIGW_BIN run conf/gateway.lua, as a user runs it     :18080
#                    (environment below; access line at info, model routed by name)
#   aigw-pinned      $AIGW_BIN run tests/bench/aigw-bench.lua (routes pinned) :18080
#   aigw-translated  $AIGW_BIN run tests/bench/aigw-translated.lua            :18080
#                    (OpenAI client, Anthropic-format upstream)
# For each target, non-stream (POST /v1/chat/completions, 697 B JSON) and stream (SSE, 40
# chunks + [DONE]: the default config reaches it at the same path with X-Bench-Stream: 1,
# the pinned configs at /stream/v1/chat/completions): a warm-up, a throughput run at
# -c$CONNS (req/s, CPU µs/req of the target) and a latency run at -c$LAT_CONNS (p50, p99).
# Markdown table + ratio lines on stdout, progress on stderr.  See README.md.
#
# Env: DURATION (s per run, 10)  WARMUP (s, 3)  CONNS (throughput, 64)  LAT_CONNS (latency, 8)
#      TARGETS ("direct nginx aigw aigw-pinned aigw-translated")  AIGW_BIN (build/aigw)
#      AIGW_CONF (a config file for the `aigw` target instead of conf/gateway.lua)
#      START_TIMEOUT (s to wait for aigw /health, 15)  RUN_DIR (tests/bench/runs/<time>, logs)
#      RESULTS_TSV (append one raw row per target and mode)
# Exit: 0 all targets measured; 1 a target failed (the table is still printed); 2 set-up error.
set -Eeuo pipefail

T0=$(date +%s)
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)

abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
# Paths given by the caller are relative to where run.sh was started; defaults to the repo.
AIGW_BIN=$(abspath "${AIGW_BIN:-$REPO/build/aigw}")
AIGW_CONF=${AIGW_CONF:+$(abspath "$AIGW_CONF")}
RUN_DIR=$(abspath "${RUN_DIR:-$BENCH_DIR/runs/$(date +%Y%m%d-%H%M%S)}")
RESULTS_TSV=${RESULTS_TSV:+$(abspath "$RESULTS_TSV")}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-64}
LAT_CONNS=${LAT_CONNS:-8}
TARGETS=${TARGETS:-"direct nginx aigw aigw-pinned aigw-translated"}
START_TIMEOUT=${START_TIMEOUT:-15}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

MOCK=127.0.0.1:18000
KEY=sk-bench-0001
TICK=$(getconf CLK_TCK)
BODY=$BENCH_DIR/wrk/chat-request.json
SBODY=$BENCH_DIR/wrk/chat-stream-request.json
WRK_LUA=$BENCH_DIR/wrk/chat.lua

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }
elapsed() { local s=$(( $(date +%s) - T0 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

for v in DURATION WARMUP CONNS LAT_CONNS START_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "$v must be a positive integer (got '${!v}')"
done
for t in $TARGETS; do
  case $t in direct|nginx|aigw|aigw-pinned|aigw-translated) ;;
    *) die "unknown target '$t' (direct nginx aigw aigw-pinned aigw-translated)" ;; esac
done
[ -x "$NGINX" ] || die "nginx not found (scripts/setup.sh bench installs nginx-light)"
for bin in wrk curl python3 timeout; do
  command -v "$bin" >/dev/null || die "$bin not found (scripts/setup.sh bench)"
done
[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] \
  || die "nginx echo module missing (scripts/setup.sh bench installs libnginx-mod-http-echo)"

mkdir -p "$RUN_DIR"
# The ports are fixed (and aigw listens with SO_REUSEPORT): runs on one machine take turns
# with each other and with instructions.sh. Children do not hold the lock (9>&-).
exec 9>"${TMPDIR:-/tmp}/aigw-bench-ports.lock"
flock 9
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$REPO"

# ------------------------------------------------------------------ process control
# Every process started here is recorded by PID and stopped by PID on exit (also on error
# or Ctrl-C).  MAIN_PIDS: what we started (nginx masters, aigw, wrk via timeout);
# AUX_PIDS: nginx workers, stopped only if still alive after their master is gone.
MAIN_PIDS=()
AUX_PIDS=()
forget() {  # pid: drop from both lists once it has been reaped (PIDs get reused)
  local p keep=()
  for p in "${MAIN_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; MAIN_PIDS=("${keep[@]}")
  keep=()
  for p in "${AUX_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; AUX_PIDS=("${keep[@]}")
}
stop_pids() {  # pid... : TERM, wait up to 5 s, then KILL
  local p alive
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local n=$(( ${#MAIN_PIDS[@]} + ${#AUX_PIDS[@]} ))
  [ ${#MAIN_PIDS[@]} -gt 0 ] && stop_pids "${MAIN_PIDS[@]}"
  [ ${#AUX_PIDS[@]} -gt 0 ] && stop_pids "${AUX_PIDS[@]}"
  log "stopped $n process(es); logs in $RUN_DIR; total runtime $(elapsed)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() {  # host:port -> 0 if something accepts connections there
  timeout 1 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null
}
wait_port() {  # host:port seconds pid
  for _ in $(seq 1 $(($2 * 10))); do
    port_open "$1" && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
children() {  # pid -> its child PIDs (nginx master -> workers)
  { if [ -e "/proc/$1/task/$1/children" ]; then cat "/proc/$1/task/"*/children
    else ps -o pid= --ppid "$1"; fi; } 2>/dev/null | tr -s ' \n' ' ' || true
}

declare -A PID URL SURL SHDR STATUS R

start_nginx() {  # name conf host:port  (name-tmp, name.pid, name-error.log under RUN_DIR)
  local name=$1 conf=$BENCH_DIR/$2 hp=$3 p kids=()
  if port_open "$hp"; then STATUS[$name]="start failed: $hp already in use"; return 1; fi
  mkdir -p "$RUN_DIR/$name-tmp"
  if ! "$NGINX" -t -q -p "$RUN_DIR/" -c "$conf" -e "$RUN_DIR/$name-error.log" >"$RUN_DIR/$name.out" 2>&1; then
    sed 's/^/    /' "$RUN_DIR/$name.out" >&2
    STATUS[$name]="start failed: nginx -t on $2"; return 1
  fi
  "$NGINX" -p "$RUN_DIR/" -c "$conf" -e "$RUN_DIR/$name-error.log" >>"$RUN_DIR/$name.out" 2>&1 9>&- &
  p=$!; MAIN_PIDS+=("$p"); PID[$name]=$p
  if ! wait_port "$hp" 10 "$p"; then
    tail -n 5 "$RUN_DIR/$name-error.log" "$RUN_DIR/$name.out" 2>/dev/null | sed 's/^/    /' >&2
    STATUS[$name]="start failed: not listening on $hp"; return 1
  fi
  sleep 0.2
  read -r -a kids <<<"$(children "$p")"; AUX_PIDS+=("${kids[@]}")
}

# The default config reads its settings from the environment, as a user's deployment does:
# one worker, the bench key, the mock as OpenAI's base URL, the admin listener off (its
# port would be the only difference from a laptop's first run).
DEFAULT_ENV=(AIGW_WORKERS=1 AIGW_LISTEN=127.0.0.1:18080 AIGW_ADMIN_LISTEN=off
             AIGW_API_KEYS=$KEY OPENAI_BASE_URL=http://$MOCK/v1 OPENAI_API_KEY=sk-upstream-bench)

aigw_conf() {  # target -> the config file it runs
  case $1 in
    aigw) echo "${AIGW_CONF:-conf/gateway.lua}" ;;
    aigw-pinned) echo tests/bench/aigw-bench.lua ;;
    aigw-translated) echo tests/bench/aigw-translated.lua ;;
  esac
}

start_aigw() {  # target
  local t=$1 conf p code="" rc deadline
  conf=$(aigw_conf "$t")
  if [ ! -x "$AIGW_BIN" ]; then STATUS[$t]="start failed: $AIGW_BIN not found (make build)"; return 1; fi
  if port_open 127.0.0.1:18080; then STATUS[$t]="start failed: 127.0.0.1:18080 already in use"; return 1; fi
  log "$t: $AIGW_BIN run $conf"
  env "${DEFAULT_ENV[@]}" "$AIGW_BIN" run "$conf" >"$RUN_DIR/$t.log" 2>&1 9>&- &
  p=$!; MAIN_PIDS+=("$p"); PID[$t]=$p
  deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$p" 2>/dev/null; then
      rc=0; wait "$p" 2>/dev/null || rc=$?; forget "$p"
      tail -n 10 "$RUN_DIR/$t.log" | sed 's/^/    /' >&2
      STATUS[$t]="start failed: exited with status $rc (see $t.log)"; return 1
    fi
    code=$(curl -s -m 1 -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/health 2>/dev/null) || true
    [ "$code" = 200 ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      tail -n 10 "$RUN_DIR/$t.log" | sed 's/^/    /' >&2
      STATUS[$t]="start failed: GET /health not 200 within ${START_TIMEOUT}s (last: ${code:-none})"; return 1
    fi
    sleep 0.1
  done
}

stop_target() {
  local p=${PID[$1]:-} kids
  [ -n "$p" ] || return 0
  kids=$(children "$p")
  stop_pids "$p" $kids
  forget "$p"; for k in $kids; do forget "$k"; done
}

# ------------------------------------------------------------------ checks
post() {  # url body outfile [auth-header [extra-header]] -> prints HTTP status
  local auth=${4-"Authorization: Bearer $KEY"} args=()
  [ -n "$auth" ] && args=(-H "$auth")
  [ -n "${5:-}" ] && args+=(-H "$5")
  curl -s -m 10 -N -o "$3" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    "${args[@]}" --data-binary @"$2" "$1" 2>/dev/null || true
}
check_chat() {  # target -> 0 ok; prints the reason on failure
  local t=$1 f=$RUN_DIR/$1.check.json code
  code=$(post "${URL[$t]}" "$BODY" "$f")
  [ "$code" = 200 ] || { echo "chat check: HTTP ${code:-none}"; return 1; }
  python3 - "$f" "$BENCH_DIR/mock/chat.json" <<'PY' || { echo "chat check: body differs from the mock's"; return 1; }
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
# The same completion: passed through as it is, or translated from another
# provider's format (aigw-translated.lua), where the model name and the
# usage details are that provider's.
ca, cb = a["choices"][0], b["choices"][0]
ok = (a.get("object") == b["object"]
      and ca["message"]["content"] == cb["message"]["content"]
      and ca["finish_reason"] == cb["finish_reason"]
      and all(a["usage"][k] == b["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")))
sys.exit(0 if ok else 1)
PY
}
check_stream() {  # target -> 0 ok: 200, 40 chat.completion.chunk events (usage in the last), [DONE]
  local t=$1 f=$RUN_DIR/$1.check.sse code
  code=$(post "${SURL[$t]}" "$SBODY" "$f" "Authorization: Bearer $KEY" "${SHDR[$t]:-}")
  [ "$code" = 200 ] || { echo "stream check: HTTP ${code:-none}"; return 1; }
  python3 - "$f" <<'PY' || { echo "stream check: not 40 chunks + [DONE] (see $t.check.sse)"; return 1; }
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
assert ev and ev[-1] == "[DONE]", ev[-1:]
chunks = [json.loads(e) for e in ev[:-1]]
assert len(chunks) == 40, len(chunks)
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
assert chunks[-1]["usage"]["total_tokens"] == 267
PY
}
check_auth() {  # aigw only: key-auth must be on, or we would benchmark a different chain
  local t=$1 code
  code=$(post "${URL[$t]}" "$BODY" /dev/null "")
  [ "$code" = 401 ] || { echo "auth check: HTTP ${code:-none} without a key (want 401)"; return 1; }
  code=$(post "${URL[$t]}" "$BODY" /dev/null "Authorization: Bearer sk-wrong-key")
  [ "$code" = 401 ] || { echo "auth check: HTTP ${code:-none} with a wrong key (want 401)"; return 1; }
}

# ------------------------------------------------------------------ measurement
cpu_ticks() {  # utime+stime of pid (all its threads) plus its children (nginx workers)
  local s=0 p v
  for p in $1 $(children "$1"); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || true
    s=$((s + ${v:-0}))
  done
  echo $s
}
serving_pids() {  # nginx: the worker(s); aigw: the process itself
  local k; k=$(children "$1")
  if [ -n "${k// /}" ]; then echo $k; else echo "$1"; fi
}
mem_kb() {  # pid field(VmRSS|VmHWM), summed over serving pids
  local s=0 p v
  for p in $(serving_pids "$1"); do
    v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null) || true
    s=$((s + ${v:-0}))
  done
  echo $s
}

RES=""
run_wrk() {  # tag url body conns secs [headers] -> sets RES to wrk's RESULT line (or "RESULT fail")
  local url=$2 body=$3 c=$4 d=$5 out=$RUN_DIR/wrk-$1.log p
  WRK_BODY=$body WRK_KEY=$KEY WRK_HEADERS=${6:-} timeout -k 5 $((d + 30)) \
    wrk -t1 -c"$c" -d"${d}s" --timeout 10s -s "$WRK_LUA" "$url" >"$out" 2>&1 9>&- &
  p=$!; MAIN_PIDS+=("$p")
  wait "$p" 2>/dev/null || true
  forget "$p"
  RES=$(grep -m1 '^RESULT ' "$out" || echo "RESULT fail")
}
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" ${1#RESULT }"; }
kn() { local v; v=$(kv "$1" "$2"); echo "${v:-0}"; }

measure() {  # target mode(chat|stream)
  local t=$1 m=$2 url body hdr="" c0 c1 reqs err=0 pid=${PID[$1]}
  if [ "$m" = chat ]; then url=${URL[$t]}; body=$BODY; else url=${SURL[$t]}; body=$SBODY; hdr=${SHDR[$t]:-}; fi
  run_wrk "$t-$m-warmup" "$url" "$body" "$CONNS" "$WARMUP" "$hdr"
  c0=$(cpu_ticks "$pid")
  run_wrk "$t-$m-c$CONNS" "$url" "$body" "$CONNS" "$DURATION" "$hdr"
  c1=$(cpu_ticks "$pid")
  if [ "$RES" = "RESULT fail" ]; then STATUS[$t,$m]="wrk failed (see wrk-$t-$m-c$CONNS.log)"; return; fi
  R[$t,$m,rps]=$(kv "$RES" rps); R[$t,$m,p99hi]=$(kv "$RES" p99_us); reqs=$(kn "$RES" reqs)
  err=$(( $(kn "$RES" non2xx) + $(kn "$RES" errors) ))
  R[$t,$m,cpu]=$(awk -v d=$((c1 - c0)) -v n="$reqs" -v hz="$TICK" \
    'BEGIN { if (n > 0) printf "%.1f", d * 1e6 / hz / n; else print "-" }')
  log "$t $m: c$CONNS ${R[$t,$m,rps]} req/s, p99 ${R[$t,$m,p99hi]} us, cpu ${R[$t,$m,cpu]} us/req"
  run_wrk "$t-$m-c$LAT_CONNS" "$url" "$body" "$LAT_CONNS" "$DURATION" "$hdr"
  if [ "$RES" = "RESULT fail" ]; then STATUS[$t,$m]="wrk failed (see wrk-$t-$m-c$LAT_CONNS.log)"; return; fi
  R[$t,$m,lrps]=$(kv "$RES" rps); R[$t,$m,p50]=$(kv "$RES" p50_us); R[$t,$m,p99]=$(kv "$RES" p99_us)
  err=$(( err + $(kn "$RES" non2xx) + $(kn "$RES" errors) ))
  R[$t,$m,err]=$err
  log "$t $m: c$LAT_CONNS p50 ${R[$t,$m,p50]} us, p99 ${R[$t,$m,p99]} us"
  if [ "$err" -gt 0 ]; then STATUS[$t,$m]="$err errors/non-2xx (see wrk-$t-$m-*.log)"; else STATUS[$t,$m]=ok; fi
}

# ------------------------------------------------------------------ main
URL[direct]=http://$MOCK/v1/chat/completions
SURL[direct]=http://$MOCK/stream/v1/chat/completions
URL[nginx]=http://127.0.0.1:18001/v1/chat/completions
SURL[nginx]=http://127.0.0.1:18001/stream/v1/chat/completions
for t in aigw aigw-pinned aigw-translated; do
  URL[$t]=http://127.0.0.1:18080/v1/chat/completions
  SURL[$t]=http://127.0.0.1:18080/stream/v1/chat/completions
done
if [ -z "$AIGW_CONF" ]; then  # the default config routes by model: the mock streams on this header
  SURL[aigw]=${URL[aigw]}; SHDR[aigw]="X-Bench-Stream: 1"
fi

V_NGINX=$("$NGINX" -v 2>&1 | sed 's/.*: //')
V_WRK=$( { wrk -v 2>&1 || true; } | head -1 | awk '{print "wrk " $2}')
V_AIGW=$( [ -x "$AIGW_BIN" ] && timeout 5 "$AIGW_BIN" version 2>/dev/null | head -1 || true)
log "run dir $RUN_DIR; $V_NGINX; $V_WRK; aigw: ${V_AIGW:-n/a}; $(nproc) cores"
log "plan: targets [$TARGETS], per mode ${WARMUP}s warm-up + ${DURATION}s at c$CONNS + ${DURATION}s at c$LAT_CONNS"

start_nginx mock mock/nginx.conf $MOCK || die "mock upstream: ${STATUS[mock]}"
PID[direct]=${PID[mock]}
err=$(check_chat direct) || die "mock upstream broken: $err"
err=$(check_stream direct) || die "mock upstream broken: $err"

for t in $TARGETS; do
  STATUS[$t]=ok
  case $t in
    direct) : ;;
    nginx) start_nginx nginx nginx-plain.conf 127.0.0.1:18001 || true ;;
    aigw*) start_aigw "$t" || true ;;
  esac
  if [ "${STATUS[$t]}" != ok ]; then log "$t: ${STATUS[$t]}"; stop_target "$t"; continue; fi
  if [[ $t == aigw* ]] && ! err=$(check_auth "$t"); then
    STATUS[$t]=$err; log "$t: $err"; stop_target "$t"; continue
  fi
  R[$t,rss0]=$(mem_kb "${PID[$t]}" VmRSS)
  log "$t: pid ${PID[$t]}, serving pid(s) $(serving_pids "${PID[$t]}"), idle RSS ${R[$t,rss0]} kB"
  for m in chat stream; do
    if [ $m = chat ]; then err=$(check_chat "$t") || true; else err=$(check_stream "$t") || true; fi
    if [ -n "$err" ]; then STATUS[$t,$m]="$err"; log "$t $m: $err -- not measured"; continue; fi
    measure "$t" "$m"
  done
  R[$t,hwm]=$(mem_kb "${PID[$t]}" VmHWM)
  [ "$t" = direct ] || stop_target "$t"   # free the cores for the next target
done

# ------------------------------------------------------------------ report
ms() { awk -v u="${1:-}" 'BEGIN { if (u == "") print "-"; else printf "%.3f", u / 1000 }'; }
mb() { awk -v k="${1:-}" 'BEGIN { if (k == "" || k == 0) print "-"; else printf "%.1f", k / 1024 }'; }
int() { awk -v v="${1:-}" 'BEGIN { if (v == "") print "-"; else printf "%.0f", v }'; }
mode_name() { [ "$1" = chat ] && echo non-stream || echo stream; }
row_status() {  # target mode -> "ok" or why not
  local st=${STATUS[$1]:-not run}
  if [ "$st" = ok ]; then echo "${STATUS[$1,$2]:-not run}"; else echo "$st"; fi
}

failed=0
echo
echo "| target | mode | req/s c$CONNS | p99 ms c$CONNS | CPU µs/req | p50 ms c$LAT_CONNS | p99 ms c$LAT_CONNS | idle RSS MB | peak RSS MB | status |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
for t in $TARGETS; do
  for m in chat stream; do
    st=$(row_status "$t" "$m"); [ "$st" = ok ] || failed=1
    echo "| $t | $(mode_name $m) | $(int "${R[$t,$m,rps]:-}") | $(ms "${R[$t,$m,p99hi]:-}") | ${R[$t,$m,cpu]:--} | $(ms "${R[$t,$m,p50]:-}") | $(ms "${R[$t,$m,p99]:-}") | $(mb "${R[$t,rss0]:-}") | $(mb "${R[$t,hwm]:-}") | $st |"
    if [ -n "$RESULTS_TSV" ]; then
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -Is)" "$t" "$(mode_name $m)" \
        "${R[$t,$m,rps]:-}" "${R[$t,$m,p99hi]:-}" "${R[$t,$m,cpu]:-}" "${R[$t,$m,p50]:-}" "${R[$t,$m,p99]:-}" \
        "${R[$t,rss0]:-}" "${R[$t,hwm]:-}" "$DURATION" "$st" >>"$RESULTS_TSV"
    fi
  done
done
echo

have() { [ -n "${R[$1,$2,$3]:-}" ]; }
missing() {  # target mode key -> 0 (and prints why) if the number is missing
  have "$1" "$2" "$3" && return 1
  local st; st=$(row_status "$1" "$2"); [ "$st" = ok ] && st="not measured"
  echo "n/a ($1: ${st%%:*})"
}
AIGW_TARGETS=$(for t in $TARGETS; do [[ $t == aigw* ]] && echo "$t"; done)
for a in $AIGW_TARGETS; do
  for m in chat stream; do
    for k in rps cpu; do
      if ! v=$(missing "$a" $m $k) && ! v=$(missing nginx $m $k); then
        v=$(awk -v a="${R[$a,$m,$k]}" -v b="${R[nginx,$m,$k]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
        if [ $m = chat ]; then
          case $a,$k in
            aigw,rps) v="$v (target ≥ 1.00x)" ;;
            aigw,cpu) v="$v (target ≤ 1.10x)" ;;
            aigw-translated,rps) v="$v (target ≥ 0.60x)" ;;
          esac
        fi
      fi
      [ $k = rps ] && label=throughput || label="CPU µs/req"
      echo "$a/nginx $label ($(mode_name $m)): $v"
    done
  done
done
for p in nginx $AIGW_TARGETS; do
  for m in chat stream; do
    for q in p50 p99; do
      if ! v=$(missing "$p" $m $q) && ! v=$(missing direct $m $q); then
        v=$(awk -v a="${R[$p,$m,$q]}" -v b="${R[direct,$m,$q]}" 'BEGIN { printf "%.3f ms", (a - b) / 1000 }')
        [ "$p" = aigw ] && [ $m = chat ] && [ $q = p99 ] && v="$v (target ≤ 0.100 ms)"
      fi
      echo "$p added $q over direct (c$LAT_CONNS, $(mode_name $m)): $v"
    done
  done
done
for a in $AIGW_TARGETS; do
  [ -n "${R[$a,rss0]:-}" ] || continue
  echo "$a idle RSS: $(mb "${R[$a,rss0]}") MB (target ≤ 16 MB), peak $(mb "${R[$a,hwm]:-}") MB"
done
echo
echo "wrk -t1 --timeout 10s; per target and mode ${WARMUP}s warm-up at c$CONNS, ${DURATION}s at c$CONNS (req/s, CPU), ${DURATION}s at c$LAT_CONNS (p50/p99)."
echo "Request $(wc -c <"$BODY") B JSON (stream: $(wc -c <"$SBODY") B); response 697 B JSON, or SSE: 40 chunk events + [DONE], one HTTP chunk each."
echo "CPU µs/req = target's utime+stime during the c$CONNS run / requests (direct: the mock's own cost). RSS: nginx worker or the aigw process; idle = VmRSS before load, peak = VmHWM after."
echo "aigw: conf/gateway.lua with ${DEFAULT_ENV[*]}${AIGW_CONF:+ (replaced by $AIGW_CONF)}; aigw-pinned: tests/bench/aigw-bench.lua; aigw-translated: tests/bench/aigw-translated.lua."
echo "$V_NGINX; $V_WRK; aigw: ${V_AIGW:-n/a} ($AIGW_BIN); $(nproc) cores shared by wrk, mock and target. Logs: $RUN_DIR"
echo "total runtime: $(elapsed)"
exit $failed
