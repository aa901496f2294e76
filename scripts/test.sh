#!/usr/bin/env bash
# test.sh -- the whole suite: luacheck, the C format (.clang-format), the
# core's layering (scripts/check-layers.py), build, C unit tests (ctest),
# busted specs (aigw test), integration tests against the real binary. With
# CI=true or AIGW_SANITIZE=1 the same suite runs again on an
# AddressSanitizer + UndefinedBehaviorSanitizer build. With CI=true or AIGW_FUZZ=1 each fuzz
# target (tests/fuzz) then runs FUZZ_CI_SECONDS (15) on its seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc 2>/dev/null || echo 2)

lint_lua() {  # luacheck over every Lua file (.luacheckrc); a warning fails the suite
  echo "== luacheck"
  command -v luacheck >/dev/null || { echo "luacheck not found: scripts/setup.sh test installs it" >&2; exit 1; }
  luacheck -q --no-color .
}
lint_lua

format_c() {  # every C file as .clang-format says; a difference fails the suite
  echo "== clang-format"
  local cf=clang-format-14
  command -v "$cf" >/dev/null || { echo "$cf not found: scripts/setup.sh test installs it" >&2; exit 1; }
  git ls-files '*.c' '*.h' | xargs "$cf" --dry-run --Werror
}
format_c

suite() {  # build-dir cmake-args...
  local dir=$1; shift
  echo "== build ($dir)"
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs" 2>&1 | grep -vE '^\[ *[0-9]+%\]' || true
  [ -x "$dir/aigw" ] || { echo "build failed" >&2; exit 1; }
  echo "== unit tests ($dir)"
  (cd "$dir" && ctest --output-on-failure --timeout 120)
  echo "== specs ($dir)"
  timeout --kill-after=10 300 "$dir/aigw" test -o plainTerminal spec/
  echo "== integration tests ($dir)"
  AIGW_BIN="$dir/aigw" scripts/integration.sh
}

echo "== layers (core/)"
python3 scripts/check-layers.py
suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${CI:-}" = "true" ] || [ "${AIGW_SANITIZE:-}" = "1" ]; then
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  suite build-asan -DCMAKE_BUILD_TYPE=Debug -DAIGW_SANITIZE=ON
fi
if [ "${CI:-}" = "true" ] || [ "${AIGW_FUZZ:-}" = "1" ]; then
  echo "== fuzz (each target ${FUZZ_CI_SECONDS:-15}s)"
  FUZZ_SECONDS="${FUZZ_CI_SECONDS:-15}" FUZZ_BUILD=build-fuzz scripts/fuzz.sh
fi
