"""Delivery through libherald (the producer) to the loopback receiver:
batching, gzip, retries, Retry-After, dead letters, splitting, single mode."""

import base64
import email.utils
import math
import subprocess
import threading
import time

import pytest

from conftest import seq_counts, wait_until


def assert_exactly_once(receiver, expected_seqs):
    counts = seq_counts(receiver.events)
    missing = sorted(set(expected_seqs) - set(counts))
    extra = sorted(set(counts) - set(expected_seqs))
    dups = {s: n for s, n in counts.items() if n > 1}
    assert not missing, "%d events never arrived, e.g. seqs %s" % (len(missing), missing[:20])
    assert not extra, "unexpected seqs arrived: %s" % extra[:20]
    assert not dups, "%d events arrived more than once, e.g. %s" % (
        len(dups), sorted(dups.items())[:20])
    ids = receiver.accepted_ids()
    assert len(ids) == len(expected_seqs), "messageIds: %d distinct for %d events" % (
        len(ids), len(expected_seqs))
    assert all(n == 1 for n in ids.values()), "duplicate messageIds: %s" % (
        receiver.duplicates(),)


# a ---------------------------------------------------------------------------

@pytest.mark.threads
def test_library_10k_gzip_exactly_once(herald, receiver):
    n = 10000
    cfg = herald.config([herald.dest(receiver, headers={"X-Herald-Test": "yes"})])
    res = herald.produce(cfg, n, pad=64, flush_ms=60000, close_ms=5000)
    assert res.ok == list(range(n)) and not res.err, res.describe()
    assert res.flush == 0, "herald_flush returned %s" % res.flush

    reqs = receiver.snapshot()
    bad = [r for r in reqs if r.status != 200]
    assert not bad, "requests refused by the receiver: %s" % bad[:5]
    assert_exactly_once(receiver, range(n))

    # Segment-shaped messages.
    for m in receiver.events[:50]:
        assert m["type"] == "track" and m["event"] == "Test Event", m
        assert m.get("anonymousId") or m.get("userId"), m
        assert (m.get("context") or {}).get("library", {}).get("name"), \
            "context.library.name missing: %s" % m

    # Batches of at most 100, gzip on every body of at least gzip_min_bytes.
    sizes = [len(r.messages) for r in reqs]
    assert max(sizes) <= 100, "a batch carried %d events" % max(sizes)
    assert len(reqs) >= n // 100
    for r in reqs:
        assert r.path == "/v1/batch"
        assert r.headers.get("x-herald-test") == "yes", "configured header missing: %s" % (
            r.headers,)
        assert r.headers.get("content-type", "").startswith("application/json")
        assert isinstance(r.json, dict) and isinstance(r.json.get("sentAt"), str)
        if r.decoded_len >= 1024:
            assert r.headers.get("content-encoding") == "gzip", \
                "a %d-byte body was sent without gzip" % r.decoded_len
            assert r.raw_len < r.decoded_len, "gzip did not shrink the body"
    in_gz = sum(len(r.messages) for r in reqs if r.gzipped)
    assert in_gz >= 0.9 * n, "only %d of %d events travelled gzipped" % (in_gz, n)

    c = herald.counters()
    assert c.get("sent") == n, c
    assert c.get("accepted") == n, c
    assert res.stats["pending"] == 0, res.stats
    assert c.get("bytes_sent", 0) < c.get("bytes_raw", 0), c


@pytest.mark.threads
def test_library_threads_exactly_once(herald, receiver):
    n = 4000
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, n, threads=4, flush_ms=60000)
    assert sorted(res.ok) == list(range(n)) and not res.err, res.describe()
    assert res.flush == 0
    assert_exactly_once(receiver, range(n))
    assert max(len(r.messages) for r in receiver.snapshot()) <= 100


# c ---------------------------------------------------------------------------

