"""kill -9 of a Python process mid-stream loses nothing it accepted."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import herald
from conftest import HERE, FAST, child_env, dest, events


def test_sigkill_mid_stream_loses_no_accepted_event(receiver, tmp_path):
    seed = int(os.environ.get("HERALD_TEST_SEED", str(time.time_ns() % (1 << 32))))
    rng = random.Random(seed)
    print("seed %d (set HERALD_TEST_SEED to replay)" % seed)
    db = str(tmp_path / "kill.db")
    cfg = dict(FAST, db_path=db, destinations=[dest(receiver)])
    accepted = set()
    maybe = set()
    for run in range(3):
        start = run * 1_000_000
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "kill_child.py"), "--config", json.dumps(cfg),
             "--start", str(start)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
            stdin=subprocess.DEVNULL)
        lines = []
        got_some = threading.Event()

        def read():
            for line in proc.stdout:
                lines.append(line.decode())
                if len(lines) >= 200:
                    got_some.set()
            got_some.set()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        try:
            assert got_some.wait(30), "run %d: the child printed no ok; stderr: %s" % (
                run, proc.stderr.read1(4000) if proc.poll() is not None else "")
            time.sleep(rng.uniform(0.05, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        t.join(10)
        err = proc.stderr.read().decode(errors="replace")
        assert proc.returncode == -signal.SIGKILL, "run %d ended on its own: %s" % (run, err)
        ok = [int(l.split()[1]) for l in lines if l.endswith("\n") and l.startswith("ok ")]
        assert ok == list(range(start, start + len(ok))), "run %d: seqs not contiguous" % run
        print("run %d: %d calls returned before the kill, %d requests so far"
              % (run, len(ok), len(receiver.snapshot())))
        accepted.update(ok)
        maybe.add(start + len(ok))    # the call in progress may have committed
        # Reopen the same file in this process and deliver what is left.
        with herald.Client(**cfg) as c:
            assert c.flush(30), "run %d: reopen + flush did not drain: %s" % (run, c.stats())

    seqs = {}
    for m in events(receiver, len(accepted)):
        s = m["properties"]["seq"]
        seqs[s] = seqs.get(s, 0) + 1
    lost = sorted(accepted - set(seqs))
    ghosts = sorted(set(seqs) - accepted - maybe)
    dups = {s: n for s, n in seqs.items() if n > 1}
    print("accepted %d, arrived %d distinct, %d duplicated"
          % (len(accepted), len(seqs), len(dups)))
    assert len(accepted) >= 600
    assert not lost, "%d accepted events never arrived, e.g. %s" % (len(lost), lost[:20])
    assert not ghosts, ghosts[:20]
