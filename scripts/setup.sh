#!/usr/bin/env bash
# setup.sh -- install the Debian packages aigw needs to build, run and test.
# Installs only what is missing; says clearly what to do when it cannot.
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libluajit2-5.1-dev libuv1-dev node-llhttp
            lua-cjson-dev libssl-dev libhiredis-dev openssl ca-certificates)
test_pkgs=(lua-busted redis-server python3 python3-pytest python3-pytest-timeout curl openssl)
bench_pkgs=(nginx-light libnginx-mod-http-echo wrk)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  test)  want+=("${test_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

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
