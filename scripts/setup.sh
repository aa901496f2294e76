#!/usr/bin/env bash
# setup.sh -- install the Debian packages aigw needs to build, run and test.
# Installs only what is missing; says clearly what to do when it cannot.
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libluajit2-5.1-dev libuv1-dev node-llhttp
            lua-cjson-dev libssl-dev libhiredis-dev openssl ca-certificates)
test_pkgs=(lua-busted lua-check clang-format-14 redis-server python3 python3-pytest python3-pytest-timeout curl openssl)
bench_pkgs=(nginx-light libnginx-mod-http-echo wrk)
# libFuzzer targets (tests/fuzz): clang with its sanitizer and fuzzer runtimes.
# CI runs each target briefly, so the test mode needs them too.
fuzz_pkgs=(clang-14 libclang-rt-14-dev)

mode="${1:-build}"
want=("${build_pkgs[@]}")
case "$mode" in
  build) ;;
  test)  want+=("${test_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  fuzz)  want+=("${fuzz_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench|fuzz]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
# The SDK tests (tests/sdk) need node and npm. Any node on PATH will do (a
# NodeSource nodejs bundles npm and conflicts with Debian's npm package), so
# Debian's packages are added only for a command that is missing.
if [ "$mode" = test ] || [ "$mode" = bench ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

# The official client SDKs used by tests/integration/test_sdk_*.py, at the
# versions pinned in tests/sdk/package-lock.json: installed when node_modules
# is missing or older than the lock file. Only here, never at build time.
sdk_install() {
  [ "$mode" = build ] || [ "$mode" = fuzz ] && return 0
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/sdk"
  if [ -d "$dir/node_modules" ] && [ ! "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    return 0
  fi
  echo "setup: npm ci in tests/sdk" >&2
  if ! (cd "$dir" && npm ci --no-audit --no-fund >&2); then
    echo "setup: npm ci failed in $dir; the SDK tests will be skipped until it succeeds" >&2
    exit 1
  fi
  touch "$dir/node_modules"
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" -lt 20 ]; then
    echo "setup: node $major is older than the SDKs support (20+): the SDK tests will be skipped" >&2
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  sdk_install
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not found; install these Debian 12 packages by hand: ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "setup: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when a package cannot be found in them.
if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  $sudo apt-get update -q >/dev/null
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    echo "setup: could not install: ${missing[*]}" >&2
    exit 1
  fi
fi
sdk_install
