"""Durability and queue bounds: kill -9 at random instants, file modes,
reject_new and drop_oldest."""

import json
import os
import random
import signal
import stat
import time
from pathlib import Path

import pytest

from conftest import seq_counts, wait_until


# g ---------------------------------------------------------------------------

@pytest.mark.threads
def test_sigkill_loses_no_accepted_event(herald, receiver):
    """Producers on one queue file (HERALD_CRASH_RUNS, 20 by default), each
    killed with SIGKILL at a random instant while producing and delivering;
    after each, a fresh process reopens the file and flushes. Every call that
    returned HERALD_OK must reach the receiver (duplicates allowed, counted)."""
    seed = int(os.environ.get("HERALD_TEST_SEED", str(time.time_ns() % (1 << 32))))
    rng = random.Random(seed)
    print("seed %d (set HERALD_TEST_SEED to replay)" % seed)
    receiver.keep_bodies = False
    cfg = herald.config([herald.dest(receiver)], flush_interval_ms=50, retry_base_ms=50)
    span = 10_000_000
    accepted = set()
    maybe = set()   # the one call per run that may have committed unreported
    runs = int(os.environ.get("HERALD_CRASH_RUNS", "20"))
    for run in range(runs):
        start = run * span
        proc, reader = herald.spawn_producer(cfg, span, start=start, pad=16)
        try:
            assert reader.first_ok.wait(30), "run %d: the producer printed no ok" % run
            delay = rng.uniform(0.05, 0.5)
            time.sleep(delay)
            reader.kill()
        finally:
            reader.kill()
        res = reader.finish(timeout=30)
        assert res.returncode == -signal.SIGKILL, \
            "run %d ended before the kill: %s" % (run, res.describe())
        assert not res.err, res.describe()
        assert res.ok == list(range(start, start + len(res.ok))), \
            "run %d: ok seqs not contiguous" % run
        print("run %d: killed after %.3fs, %d calls returned OK, %d requests so far"
              % (run, delay, len(res.ok), len(receiver.snapshot())))
        accepted.update(res.ok)
        maybe.add(start + len(res.ok))
        fin = herald.produce(cfg, 0, flush_ms=30000, close_ms=1000)
        assert fin.flush == 0, "run %d: reopen+flush did not drain: %s" % (run, fin.describe())

    counts = seq_counts(receiver.events)
    lost = sorted(accepted - set(counts))
    dups = {s: n for s, n in counts.items() if n > 1}
    ghosts = sorted(set(counts) - accepted - maybe)
    unreported = sorted((set(counts) - accepted) & maybe)
    print("CRASH library: runs %d, accepted %d, arrived %d distinct, lost %d, duplicates %d "
          "(extra copies %d), committed-but-unreported %d"
          % (runs, len(accepted), len(counts), len(accepted - set(counts)), len(dups),
             sum(dups.values()) - len(dups), len(unreported)))
    if dups:
        print("duplicate seqs (first 20): %s" % sorted(dups.items())[:20])
    assert not lost, "%d accepted events never arrived, e.g. %s" % (len(lost), lost[:20])
    assert not ghosts, "events arrived that no call produced: %s" % ghosts[:20]
    assert not herald.dead_letters(), herald.dead_letters()[:3]
    assert herald.query("SELECT COUNT(*) FROM outbox")[0][0] == 0


