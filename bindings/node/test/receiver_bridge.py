#!/usr/bin/python3
"""The validating loopback receiver of examples/receiver.py, for the Node
tests: prints one JSON line per event on stdout and takes commands on stdin.

stdout lines:
  {"kind": "listening", "port": N}
  {"kind": "request", "index", "status", "path", "gzip", "raw_b64",
   "decoded" (text or null), "messages" (list or null), "error"}
  {"kind": "stopped"} / {"kind": "started", "port": N} / {"kind": "scripted"}
stdin commands (one per line):
  stop | start | script <JSON list of [status, headers, body, delay_s]> | quit
"""

import base64
import json
import os
import sys
import threading

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "examples"))

from receiver import Receiver  # noqa: E402

out_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj, separators=(",", ":")) + "\n"
    with out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def on_request(rec):
    decoded = None
    if rec.decoded is not None:
        decoded = rec.decoded.decode("utf-8", "replace")
    emit({"kind": "request", "index": rec.index, "status": rec.status, "path": rec.path,
          "gzip": rec.headers.get("content-encoding") == "gzip",
          "raw_b64": base64.b64encode(rec.raw_body or b"").decode(),
          "decoded": decoded,
          "messages": rec.messages if (rec.status and 200 <= rec.status < 300) else None,
          "error": rec.error})


def main():
    r = Receiver(on_request=on_request, keep_bodies=True)
    r.start()
    emit({"kind": "listening", "port": r.port})
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "stop":
            r.stop()
            emit({"kind": "stopped"})
        elif cmd == "start":
            r.start()
            emit({"kind": "started", "port": r.port})
        elif cmd == "script":
            r.script(json.loads(arg))
            emit({"kind": "scripted"})
        elif cmd == "quit":
            break
    r.stop()


if __name__ == "__main__":
    main()
