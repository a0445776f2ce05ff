"""Server faults: every one ends with every event delivered or dead-lettered
with a reason that says what happened, and nothing is lost
(accepted = sent + dead in the queue file's counters).

The server is tests/integration/fault_server.py (raw sockets, loopback), the
client the producer (libherald). Retry settings are short: retry_base_ms 50,
retry_max_delay_ms 500, connect/request timeouts 1000 ms.
"""

import email.utils
import math
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import ProducerResult, child_env, wait_until
from fault_server import (FaultServer, half_response_rst, huge, redirect, respond,
                          rst_after_request, rst_mid_request, rst_on_accept, slow_body,
                          stall, truncated)


@pytest.fixture
def fault():
    s = FaultServer().start()
    yield s
    s.stop()


@pytest.fixture
def make_fault():
    made = []

    def make(**kw):
        s = FaultServer(**kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def dest(server, **kw):
    d = {"name": "main", "backend": "rest", "url": server.url(), "mode": "batch", "gzip": True}
    d.update(kw)
    return d


def config(herald, server, dest_kw=None, **opts):
    settings = {"retry_base_ms": 50, "retry_max_delay_ms": 500, "connect_timeout_ms": 1000,
                "request_timeout_ms": 1000, "flush_interval_ms": 50}
    settings.update(opts)
    return herald.config([dest(server, **(dest_kw or {}))], **settings)


def assert_accounted(herald, n, sent, dead, db=None):
    """The counters add up, and the outbox is empty."""
    c = herald.counters(db=db)
    assert c.get("accepted") == n, "accepted=%s, wanted %d: %s" % (c.get("accepted"), n, c)
    assert c.get("sent", 0) == sent and c.get("dead", 0) == dead, \
        "sent=%s dead=%s, wanted sent=%d dead=%d: %s" % (c.get("sent"), c.get("dead"),
                                                         sent, dead, c)
    assert c["accepted"] == c.get("sent", 0) + c.get("dead", 0), "events lost: %s" % c
    left = herald.query("SELECT COUNT(*) FROM outbox", db=db)[0][0]
    assert left == 0, "%d deliveries still owed" % left
    dls = herald.query("SELECT COUNT(*) FROM dead_letters", db=db)[0][0]
    assert dls == dead, "%d dead_letters rows for dead=%d" % (dls, dead)
    return c


def assert_delivered_once(server, n):
    ids = server.accepted_ids()
    assert len(ids) == n, "%d distinct messageIds accepted, wanted %d" % (len(ids), n)
    dups = {k: v for k, v in ids.items() if v > 1}
    assert not dups, "delivered more than once: %s" % dups


# Transport faults: what the server does, and what the reason must say.
TRANSPORT = {
    # A reset right after accept can reach a slow client (valgrind) before its
    # connect completes: curl then calls it a connection failure, or fails to
    # read the peer's address from the dead socket (ENOTCONN).
    "rst_on_accept": (rst_on_accept,
                      r"reset|broken pipe|empty reply|send failure|couldn't connect"
                      r"|not connected"),
    "rst_mid_request": (rst_mid_request, r"reset|broken pipe|empty reply|send failure"),
    "rst_after_request": (rst_after_request, r"reset|broken pipe|empty reply"),
    "half_response_rst": (half_response_rst, r"reset|receiv|recv"),
    "truncated_body": (lambda: truncated(200, 1000, 10), r"990 bytes remaining|partial"),
    "stall": (lambda: stall(3), r"timed out|timeout"),
    "slow_body": (lambda: slow_body(3), r"timed out|timeout"),
}


# -- transport faults ---------------------------------------------------------

def test_transport_faults_use_no_attempts(herald, fault):
    """Seven consecutive transport failures of every kind with
    retry_max_attempts 2: the events are delivered, not dead-lettered."""
    n = 5
    fault.script([make() for make, _ in TRANSPORT.values()])
    cfg = config(herald, fault, retry_max_attempts=2)
    res = herald.produce(cfg, n, flush_ms=30000)
    assert res.flush == 0, res.describe()
    reqs = fault.snapshot()
    kinds = [r.action[0] for r in reqs]
    assert kinds[:len(TRANSPORT)] == [m()[0] for m, _ in TRANSPORT.values()], kinds
    assert [r.status for r in reqs[len(TRANSPORT):]] == [200] * (len(reqs) - len(TRANSPORT)), reqs
    assert_delivered_once(fault, n)
    c = assert_accounted(herald, n, sent=n, dead=0)
    # Each failed request rescheduled its events.
    assert c.get("retried") == len(TRANSPORT), c
    assert res.stats["retried"] == len(TRANSPORT), res.stats
    # Only answered requests are "requests completed".
    assert c.get("requests") == len(reqs) - len(TRANSPORT), c


@pytest.mark.parametrize("kind", sorted(TRANSPORT) + ["refused"])
def test_transport_fault_expires_with_its_reason(herald, fault, kind):
    """A fault that never ends: the events are dead-lettered when they pass
    retry_max_age_s, with http_status 0 and a reason naming the fault."""
    n = 2
    if kind == "refused":
        fault.stop()
        pattern = r"refused|couldn't connect|failed to connect"
    else:
        make, pattern = TRANSPORT[kind]
        fault.responder = lambda req: make()
        if kind in ("rst_on_accept", "rst_mid_request"):
            # These act before the request is read: keep them scripted.
            fault.script([make() for _ in range(40)])
    cfg = config(herald, fault, retry_max_attempts=1, retry_max_age_s=1)
    t0 = time.monotonic()
    res = herald.produce(cfg, n, flush_ms=15000)
    took = time.monotonic() - t0
    assert res.flush == 0, res.describe()
    assert took < 8, "took %.1fs to expire 1 s old events" % took
    assert fault.accepted_ids() == {}
    assert_accounted(herald, n, sent=0, dead=n)
    for d in herald.dead_letters():
        assert d["http_status"] == 0, d
        reason = d["reason"]
        assert reason.startswith("expired after 0 attempts: no response: "), reason
        assert re.search(pattern, reason, re.I), "reason %r does not say %s" % (reason, kind)
        assert d["event"] and d["event"]["properties"]["seq"] in range(n), d


def test_connection_refused_then_up(herald, fault):
    """Refused for a while: retried without using attempts, nothing
    dead-lettered; delivered once the server listens."""
    n = 3
    port = fault.port
    fault.stop()
    cfg = config(herald, fault, retry_max_attempts=1)
    proc, reader = herald.spawn_producer(cfg, n, flush_ms=20000)
    try:
        assert reader.first_ok.wait(10)
        assert wait_until(lambda: herald.counters().get("retried", 0) >= 3, 5), \
            herald.counters()
        c = herald.counters()
        assert c.get("dead", 0) == 0 and c.get("sent", 0) == 0, c
        fault.port = port
        fault.start()
        res = reader.finish(timeout=30)
    finally:
        reader.kill()
    assert res.flush == 0, res.describe()
    assert_delivered_once(fault, n)
    assert_accounted(herald, n, sent=n, dead=0)
    assert "no response" in res.stats["last_error"], res.stats


# -- 5xx ----------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_ok_is_delivered(herald, fault, status):
    n = 3
    fault.script([respond(status, {}, "upstream trouble")] * 3)
    cfg = config(herald, fault)
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = fault.snapshot()
    assert [r.status for r in reqs][:3] == [status] * 3, reqs
    assert all(r.status == 200 for r in reqs[3:]), reqs
    assert_delivered_once(fault, n)
    c = assert_accounted(herald, n, sent=n, dead=0)
    assert c.get("retried") == 3, "retried should count the 3 failed requests: %s" % c
    assert c.get("requests") == len(reqs), c


def test_always_503_gives_up_after_max_attempts(herald, fault):
    n = 2
    fault.responder = lambda req: respond(503, {}, "Service Unavailable\nretry later")
    cfg = config(herald, fault, retry_max_attempts=2)
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = fault.snapshot()
    assert [r.status for r in reqs] == [503, 503], reqs
    assert_accounted(herald, n, sent=0, dead=n)
    for d in herald.dead_letters():
        assert d["http_status"] == 503, d
        assert d["reason"] == "gave up after 2 attempts: HTTP 503: Service Unavailable", d
        assert d["response"] == "Service Unavailable\nretry later", d


# -- Retry-After ----------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds(herald, fault, status):
    """No request before the delay, and the answer costs no attempt: with
    retry_max_attempts 1 the event is still delivered."""
    fault.script([respond(status, {"Retry-After": "1"}, "slow down")])
    cfg = config(herald, fault, retry_max_attempts=1)
    res = herald.produce(cfg, 1, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = fault.snapshot()
    assert [r.status for r in reqs] == [status, 200], reqs
    gap = reqs[1].t_mono - reqs[0].t_mono
    assert gap >= 0.98, "retried %.3fs after Retry-After: 1" % gap
    assert gap < 2.5, "Retry-After: 1 but waited %.2fs" % gap
    assert_delivered_once(fault, 1)
    assert_accounted(herald, 1, sent=1, dead=0)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_http_date(herald, fault, status):
    state = {}
    lock = threading.Lock()

    def first(req):
        with lock:
            if "date" in state:
                return None
            state["date"] = math.ceil(time.time()) + 2
            return respond(status, {"Retry-After": email.utils.formatdate(state["date"],
                                                                          usegmt=True)},
                           "come back later")

    fault.responder = first
    cfg = config(herald, fault, retry_max_attempts=1)
    res = herald.produce(cfg, 1, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = fault.snapshot()
    assert [r.status for r in reqs] == [status, 200], reqs
    assert reqs[1].t_wall >= state["date"] - 0.05, \
        "retried at %.3f, before the Retry-After date %d" % (reqs[1].t_wall, state["date"])
    assert reqs[1].t_wall < state["date"] + 1.5, "retried %.2fs after the date" % (
        reqs[1].t_wall - state["date"])
    assert_delivered_once(fault, 1)
    assert_accounted(herald, 1, sent=1, dead=0)


@pytest.mark.parametrize("status,value", [(503, "soon"), (429, "soon"), (503, "1.5"),
                                          (503, "Wed, 32 Foo 2024 25:00:00 GMT")])
def test_retry_after_garbage_is_ignored(herald, fault, status, value):
    """An unparsable Retry-After is no Retry-After: backoff (well under a
    second here), and the attempt counts."""
    fault.script([respond(status, {"Retry-After": value}, "busy")] * 2)
    cfg = config(herald, fault, retry_max_attempts=5)
    res = herald.produce(cfg, 1, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = fault.snapshot()
    assert [r.status for r in reqs] == [status, status, 200], reqs
    for a, b in zip(reqs, reqs[1:]):
        assert b.t_mono - a.t_mono < 0.9, \
            "waited %.2fs after Retry-After %r: not the 50-500 ms backoff" % (
                b.t_mono - a.t_mono, value)
    assert_accounted(herald, 1, sent=1, dead=0)

    # The attempt counts: with retry_max_attempts 1 the first answer ends it.
    db2 = herald.tmp / "attempts.db"
    fault.script([respond(status, {"Retry-After": value}, "busy")])
    cfg = config(herald, fault, retry_max_attempts=1, db_path=str(db2))
    res = herald.produce(cfg, 1, flush_ms=20000)
    assert res.flush == 0, res.describe()
    assert_accounted(herald, 1, sent=0, dead=1, db=db2)
    (d,) = herald.dead_letters(db=db2)
    assert d["http_status"] == status and \
        d["reason"] == "gave up after 1 attempts: HTTP %d: busy" % status, d


def test_retry_after_is_capped_at_one_hour(herald, fault):
    fault.script([respond(503, {"Retry-After": "86400"}, "maintenance")])
    cfg = config(herald, fault)
    before = time.time()
    res = herald.produce(cfg, 1, flush_ms=1000)
    assert res.flush == -9, "flush should time out while paused: " + res.describe()
    (d,) = res.stats["destinations"]
    pause_s = d["paused_until_ms"] / 1000.0 - before
    assert 3595 <= pause_s <= 3600 + 5, "paused for %.0fs after Retry-After: 86400" % pause_s
    assert res.stats["pending"] == 1 and res.stats["dead"] == 0, res.stats
    assert len(fault.snapshot()) == 1


# -- rejections -------------------------------------------------------------------

@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusal_is_dead_lettered(herald, fault, status):
    n = 3
    long_body = "invalid write key\n" + "z" * 3000
    fault.responder = lambda req: respond(status, {}, long_body)
    cfg = config(herald, fault)
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = fault.snapshot()
    assert reqs and all(r.status == status for r in reqs), reqs
    assert len(reqs) <= n, "a %d was retried: %s" % (status, reqs)
    assert_accounted(herald, n, sent=0, dead=n)
    for d in herald.dead_letters():
        assert d["http_status"] == status, d
        assert d["reason"] == "HTTP %d: invalid write key" % status, d
        assert len(d["response"].encode()) <= 512, len(d["response"])
        assert d["response"] == long_body[:512], d["response"][:80]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed(herald, fault, make_fault, status):
    """A redirect could carry the auth header to another host: never
    followed, dead-lettered with the 3xx."""
    target = make_fault()
    fault.responder = lambda req: redirect(status, target.url())
    cfg = config(herald, fault, dest_kw={"write_key": "wk_redirect_secret"})
    res = herald.produce(cfg, 2, flush_ms=20000)
    assert res.flush == 0, res.describe()
    time.sleep(0.2)
    assert target.connections == 0, "herald followed the %d to %s" % (status, target.url())
    assert target.snapshot() == []
    assert all(r.status == status for r in fault.snapshot()), fault.snapshot()
    assert_accounted(herald, 2, sent=0, dead=2)
    for d in herald.dead_letters():
        assert d["http_status"] == status, d
        assert d["reason"].startswith("HTTP %d" % status), d


def test_413_splits_then_dead_letters_the_single_event(herald, fault):
    n = 4

    def limit(req):
        msgs = req.messages or []
        if len(msgs) > 1:
            return respond(413, {}, "request size exceeds max limit")
        if msgs and msgs[0]["properties"]["seq"] == 2:
            return respond(413, {}, "event too large")
        return None

    fault.responder = limit
    cfg = config(herald, fault, flush_interval_ms=2000)
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    assert any(r.status == 413 and len(r.messages) > 1 for r in fault.snapshot()), \
        "never sent a batch of several events: %s" % fault.snapshot()
    assert_delivered_once(fault, n - 1)
    assert_accounted(herald, n, sent=n - 1, dead=1)
    (d,) = herald.dead_letters()
    assert d["http_status"] == 413 and d["reason"] == "HTTP 413: event too large", d
    assert d["event"]["properties"]["seq"] == 2, d


# -- response bodies ----------------------------------------------------------------

def produce_measured(herald, cfg, count, flush_ms, timeout=60):
    """Run the producer and reap it with wait4: returns (result, peak RSS in
    KiB, seconds)."""
    args = herald.producer_args(cfg, count, flush_ms=flush_ms)
    out_path, err_path = herald.tmp / "producer.out", herald.tmp / "producer.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(args, stdout=out, stderr=err, env=child_env(),
                             stdin=subprocess.DEVNULL)
    lock = threading.Lock()
    reaped = []

    def kill():
        with lock:
            if not reaped:
                os.kill(p.pid, 9)

    timer = threading.Timer(timeout, kill)
    timer.start()
    _, status, usage = os.wait4(p.pid, 0)
    with lock:
        reaped.append(True)
    timer.cancel()
    took = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    res = ProducerResult(p.returncode, out_path.read_text(),
                         err_path.read_text(errors="replace"), args)
    print(res.describe())
    assert res.opened == 0 and res.returncode == 0, res.describe()
    # The producer's own VmHWM: wait4's ru_maxrss would also count the memory
    # of this (forking) Python process, which exec carries into the child's.
    m = re.search(r"^rss_peak_kb (\d+)$", res.stdout, re.M)
    assert m, "the producer did not report its peak RSS:\n" + res.describe()
    return res, int(m.group(1)), took


def test_huge_200_body_is_delivered_with_bounded_memory(herald, fault):
    size = 100 * 1024 * 1024
    fault.script([huge(200, size)])
    cfg = config(herald, fault, request_timeout_ms=10000)
    res, rss_kib, took = produce_measured(herald, cfg, 3, flush_ms=20000)
    assert res.flush == 0, res.describe()
    assert took < 5, "a 100 MB response body took %.1fs" % took
    assert rss_kib < 64 * 1024, "peak RSS %d KiB: the body was buffered" % rss_kib
    assert fault.snapshot()[0].action[0] == "huge"
    assert_delivered_once(fault, 3)
    assert_accounted(herald, 3, sent=3, dead=0)


def test_huge_4xx_body_is_dead_lettered_with_an_excerpt(herald, fault):
    size = 100 * 1024 * 1024
    fault.script([huge(400, size)])
    cfg = config(herald, fault, request_timeout_ms=10000)
    res, rss_kib, took = produce_measured(herald, cfg, 1, flush_ms=20000)
    assert res.flush == 0, res.describe()
    assert took < 5, "a 100 MB response body took %.1fs" % took
    assert rss_kib < 64 * 1024, "peak RSS %d KiB: the body was buffered" % rss_kib
    assert_accounted(herald, 1, sent=0, dead=1)
    (d,) = herald.dead_letters()
    assert d["http_status"] == 400, d
    assert d["response"] == "y" * 512, (len(d["response"]), d["response"][:40])
    assert d["reason"].startswith("HTTP 400: yyyy"), d["reason"][:80]
    assert len(d["reason"]) < 512, len(d["reason"])


def test_endless_body_read_stops_at_64k_and_the_status_counts(herald, fault):
    """A 400 followed by an endless body: herald must stop reading after
    64 KiB and act on the status (dead letter), not time out."""
    fault.responder = lambda req: huge(400, 1 << 40, max_seconds=4)
    cfg = config(herald, fault, request_timeout_ms=1500)
    res = herald.produce(cfg, 1, flush_ms=3000)
    sent = [r.bytes_sent for r in fault.snapshot()]
    print("body bytes the server got out, per request:", sent)
    assert res.flush == 0, "not classified within 3 s: " + res.describe()
    (d,) = herald.dead_letters()
    assert d["http_status"] == 400, d
    assert max(sent) < 32 * 1024 * 1024, \
        "herald read %d MiB of the body, not 64 KiB" % (max(sent) >> 20)
