"""The segment backend end to end: herald (the CLI and the producer program)
against examples/receiver.py, a Segment-compatible collector that validates
as RudderStack's gateway does (BACKENDS.md section 3): Basic auth with the
write key, gzip, {"batch", "sentAt"}, userId or anonymousId on every message."""

import base64
import datetime
import json
import sqlite3

import pytest
from conftest import build_dir

from receiver import Receiver


@pytest.fixture(autouse=True)
def _caller_data_unredacted(herald):
    """These tests check how the backend maps the caller's own data (IPs,
    user agents, emails in traits) onto the wire, so redaction, which is on
    by default, is turned off here; it has its own tests (test_privacy.py,
    tests/unit/test_redact.c, tests/unit/test_enrich.c)."""
    herald.redact = {"enabled": False}

WRITE_KEY = "wk_9f8e7d6c5b4a3210zyx"
BASIC = "Basic " + base64.b64encode((WRITE_KEY + ":").encode()).decode()
NO_ID = ("segment: event has neither userId nor anonymousId (Segment and RudderStack "
         "refuse it)")


@pytest.fixture
def collector():
    r = Receiver(write_key=WRITE_KEY).start()
    yield r
    r.stop()


def base_url(receiver):
    return "http://%s:%d" % (receiver.host, receiver.port)


def sdest(receiver, name="s", **kw):
    d = {"name": name, "backend": "segment", "url": base_url(receiver), "write_key": WRITE_KEY}
    d.update(kw)
    return d


def import_events(herald, cfg, messages, *flags, timeout=15):
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    p = herald.emit("--config", cfg, "--timeout", str(timeout), *flags, "import", "-",
                    stdin=stdin)
    assert p.returncode == 0, p.stderr
    return p


def parse_time(value):
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def strip_identity(herald, event_name):
    """Remove userId and anonymousId from a queued event, as an event stored
    by other means (an older version, a hand-edited queue) could lack them.
    herald itself always sets anonymousId, so this is the only way in."""
    con = sqlite3.connect(str(herald.db), timeout=10)
    try:
        n = 0
        for eid, body in con.execute("SELECT id, body FROM events").fetchall():
            ev = json.loads(body)
            if ev.get("event") != event_name:
                continue
            ev.pop("userId", None)
            ev.pop("anonymousId", None)
            new = json.dumps(ev, separators=(",", ":"))
            new = new.encode() if isinstance(body, bytes) else new
            con.execute("UPDATE events SET body = ?, bytes = ? WHERE id = ?",
                        (new, len(new), eid))
            n += 1
        con.commit()
        assert n == 1, "no queued event named %r" % event_name
    finally:
        con.close()


# --------------------------------------------------------------------------
# The wire


def test_events_arrive_unchanged_with_basic_auth_and_sent_at(herald, collector):
    cfg = herald.config([sdest(collector, gzip=False)])
    messages = [
        {"type": "track", "event": "Signed Up", "properties": {"plan": "pro"},
         "messageId": "m-track", "context": {"ip": "203.0.113.9"}},
        {"type": "identify", "userId": "u-1", "traits": {"email": "a@example.com"},
         "messageId": "m-identify"},
        {"type": "page", "name": "Pricing", "properties": {"url": "https://a.example/p"},
         "messageId": "m-page"},
        {"type": "screen", "name": "Settings", "messageId": "m-screen"},
        {"type": "group", "groupId": "acme", "traits": {"seats": 4}, "messageId": "m-group"},
        {"type": "alias", "previousId": "anon-7", "userId": "u-1", "messageId": "m-alias"},
    ]
    before = datetime.datetime.now(datetime.timezone.utc)
    import_events(herald, cfg, messages)
    assert collector.wait_for_events(6, 10)
    reqs = collector.snapshot()
    assert all(r.status == 200 for r in reqs), [r.summary() for r in reqs]
    for r in reqs:
        assert r.path == "/v1/batch"
        assert r.headers["authorization"] == BASIC
        assert r.headers["content-type"] == "application/json"
        assert "content-encoding" not in r.headers  # gzip: false
        assert set(r.json) == {"batch", "sentAt"}, r.json
        sent_at = parse_time(r.json["sentAt"])
        assert before - datetime.timedelta(seconds=1) <= sent_at <= \
            datetime.datetime.now(datetime.timezone.utc)
        assert r.json["sentAt"].endswith("Z") and len(r.json["sentAt"]) == 24
    got = {m["messageId"]: m for m in collector.events}
    assert sorted(got) == sorted(m["messageId"] for m in messages)
    # herald's messages go as they are: the Segment spec shape.
    for m in messages:
        g = got[m["messageId"]]
        for k, v in m.items():
            if k != "context":  # herald merges its own context in
                assert g[k] == v, (k, g)
        assert g["anonymousId"] and g["context"]["library"]["name"] == "herald"
    assert got["m-track"]["context"]["ip"] == "203.0.113.9"
    assert not herald.dead_letters()


