#!/usr/bin/env bash
# Install what herald needs to build and test on Debian (12 or later).
# Skips apt entirely when everything is already present.
set -euo pipefail

packages=(
  gcc clang meson ninja-build pkg-config
  libcurl4-openssl-dev zlib1g-dev libsqlite3-dev libjansson-dev
  libcmocka-dev python3 python3-pytest valgrind libclang-rt-14-dev sqlite3
)

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
