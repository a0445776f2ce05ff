#!/usr/bin/env bash
# Install what herald needs to build and test on Debian (12 or later).
# Skips apt entirely when everything is already present.
set -euo pipefail

packages=(
  gcc clang meson ninja-build pkg-config
  libcurl4-openssl-dev zlib1g-dev libsqlite3-dev libjansson-dev
  libcmocka-dev python3 python3-pytest python3-venv python3-setuptools python3-wheel
  valgrind libclang-rt-14-dev sqlite3 postgresql openssl make clickhouse-server
)
# Node.js >= 20 with npm for the Node binding: the machine's own when it has
# one (Debian 12's nodejs is 18, which lacks node --test's JUnit reporter).
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
