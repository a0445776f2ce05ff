"""The benchmark harness runs: tests/bench/bench_pipeline in every mode, on a
small N, against a loopback sink.

Benchmarks are not timed tests: nothing here checks a speed. It checks that
each mode completes, prints a RESULT line that parses, that the throughput
mode delivers all N events (herald's stats and the sink agree) and that the
kill -9 mode loses none. The sink is tests/bench/sink.js when node is on the
PATH, else (or with BENCH_SINK=python) a Python stand-in with the same
requests (/stats, /reset, /config). docs/performance.md describes the harness; tests/bench/compare.sh
runs it against the peer SDKs.
"""

import gzip
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, build_dir

N = 200


@pytest.fixture(scope="module")
def bench_bin():
    path = build_dir() / "tests" / "bench" / "bench_pipeline"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("bench_pipeline not found at %s: build it first (meson setup %s && ninja -C %s)"
                    % (path, build_dir(), build_dir()), pytrace=False)
    return path


# --------------------------------------------------------------------------
# Sinks


class PySink:
    """tests/bench/sink.js in Python, for machines without node: counts the
    distinct properties.seq of the events it is posted (gunzipping bodies) and
    the bytes it received."""

    SEQ = re.compile(rb'"seq":\s*(\d+)')

    def __init__(self):
        sink = self
        self.lock = threading.Lock()
        self.delay_ms = 0
        self.reset()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/stats"):
                    with sink.lock:
                        self.answer(200, dict(sink.stats))
                else:
                    self.answer(405, {"error": "POST a batch"})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/reset":
                    sink.reset()
                    self.answer(200, sink.stats)
                    return
                if self.path == "/config":
                    sink.delay_ms = json.loads(raw or b"{}").get("delay_ms", sink.delay_ms)
                    self.answer(200, {"delay_ms": sink.delay_ms})
                    return
                body = raw
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(raw)
                with sink.lock:
                    st = sink.stats
                    st["requests"] += 1
                    st["body_bytes"] += len(raw)
                    st["raw_bytes"] += len(body)
                    st["wire_bytes"] += len(raw) + len(str(self.headers)) + len(self.requestline) + 2
                    for m in sink.SEQ.finditer(body):
                        st["total_events"] += 1
                        sink.seen.add(int(m.group(1)))
                    st["distinct"] = len(sink.seen)
                if sink.delay_ms:
                    time.sleep(sink.delay_ms / 1000.0)
                self.answer(200, {"success": True})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]

    def reset(self):
        with self.lock:
            self.seen = set()
            self.stats = {"distinct": 0, "total_events": 0, "requests": 0, "body_bytes": 0,
                          "raw_bytes": 0, "header_bytes": 0, "wire_bytes": 0}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class NodeSink:
    def __init__(self, tmp):
        port_file = tmp / "sink.port"
        self.proc = subprocess.Popen(["node", str(REPO / "tests" / "bench" / "sink.js"),
                                      "--port", "0", "--port-file", str(port_file)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("tests/bench/sink.js did not start: %s"
                            % self.proc.stderr.read().decode(errors="replace"))
            time.sleep(0.02)
        self.base = "http://127.0.0.1:%s" % port_file.read_text().strip()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    if shutil.which("node") and os.environ.get("BENCH_SINK", "node") != "python":
        s = NodeSink(tmp_path_factory.mktemp("sink"))
    else:
        s = PySink()
    yield s
    s.stop()


def sink_stats(sink):
    with urllib.request.urlopen(sink.base + "/stats", timeout=10) as r:
        return json.loads(r.read())


# --------------------------------------------------------------------------
# Running the harness


def run(bench_bin, tmp_path, *args, timeout=60):
    argv = [str(bench_bin)] + [str(a) for a in args] + ["--dir", str(tmp_path)]
    if args[0] in ("throughput", "kill"):
        argv += ["--flush-timeout-ms", "20000"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    print("%s -> %d\n%s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1, "expected one RESULT line:\n" + p.stdout + p.stderr
    fields = {}
    for part in lines[0].split()[1:]:
        key, _, value = part.partition("=")
        assert key and value, "malformed RESULT field %r" % part
        fields[key] = value
    return p.returncode, fields


def number(fields, key):
    assert key in fields, "RESULT lacks %s: %s" % (key, fields)
    return float(fields[key])


@pytest.mark.parametrize("threads", [1, 4])
def test_latency(bench_bin, sink, tmp_path, threads):
    rc, r = run(bench_bin, tmp_path, "latency", "--count", N, "--threads", threads,
                "--url", sink.base + "/v1/batch")
    assert rc == 0
    assert r["mode"] == "latency" and int(r["count"]) == N and int(r["threads"]) == threads
    p50, p99, p999, mx = (number(r, k) for k in ("p50_us", "p99_us", "p999_us", "max_us"))
    assert 0 < p50 <= p99 <= p999 <= mx * 1.02  # quantiles are bucket midpoints, capped at max
    assert number(r, "calls_per_s") > 0 and number(r, "cpu_us_per_event") > 0
    assert number(r, "peak_rss_kb") > 0


def test_latency_queue_only_power(bench_bin, tmp_path):
    rc, r = run(bench_bin, tmp_path, "latency", "--count", 50, "--durability", "power")
    assert rc == 0
    assert r["durability"] == "power" and r["deliver"] == "0" and int(r["count"]) == 50
    assert list(tmp_path.iterdir()) == [], "the queue file was not removed"


@pytest.mark.parametrize("backend", ["rest", "segment", "posthog"])
def test_throughput_delivers_everything(bench_bin, sink, tmp_path, backend):
    rc, r = run(bench_bin, tmp_path, "throughput", "--count", N, "--backend", backend,
                "--url", sink.base + "/v1/batch")
    assert rc == 0
    assert int(r["delivered"]) == N
    assert number(r, "sink_distinct") == N
    assert number(r, "events_per_s") > 0
    # gzip is on: batches of 100 typical events shrink.
    assert 0 < number(r, "body_bytes_per_event") < number(r, "raw_bytes_per_event")
    assert number(r, "wire_bytes_per_event") >= number(r, "sink_body_bytes_per_event") > 0
    stats = sink_stats(sink)
    assert stats["distinct"] == N


def test_offline_queues_everything(bench_bin, tmp_path):
    rc, r = run(bench_bin, tmp_path, "offline", "--count", N)
    assert rc == 0
    assert int(r["queued"]) == N
    assert number(r, "peak_rss_kb") > 0 and number(r, "disk_bytes_closed") > 0


def test_kill_loses_nothing(bench_bin, sink, tmp_path):
    rc, r = run(bench_bin, tmp_path, "kill", "--count", N, "--stall-ms", 300,
                "--url", sink.base + "/v1/batch", timeout=90)
    assert r["killed"] == "1", "the child was not killed by SIGKILL"
    assert int(r["ok_calls"]) == N
    assert int(r["lost"]) == 0
    assert number(r, "delivered") == N
    assert rc == 0


def test_compare_table(tmp_path):
    """compare.sh's table from results lines: medians, ratios, notes."""
    lines = [
        "herald latency rc=0 mode=latency count=10 p50_us=2 p99_us=10 calls_per_s=500000 cpu_us_per_event=2",
        "herald latency rc=0 mode=latency count=10 p50_us=4 p99_us=30 calls_per_s=100000 cpu_us_per_event=3",
        "herald latency rc=0 mode=latency count=10 p50_us=3 p99_us=20 calls_per_s=300000 cpu_us_per_event=4",
        "herald throughput rc=0 mode=throughput count=10 events_per_s=200000 sink_distinct=10 "
        "wire_bytes_per_event=40 peak_rss_kb=10240 cpu_us_per_event=5",
        "herald kill rc=0 mode=kill count=10 lost=0 killed=1",
        "segment latency rc=0 mode=latency sdk=segment count=10 p50_us=6 p99_us=60 calls_per_s=50000 cpu_us_per_event=9",
        "segment throughput rc=1 mode=throughput sdk=segment count=10 events_per_s=20000 sink_distinct=9 "
        "wire_bytes_per_event=600 peak_rss_kb=102400 cpu_us_per_event=50",
        "segment kill rc=0 mode=kill sdk=segment count=10 lost=10 killed=1",
        "segment offline rc=0 mode=offline sdk=segment count=10 count_done=7 peak_rss_kb=204800",
        "herald threads2 rc=0 mode=latency p50_us=3 p90_us=4 p99_us=9 p999_us=20 calls_per_s=1 cpu_us_per_event=1",
        "library stripped_bytes=204800 unstripped_bytes=1048576",
    ]
    results = tmp_path / "results.txt"
    results.write_text("\n".join(lines) + "\n")
    p = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "compare_table.py"),
                        str(results), "--peers", "segment", "--threads", "1 2"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    print(p.stdout, p.stderr)
    assert p.returncode == 0
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]]
            for l in p.stdout.splitlines() if l.startswith("| ")}
    assert rows["track p50 µs"][:3] == ["3.00", "6.00", "0.50"]          # median, peer, ratio
    assert rows["calls/s"][:4] == ["300,000", "50,000", "6.00", "yes"]
    assert rows["events lost on kill -9"][:2] == ["0", "10"]
    assert rows["peak RSS MB, e2e"][:2] == ["10.0", "100"]
    assert "2" in rows  # the threads table
    assert "segment: an end-to-end run delivered 9 of 10 events" in p.stdout
    assert "reached 7 of 10" in p.stdout
    assert "stripped: 200 KB" in p.stdout
