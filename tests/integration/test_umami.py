"""The Umami backend end to end: herald (the CLI and the producer program)
against the loopback Umami server of umami_receiver.py, which validates as
Umami's /api/send and /api/batch do (BACKENDS.md section 2). The real server
is tested in test_umami_real.py."""

import datetime
import json
import uuid

import pytest
from conftest import build_dir

from umami_receiver import UmamiReceiver, is_bot


@pytest.fixture(autouse=True)
def _caller_data_unredacted(herald):
    """These tests check how the backend maps the caller's own data (IPs,
    user agents, emails in traits) onto the wire, so redaction, which is on
    by default, is turned off here; it has its own tests (test_privacy.py,
    tests/unit/test_redact.c, tests/unit/test_enrich.c)."""
    herald.redact = {"enabled": False}

BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")
DEFAULT_UA = "herald-c/0.1.0 (Linux)"


@pytest.fixture
def umami():
    r = UmamiReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def make_umami():
    made = []

    def make(**kw):
        r = UmamiReceiver(**kw).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def udest(receiver, name="u", **kw):
    d = {"name": name, "backend": "umami", "url": receiver.base_url(),
         "website": receiver.website}
    d.update(kw)
    return d


def import_events(herald, cfg, messages, timeout=15):
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    p = herald.emit("--config", cfg, "--timeout", str(timeout), "import", "-", stdin=stdin)
    assert p.returncode == 0, p.stderr
    return p


def by_name(events):
    """name (custom events), url (page views) or type (identify) -> event."""
    out = {}
    for e in events:
        p = e["payload"]
        out[p.get("name") or (p.get("url") if e["type"] == "event" else e["type"])] = e
    return out


# --------------------------------------------------------------------------
# Mapping


def test_pageview_and_custom_event_mapping(herald, umami):
    cfg = herald.config([udest(umami)])
    import_events(herald, cfg, [
        {"type": "page", "name": "Pricing", "anonymousId": "anon-1",
         "properties": {"url": "https://Shop.Example:8443/pricing?plan=pro#faq",
                        "referrer": "https://www.google.com/search?q=a", "title": "Pricing",
                        "category": "docs"},
         "context": {"userAgent": BROWSER_UA, "locale": "de-DE",
                     "screen": {"width": 1920, "height": 1080}}},
        {"type": "track", "event": "Signup", "anonymousId": "anon-1",
         "properties": {"plan": "pro", "seats": 3, "trial": True, "nested": {"a": 1}},
         "context": {"userAgent": BROWSER_UA,
                     "page": {"url": "https://shop.example/signup?x=1",
                              "title": "Sign up"}}},
        {"type": "track", "event": "Export", "anonymousId": "anon-1"},
    ])
    assert umami.wait_for_events(3, 10)
    reqs = umami.snapshot()
    assert len(reqs) == 3 and all(r.status == 200 for r in reqs), [r.summary() for r in reqs]
    for r in reqs:
        assert r.path == "/api/send" and r.method == "POST"
        assert r.headers.get("content-type") == "application/json", r.headers
        assert "content-encoding" not in r.headers, r.headers
        assert set(r.json) == {"type", "payload"}, r.json
    ev = by_name(umami.events)

    page = ev["/pricing?plan=pro"]
    assert page["type"] == "event"
    # Host lowercased, port and fragment dropped: as the Umami tracker sends it.
    assert page["payload"] == {
        "website": umami.website, "hostname": "shop.example", "language": "de-DE",
        "screen": "1920x1080", "url": "/pricing?plan=pro",
        "referrer": "https://www.google.com/search?q=a", "title": "Pricing",
        "data": {"category": "docs"}}, page["payload"]
    assert page["user_agent"] == BROWSER_UA

    signup = ev["Signup"]
    assert signup["type"] == "event"
    assert signup["payload"]["url"] == "/signup?x=1"
    assert signup["payload"]["title"] == "Sign up"
    assert signup["payload"]["hostname"] == "shop.example"
    assert signup["payload"]["data"] == {"plan": "pro", "seats": 3, "trial": True,
                                         "nested": {"a": 1}}

    # No page, no properties: "/" and no data, the fallback User-Agent.
    export = ev["Export"]
    assert export["payload"]["url"] == "/" and "data" not in export["payload"], export
    assert "hostname" not in export["payload"], export
    assert export["user_agent"] == DEFAULT_UA
    # Version 2.10 has no payload.ip / userAgent / timestamp / id.
    for e in umami.events:
        assert not {"ip", "userAgent", "timestamp", "id"} & set(e["payload"]), e["payload"]