def test_receiver_down_10s_then_up(herald, receiver):
    """The receiver goes away after the first request and comes back 10 s
    later: every event is delivered, none dead-lettered, and delivery resumes
    within the backoff cap once it is back."""
    n = 400
    outage = 10.0
    cap_ms = 2000
    cfg = herald.config([herald.dest(receiver)], retry_base_ms=200,
                        retry_max_delay_ms=cap_ms, retry_max_attempts=1000,
                        connect_timeout_ms=1000)
    proc, reader = herald.spawn_producer(cfg, n, interval_us=2500, flush_ms=60000)
    try:
        assert receiver.wait_for_requests(1, timeout=20), "no request reached the receiver"
        receiver.stop()
        t_down = time.monotonic()
        back = threading.Timer(outage, receiver.start)
        back.start()
        time.sleep(outage)
        back.join()
        t_up = time.monotonic()
        res = reader.finish(timeout=90)
    finally:
        reader.kill()
    print(res.describe())
    assert res.returncode == 0, res.describe()
    assert res.ok == list(range(n)) and not res.err, res.describe()
    assert res.flush == 0, "flush did not drain after the outage: %s" % res.describe()

    reqs = receiver.snapshot()
    during = [r for r in reqs if t_down < r.t_mono < t_up]
    assert not during, "requests recorded while the receiver was down: %s" % during
    after = [r for r in reqs if r.t_mono >= t_up]
    assert after, "nothing was sent after the receiver came back"
    lag = after[0].t_mono - t_up
    assert lag <= cap_ms / 1000.0 + 1.5, \
        "first request %.2fs after the receiver came back (backoff cap %d ms)" % (lag, cap_ms)

    counts = seq_counts(receiver.events)
    missing = sorted(set(range(n)) - set(counts))
    assert not missing, "%d events lost, e.g. %s" % (len(missing), missing[:20])
    dups = {s: k for s, k in counts.items() if k > 1}
    print("duplicates after the outage: %d" % len(dups))
    c = herald.counters()
    assert c.get("dead", 0) == 0 and not herald.dead_letters(), herald.dead_letters()[:3]
    assert c.get("retried", 0) >= 1, "no retry counted across a 10 s outage: %s" % c


# d ---------------------------------------------------------------------------

def _assert_pause(receiver, min_gap, n, not_before_wall=None):
    reqs = receiver.snapshot()
    assert reqs and reqs[0].status in (429, 503), reqs
    first = reqs[0]
    later = reqs[1:]
    assert later, "nothing was sent after the %d" % first.status
    gap = later[0].t_mono - first.t_mono_done
    assert gap >= min_gap - 0.01, \
        "next request %.3fs after the %d with Retry-After; wanted >= %.1fs" % (
            gap, first.status, min_gap)
    if not_before_wall is not None:
        assert later[0].t_wall >= not_before_wall - 0.05, \
            "next request at %.3f, before the Retry-After date %.3f" % (
                later[0].t_wall, not_before_wall)
    assert gap <= min_gap + 3.0, "Retry-After of %.0fs but waited %.2fs" % (min_gap, gap)
    assert_exactly_once(receiver, range(n))


def test_retry_after_seconds_503(herald, receiver):
    n = 5
    receiver.script([(503, {"Retry-After": "2"}, "Service Unavailable")])
    cfg = herald.config([herald.dest(receiver)], retry_base_ms=50)
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    _assert_pause(receiver, 2.0, n)


def test_retry_after_seconds_429(herald, receiver):
    n = 5
    receiver.script([(429, {"Retry-After": "1"}, "max requests limit reached")])
    cfg = herald.config([herald.dest(receiver)], retry_base_ms=50)
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    _assert_pause(receiver, 1.0, n)


def test_retry_after_http_date(herald, receiver):
    n = 5
    state = {"date": None}
    lock = threading.Lock()

    def first_503(rec):
        with lock:
            if state["date"] is not None:
                return None
            # At least 2 s ahead, on a whole second as HTTP-dates are.
            state["date"] = math.ceil(time.time()) + 3
            return (503, {"Retry-After": email.utils.formatdate(state["date"], usegmt=True)},
                    "Service Unavailable")

    receiver.responder = first_503
    cfg = herald.config([herald.dest(receiver)], retry_base_ms=50)
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    _assert_pause(receiver, 2.0, n, not_before_wall=state["date"])


# e ---------------------------------------------------------------------------

