#!/usr/bin/env bash
# integration.sh -- run the integration suite against the real aigw binary.
#
#   AIGW_BIN=build/aigw scripts/integration.sh [pytest args...]
#   AIGW_BIN=build/aigw scripts/integration.sh tests/integration/test_proxy.py -k reuse
#
# Uses Debian's python3 (/usr/bin/python3 with python3-pytest; scripts/setup.sh
# test installs it), not whatever python3 comes first on PATH. Every test has its
# own time limit (tests/integration/pytest.ini); INTEGRATION_TIMEOUT (seconds,
# default 1200) bounds the whole run. Exits with pytest's status.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export AIGW_BIN="${AIGW_BIN:-build/aigw}"
case "$AIGW_BIN" in /*) ;; *) AIGW_BIN="$root/$AIGW_BIN" ;; esac
export PYTHONDONTWRITEBYTECODE=1

py=/usr/bin/python3
if ! "$py" -c 'import pytest' 2>/dev/null; then
  echo "integration: $py has no pytest; install Debian's python3-pytest (scripts/setup.sh test)" >&2
  exit 1
fi
if [ ! -x "$AIGW_BIN" ]; then
  echo "integration: no aigw binary at $AIGW_BIN (run make build, or set AIGW_BIN)" >&2
  exit 1
fi

limit="${INTEGRATION_TIMEOUT:-1200}"
set +e
# Test files or directories given: only those; otherwise the whole suite.
where=(tests/integration)
for a in "$@"; do case "$a" in tests/*) where=() ;; esac; done
timeout --kill-after=30 "$limit" "$py" -m pytest -q "${where[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "integration: the suite ran past ${limit}s and was stopped" >&2
fi
exit "$rc"
