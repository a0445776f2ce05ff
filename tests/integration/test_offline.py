"""A long time offline: memory stays flat, disk stays within its bound.

HERALD_OFFLINE_EVENTS sets the volume (100,000 by default in CI; the
documented long run uses 1,000,000). The producer queues with no receiver
(delivery on, destination down), and reports its peak resident memory.
"""

import os
import re

import pytest

from conftest import sanitizers

N = int(os.environ.get("HERALD_OFFLINE_EVENTS", "100000"))


def peak_rss_kb(res):
    m = re.search(r"^rss_peak_kb (\d+)$", res.stdout, re.M)
    assert m, "the producer did not report its peak RSS"
    return int(m.group(1))


def down_destination():
    # A port nothing listens on: every attempt is refused, nothing is sent.
    return {"name": "down", "backend": "rest", "url": "http://127.0.0.1:9/v1/batch"}


def test_offline_memory_is_flat(herald):
    if sanitizers():
        # Shadow memory and the quarantine: RSS is the sanitizer's, not herald's.
        pytest.skip("peak RSS is not a measure of herald under a sanitizer")
    cfg = herald.config([down_destination()], retry_base_ms=1000, retry_max_delay_ms=30000)
    small = herald.produce(cfg, N // 10, pad=64, timeout=600)
    assert len(small.ok) == N // 10
    big = herald.produce(cfg, N, start=N, pad=64, timeout=1800)
    assert len(big.ok) == N
    small_kb, big_kb = peak_rss_kb(small), peak_rss_kb(big)
    print("peak RSS: %d KiB for %d events, %d KiB for %d more (queue of %d)"
          % (small_kb, N // 10, big_kb, N, N + N // 10))
    # Ten times the events, the same memory: the queue is on disk, not in RAM.
    assert big_kb < small_kb + 8 * 1024, (small_kb, big_kb)
    # Everything queued, up to the default bound (max_queue_events 1,000,000),
    # past which drop_oldest evicts.
    assert herald.counters()["queue_events"] == min(N + N // 10, 1000000)


@pytest.mark.parametrize("policy", ["drop_oldest", "reject_new"])
def test_offline_disk_stays_bounded(herald, policy):
    bound = 4 * 1024 * 1024
    cfg = herald.config([down_destination()], max_queue_bytes=bound, overflow_policy=policy,
                        retry_base_ms=1000, retry_max_delay_ms=30000, max_dead_letters=1000)
    count = max(N // 5, 20000)
    res = herald.produce(cfg, count, pad=200, timeout=900)
    counters = herald.counters()
    assert counters["queue_bytes"] <= bound
    if policy == "drop_oldest":
        assert len(res.ok) == count
        assert counters["evicted"] > 0
        assert herald.query("SELECT count(*) FROM dead_letters")[0][0] <= 1000
    else:
        assert res.err and {code for _, code in res.err} == {-5}
        assert len(res.ok) == counters["queue_events"]
    # The file on disk: the bound, plus SQLite's own overhead, plus the
    # bounded dead letters; never the whole history.
    size = sum(os.path.getsize(str(herald.db) + s) for s in ("", "-wal")
               if os.path.exists(str(herald.db) + s))
    print("%s: %d events offered, file %d bytes for a %d-byte bound" % (policy, count, size, bound))
    assert size < 4 * bound
