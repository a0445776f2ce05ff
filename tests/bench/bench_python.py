#!/usr/bin/python3
"""The Python binding's side of tests/bench/bindings.sh: times N
client.track("Bench Event", PROPS) calls with the same 8-property event as
bench_track.c, one fresh queue file per run, delivery off unless --url.
Prints one line per run and "RESULT python calls_per_s=<n> us_per_call=<x>"
(the median). The binding comes from PYTHONPATH (bindings/python) or the
installed package; the library from --library or HERALD_LIBRARY."""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import herald

PROPS = {"plan": "pro", "seats": 12, "price": 99.5, "trial": False, "source": "bench",
         "region": "eu-west-1", "tier": 3, "ratio": 0.25}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--url")
    ap.add_argument("--durability", default="process")
    ap.add_argument("--library")
    args = ap.parse_args()
    print("bench_python: herald %s, %d calls x %d runs, 8 properties, deliver=%s, durability=%s"
          % (herald.library_version(args.library), args.count, args.runs, args.url or "off",
             args.durability))
    rates = []
    for r in range(args.runs):
        d = tempfile.mkdtemp(prefix="herald-bench-")
        opts = {"db_path": os.path.join(d, "q.db"), "durability": args.durability}
        if args.url:
            opts["destinations"] = [{"name": "sink", "url": args.url}]
        else:
            opts["deliver"] = False
        c = herald.Client(library=args.library, **opts)
        track = c.track
        t0 = time.perf_counter()
        for _ in range(args.count):
            track("Bench Event", PROPS)
        elapsed = time.perf_counter() - t0
        c.close(0)
        shutil.rmtree(d, ignore_errors=True)
        rates.append(args.count / elapsed)
        print("run %d: %d calls in %.3f s: %.0f calls/s, %.2f us/call"
              % (r + 1, args.count, elapsed, rates[-1], 1e6 / rates[-1]))
        sys.stdout.flush()
    median = statistics.median(rates)
    print("RESULT python calls_per_s=%.0f us_per_call=%.2f" % (median, 1e6 / median))


if __name__ == "__main__":
    main()