@pytest.mark.threads
def test_sigkill_of_the_cli_loses_nothing_committed(herald, receiver, emit_bin):
    """herald-emit killed with SIGKILL during an import (queueing and
    delivering at once) and during a flush: whatever the file held when the
    process died is delivered by the next run."""
    import subprocess
    from conftest import child_env
    seed = int(os.environ.get("HERALD_TEST_SEED", str(time.time_ns() % (1 << 32))))
    rng = random.Random(seed + 1)
    receiver.keep_bodies = False
    cfg = herald.config([herald.dest(receiver)], flush_interval_ms=50, retry_base_ms=50)
    runs = int(os.environ.get("HERALD_CRASH_RUNS", "20")) // 2
    committed = set()
    for run in range(runs):
        lines = "".join(json.dumps({"type": "track", "event": "CLI Crash",
                                    "properties": {"seq": run * 1000000 + i}}) + "\n"
                        for i in range(20000))
        proc = subprocess.Popen([str(emit_bin), "--config", str(cfg), "import", "-"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=child_env())
        # Feed from a thread: the kill may come while the pipe is full.
        import threading
        def feed():
            try:
                proc.stdin.write(lines.encode())
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        t = threading.Thread(target=feed, daemon=True)
        t.start()
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        t.join(timeout=30)
        # What the file holds now was committed: it must all arrive.
        held = {json.loads(b)["properties"]["seq"]
                for (b,) in herald.query("SELECT body FROM events")}
        committed |= held
        committed |= {e["properties"]["seq"] for e in receiver.events}
        p = herald.emit("--config", cfg, "flush", "--timeout", "30")
        assert p.returncode == 0, p.stderr
    counts = seq_counts(receiver.events)
    lost = sorted(committed - set(counts))
    dups = {k: n for k, n in counts.items() if n > 1}
    print("CRASH cli: runs %d, committed %d, arrived %d distinct, lost %d, duplicates %d"
          % (runs, len(committed), len(counts), len(lost), len(dups)))
    assert not lost, "%d committed events never arrived, e.g. %s" % (len(lost), lost[:20])
    assert herald.query("SELECT COUNT(*) FROM outbox")[0][0] == 0


# file modes ------------------------------------------------------------------

def test_queue_files_are_0600(herald, receiver):
    cfg = herald.config([herald.dest(receiver)])
    proc, reader = herald.spawn_producer(cfg, 1_000_000, interval_us=1000)
    db = herald.db
    wal = Path(str(db) + "-wal")
    shm = Path(str(db) + "-shm")
    try:
        assert reader.first_ok.wait(30), "the producer printed no ok"
        assert wait_until(wal.exists, 5), "no %s while the queue is in use" % wal.name
        modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in (db, wal, shm)
                 if p.exists()}
    finally:
        reader.kill()
        reader.finish(timeout=30)
    print(dict((k, oct(v)) for k, v in modes.items()))
    wrong = {k: oct(v) for k, v in modes.items() if v != 0o600}
    assert not wrong, "queue files not 0600 (umask 022): %s" % wrong


# bounds ----------------------------------------------------------------------

def _bodies(herald):
    return [json.loads(b) for (b,) in herald.query("SELECT body FROM events ORDER BY id")]


def test_reject_new_bounds_the_queue(herald, receiver):
    cfg = herald.config([herald.dest(receiver)], deliver=False, max_queue_events=10,
                        overflow_policy="reject_new")
    res = herald.produce(cfg, 15)
    assert res.ok == list(range(10)), res.describe()
    assert res.err == [(s, -5) for s in range(10, 15)], \
        "wanted HERALD_E_QUEUE_FULL (-5) for seqs 10..14: %s" % res.err
    seqs = [b["properties"]["seq"] for b in _bodies(herald)]
    assert seqs == list(range(10)), seqs
    assert res.stats["accepted"] == 10 and res.stats["rejected"] == 5, res.stats
    assert not herald.dead_letters()
    assert not receiver.snapshot(), "deliver=false but requests were sent"
    assert res.close == -9, "close with events left on disk: %s" % res.describe()


def test_drop_oldest_dead_letters_evicted(herald, receiver):
    cfg = herald.config([herald.dest(receiver)], deliver=False, max_queue_events=10,
                        overflow_policy="drop_oldest")
    res = herald.produce(cfg, 15)
    assert res.ok == list(range(15)) and not res.err, res.describe()
    seqs = [b["properties"]["seq"] for b in _bodies(herald)]
    assert seqs == list(range(5, 15)), seqs
    dls = herald.dead_letters()
    evicted = [d for d in dls if d["reason"] == "evicted"]
    assert len(evicted) == 5 and len(dls) == 5, dls
    assert sorted(d["event"]["properties"]["seq"] for d in evicted) == list(range(5)), evicted
    c = herald.counters()
    assert c.get("evicted") == 5, c
    assert res.stats["evicted"] == 5 and res.stats["dead_letters"] == 5, res.stats
    assert not receiver.snapshot(), "deliver=false but requests were sent"


def test_flush_with_delivery_off_is_disabled(herald, receiver):
    cfg = herald.config([herald.dest(receiver)], deliver=False)
    res = herald.produce(cfg, 1, flush_ms=1000)
    assert res.flush == -12, "herald_flush with deliver=false: %s" % res.flush
    assert len(_bodies(herald)) == 1
    # Reopened with delivery on, the queued event goes out.
    cfg2 = herald.config([herald.dest(receiver)])
    fin = herald.produce(cfg2, 0, flush_ms=20000)
    assert fin.flush == 0, fin.describe()
    assert seq_counts(receiver.events) == {0: 1}