def test_500_three_times_then_ok(herald, receiver):
    receiver.script([(500, {}, "internal error")] * 3)
    cfg = herald.config([herald.dest(receiver)], retry_base_ms=50, retry_max_delay_ms=200)
    res = herald.produce(cfg, 1, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = receiver.snapshot()
    assert [r.status for r in reqs] == [500, 500, 500, 200], reqs
    ids = [[m["messageId"] for m in r.messages] for r in reqs]
    assert all(i == ids[0] for i in ids), "messageId changed across retries: %s" % ids
    sent_at = [r.json["sentAt"] for r in reqs]
    assert sent_at[-1] != sent_at[0], "sentAt not renewed per attempt: %s" % sent_at
    assert_exactly_once(receiver, [0])
    c = herald.counters()
    assert c.get("retried") == 3, "retried counter in the queue file: %s" % c
    assert res.stats["retried"] == 3, res.stats
    assert res.stats["sent"] == 1 and res.stats["dead"] == 0, res.stats
    assert c.get("requests") == 4, c


# f ---------------------------------------------------------------------------

def _poison(seq, status=400):
    def respond(rec):
        for m in rec.messages or ():
            if (m.get("properties") or {}).get("seq") == seq:
                return (status, {}, "poisoned event seq %d" % seq)
        return None
    return respond


def test_400_dead_letter_does_not_block(herald, receiver):
    receiver.responder = _poison(2)
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, 5, flush_ms=20000)
    assert res.flush == 0, "the queue did not drain past a 400: " + res.describe()

    dls = herald.dead_letters()
    assert dls, "no dead_letters row after a 400"
    for d in dls:
        assert d["http_status"] == 400, d
        assert d["reason"], "dead letter without a reason: %s" % d
        assert d["dest"] == "main", d
        assert d["event"] is not None, "dead letter body is not the event JSON: %r" % d
        if "response" in d:
            assert "poisoned" in (d["response"] or ""), "response excerpt not kept: %r" % d
    dead_seqs = {d["event"]["properties"]["seq"] for d in dls}
    assert 2 in dead_seqs, dead_seqs
    delivered = set(seq_counts(receiver.events))
    assert delivered | dead_seqs == set(range(5)), (delivered, dead_seqs)
    assert not delivered & dead_seqs, (delivered, dead_seqs)
    # Nothing is left behind the 400: later events go through.
    res2 = herald.produce(cfg, 5, start=5, flush_ms=20000)
    assert res2.flush == 0, res2.describe()
    assert set(range(5, 10)) <= set(seq_counts(receiver.events))
    c = herald.counters()
    assert c.get("dead") == len(dls), c
    assert res2.stats["pending"] == 0 and res2.stats["dead_letters"] == len(dls), res2.stats


@pytest.mark.threads
def test_two_destinations_one_rejects_everything(herald, receiver, make_receiver):
    n = 50
    bad = make_receiver()
    bad.responder = lambda rec: (400, {}, "bad request")
    cfg = herald.config([herald.dest(bad, name="bad"), herald.dest(receiver, name="good")])
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    assert_exactly_once(receiver, range(n))
    dls = herald.dead_letters()
    assert {d["dest"] for d in dls} == {"bad"}, {d["dest"] for d in dls}
    assert len({d["event_id"] for d in dls}) == n, "%d dead letters for %d events" % (
        len(dls), n)
    assert all(d["http_status"] == 400 and d["reason"] for d in dls)
    c = herald.counters()
    assert c.get("sent") == n and c.get("dead") == n, c
    dests = {d["name"]: d for d in res.stats.get("destinations", [])}
    assert set(dests) == {"bad", "good"}, res.stats
    assert herald.query("SELECT COUNT(*) FROM outbox")[0][0] == 0


# extras ----------------------------------------------------------------------

def test_413_splits_batch(herald, receiver):
    n = 200
    receiver.max_body_bytes = 20000
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, n, pad=500, flush_ms=30000)
    assert res.flush == 0, res.describe()
    reqs = receiver.snapshot()
    assert any(r.status == 413 for r in reqs), "no request was large enough to get a 413"
    assert_exactly_once(receiver, range(n))
    assert not herald.dead_letters(), herald.dead_letters()[:3]


