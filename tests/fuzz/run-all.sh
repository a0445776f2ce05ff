#!/usr/bin/env bash
# Build the libFuzzer targets with clang and fuzz each one for a while.
#
#   tests/fuzz/run-all.sh [BUILD_DIR]        BUILD_DIR defaults to build-fuzz
#
#   FUZZ_SECONDS    seconds per target (default 10)
#   FUZZ_FINDINGS   where crash-/leak-/timeout-/oom- inputs go
#                   (default BUILD_DIR/fuzz-findings)
#
# The targets are the build's fuzz_<name> executables; each fuzzes from its
# seeds in tests/fuzz/corpus/<name>/. libFuzzer writes the inputs it finds into the
# first corpus directory it is given: that is a scratch directory, deleted at
# the end, so the seed corpus in the repository is only read. Exits 1 if any
# target found something (its report is printed), 2 if the build failed.
# Longer campaigns: docs/fuzzing.md.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-10}
findings=${FUZZ_FINDINGS:-$build/fuzz-findings}

if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" "$root" -Dfuzz=true || exit 2
else
  meson configure "$build" -Dfuzz=true || exit 2
fi
# Every executable named fuzz_* that the build defines (tests/fuzz/meson.build).
mapfile -t names < <(meson introspect "$build" --targets | python3 -c '
import json, sys
for t in sorted(json.load(sys.stdin), key=lambda t: t["name"]):
    if t["type"] == "executable" and t["name"].startswith("fuzz_"):
        print(t["name"][len("fuzz_"):])')
if [ "${#names[@]}" -eq 0 ]; then
  echo "run-all: no fuzz targets in $build (set it up with CC=clang; fuzz=true needs clang)" >&2
  exit 2
fi
targets=()
for name in "${names[@]}"; do targets+=("fuzz_$name"); done
if ! meson compile -C "$build" "${targets[@]}"; then
  echo "run-all: the fuzz targets did not build" >&2
  exit 2
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$findings"
findings=$(cd "$findings" && pwd)
failed=()
for name in "${names[@]}"; do
  binary="$build/tests/fuzz/fuzz_$name"
  seeds="$root/tests/fuzz/corpus/$name"
  if [ ! -x "$binary" ] || [ ! -d "$seeds" ]; then
    echo "run-all: fuzz_$name: no binary $binary or no seeds $seeds" >&2
    failed+=("fuzz_$name")
    continue
  fi
  mkdir -p "$scratch/$name"
  log="$scratch/$name.log"
  "$binary" -max_total_time="$seconds" -max_len=16384 -timeout=25 \
    -artifact_prefix="$findings/fuzz_$name-" -print_final_stats=1 \
    "$scratch/$name" "$seeds" >"$log" 2>&1
  rc=$?
  # "#123456 DONE cov: 512 ft: 1400 corp: ..." and "stat::number_of_executed_units: N"
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ "$rc" -ne 0 ]; then
    echo "== fuzz_$name: FOUND SOMETHING (exit $rc)"
    tail -n 80 "$log"
    echo "   input kept in $findings/; reproduce with: $binary $findings/fuzz_$name-<file>"
    failed+=("fuzz_$name")
  else
    echo "== fuzz_$name: ok, ${runs:-?} runs in ${seconds}s; ${done_line#*DONE }"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "run-all: findings in: ${failed[*]}" >&2
  exit 1
fi
echo "run-all: ${#names[@]} targets, ${seconds}s each, nothing found"
