"""Child process of test_kill.py: opens a client on --db and tracks events
{"seq": i} for ever, printing "ok <seq>" after each call that returned (the
event is durable from then on). The parent SIGKILLs it mid-stream."""

import argparse
import json
import sys

import herald


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="JSON options for herald.Client")
    ap.add_argument("--start", type=int, default=0)
    args = ap.parse_args()
    client = herald.Client(**json.loads(args.config))
    out = sys.stdout
    seq = args.start
    while True:
        client.track("Kill Test", {"seq": seq, "pad": "p" * 32})
        out.write("ok %d\n" % seq)
        out.flush()
        seq += 1


if __name__ == "__main__":
    main()