def test_screen_identify_group_alias_mapping(herald, umami):
    cfg = herald.config([udest(umami, hostname="notes.example")])
    import_events(herald, cfg, [
        {"type": "screen", "name": "Settings/Privacy Screen", "anonymousId": "a",
         "properties": {"tab": 2}},
        {"type": "identify", "userId": "user-42", "anonymousId": "a",
         "traits": {"plan": "pro", "age": 30}},
        {"type": "group", "groupId": "acme", "anonymousId": "a",
         "traits": {"name": "Acme Inc", "seats": 12}},
        {"type": "alias", "previousId": "old-7", "userId": "user-42", "anonymousId": "a"},
    ])
    assert umami.wait_for_events(4, 10)
    events = sorted(umami.events, key=lambda e: e["messageId"])
    screen = [e for e in events if e["type"] == "event"]
    assert len(screen) == 1
    assert screen[0]["payload"]["url"] == "/Settings/Privacy%20Screen", screen
    assert screen[0]["payload"]["title"] == "Settings/Privacy Screen"
    assert screen[0]["payload"]["hostname"] == "notes.example"
    assert screen[0]["payload"]["data"] == {"tab": 2}
    datas = sorted((json.dumps(e["payload"]["data"], sort_keys=True) for e in events
                    if e["type"] == "identify"))
    assert datas == sorted([
        json.dumps({"plan": "pro", "age": 30, "userId": "user-42"}, sort_keys=True),
        json.dumps({"groupId": "acme", "group": {"name": "Acme Inc", "seats": 12}},
                   sort_keys=True),
        json.dumps({"userId": "user-42", "previousId": "old-7"}, sort_keys=True),
    ]), datas
    assert not herald.dead_letters()


# --------------------------------------------------------------------------
# Limits checked before sending


def test_name_over_50_dead_lettered_with_reason_without_a_request(herald, umami):
    cfg = herald.config([udest(umami)])
    import_events(herald, cfg, [
        {"type": "track", "event": "n" * 51, "properties": {"seq": 1}},
        {"type": "track", "event": "é" * 50, "properties": {"seq": 2}},
        # One astral character is two UTF-16 units, as Umami counts.
        {"type": "track", "event": "x" * 49 + "\U0001F600", "properties": {"seq": 3}},
    ])
    assert umami.wait_for_events(1, 10)
    umami.wait_for_requests(1, 2)
    reqs = umami.snapshot()
    assert len(reqs) == 1, [r.summary() for r in reqs]
    assert umami.events[0]["payload"]["name"] == "é" * 50
    dls = herald.dead_letters()
    assert len(dls) == 2, dls
    reasons = sorted(d["reason"] for d in dls)
    assert reasons == ["umami: the event name is 51 characters, over Umami's limit of 50"] * 2
    assert all(d["http_status"] == 0 for d in dls)
    assert sorted(d["event"]["properties"]["seq"] for d in dls) == [1, 3]
    c = herald.counters()
    assert c.get("requests", 0) == 1 and c.get("retried", 0) == 0, c


