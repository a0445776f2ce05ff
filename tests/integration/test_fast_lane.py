"""The fast lane: a destination that keeps up takes its batches straight from
the staging ring, and those events never become rows in the queue file; a
request that fails hands its events to the queue, which retries them like
any other; rows left "in flight" by a process that ended are sent at the
next open. Every test counts what the receiver got, by sequence number."""

import sqlite3

import pytest

from conftest import seq_counts

FAST = 2 ** 63 - 2  # HERALD_QUEUE_FAST


def events_ever_stored(herald):
    """Rows the events table ever had (its AUTOINCREMENT high-water mark)."""
    rows = herald.query("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
    return rows[0][0] if rows else 0


@pytest.mark.threads
def test_delivered_events_skip_the_queue_file(herald, receiver):
    n = 3000
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, n, pad=64, flush_ms=60000, close_ms=5000)
    assert res.ok == list(range(n)) and not res.err, res.describe()
    assert res.flush == 0, res.describe()
    counts = seq_counts(receiver.events)
    assert set(counts) == set(range(n)), "missing: %s" % sorted(set(range(n)) - set(counts))[:10]
    assert max(counts.values()) == 1, "sent twice: %s" % [s for s, k in counts.items() if k > 1][:10]
    stored = events_ever_stored(herald)
    assert stored < n // 2, "%d of %d events went through SQLite" % (stored, n)
    c = herald.counters()
    # What went around SQLite is counted all the same.
    assert c.get("sent") == n and c.get("accepted") == n, c
    assert c.get("requests") == len(receiver.snapshot()), c
    assert 0 < c.get("bytes_sent", 0) < c.get("bytes_raw", 0), c
    assert herald.query("SELECT count(*) FROM events")[0][0] == 0
    assert res.stats["pending"] == 0, res.stats


@pytest.mark.threads
def test_failed_requests_go_through_the_queue(herald, receiver):
    """Two 500s: the events of those requests are committed, retried with
    backoff, and arrive once."""
    n = 400
    receiver.script([(500, {}, "internal error")] * 2)
    cfg = herald.config([herald.dest(receiver)], retry_base_ms=50, retry_max_delay_ms=200)
    res = herald.produce(cfg, n, flush_ms=30000)
    assert res.flush == 0, res.describe()
    statuses = [r.status for r in receiver.snapshot()]
    assert statuses[:2] == [500, 500], statuses[:5]
    counts = seq_counts(receiver.events)
    assert set(counts) == set(range(n)) and max(counts.values()) == 1, counts
    c = herald.counters()
    assert c.get("sent") == n and c.get("dead", 0) == 0, c
    assert c.get("retried", 0) >= 1, c
    assert herald.query("SELECT count(*) FROM outbox")[0][0] == 0
    assert events_ever_stored(herald) >= 1, "the failed batch never reached the queue"


def test_rejected_event_from_the_ring_is_dead_lettered(herald, receiver):
    """A 400 for a batch taken from the ring: bisected through the queue, the
    bad event alone becomes a dead letter with the server's answer."""
    def respond(rec):
        for m in rec.messages or ():
            if (m.get("properties") or {}).get("seq") == 7:
                return (400, {}, "poisoned event seq 7")
        return None
    receiver.responder = respond
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, 50, flush_ms=30000)
    assert res.flush == 0, res.describe()
    dls = herald.dead_letters()
    assert [d["event"]["properties"]["seq"] for d in dls] == [7], dls
    assert dls[0]["http_status"] == 400 and "poisoned" in (dls[0].get("response") or "")
    assert set(seq_counts(receiver.events)) == set(range(50)) - {7}


def test_rows_left_in_flight_are_sent_after_reopening(herald, receiver):
    """A process that ended with a request in flight left FAST rows: the next
    open makes them due, and they are delivered."""
    cfg = herald.config([herald.dest(receiver)], deliver=False)
    res = herald.produce(cfg, 20)
    assert len(res.ok) == 20, res.describe()
    db = sqlite3.connect(str(herald.db))
    with db:
        db.execute("UPDATE outbox SET next_at = ?", (FAST,))
        db.execute("INSERT INTO meta(key, value) VALUES('fast_rows', '1')")
    db.close()
    cfg2 = herald.config([herald.dest(receiver)])
    res2 = herald.produce(cfg2, 0, flush_ms=20000)
    assert res2.flush == 0, res2.describe()
    assert set(seq_counts(receiver.events)) == set(range(20))
    assert herald.query("SELECT count(*) FROM meta WHERE key = 'fast_rows'")[0][0] == 0
