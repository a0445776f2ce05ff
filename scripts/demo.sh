#!/usr/bin/env bash
# herald end to end: build, start a local Segment-compatible receiver, emit real
# events through the whole pipeline (validate → build → SQLite queue → batch →
# gzip → HTTP), take the receiver down and bring it back, and show what arrived.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then meson setup build >/dev/null; fi
ninja -C build >/dev/null
echo "built herald $(build/examples/herald-emit/herald-emit --version 2>/dev/null | head -n1)"

work=$(mktemp -d)
receiver_pid=""
cleanup() { [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_receiver() {
  /usr/bin/python3 examples/receiver.py --port "$port" --log "$work/received.log" >/dev/null 2>&1 &
  receiver_pid=$!
  for _ in $(seq 50); do
    /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && return
    sleep 0.1
  done
  echo "receiver did not start" >&2; exit 1
}
stop_receiver() { kill "$receiver_pid"; wait "$receiver_pid" 2>/dev/null || true; receiver_pid=""; }

emit() {
  build/examples/herald-emit/herald-emit --db "$work/queue.db" \
    --url "http://127.0.0.1:$port/v1/batch" --write-key demo-write-key "$@"
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "receiver listening on http://127.0.0.1:$port/v1/batch"
start_receiver

step "one event of each type"
emit identify user-42 --traits '{"email_verified": true, "plan": "pro"}'
emit group acme-inc --traits '{"name": "Acme", "employees": 120}'
emit page Pricing --props '{"url": "https://example.com/pricing?utm_source=newsletter"}'
emit screen Settings
emit track "Subscription Upgraded" --props '{"plan": "pro", "seats": 12, "eventCategory": "billing"}'
emit alias anon-7 user-42

step "import 1,000 events from NDJSON (one bad line among them)"
/usr/bin/python3 - "$work/events.ndjson" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(1000):
        f.write(json.dumps({"type": "track", "event": "Song Played", "userId": "user-%d" % (i % 7),
                            "properties": {"seq": i, "genre": "jazz"}}) + "\n")
        if i == 500:
            f.write('{"type": "track", "event": \n')
PY
emit import "$work/events.ndjson" || true

step "receiver goes down; three more events are accepted and wait on disk"
stop_receiver
for n in 1 2 3; do emit --timeout 0.5 track "Offline Event" --props "{\"n\": $n}" || true; done
emit status

step "receiver comes back; herald delivers what waited"
start_receiver
emit flush --timeout 30
emit status

step "what arrived"
/usr/bin/python3 - "$work/received.log" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
stamp = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ", re.M)
summaries = [l for l in text.splitlines() if stamp.match(l)]
print("%d requests; the last ones:" % len(summaries))
for line in summaries[-6:]:
    print("  " + line)
total = sum(int(m) for m in re.findall(r"events=(\d+)", "\n".join(l for l in summaries if "-> 200" in l)))
ids = set(re.findall(r'"messageId": "([^"]+)"', text))
print("events accepted by the receiver: %d (%d distinct messageIds)" % (total, len(ids)))
first = stamp.split(text)[0]
batch = json.loads(first)
print("\nthe first event, as it arrived (gunzipped when compressed):")
print(json.dumps(batch.get("batch", [batch])[0], indent=2))
PY
