#!/usr/bin/env bash
# herald against the peer SDKs from npm (@segment/analytics-node, posthog-node,
# @rudderstack/rudder-sdk-node), side by side in one run, same event, same
# loopback sink; prints a table of medians with herald / best-peer ratios,
# herald's latency over 1, 2, 4, 8 threads, the cost of durability "power",
# and the stripped library size. docs/performance.md explains every number.
#
#   tests/bench/compare.sh [--count N] [--runs R] [--full] [options]
#
#   --count N        events per burst (default 100000)
#   --runs R         runs of every measurement; the table shows medians (default 3)
#   --full           also the offline RSS with 1,000,000 events queued (slow)
#   --threads "..."  herald's thread counts (default "1 2 4 8")
#   --concurrency "..."  herald's batch_concurrency values for the extra
#                    end-to-end table (default "1 2 4 8"; "" skips it)
#   --power-count N  events for the durability=power rows (default min(N, 20000):
#                    one fsync per call)
#   --stall-ms MS    kill -9 rows: the sink answers this late while the victim
#                    runs, so that most events are still queued (default 1000)
#   --peers "..."    which peers (default "segment posthog rudder")
#   --rudder-yield K RudderStack's burst lets the event loop turn every K calls
#                    (default 100; 0: a single synchronous burst, which is
#                    quadratic in RudderStack; see docs/performance.md)
#   --rudder-offline-s S  stop RudderStack's offline burst after S s (default 30)
#   --herald-backend B    herald's backend for the end-to-end rows (default segment)
#   --keep DIR       keep every raw RESULT line in DIR/results.txt
#   --update-docs    also write the tables into docs/performance.md, replacing
#                    its section between the BEGIN/END RESULTS markers
#
# Environment: HERALD_BUILD_DIR (default "build", relative to the repository
# root): built with meson/ninja if needed. Needs node and npm (the peers are
# installed with `npm ci` in tests/bench/peers if node_modules is missing) and
# /usr/bin/python3 for the table. HERALD_BENCH_REV: the revision to print when
# the tree is not a git checkout.
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/../.."
root=$PWD

count=100000
runs=3
full=0
threads="1 2 4 8"
concurrency="1 2 4 8"
power_count=
stall_ms=1000
peers="segment posthog rudder"
rudder_yield=100
rudder_offline_s=30
herald_backend=segment
keep=
update_docs=0
while [ $# -gt 0 ]; do
  case $1 in
    --count) count=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --full) full=1; shift ;;
    --threads) threads=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --power-count) power_count=$2; shift 2 ;;
    --stall-ms) stall_ms=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --rudder-yield) rudder_yield=$2; shift 2 ;;
    --rudder-offline-s) rudder_offline_s=$2; shift 2 ;;
    --herald-backend) herald_backend=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --update-docs) update_docs=1; shift ;;
    -h|--help) sed -n '2,/^[^#]/p' "$self" | sed '$d'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$power_count" ] || power_count=$(( count < 20000 ? count : 20000 ))

