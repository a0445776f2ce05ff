#!/usr/bin/env python3
"""The tables of tests/bench/compare.sh, from its raw results file.

    compare_table.py RESULTS [--count N] [--peers "segment posthog rudder"] ...

RESULTS holds one line per measurement, "<client> <tag> rc=<n> key=value ...",
as compare.sh writes them (the RESULT lines of bench_pipeline and peer.js),
plus one "library stripped_bytes=... unstripped_bytes=..." line. Every cell
is the median over the runs. Standard library only.
"""

import argparse
import statistics
import sys

# (label, tag, key, better, scale, target)
ROWS = [
    ("track p50 µs", "latency", "p50_us", "lower", 1, "≤ 2"),
    ("track p99 µs", "latency", "p99_us", "lower", 1, "≤ 20"),
    ("calls/s", "latency", "calls_per_s", "higher", 1, ""),
    ("e2e events/s", "throughput", "events_per_s", "higher", 1, "≥ 150,000"),
    ("CPU µs/event, track", "latency", "cpu_us_per_event", "lower", 1, ""),
    ("CPU µs/event, e2e", "throughput", "cpu_us_per_event", "lower", 1, ""),
    ("peak RSS MB, burst of N offline", "offline", "peak_rss_kb", "lower", 1 / 1024, ""),
    ("peak RSS MB, e2e", "throughput", "peak_rss_kb", "lower", 1 / 1024, ""),
    ("wire bytes/event", "throughput", "wire_bytes_per_event", "lower", 1, "≤ best peer"),
    ("events lost on kill -9", "kill", "lost", "lower", 1, "0"),
]


