"""Thread safety: many threads on one client, and close() racing them."""

import threading
import time

import pytest

import herald
from conftest import events


def test_many_threads_track_concurrently(make_client, receiver):
    receiver.keep_bodies = False
    c = make_client(receiver)
    n_threads, per_thread = 8, 150
    errors = []
    barrier = threading.Barrier(n_threads + 1)

    def work(t):
        barrier.wait()
        try:
            for i in range(per_thread):
                c.track("Threaded", {"t": t, "i": i})
                if i % 50 == 0:
                    c.stats()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def flusher():
        barrier.wait()
        while any(th.is_alive() for th in threads):
            c.flush(0.05)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    f = threading.Thread(target=flusher)
    f.start()
    for th in threads:
        th.join(60)
    f.join(60)
    assert not errors, errors[:3]
    assert c.flush(30)
    got = {(e["properties"]["t"], e["properties"]["i"])
           for e in events(receiver, n_threads * per_thread)}
    assert got == {(t, i) for t in range(n_threads) for i in range(per_thread)}
    assert not receiver.duplicates()
    assert c.stats()["accepted"] == n_threads * per_thread


def test_close_while_other_threads_call(make_client, receiver):
    c = make_client(receiver)
    stop = threading.Event()
    outcomes = {"ok": 0, "closed": 0, "other": []}
    lock = threading.Lock()

    def work():
        while not stop.is_set():
            try:
                c.track("Racing")
                with lock:
                    outcomes["ok"] += 1
            except herald.Closed:
                with lock:
                    outcomes["closed"] += 1
                return
            except Exception as e:  # pragma: no cover
                with lock:
                    outcomes["other"].append(e)
                return

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    time.sleep(0.2)
    assert c.close(10) is True
    stop.set()
    for th in threads:
        th.join(10)
    assert not outcomes["other"], outcomes["other"][:3]
    assert outcomes["closed"] == 4
    events(receiver, outcomes["ok"])
    assert len(receiver.accepted_ids()) == outcomes["ok"]


def test_concurrent_close_calls_agree(make_client, receiver):
    c = make_client(receiver)
    c.track("One")
    results = []
    ths = [threading.Thread(target=lambda: results.append(c.close(5))) for _ in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(10)
    assert results == [True] * 4
    with pytest.raises(herald.Closed):
        c.flush(1)