def test_413_on_a_single_event_is_dead_lettered(herald, receiver):
    receiver.max_body_bytes = 500
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, 1, pad=2000, flush_ms=20000)
    assert res.flush == 0, res.describe()
    dls = herald.dead_letters()
    assert len(dls) == 1 and dls[0]["http_status"] == 413 and dls[0]["reason"], dls
    assert not receiver.accepted_ids()


def test_destination_overrides_batch_size_and_gzip_off(herald, receiver, make_receiver):
    other = make_receiver()
    cfg = herald.config([herald.dest(receiver, name="small", batch_max_events=3, gzip=False),
                         herald.dest(other, name="big")])
    res = herald.produce(cfg, 20, pad=200, flush_ms=20000)
    assert res.flush == 0, res.describe()
    small = receiver.snapshot()
    assert max(len(r.messages) for r in small) <= 3, [len(r.messages) for r in small]
    assert not any(r.gzipped for r in small), "gzip: false but a body was compressed"
    assert any(len(r.messages) > 3 for r in other.snapshot()), \
        "batch_max_events of one destination leaked into the other"
    assert any(r.gzipped for r in other.snapshot())
    assert_exactly_once(receiver, range(20))
    assert_exactly_once(other, range(20))


def test_single_mode_one_event_per_request(herald, receiver):
    n = 20
    cfg = herald.config([herald.dest(receiver, path="/v1/track", mode="single")])
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = receiver.snapshot()
    assert all(r.status == 200 for r in reqs), [r for r in reqs if r.status != 200]
    assert len(reqs) == n, "%d requests for %d events in single mode" % (len(reqs), n)
    for r in reqs:
        assert r.path == "/v1/track"
        assert isinstance(r.json, dict) and "batch" not in r.json, r.json
        assert r.json.get("type") == "track"
    assert_exactly_once(receiver, range(n))


def test_write_key_is_basic_auth(herald, make_receiver):
    r = make_receiver(write_key="wk_test")
    cfg = herald.config([herald.dest(r, write_key="wk_test")])
    res = herald.produce(cfg, 3, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = r.snapshot()
    assert reqs and all(q.status == 200 for q in reqs), reqs
    auth = reqs[0].headers.get("authorization", "")
    assert auth == "Basic " + base64.b64encode(b"wk_test:").decode(), auth
    assert_exactly_once(r, range(3))


def test_small_body_not_gzipped(herald, receiver):
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, 1, flush_ms=20000)
    assert res.flush == 0, res.describe()
    reqs = receiver.snapshot()
    assert len(reqs) == 1 and reqs[0].status == 200, reqs
    assert reqs[0].decoded_len < 1024
    assert "content-encoding" not in reqs[0].headers, reqs[0].headers


def test_flush_waits_for_slow_response(herald, receiver):
    """A response that takes a while is awaited, not abandoned."""
    receiver.script([(None, {}, None, 1.0)])
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, 3, flush_ms=20000)
    assert res.flush == 0, res.describe()
    assert wait_until(lambda: len(receiver.accepted_ids()) == 3, 1)
    assert_exactly_once(receiver, range(3))


def test_retry_max_attempts_then_dead_letter(herald, receiver):
    receiver.responder = lambda rec: (500, {}, "always failing")
    cfg = herald.config([herald.dest(receiver)], retry_base_ms=10, retry_max_delay_ms=50,
                        retry_max_attempts=3)
    res = herald.produce(cfg, 1, flush_ms=20000)
    assert res.flush == 0, "flush did not end once the event was dead-lettered: " + res.describe()
    assert [r.status for r in receiver.snapshot()] == [500, 500, 500], receiver.snapshot()
    dls = herald.dead_letters()
    assert len(dls) == 1 and dls[0]["http_status"] == 500 and dls[0]["reason"], dls
    assert res.stats["dead"] == 1, res.stats
    # herald.h: retried = "failed attempts that were scheduled again"; the
    # third failure was dead-lettered, not scheduled again.
    assert res.stats["retried"] == 2, \
        "retried=%d after 3 failures of which the last was dead-lettered (wanted 2): %s" % (
            res.stats["retried"], res.stats)