def parse(path):
    """-> {(client, tag): [dict, ...]}, library dict"""
    data, library = {}, {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "library":
                library = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
                continue
            if len(parts) < 3:
                continue
            client, tag = parts[0], parts[1]
            fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            data.setdefault((client, tag), []).append(fields)
    return data, library


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def median(data, client, tag, key, scale=1.0):
    vals = [num(r.get(key)) for r in data.get((client, tag), [])]
    vals = [v for v in vals if v is not None and v >= 0]
    return statistics.median(vals) * scale if vals else None


def fmt(v, integer=False):
    if v is None:
        return "—"
    if integer:
        return "{:,.0f}".format(v)
    a = abs(v)
    if a >= 10000:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "{:.0f}".format(v)
    if a >= 10:
        return "{:.1f}".format(v)
    return "{:.2f}".format(v)


def table(header, rows, out):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    out.write(line + "\n")
    out.write("|" + "|".join("-" * (w + 2) for w in widths) + "|\n")
    for r in rows:
        cells = []
        for i, (c, w) in enumerate(zip(r, widths)):
            cells.append(str(c).ljust(w) if i == 0 else str(c).rjust(w))
        out.write("| " + " | ".join(cells) + " |\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--peers", default="segment posthog rudder")
    ap.add_argument("--threads", default="1 2 4 8")
    ap.add_argument("--concurrency", default="")
    ap.add_argument("--power-count", type=int, default=0)
    ap.add_argument("--stall-ms", type=int, default=0)
    ap.add_argument("--rudder-yield", type=int, default=100)
    ap.add_argument("--rudder-offline-s", type=int, default=30)
    a = ap.parse_args()
    data, library = parse(a.results)
    peers = a.peers.split()
    out = sys.stdout
    notes = []

    # -- herald against the peers ---------------------------------------------
    header = ["metric", "herald"] + peers + ["herald / best peer", "herald best?", "target"]
    rows = []
    for label, tag, key, better, scale, target in ROWS:
        h = median(data, "herald", tag, key, scale)
        pv = [median(data, p, tag, key, scale) for p in peers]
        known = [v for v in pv if v is not None]
        best = (min(known) if better == "lower" else max(known)) if known else None
        if h is None or best is None:
            ratio, wins = "—", "—"
        else:
            if best == 0:
                ratio = "—" if h == 0 else "∞"
            else:
                ratio = "{:.2f}".format(h / best)
            wins = "yes" if (h <= best if better == "lower" else h >= best) else "no"
        integer = key == "lost"
        rows.append([label, fmt(h, integer)] + [fmt(v, integer) for v in pv] + [ratio, wins, target])
    table(header, rows, out)

    # Flags from the raw runs.
    for client in ["herald"] + peers:
        for r in data.get((client, "throughput"), []):
            d, n = num(r.get("sink_distinct")), num(r.get("count"))
            if d is not None and n is not None and d < n:
                notes.append("%s: an end-to-end run delivered %d of %d events" % (client, d, n))
                break
        for r in data.get((client, "offline"), []):
            done, n = num(r.get("count_done")), num(r.get("count"))
            if done is not None and n is not None and done < n:
                notes.append("%s: the offline burst reached %d of %d events in %d s (RSS measured there)"
                             % (client, done, n, a.rudder_offline_s))
                break
        for r in data.get((client, "kill"), []):
            if r.get("killed") not in (None, "1"):
                notes.append("%s: a kill run's child was not killed by SIGKILL" % client)
                break
    if "rudder" in peers and a.rudder_yield:
        notes.append("rudder: the event loop turns every %d calls (a single synchronous burst is "
                     "quadratic in @rudderstack/rudder-sdk-node: it JSON.stringifies its whole "
                     "queue on every call)" % a.rudder_yield)
    if "segment" in peers:
        notes.append("segment: @segment/analytics-node cannot gzip; its bodies go uncompressed")
    if a.stall_ms:
        notes.append("kill -9: the sink answers %d ms late while the victim runs; lost = N - "
                     "distinct events the sink ever counted" % a.stall_ms)
    if notes:
        out.write("\n")
    for n in notes:
        out.write("- %s\n" % n)

    # -- herald over threads --------------------------------------------------
    trows = []
    for t in a.threads.split():
        tag = "threads" + t
        if (("herald", tag)) not in data:
            continue
        trows.append([t] + [fmt(median(data, "herald", tag, k)) for k in
                            ("p50_us", "p90_us", "p99_us", "p999_us", "calls_per_s",
                             "cpu_us_per_event")])
    if trows:
        out.write("\nherald track() over threads (one client, N calls in all, delivery on):\n\n")
        table(["threads", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "calls/s", "CPU µs/event"],
              trows, out)

    # -- batch_concurrency ----------------------------------------------------
    crows = []
    for k in a.concurrency.split():
        tag = "concurrency" + k
        if ("herald", tag) not in data:
            continue
        crows.append([k] + [fmt(median(data, "herald", tag, key, scale)) for key, scale in
                            (("events_per_s", 1), ("cpu_us_per_event", 1),
                             ("peak_rss_kb", 1 / 1024), ("wire_bytes_per_event", 1))])
    if crows:
        out.write("\nherald end to end by batch_concurrency (requests in flight per destination):\n\n")
        table(["batch_concurrency", "e2e events/s", "CPU µs/event", "peak RSS MB",
               "wire bytes/event"], crows, out)

    # -- durability -----------------------------------------------------------
    drows = []
    for label, lt, tt in (("process", "process-latency", "process-throughput"),
                          ("power", "power-latency", "power-throughput")):
        if ("herald", lt) not in data:
            continue
        drows.append([label] + [fmt(median(data, "herald", lt, k)) for k in
                                ("p50_us", "p99_us", "calls_per_s")]
                     + [fmt(median(data, "herald", tt, "events_per_s"))])
    if drows:
        out.write("\nherald durability (%d events):\n\n" % a.power_count)
        table(["durability", "p50 µs", "p99 µs", "calls/s", "e2e events/s"], drows, out)

    # -- offline 1M, library --------------------------------------------------
    if ("herald", "offline1m") in data:
        r = data[("herald", "offline1m")][-1]
        out.write("\nherald offline, 1,000,000 events queued: peak RSS %s MB, queue file %s MB, "
                  "%s calls/s (target: RSS ≤ 16 MB)\n"
                  % (fmt(num(r.get("peak_rss_kb")) / 1024),
                     fmt(num(r.get("disk_bytes_closed")) / 1048576),
                     fmt(num(r.get("calls_per_s")))))
    if library:
        out.write("\nlibherald.so stripped: %s KB (%s KB unstripped; target ≤ 300 KB)\n"
                  % (fmt(num(library.get("stripped_bytes")) / 1024),
                     fmt(num(library.get("unstripped_bytes")) / 1024)))


if __name__ == "__main__":
    main()