def test_gzip_by_default_and_sent_at_is_the_only_change(herald, collector):
    cfg = herald.config([sdest(collector)])
    res = herald.produce(cfg, 20, pad=200, flush_ms=10000)
    assert res.flush == 0, res.describe()
    assert collector.wait_for_events(20, 5)
    reqs = [r for r in collector.snapshot() if r.status == 200]
    assert reqs and all(r.gzipped for r in reqs), [r.summary() for r in reqs]
    assert sum(len(r.messages) for r in reqs) == 20


@pytest.mark.parametrize("path, url_suffix", [
    ("/v1/batch", "/"),                      # a bare host: /v1/batch is added
    ("/ingest/segment/batch", "/ingest/segment/batch"),  # a path is used as it is
])
def test_endpoint_from_url(herald, make_receiver, path, url_suffix):
    r = make_receiver(batch_path=path, write_key=WRITE_KEY)
    cfg = herald.config([sdest(r, url=base_url(r) + url_suffix)])
    import_events(herald, cfg, [{"type": "track", "event": "E"}])
    assert r.wait_for_events(1, 10)
    assert [q.path for q in r.snapshot()] == [path]


def test_sent_at_is_fresh_on_every_attempt(herald, collector):
    """A retried batch carries the same messages and a new sentAt: the
    collector corrects timestamps with it (sentAt - receivedAt skew)."""
    collector.script([(500, {"Retry-After": "1"}, "boom")])
    cfg = herald.config([sdest(collector, gzip=False)])
    res = herald.produce(cfg, 3, flush_ms=10000)
    assert res.flush == 0, res.describe()
    collector.wait_for_requests(2, 5)
    first, second = collector.snapshot()[:2]
    assert (first.status, second.status) == (500, 200)
    assert first.json["batch"] == second.json["batch"]  # same messages, same messageIds
    delta = parse_time(second.json["sentAt"]) - parse_time(first.json["sentAt"])
    assert delta >= datetime.timedelta(milliseconds=900), (first.json["sentAt"],
                                                           second.json["sentAt"])
    assert not collector.duplicates()


# --------------------------------------------------------------------------
# Limits


def test_event_over_32000_bytes_is_dead_lettered_without_a_request(herald, collector):
    # The client itself takes events up to 64 KiB here: the backend's limit binds.
    cfg = herald.config([sdest(collector)], max_event_bytes=65536)
    import_events(herald, cfg, [
        {"type": "track", "event": "Big", "properties": {"pad": "x" * 33000}},      # ~33 KB
        {"type": "track", "event": "Edge", "properties": {"pad": "y" * 32100}},     # 32.1-32.7 KB
        {"type": "track", "event": "Fits", "properties": {"pad": "z" * 31000}},
    ])
    assert collector.wait_for_events(1, 10)
    assert [m["event"] for m in collector.events] == ["Fits"]
    assert sum(len(q.messages or []) for q in collector.snapshot()) == 1
    dls = {d["event"]["event"]: d for d in herald.dead_letters()}
    assert sorted(dls) == ["Big", "Edge"], dls
    for d in dls.values():
        assert d["http_status"] == 0, d
        assert "over the segment backend's limit of 32000" in d["reason"], d["reason"]
        assert len(d["body"]) > 32000