def test_field_limits_of_2_10_dead_lettered_before_sending(herald, umami):
    cfg = herald.config([udest(umami)])
    long_url = "https://shop.example/" + "p" * 500
    import_events(herald, cfg, [
        {"type": "page", "properties": {"url": long_url}},
        {"type": "page", "properties": {"url": "https://shop.example/ok", "title": "t" * 501}},
        {"type": "track", "event": "Data", "properties": {"note": "z" * 501}},
        {"type": "track", "event": "Data", "properties": {"big": 1e15}},
        {"type": "track", "event": "Data", "properties": {"k" * 501: 1}},
        {"type": "track", "event": "Data", "properties": {"list": list(range(200))}},
        {"type": "page", "properties": {"url": "https://[2001:db8::1]/x"}},
        # At the limits: sent.
        {"type": "track", "event": "Fits", "properties": {"note": "z" * 500, "n": 999999999999999,
                                                          "k" * 500: True}},
    ])
    assert umami.wait_for_events(1, 10)
    umami.wait_for_requests(1, 2)
    assert len(umami.snapshot()) == 1, [r.summary() for r in umami.snapshot()]
    assert umami.events[0]["payload"]["name"] == "Fits"
    reasons = [d["reason"] for d in herald.dead_letters()]
    assert len(reasons) == 7, reasons
    for want in ("the page URL is 501 characters, over Umami's limit of 500",
                 "the page title is 501 characters",
                 'property "note" is a string of 501 characters',
                 'property "big" is a number outside',
                 "a property key is 501 characters",
                 'property "list" is an array of 691 characters',
                 "not a valid Umami hostname"):
        assert any(want in r for r in reasons), (want, reasons)


def test_newer_versions_leave_url_and_title_length_to_the_server(herald, make_umami):
    umami = make_umami(version="3.1")
    cfg = herald.config([udest(umami, version="3.1")])
    import_events(herald, cfg, [
        {"type": "page", "properties": {"url": "https://shop.example/" + "p" * 600,
                                        "title": "t" * 700}},
        {"type": "track", "event": "n" * 51},
    ])
    assert umami.wait_for_events(1, 10)
    assert len(umami.events[0]["payload"]["url"]) == 601
    assert [d["reason"] for d in herald.dead_letters()] == [
        "umami: the event name is 51 characters, over Umami's limit of 50"]


def test_data_limits_can_be_turned_off(herald, make_umami):
    # A ClickHouse-backed Umami stores what PostgreSQL's columns would refuse.
    umami = make_umami(version="3.1", sql_limits=False)
    cfg = herald.config([udest(umami, version="3.1", data_limits=False)])
    import_events(herald, cfg, [{"type": "track", "event": "E",
                                 "properties": {"k" * 501: "v" * 501, "n": 1e16}}])
    assert umami.wait_for_events(1, 10)
    assert umami.events[0]["payload"]["data"] == {"k" * 501: "v" * 501, "n": 1e16}
    assert not herald.dead_letters()


# --------------------------------------------------------------------------
# Responses