def test_retry_max_age_dead_letters_old_events(herald, receiver):
    receiver.stop()
    cfg = herald.config([herald.dest(receiver)], retry_base_ms=50, retry_max_delay_ms=200,
                        retry_max_attempts=1000, retry_max_age_s=1)
    t0 = time.monotonic()
    res = herald.produce(cfg, 2, flush_ms=15000)
    took = time.monotonic() - t0
    assert res.flush == 0, "events older than retry_max_age_s were not dead-lettered: " + \
        res.describe()
    assert took < 6, "took %.1fs to expire 1 s old events" % took
    dls = herald.dead_letters()
    assert len(dls) == 2 and all(d["http_status"] == 0 and d["reason"] for d in dls), dls


@pytest.mark.threads
def test_close_does_not_block_longer_than_asked(herald, receiver):
    """A request hanging in the receiver must not hold herald_close beyond
    its bound; the events stay queued and the next open delivers them."""
    receiver.script([(None, {}, None, 4.0)])
    cfg = herald.config([herald.dest(receiver)], flush_interval_ms=20)
    t0 = time.monotonic()
    proc, reader = herald.spawn_producer(cfg, 3, close_ms=300)
    res = reader.finish(timeout=30)
    took = time.monotonic() - t0
    print(res.describe())
    assert res.opened == 0 and res.returncode == 0, res.describe()
    assert res.close == -9, "close with a request in flight: %s" % res.describe()
    assert took < 2.5, "producer with close(300 ms) took %.2fs against a hanging receiver" % took
    fin = herald.produce(cfg, 0, flush_ms=20000)
    assert fin.flush == 0, fin.describe()
    assert receiver.wait_for(lambda r: set(seq_counts(r.events)) >= {0, 1, 2}, 10), \
        seq_counts(receiver.events)


def test_too_large_event_refused(herald, receiver):
    cfg = herald.config([herald.dest(receiver)], max_event_bytes=4096)
    res = herald.produce(cfg, 1, pad=8192, flush_ms=5000)
    assert res.err == [(0, -4)], "wanted HERALD_E_TOO_LARGE (-4): " + res.describe()
    assert res.stats["rejected"] == 1 and res.stats["accepted"] == 0, res.stats
    assert herald.query("SELECT COUNT(*) FROM events")[0][0] == 0
    assert not receiver.snapshot()


def test_unknown_config_key_is_an_error(herald, receiver):
    cfg = herald.config([herald.dest(receiver)], flush_intervall_ms=100)
    p = subprocess.run(herald.producer_args(cfg, 1), capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and "open_err -8" in p.stdout, (p.returncode, p.stdout, p.stderr)
    assert "flush_intervall_ms" in p.stderr, "the error does not name the bad key: %r" % p.stderr


# batch_concurrency -------------------------------------------------------------

class SlowBatchServer:
    """Answers every batch after `delay` seconds; records the most requests
    in progress at once and the events' seqs."""

    def __init__(self, delay):
        import http.server
        import json as _json
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.seqs = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip
                    body = gzip.decompress(body)
                with outer.lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                time.sleep(outer.delay)
                with outer.lock:
                    outer.in_flight -= 1
                    outer.seqs += [e["properties"]["seq"] for e in _json.loads(body)["batch"]]
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self):
        return "http://127.0.0.1:%d/v1/batch" % self.httpd.server_address[1]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.threads
@pytest.mark.parametrize("depth", [1, 4])
def test_batch_concurrency_bounds_batches_in_flight(herald, depth):
    """batch_concurrency 1 sends one batch at a time; 4 keeps up to four in
    flight (and no more); every event arrives once either way."""
    server = SlowBatchServer(delay=0.2)
    try:
        n = 800
        dest = {"name": "main", "backend": "rest", "url": server.url(), "mode": "batch",
                "gzip": True, "batch_max_events": 50}
        cfg = herald.config([dest], batch_concurrency=depth, flush_interval_ms=0)
        started = time.monotonic()
        res = herald.produce(cfg, n, flush_ms=60000)
        took = time.monotonic() - started
        assert res.flush == 0, res.describe()
        assert sorted(server.seqs) == list(range(n))
        assert server.max_in_flight == depth, server.max_in_flight
        if depth == 4:
            # 16 batches of 0.2 s one by one would take 3.2 s.
            assert took < 2.5, "took %.2f s" % took
    finally:
        server.stop()