def test_batches_stay_within_500000_bytes(herald, collector):
    n = 60
    cfg = herald.config([sdest(collector, gzip=False)], batch_max_bytes=4_000_000,
                        batch_max_events=1000)
    res = herald.produce(cfg, n, pad=20000, flush_ms=20000)
    assert res.flush == 0, res.describe()
    assert collector.wait_for_events(n, 10)
    reqs = collector.snapshot()
    sizes = [q.decoded_len for q in reqs]
    assert all(q.status == 200 for q in reqs), [q.summary() for q in reqs]
    assert max(sizes) <= 500_000, sizes
    # Batches are filled up to the limit, not sent one event at a time.
    assert max(sizes) > 400_000 and len(reqs) <= 4, sizes
    assert sorted(m["properties"]["seq"] for m in collector.events) == list(range(n))


# --------------------------------------------------------------------------
# userId / anonymousId


def test_event_without_user_or_anonymous_id_is_dead_lettered_others_sent(herald, collector):
    cfg = herald.config([sdest(collector, gzip=False)])
    import_events(herald, cfg, [{"type": "track", "event": n} for n in ("A", "Nobody", "B")],
                  "--no-flush")
    strip_identity(herald, "Nobody")
    p = herald.emit("--config", cfg, "--timeout", "10", "flush")
    assert p.returncode == 0, p.stderr
    assert collector.wait_for_events(2, 5)
    reqs = collector.snapshot()
    # One request with the two good events: the receiver (as RudderStack)
    # would have refused all three with 400.
    assert len(reqs) == 1 and reqs[0].status == 200, [q.summary() for q in reqs]
    assert [m["event"] for m in reqs[0].messages] == ["A", "B"]
    dls = herald.dead_letters()
    assert [(d["event"]["event"], d["reason"]) for d in dls] == [("Nobody", NO_ID)]
    c = herald.counters()
    assert c["sent"] == 2, c


def test_batch_of_only_anonymous_less_events_sends_nothing(herald, collector):
    cfg = herald.config([sdest(collector)])
    import_events(herald, cfg, [{"type": "track", "event": "Nobody"}], "--no-flush")
    strip_identity(herald, "Nobody")
    p = herald.emit("--config", cfg, "--timeout", "10", "flush")
    assert p.returncode == 0, p.stderr
    dls = herald.dead_letters()
    assert [(d["reason"], d["http_status"]) for d in dls] == [(NO_ID, 0)]
    assert collector.snapshot() == []


# --------------------------------------------------------------------------
# Responses


def test_400_bisects_to_the_bad_message(herald, collector):
    def refuse_bad(rec):
        if rec.messages and any((m.get("properties") or {}).get("seq") == 5
                                for m in rec.messages):
            return 400, {"Content-Type": "application/json"}, \
                json.dumps({"code": "invalid_request", "message": "event is not valid"})
        return None
    collector.responder = refuse_bad
    cfg = herald.config([sdest(collector)])
    res = herald.produce(cfg, 12, flush_ms=10000)
    assert res.flush == 0, res.describe()
    dls = herald.dead_letters()
    assert len(dls) == 1 and dls[0]["event"]["properties"]["seq"] == 5, dls
    assert dls[0]["http_status"] == 400
    assert dls[0]["reason"] == "HTTP 400: request refused: event is not valid", dls[0]["reason"]
    got = sorted(m["properties"]["seq"] for m in collector.events)
    assert got == [i for i in range(12) if i != 5]


def test_413_splits_the_batch(herald, collector):
    collector.responder = lambda rec: (413, {}, "request size exceeds max limit") \
        if rec.messages and len(rec.messages) > 3 else None
    cfg = herald.config([sdest(collector)])
    res = herald.produce(cfg, 12, flush_ms=10000)
    assert res.flush == 0, res.describe()
    assert sorted(m["properties"]["seq"] for m in collector.events) == list(range(12))
    assert not herald.dead_letters()
    assert any(q.status == 413 for q in collector.snapshot())


def test_429_and_5xx_are_retried(herald, collector):
    collector.script([(429, {}, "max requests limit reached"), (503, {}, "unavailable"),
                      (504, {}, "gateway timeout")])
    cfg = herald.config([sdest(collector)])
    res = herald.produce(cfg, 2, flush_ms=10000)
    assert res.flush == 0, res.describe()
    assert [q.status for q in collector.snapshot()] == [429, 503, 504, 200]
    assert sorted(m["properties"]["seq"] for m in collector.events) == [0, 1]
    assert res.stats["dead"] == 0