def test_bot_user_agent_dropped_counted_not_retried(herald, umami):
    assert is_bot("curl/8.0.1") and is_bot("herald/0.1.0") and not is_bot(DEFAULT_UA)
    cfg = herald.config([udest(umami)])
    import_events(herald, cfg, [
        {"type": "page", "properties": {"url": "https://shop.example/"},
         "context": {"userAgent": "curl/8.0.1"}},
        {"type": "page", "properties": {"url": "https://shop.example/"},
         "context": {"userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}},
    ])
    assert umami.wait_for_dropped(2, 10)
    umami.wait_for_requests(2, 2)
    reqs = umami.snapshot()
    assert len(reqs) == 2 and all(r.status == 200 and r.response_body == b"{}" for r in reqs)
    assert not umami.events
    c = herald.counters()
    assert c.get("server_dropped") == 2, c
    assert c.get("retried", 0) == 0 and c.get("dead", 0) == 0, c
    assert not herald.dead_letters()
    # The queue is empty: nothing is retried later.
    p = herald.emit("--config", cfg, "--timeout", "1", "flush")
    assert p.returncode == 0, p.stderr
    assert len(umami.snapshot()) == 2


def test_bot_signal_of_newer_versions(herald, make_umami):
    umami = make_umami(version="3.1")
    cfg = herald.config([udest(umami, version="3.1")])
    import_events(herald, cfg, [{"type": "track", "event": "E",
                                 "context": {"userAgent": "python-requests/2.31"}}])
    assert umami.wait_for_dropped(1, 10)
    umami.wait_for_requests(1, 2)
    assert umami.snapshot()[0].response_body == b'{"beep":"boop"}'
    # 3.x reads the bot check from payload.userAgent.
    assert umami.dropped[0][1]["userAgent"] == "python-requests/2.31"
    assert herald.counters().get("server_dropped") == 1


def test_cache_token_sent_back_for_the_same_visitor_only(herald, umami):
    # One request at a time, so that each answer is read before the next event.
    cfg = herald.config([udest(umami, max_concurrency=1)])
    import_events(herald, cfg, [
        {"type": "page", "anonymousId": "visitor-a", "properties": {"url": "/a1"}},
        {"type": "page", "anonymousId": "visitor-a", "properties": {"url": "/a2"}},
        {"type": "page", "anonymousId": "visitor-b", "properties": {"url": "/b1"}},
        {"type": "page", "anonymousId": "visitor-a", "properties": {"url": "/a3"}},
        {"type": "page", "anonymousId": "visitor-b", "properties": {"url": "/b2"}},
    ])
    assert umami.wait_for_events(5, 10)
    ev = by_name(umami.events)
    assert ev["/a1"]["cache_in"] is None and ev["/b1"]["cache_in"] is None
    # Each later request of a visitor carries the token of its previous answer.
    assert ev["/a2"]["cache_in"] == ev["/a1"]["token"]
    assert ev["/a3"]["cache_in"] == ev["/a2"]["token"]
    assert ev["/b2"]["cache_in"] == ev["/b1"]["token"]
    assert ev["/a1"]["session"] == ev["/a2"]["session"] == ev["/a3"]["session"]
    assert ev["/b1"]["session"] == ev["/b2"]["session"] != ev["/a1"]["session"]


def test_cache_tokens_off_and_bounded(herald, umami):
    cfg = herald.config([udest(umami, max_concurrency=1, cache_tokens=1)])
    import_events(herald, cfg, [
        {"type": "page", "anonymousId": "a", "properties": {"url": "/a1"}},
        {"type": "page", "anonymousId": "b", "properties": {"url": "/b1"}},
        {"type": "page", "anonymousId": "a", "properties": {"url": "/a2"}},
        {"type": "page", "anonymousId": "a", "properties": {"url": "/a3"}},
    ])
    assert umami.wait_for_events(4, 10)
    ev = by_name(umami.events)
    # Room for one visitor: b's token evicted a's.
    assert ev["/a2"]["cache_in"] is None
    assert ev["/a3"]["cache_in"] == ev["/a2"]["token"]
    umami.clear()
    cfg = herald.config([udest(umami, max_concurrency=1, cache_tokens=0)])
    import_events(herald, cfg, [
        {"type": "page", "anonymousId": "a", "properties": {"url": "/c1"}},
        {"type": "page", "anonymousId": "a", "properties": {"url": "/c2"}},
    ])
    assert umami.wait_for_events(2, 10)
    assert all(e["cache_in"] is None for e in umami.events)


def test_one_session_per_anonymous_id(herald, umami):
    cfg = herald.config([udest(umami)])
    msgs = []
    for i in range(3):
        for n in range(3):
            msgs.append({"type": "page", "anonymousId": "anon-%d" % i,
                         "properties": {"url": "https://shop.example/p%d" % n}})
    import_events(herald, cfg, msgs)
    assert umami.wait_for_events(9, 10)
    sessions = {}
    for e in umami.events:
        sessions.setdefault(e["session"], set()).add(e["forwarded_for"])
        # The stand-in visitor address: unique-local IPv6, never a real one.
        assert e["forwarded_for"].startswith("fd") and e["forwarded_for"].count(":") == 7
    assert len(sessions) == 3 and all(len(v) == 1 for v in sessions.values()), sessions
    # A real end-user IP wins over the stand-in.
    umami.clear()
    import_events(herald, cfg, [{"type": "page", "anonymousId": "anon-0",
                                 "context": {"ip": "203.0.113.9"},
                                 "properties": {"url": "/ip"}}])
    assert umami.wait_for_events(1, 10)
    assert umami.events[0]["forwarded_for"] == "203.0.113.9"


def test_visitor_ip_user_agent_sends_no_stand_in(herald, umami):
    cfg = herald.config([udest(umami, visitor="ip_user_agent")])
    import_events(herald, cfg, [
        {"type": "page", "anonymousId": "a", "properties": {"url": "/1"}},
        {"type": "page", "anonymousId": "b", "properties": {"url": "/2"}},
    ])
    assert umami.wait_for_events(2, 10)
    assert all(e["forwarded_for"] is None for e in umami.events)
    assert len(umami.session_ids()) == 1


def test_500_retried_then_delivered(herald, umami):
    umami.script([(500, {}, "Internal Server Error"), (503, {}, "busy")])
    cfg = herald.config([udest(umami)])
    import_events(herald, cfg, [{"type": "track", "event": "Retry me"}])
    assert umami.wait_for_events(1, 10)
    assert [r.status for r in umami.snapshot()] == [500, 503, 200]
    c = herald.counters()
    assert c.get("retried", 0) >= 2 and c.get("sent") == 1 and c.get("dead", 0) == 0, c


def test_400_dead_lettered_and_later_events_go(herald, umami):
    umami.script([(400, {}, "payload.url must be a valid URL")])
    cfg = herald.config([udest(umami, max_concurrency=1)])
    import_events(herald, cfg, [{"type": "track", "event": "Bad"},
                                {"type": "track", "event": "Good"}])
    assert umami.wait_for_events(1, 10)
    umami.wait_for_requests(2, 2)
    assert len(umami.snapshot()) == 2
    dls = herald.dead_letters()
    assert len(dls) == 1 and dls[0]["event"]["event"] == "Bad", dls
    assert dls[0]["http_status"] == 400
    assert dls[0]["reason"] == "HTTP 400: payload.url must be a valid URL", dls[0]
    assert herald.counters().get("retried", 0) == 0


def test_unknown_website_dead_lettered_as_configuration_error(herald, make_umami):
    for version, status in (("2.10", 403), ("3.1", 400)):
        umami = make_umami(version=version, websites=set())
        cfg = herald.config([udest(umami, name="u" + version.replace(".", ""),
                                   version=version)])
        import_events(herald, cfg, [{"type": "track", "event": "E"}])
        assert umami.wait_for_requests(1, 10)
    dls = herald.dead_letters()
    assert sorted(d["http_status"] for d in dls) == [400, 403], dls
    for d in dls:
        assert "Umami does not know website" in d["reason"], d
        assert "check the destination's \"website\"" in d["reason"], d
    assert herald.counters().get("retried", 0) == 0


def test_ignored_ip_is_a_drop_not_a_dead_letter(herald, make_umami):
    umami = make_umami(ignore_ips={"198.51.100.7"})
    cfg = herald.config([udest(umami)])
    import_events(herald, cfg, [{"type": "track", "event": "E",
                                 "context": {"ip": "198.51.100.7"}}])
    assert umami.wait_for_dropped(1, 10)
    umami.wait_for_requests(1, 2)
    assert umami.snapshot()[0].status == 403
    assert herald.counters().get("server_dropped") == 1
    assert not herald.dead_letters()


def test_invalid_context_fields_dead_lettered(herald, umami):
    cfg = herald.config([udest(umami)])
    import_events(herald, cfg, [
        {"type": "track", "event": "E", "context": {"ip": "not-an-ip"}},
        {"type": "track", "event": "E", "context": {"userAgent": "Mozilla/5.0\r\nX-Evil: 1"}},
    ])
    assert not umami.wait_for_requests(1, 1)
    reasons = sorted(d["reason"] for d in herald.dead_letters())
    assert reasons == ["umami: context.ip is not an IPv4 or IPv6 address",
                       "umami: context.userAgent contains control characters"], reasons


# --------------------------------------------------------------------------
# Delivery


@pytest.mark.threads
def test_concurrent_requests_and_exactly_once(herald, make_umami):
    umami = make_umami(delay=0.2)
    cfg = herald.config([udest(umami, max_concurrency=4)])
    res = herald.produce(cfg, 16, flush_ms=20000)
    assert res.flush == 0, res.describe()
    assert umami.wait_for_events(16, 10)
    seqs = sorted(e["payload"]["data"]["seq"] for e in umami.events)
    assert seqs == list(range(16)), seqs
    assert len(umami.snapshot()) == 16
    assert 2 <= umami.max_in_flight <= 4, umami.max_in_flight


def test_big_event_is_not_gzipped(herald, umami):
    cfg = herald.config([udest(umami)], gzip_min_bytes=16)
    res = herald.produce(cfg, 2, pad=400, flush_ms=10000)
    assert res.flush == 0, res.describe()
    assert umami.wait_for_events(2, 10)
    for r in umami.snapshot():
        assert "content-encoding" not in r.headers
        assert r.raw_len > 400


def test_version_3_payload_fields_and_json_token(herald, make_umami):
    umami = make_umami(version="3.1")
    cfg = herald.config([udest(umami, version="3.1", max_concurrency=1)])
    ts = "2026-11-24T06:11:42.240Z"
    long_id = "x" * 60
    import_events(herald, cfg, [
        {"type": "page", "anonymousId": "anon-1", "timestamp": ts,
         "properties": {"url": "https://shop.example/a"},
         "context": {"ip": "203.0.113.9", "userAgent": BROWSER_UA}},
        {"type": "page", "anonymousId": "anon-1", "timestamp": "2026-11-24T08:11:42+02:00",
         "properties": {"url": "https://shop.example/b"}},
        {"type": "page", "anonymousId": long_id, "properties": {"url": "https://shop.example/c"}},
    ])
    assert umami.wait_for_events(3, 10)
    ev = by_name(umami.events)
    a, b, c = ev["/a"]["payload"], ev["/b"]["payload"], ev["/c"]["payload"]
    want = int(datetime.datetime(2026, 11, 24, 6, 11, 42,
                                 tzinfo=datetime.timezone.utc).timestamp())
    assert a["timestamp"] == want and b["timestamp"] == want, (a, b)
    assert a["ip"] == "203.0.113.9" and a["userAgent"] == BROWSER_UA and a["id"] == "anon-1"
    assert "ip" not in b and b["userAgent"] == DEFAULT_UA and b["id"] == "anon-1"
    # No stand-in address from 2.18: the distinct id keys the session.
    assert ev["/a"]["forwarded_for"] is None and ev["/b"]["forwarded_for"] is None
    assert ev["/a"]["session"] == ev["/b"]["session"]
    # Over 50 characters (the distinct_id column): a 32-hex-digit hash.
    assert len(c["id"]) == 32 and all(ch in "0123456789abcdef" for ch in c["id"]), c
    # The JSON {"cache": ...} token comes back on the visitor's next request.
    assert ev["/b"]["cache_in"] == ev["/a"]["token"]


def test_version_2_17_sends_the_stand_in_address_as_payload_ip(herald, make_umami):
    umami = make_umami(version="2.17")
    cfg = herald.config([udest(umami, version="2.17")])
    import_events(herald, cfg, [
        {"type": "page", "anonymousId": "a", "properties": {"url": "/1"}},
        {"type": "page", "anonymousId": "b", "properties": {"url": "/2"}},
    ])
    assert umami.wait_for_events(2, 10)
    for e in umami.events:
        assert e["payload"]["ip"].startswith("fd") and "id" not in e["payload"], e
        assert e["forwarded_for"] is None
    assert len(umami.session_ids()) == 2


def test_batch_endpoint_with_per_event_verdicts(herald, make_umami):
    umami = make_umami(version="3.1")
    umami.element_hook = lambda p: (400, "Bad request") if p.get("name") == "Refused" else (
        (500, "Server error") if p.get("name") == "Flaky" else None)
    cfg = herald.config([udest(umami, version="3.1", batch=True)], batch_max_events=10,
                        flush_interval_ms=300, retry_max_attempts=2)
    import_events(herald, cfg, [
        {"type": "track", "event": "One", "anonymousId": "a"},
        {"type": "track", "event": "Refused", "anonymousId": "a"},
        {"type": "track", "event": "n" * 51, "anonymousId": "b"},
        {"type": "track", "event": "Two", "anonymousId": "b",
         "context": {"ip": "203.0.113.5", "userAgent": BROWSER_UA}},
        {"type": "track", "event": "Flaky", "anonymousId": "c"},
    ], timeout=20)
    reqs = umami.snapshot()
    assert reqs[0].path == "/api/batch" and isinstance(reqs[0].json, list), reqs[0].summary()
    # The over-long name never went out; the others did, in one request.
    assert [e["payload"]["name"] for e in reqs[0].json] == ["One", "Refused", "Two", "Flaky"]
    assert reqs[0].headers["user-agent"] == DEFAULT_UA
    assert "x-umami-cache" not in reqs[0].headers
    names = sorted(e["payload"]["name"] for e in umami.events)
    assert names == ["One", "Two"], names
    two = by_name(umami.events)["Two"]["payload"]
    assert two["ip"] == "203.0.113.5" and two["userAgent"] == BROWSER_UA
    dead = {d["event"]["event"]: d["reason"] for d in herald.dead_letters()}
    assert set(dead) == {"Refused", "n" * 51, "Flaky"}, dead
    assert "event name is 51 characters" in dead["n" * 51]
    assert "/api/batch refused" in dead["Refused"]
    assert dead["Flaky"].startswith("gave up after 2 attempts"), dead["Flaky"]
    # Flaky alone was retried.
    later = [e["payload"]["name"] for r in reqs[1:] for e in r.json]
    assert later and set(later) == {"Flaky"}, later


# --------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize("settings,message", [
    ({"url": None}, '"url" is required'),
    ({"website": None}, '"website" is required'),
    ({"website": "not-a-uuid"}, "website must be the website's UUID"),
    ({"url": "ftp://x"}, "url must start with http"),
    ({"colour": "red"}, 'unknown or mistyped setting "colour"'),
    ({"version": "1.40"}, "version 1.40 is not supported"),
    ({"version": "two"}, "version must look like"),
    ({"batch": True}, "batch needs Umami 2.17 or later"),
    ({"batch": True, "version": "3.0.1"}, "batch is broken in Umami 3.0.0 and 3.0.1"),
    ({"user_agent": "herald/0.1.0"}, "user_agent would be filtered as a bot"),
    ({"user_agent": "MyApp/1.0 (+https://example.com/bot)"}, "would be filtered as a bot"),
    ({"hostname": "shop.example:8080"}, "hostname must be a host name"),
    ({"visitor": "user_id"}, 'visitor must be "anonymous_id" or "ip_user_agent"'),
    ({"cache_tokens": -1}, "cache_tokens must be from 0"),
])
def test_bad_config_fails_at_open(herald, umami, settings, message):
    d = udest(umami)
    for k, v in settings.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    cfg = herald.config([d])
    p = herald.emit("--config", cfg, "--no-flush", "track", "E")
    assert p.returncode != 0
    assert message in p.stderr, p.stderr