build=${HERALD_BUILD_DIR:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# -- build ------------------------------------------------------------------
if [ -f "$build/build.ninja" ]; then
  ninja -C "$build" >&2
else
  meson setup "$build" >&2 && ninja -C "$build" >&2
fi
bench=$build/tests/bench/bench_pipeline
[ -x "$bench" ] || { echo "compare.sh: $bench was not built" >&2; exit 1; }

# -- peers ------------------------------------------------------------------
command -v node >/dev/null || { echo "compare.sh: node is needed for the sink and the peers" >&2; exit 1; }
if [ -n "$peers" ] && [ ! -d tests/bench/peers/node_modules ]; then
  (cd tests/bench/peers && npm ci --no-audit --no-fund >&2)
fi

tmp=$(mktemp -d)
sink_pid=
cleanup() {
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# -- the sink ---------------------------------------------------------------
node tests/bench/sink.js --port 0 --port-file "$tmp/port" >"$tmp/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { echo "compare.sh: the sink did not start" >&2; cat "$tmp/sink.log" >&2; exit 1; }
sink="http://127.0.0.1:$(cat "$tmp/port")"
url="$sink/v1/batch"

results=$tmp/results.txt
: >"$results"

# record CLIENT TAG CMD...: run one measurement, keep its RESULT line.
record() {
  local client=$1 tag=$2; shift 2
  local log=$tmp/last.log rc=0
  "$@" >"$log" 2>&1 || rc=$?
  local line
  line=$(grep '^RESULT ' "$log" | tail -n 1 || true)
  if [ -z "$line" ]; then
    echo "compare.sh: $client $tag produced no RESULT (exit $rc):" >&2
    tail -n 20 "$log" >&2
    return 0
  fi
  [ $rc -eq 0 ] || echo "compare.sh: $client $tag exited with $rc" >&2
  echo "$client $tag rc=$rc ${line#RESULT }" >>"$results"
  printf '  %-8s %-18s %s\n' "$client" "$tag" "${line#RESULT }" >&2
}

peer() {  # peer SDK MODE args...
  local sdk=$1 mode=$2; shift 2
  local extra=()
  if [ "$sdk" = rudder ]; then
    extra=(--yield-every "$rudder_yield")
    [ "$mode" = offline ] && extra+=(--max-seconds "$rudder_offline_s")
  fi
  node tests/bench/peers/peer.js "$sdk" "$mode" --count "$count" "${extra[@]}" "$@"
}

echo "compare.sh: N=$count, $runs run(s), sink $sink, build $build" >&2
# The runs are interleaved (herald, segment, posthog, rudder, herald, ...), so
# that drift on the machine hits every client alike.
for r in $(seq 1 "$runs"); do
  echo "== run $r/$runs" >&2
  for client in herald $peers; do
    if [ "$client" = herald ]; then
      record herald latency "$bench" latency --count "$count" --url "$url"
      record herald throughput "$bench" throughput --count "$count" --url "$url" --backend "$herald_backend"
      record herald offline "$bench" offline --count "$count"
      record herald kill "$bench" kill --count "$count" --url "$url" --stall-ms "$stall_ms" --backend "$herald_backend"
    else
      record "$client" latency peer "$client" latency --url "$url"
      record "$client" throughput peer "$client" throughput --url "$url"
      record "$client" offline peer "$client" offline
      record "$client" kill peer "$client" kill --url "$url" --stall-ms "$stall_ms"
    fi
  done
  for t in $threads; do
    record herald "threads$t" "$bench" latency --count "$count" --threads "$t" --url "$url"
  done
  for k in $concurrency; do
    record herald "concurrency$k" "$bench" throughput --count "$count" --url "$url" \
      --backend "$herald_backend" --dest-json "\"batch_concurrency\":$k"
  done
  for d in process power; do
    record herald "$d-latency" "$bench" latency --count "$power_count" --url "$url" --durability "$d"
    record herald "$d-throughput" "$bench" throughput --count "$power_count" --url "$url" \
      --durability "$d" --backend "$herald_backend"
  done
done
if [ "$full" = 1 ]; then
  echo "== offline, 1,000,000 events" >&2
  record herald offline1m "$bench" offline --count 1000000
fi

# -- the stripped library ---------------------------------------------------
lib=$(readlink -f "$build/libherald.so")
cp "$lib" "$tmp/libherald-stripped.so"
strip --strip-unneeded "$tmp/libherald-stripped.so"
echo "library stripped_bytes=$(stat -c %s "$tmp/libherald-stripped.so") unstripped_bytes=$(stat -c %s "$lib")" >>"$results"

if [ -n "$keep" ]; then
  mkdir -p "$keep"
  cp "$results" "$keep/results.txt"
fi

# The revision measured: HERALD_BENCH_REV names it for a tree outside git
# (e.g. one exported with `git archive`).
if commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null); then
  git -C "$root" diff --quiet HEAD -- src include plugins meson.build 2>/dev/null \
    || commit="$commit + uncommitted changes"
else
  commit=${HERALD_BENCH_REV:-unknown revision}
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
args="--count $count --runs $runs"
[ "$full" = 1 ] && args="$args --full"
{
  echo "herald $commit, $(date -u +%Y-%m-%d), \`tests/bench/compare.sh $args\`:"
  echo "$(nproc) cores ($cpu), $(free -g | awk '/^Mem:/ {print $2}') GB RAM, $(uname -sr), node $(node --version);"
  echo "N = $count events per burst, medians of $runs run(s); herald's end-to-end backend: $herald_backend."
  echo
  "$PY" tests/bench/compare_table.py "$results" --count "$count" --peers "$peers" \
    --threads "$threads" --concurrency "$concurrency" --power-count "$power_count" --stall-ms "$stall_ms" \
    --rudder-yield "$rudder_yield" --rudder-offline-s "$rudder_offline_s"
} >"$tmp/table.md"
echo
cat "$tmp/table.md"
[ -z "$keep" ] || cp "$tmp/table.md" "$keep/table.md"

if [ "$update_docs" = 1 ]; then
  "$PY" - docs/performance.md "$tmp/table.md" <<'PYEOF'
import re, sys
doc_path, table_path = sys.argv[1], sys.argv[2]
doc = open(doc_path).read()
table = open(table_path).read().rstrip("\n")
begin = re.search(r"^<!-- BEGIN RESULTS.*-->\n", doc, re.M)
end = re.search(r"^<!-- END RESULTS -->", doc, re.M)
if not begin or not end or end.start() < begin.end():
    sys.exit("compare.sh: docs/performance.md has no BEGIN/END RESULTS markers")
doc = doc[:begin.end()] + "## Results\n\n" + table + "\n" + doc[end.start():]
open(doc_path, "w").write(doc)
print("compare.sh: docs/performance.md updated", file=sys.stderr)
PYEOF
fi
