#!/usr/bin/env bash
# fuzz.sh -- builds the libFuzzer targets of tests/fuzz with clang (ASan +
# UBSan, in build-fuzz) and runs each for FUZZ_SECONDS on its committed
# seed corpus, one after the other.
#
#   scripts/fuzz.sh [TARGET...]     (default: every tests/fuzz/fuzz_*.c)
#
# Environment: FUZZ_SECONDS (60), FUZZ_BUILD (build-fuzz), FUZZ_TIMEOUT
# (seconds one input may take, 20), FUZZ_ARGS (more libFuzzer flags, e.g.
# "-fork=1 -ignore_crashes=1" to go on past a finding), AIGW_FUZZ_STRICT=1
# (findings already reported, tests/fuzz/findings/, count again).
#
# New inputs go to a scratch corpus, $FUZZ_BUILD/corpus/TARGET (kept between
# runs, so a later run starts where the last one got to); the seeds in
# tests/fuzz/corpus/TARGET are only read. A finding is written to
# $FUZZ_BUILD/findings/TARGET/. Per target the summary gives the executions,
# executions per second, the coverage reached and the finding, if any; the
# exit status is 1 when any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECONDS:-60}"
build="${FUZZ_BUILD:-build-fuzz}"
timeout_s="${FUZZ_TIMEOUT:-20}"
jobs=$(nproc 2>/dev/null || echo 2)

cc="${FUZZ_CC:-clang-14}"
command -v "$cc" >/dev/null 2>&1 || { echo "fuzz: $cc not found (scripts/setup.sh fuzz installs it)" >&2; exit 2; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do t=${f#tests/fuzz/fuzz_}; targets+=("${t%.c}"); done
fi
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz: no target $t (tests/fuzz/fuzz_$t.c)" >&2; exit 2; }
done

echo "== fuzz build ($build)"
cmake -S . -B "$build" -DAIGW_FUZZ=ON -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
bins=()
for t in "${targets[@]}"; do bins+=(--target "fuzz_$t"); done
if ! cmake --build "$build" -j "$jobs" "${bins[@]}" >"$build/build.log" 2>&1; then
  grep -E 'error|Error' "$build/build.log" | head -20 >&2
  echo "fuzz: build failed ($build/build.log)" >&2
  exit 2
fi

# Leaks are checked at exit (and per input where the target allows it); a
# UBSan report is fatal, those already known are suppressed unless
# AIGW_FUZZ_STRICT=1 (tests/fuzz/fuzz.h, tests/fuzz/ubsan.supp).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_stack_use_after_return=0:allocator_may_return_null=1}"
export AIGW_PREFIX="${AIGW_PREFIX:-$PWD}"

status=0
summary=()
passed=0
failed=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  findings="$build/findings/$t"
  log="$build/logs/$t.log"
  mkdir -p "$corpus" "$findings" "$build/logs"
  seeds="tests/fuzz/corpus/$t"
  args=(-max_total_time="$secs" -timeout="$timeout_s" -rss_limit_mb=3072 -print_final_stats=1
        -artifact_prefix="$findings/")
  [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
  # tests/fuzz/TARGET.options: the target's own flags, one per line.
  if [ -f "tests/fuzz/$t.options" ]; then
    while IFS= read -r o; do [ -n "$o" ] && [ "${o#\#}" = "$o" ] && args+=("$o"); done <"tests/fuzz/$t.options"
  fi
  # shellcheck disable=SC2206
  extra=(${FUZZ_ARGS:-})
  dirs=("$corpus")
  [ -d "$seeds" ] && dirs+=("$seeds")
  echo "== fuzz $t (${secs}s)"
  rc=0
  "$build/fuzz_$t" "${args[@]}" "${extra[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$( (grep -oE '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" || true) | tail -1 |
        sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+)/cov \1, ft \2/')
  corp=$( (grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" || true) | tail -1 | sed 's/corp: //')
  found=$( (grep -oE "Test unit written to .*" "$log" || true) | sed 's/Test unit written to //' | tr '\n' ' ')
  line="$t: ${execs:-?} execs, ${rate:-?}/s, ${cov:-cov ?}, corpus ${corp:-?}"
  if [ $rc -eq 0 ] && [ -z "$found" ]; then
    passed=$((passed + 1))
  else
    status=1
    failed=$((failed + 1))
    line="$line, FINDING (exit $rc): ${found:-see $log}"
    # The report: the sanitizer's or libFuzzer's, and the harness's own line.
    grep -m1 -B2 -A30 -E '^==[0-9]+==ERROR|runtime error|^fuzz_[a-z_]+: |deadly signal|libFuzzer: (timeout|out-of-memory)' "$log" | head -60 >&2 || true
  fi
  echo "$line"
  summary+=("$line")
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
echo "fuzz: $passed passed, $failed failed"
exit $status