def test_endpoint_url_accepted_as_base(herald, umami):
    cfg = herald.config([udest(umami, url=umami.base_url() + "/api/send")])
    import_events(herald, cfg, [{"type": "track", "event": "E"}])
    assert umami.wait_for_events(1, 10)
    assert umami.snapshot()[0].path == "/api/send"


def test_configured_user_agent(herald, umami):
    ua = "AcmeNotes/3.2.1 (X11; Linux x86_64)"
    cfg = herald.config([udest(umami, user_agent=ua)])
    import_events(herald, cfg, [{"type": "track", "event": "E"},
                                {"type": "track", "event": "F",
                                 "context": {"userAgent": BROWSER_UA}}])
    assert umami.wait_for_events(2, 10)
    assert {e["payload"]["name"]: e["user_agent"] for e in umami.events} == {
        "E": ua, "F": BROWSER_UA}


def test_loaded_as_a_module(herald, umami):
    module = build_dir() / "herald-backend-umami.so"
    assert module.is_file(), module
    cfg = herald.config([udest(umami, backend=str(module))])
    import_events(herald, cfg, [{"type": "page", "anonymousId": str(uuid.uuid4()),
                                 "properties": {"url": "https://shop.example/m"}}])
    assert umami.wait_for_events(1, 10)
    assert umami.events[0]["payload"]["url"] == "/m"
