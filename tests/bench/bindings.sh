#!/usr/bin/env bash
# Calls per second and µs per track() through the plain C call, the Python
# binding and the Node binding: same N, same 8-property event, same runs;
# prints a table with each binding's cost relative to C.
#
#   tests/bench/bindings.sh [N] [RUNS]
#
# Environment: HERALD_BUILD_DIR (default "build", relative to the repository
# root) holds libherald.so and tests/bench/bench_track; BENCH_URL, when set,
# delivers to that sink during the calls instead of queueing only;
# BENCH_DURABILITY (process|power, default process). Needs /usr/bin/python3
# and node, with `npm ci` done in bindings/node.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${1:-20000}
RUNS=${2:-5}
build=${HERALD_BUILD_DIR:-build}
case $build in /*) ;; *) build=$PWD/$build ;; esac
lib=$build/libherald.so
bench=$build/tests/bench/bench_track
PY=${HERALD_PYTHON:-/usr/bin/python3}
durability=${BENCH_DURABILITY:-process}
url_args=()
[ -n "${BENCH_URL:-}" ] && url_args=(--url "$BENCH_URL")

[ -f "$lib" ] || { echo "bindings.sh: $lib not found: build first (meson setup $build && ninja -C $build)" >&2; exit 1; }
[ -x "$bench" ] || { echo "bindings.sh: $bench not found: build first" >&2; exit 1; }
[ -d bindings/node/node_modules/koffi ] || { echo "bindings.sh: run 'npm ci' in bindings/node first" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The runs are interleaved (C, Python, Node, C, Python, Node...) so that the
# machine's drift (other load, the file system) hits every variant alike;
# each run is one program start with one fresh queue file.
for i in $(seq 1 "$RUNS"); do
  echo "== round $i/$RUNS" >&2
  "$bench" --count "$N" --runs 1 --durability "$durability" "${url_args[@]}" | tee -a "$out/c" >&2
  PYTHONPATH=bindings/python HERALD_LIBRARY="$lib" "$PY" tests/bench/bench_python.py \
    --count "$N" --runs 1 --durability "$durability" "${url_args[@]}" | tee -a "$out/python" >&2
  HERALD_LIBRARY="$lib" node tests/bench/bench_node.js \
    --count "$N" --runs 1 --durability "$durability" "${url_args[@]}" | tee -a "$out/node" >&2
done

echo
echo "track(): $N calls per run, $RUNS interleaved runs, 8 properties, deliver=${BENCH_URL:-off}, durability=$durability"
"$PY" - "$out" <<'PYEOF'
import re, statistics, sys
out = sys.argv[1]
rates = {}
for v in ("c", "python", "node"):
    text = open("%s/%s" % (out, v)).read()
    rates[v] = [float(x) for x in re.findall(r"^RESULT \w+ calls_per_s=([0-9.]+)", text, re.M)]
c_med = statistics.median(rates["c"])
c_best = max(rates["c"])
print("%-8s %12s %12s %10s %14s %14s" % ("variant", "calls/s", "µs/call", "x C time",
                                         "overhead µs", "best µs/call"))
for v in ("c", "python", "node"):
    med = statistics.median(rates[v])
    us, cus = 1e6 / med, 1e6 / c_med
    print("%-8s %12.0f %12.2f %10.2f %14.2f %14.2f"
          % (v, med, us, us / cus, us - cus, 1e6 / max(rates[v])))
print("(median of the runs; 'best' is the fastest run; overhead = binding µs - C µs)")
PYEOF