@pytest.mark.parametrize("status, body, says", [
    (401, "invalid write key", "HTTP 401: write key refused: invalid write key"),
    (403, "forbidden", "HTTP 403: write key refused: forbidden"),
    (404, "source is disabled", "HTTP 404: source disabled or wrong endpoint: source is "
                                "disabled"),
])
def test_auth_and_source_errors_say_check_the_write_key(herald, collector, status, body, says):
    collector.script([(status, {}, body)])
    cfg = herald.config([sdest(collector)])
    res = herald.produce(cfg, 2, flush_ms=10000)
    assert res.flush == 0, res.describe()
    dls = herald.dead_letters()
    assert len(dls) == 2, dls
    for d in dls:
        assert d["http_status"] == status
        assert d["reason"].startswith(says), d["reason"]
        assert "configuration error: check the write key/source" in d["reason"]
    assert len(collector.snapshot()) == 1  # never retried


def test_write_key_never_in_logs_or_dead_letters(herald):
    """A wrong key against a collector that echoes what it got: the -vv log,
    the dead letters and the status output hold neither the key nor its
    Basic encoding."""
    wrong = "wk_wrong_0123456789abcdef"
    wrong_basic = base64.b64encode((wrong + ":").encode()).decode()

    def echo(rec):
        return 401, {}, "invalid write key %s (Authorization: %s)" % (
            wrong, rec.headers.get("authorization"))
    r = Receiver(write_key=WRITE_KEY).start()
    try:
        r.responder = echo
        cfg = herald.config([sdest(r, write_key=wrong)])
        p = herald.emit("-vv", "--config", cfg, "--timeout", "10", "track", "Secretive")
        assert r.wait_for_requests(1, 5)
        assert r.snapshot()[0].headers["authorization"] == "Basic " + wrong_basic
        st = herald.emit("-vv", "--config", cfg, "--no-flush", "dead-letters", "list", "--json")
        dls = herald.dead_letters()
        assert len(dls) == 1 and "check the write key/source" in dls[0]["reason"], dls
        blobs = {"track -vv": p.stdout + p.stderr, "dead-letters list -vv": st.stdout + st.stderr,
                 "dead letter": json.dumps({k: v for k, v in dls[0].items() if k != "body"},
                                           default=str)}
        assert "dead-lettered" in p.stderr, p.stderr
        for where, text in blobs.items():
            for secret in (wrong, wrong_basic):
                assert secret not in text, "%s leaks %s:\n%s" % (where, secret, text)
        raw = herald.db.read_bytes()
        assert wrong.encode() not in raw and wrong_basic.encode() not in raw
    finally:
        r.stop()


# --------------------------------------------------------------------------
# Configuration and loading


@pytest.mark.parametrize("settings, message", [
    ({"write_key": None}, "\"write_key\" is required"),
    ({"write_key": ""}, "write_key must be 1-512 bytes"),
    ({"write_key": "has:colon"}, "write_key must be"),
    ({"url": "ftp://x"}, "url must start with http:// or https://"),
    ({"url": "http://127.0.0.1:1?x=y"}, "url has a query but no path"),
    ({"colour": "blue"}, "unknown or mistyped setting \"colour\""),
    ({"gzip": "yes"}, "unknown or mistyped setting \"gzip\""),
])
def test_bad_config_fails_at_open(herald, collector, settings, message):
    d = sdest(collector)
    d.update(settings)
    d = {k: v for k, v in d.items() if v is not None}
    cfg = herald.config([d])
    p = herald.emit("--config", cfg, "track", "X")
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert "has:colon" not in p.stderr
    assert not collector.snapshot()


def test_loaded_as_a_module(herald, collector):
    module = build_dir() / "herald-backend-segment.so"
    assert module.is_file(), "build %s first" % module
    cfg = herald.config([sdest(collector, backend=str(module.resolve()))])
    import_events(herald, cfg, [{"type": "track", "event": "FromModule", "messageId": "mm-1"}])
    assert collector.wait_for_events(1, 10)
    req = collector.snapshot()[0]
    assert req.headers["authorization"] == BASIC and req.path == "/v1/batch"
    assert collector.events[0]["messageId"] == "mm-1"
