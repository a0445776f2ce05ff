"""The Plausible backend end to end: herald (producer program and CLI)
against the loopback Plausible server of plausible_receiver.py, which
validates as Plausible's /api/event does (BACKENDS.md section 1)."""

import gzip
import http.client
import json
import time

import pytest
from conftest import build_dir

from plausible_receiver import PlausibleReceiver, is_bot


@pytest.fixture(autouse=True)
def _caller_data_unredacted(herald):
    """These tests check how the backend maps the caller's own data (IPs,
    user agents, emails in traits) onto the wire, so redaction, which is on
    by default, is turned off here; it has its own tests (test_privacy.py,
    tests/unit/test_redact.c, tests/unit/test_enrich.c)."""
    herald.redact = {"enabled": False}

DOMAIN = "example.com"
FALLBACK_UA = "Mozilla/5.0 (X11; Linux x86_64) herald/0.1.0"
BROWSER_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.1 Safari/605.1.15")


@pytest.fixture
def plausible():
    r = PlausibleReceiver().start()
    yield r
    r.stop()


def pdest(receiver, name="p", **kw):
    d = {"name": name, "backend": "plausible", "url": receiver.base_url(), "domain": DOMAIN}
    d.update(kw)
    return d


def import_events(herald, cfg, messages, timeout=15):
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    p = herald.emit("--config", cfg, "--timeout", str(timeout), "import", "-", stdin=stdin)
    assert p.returncode == 0, p.stderr
    return p


def status(herald, cfg):
    p = herald.emit("--config", cfg, "--no-flush", "status", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def seq_counts(events):
    """props.seq (a string, as Plausible stores it) -> times accepted."""
    out = {}
    for e in events:
        seq = e["props"].get("seq")
        out[seq] = out.get(seq, 0) + 1
    return out


def by_name(events):
    return {e["name"] if e["name"] != "pageview" else e["url"]: e for e in events}


# --------------------------------------------------------------------------
# Mapping


def test_pageview_custom_and_screen_events_arrive_with_their_fields(herald, plausible):
    cfg = herald.config([pdest(plausible)])
    page_url = "https://example.com/pricing?utm_source=newsletter"
    import_events(herald, cfg, [
        {"type": "page", "name": "Pricing",
         "properties": {"url": page_url, "referrer": "https://www.google.com/",
                        "title": "Pricing"},
         "context": {"userAgent": BROWSER_UA, "ip": "203.0.113.7"}},
        {"type": "track", "event": "Signup", "properties": {"plan": "pro"},
         "context": {"page": {"url": "https://example.com/signup",
                              "referrer": "https://example.com/pricing"},
                     "userAgent": BROWSER_UA, "ip": "2001:db8::1"}},
        {"type": "track", "event": "Export", "properties": {}},
        {"type": "screen", "name": "Settings/Privacy Screen", "properties": {"tab": 2}},
    ])
    assert plausible.wait_for_events(4, 10)
    reqs = plausible.snapshot()
    assert len(reqs) == 4 and all(r.status == 202 for r in reqs), [r.summary() for r in reqs]
    for r in reqs:
        assert len(r.json) and set(r.json) <= {"name", "url", "domain", "referrer", "props",
                                               "revenue"}, r.json
        assert r.headers.get("content-type") == "application/json", r.headers
        assert "content-encoding" not in r.headers, r.headers
        assert "x-plausible-ip-type" not in r.headers, r.headers
    ev = by_name(plausible.events)

    page = ev[page_url]
    assert page["domain"] == DOMAIN
    assert page["referrer"] == "https://www.google.com/"
    # url and referrer are the page itself, not props; title is kept.
    assert page["props"] == {"title": "Pricing"}, page["props"]
    assert page["user_agent"] == BROWSER_UA
    assert page["forwarded_for"] == "203.0.113.7"

    signup = ev["Signup"]
    assert signup["url"] == "https://example.com/signup"
    assert signup["referrer"] == "https://example.com/pricing"
    assert signup["props"] == {"plan": "pro"}
    assert signup["forwarded_for"] == "2001:db8::1"
    assert signup["user_agent"] == BROWSER_UA

    # Without a page: app://<domain>/, the site's own host.
    export = ev["Export"]
    assert export["url"] == "app://%s/" % DOMAIN and export["hostname"] == DOMAIN, export
    assert export["forwarded_for"] is None and "x-forwarded-for" not in export["headers"]

    screen = ev["app://%s/Settings/Privacy%%20Screen" % DOMAIN]
    assert screen["pathname"] == "/Settings/Privacy Screen", screen
    assert screen["props"] == {"tab": "2"}


def test_default_url_for_events_without_a_page(herald, plausible):
    cfg = herald.config([pdest(plausible, default_url="app://notes.example/app")])
    import_events(herald, cfg, [
        {"type": "track", "event": "Sync"},
        {"type": "screen", "name": "Home"},
    ])
    assert plausible.wait_for_events(2, 10)
    urls = sorted(e["url"] for e in plausible.events)
    assert urls == ["app://notes.example/app", "app://notes.example/app/Home"], urls


def test_props_stringified_nested_dropped_and_reported(herald, plausible):
    cfg = herald.config([pdest(plausible)])
    props = {"s": "text", "i": 42, "f": 0.1, "t": True, "no": False,
             "obj": {"a": 1}, "list": [1, 2], "null": None, "blank": "  ",
             "long": "v" * 2001, "k" * 301: "x", "exact": "w" * 2000}
    import_events(herald, cfg, [{"type": "track", "event": "Mixed", "properties": props}])
    assert plausible.wait_for_events(1, 10)
    got = plausible.events[0]["props"]
    report = got.pop("_herald_cut")
    assert got == {"s": "text", "i": "42", "f": "0.1", "t": "true", "no": "false",
                   "exact": "w" * 2000}, got
    # What the server would have refused or discarded is reported, by name.
    assert report.startswith("4 props not sent: "), report
    for item in ("obj (object)", "list (array)", "long (value over 2000 bytes)",
                 "name over 300 bytes"):
        assert item in report, (item, report)
    # null and blank carry nothing and are not reported.
    assert "null" not in report and "blank" not in report, report
    assert not herald.dead_letters()


def test_more_than_30_props_cut_to_30_and_reported(herald, plausible):
    cfg = herald.config([pdest(plausible)])
    props = {"p%02d" % i: i for i in range(35)}
    import_events(herald, cfg, [
        {"type": "track", "event": "Many", "properties": props},
        {"type": "track", "event": "Thirty", "properties": {"q%02d" % i: i for i in range(30)}},
    ])
    assert plausible.wait_for_events(2, 10)
    ev = by_name(plausible.events)
    many = ev["Many"]["props"]
    assert len(many) == 30, many
    # The first 29 in the event's order, and the report in the 30th place.
    assert [k for k in many if k != "_herald_cut"] == ["p%02d" % i for i in range(29)]
    report = many["_herald_cut"]
    assert report.startswith("6 props not sent: "), report
    for i in range(29, 35):
        assert "p%02d (over 30 props)" % i in report, report
    # Exactly 30 fit without a report.
    assert ev["Thirty"]["props"] == {"q%02d" % i: str(i) for i in range(30)}


def test_cut_report_can_be_turned_off(herald, plausible):
    cfg = herald.config([pdest(plausible, cut_prop="", props="properties")])
    import_events(herald, cfg, [{"type": "track", "event": "E",
                                 "properties": {"a": 1, "nested": {"x": 1}}}])
    assert plausible.wait_for_events(1, 10)
    assert plausible.events[0]["props"] == {"a": "1"}


def test_revenue_mapped_from_segment_properties(herald, plausible):
    cfg = herald.config([pdest(plausible)])
    import_events(herald, cfg, [{"type": "track", "event": "Purchase",
                                 "properties": {"revenue": 19.99, "currency": "eur"}}])
    assert plausible.wait_for_events(1, 10)
    assert plausible.events[0]["revenue"] == {"amount": 19.99, "currency": "EUR"}


# --------------------------------------------------------------------------
# User-Agent and IP


def test_fallback_user_agent_is_not_a_bot_and_no_ip_header(herald, plausible):
    assert not is_bot(FALLBACK_UA)
    # The receiver's bot rules do bite: a bare name/version is a bot.
    assert is_bot("herald-c/0.1.0") and is_bot("curl/8.5.0") and is_bot("Googlebot/2.1")
    cfg = herald.config([pdest(plausible)])
    res = herald.produce(cfg, 3, flush_ms=10000)
    assert res.flush == 0, res.describe()
    plausible.wait_for_requests(3, 5)  # recorded just after each answer
    assert sorted(seq_counts(plausible.events)) == ["0", "1", "2"], plausible.events
    for e in plausible.events:
        assert e["user_agent"] == FALLBACK_UA, e["headers"]
        assert "x-forwarded-for" not in e["headers"], e["headers"]
    assert not plausible.dropped
    assert res.stats["server_dropped"] == 0, res.stats


def test_configured_user_agent_and_control_characters(herald, plausible):
    cfg = herald.config([pdest(plausible, user_agent="Mozilla/5.0 (Linux) notes/2.0")])
    import_events(herald, cfg, [
        {"type": "track", "event": "A"},
        {"type": "track", "event": "B",
         "context": {"userAgent": BROWSER_UA + "\r\nX-Plausible-IP-Type: dc_ip",
                     "ip": "not-an-ip"}},
    ])
    assert plausible.wait_for_events(2, 10)
    ev = by_name(plausible.events)
    assert ev["A"]["user_agent"] == "Mozilla/5.0 (Linux) notes/2.0"
    # A line break in the UA cannot smuggle a header in.
    assert "x-plausible-ip-type" not in ev["B"]["headers"], ev["B"]["headers"]
    assert ev["B"]["user_agent"].startswith(BROWSER_UA), ev["B"]["user_agent"]
    # Not an IP address: no X-Forwarded-For at all.
    assert "x-forwarded-for" not in ev["B"]["headers"]


# --------------------------------------------------------------------------
# Responses


def test_dropped_by_server_is_counted_and_never_retried(herald):
    r = PlausibleReceiver(sites={"other.example"}).start()  # our domain is unknown
    try:
        cfg = herald.config([pdest(r)])
        res = herald.produce(cfg, 1, flush_ms=10000)
        assert res.flush == 0, res.describe()
        time.sleep(0.3)  # a retry would come within retry_base_ms (50 ms)
        reqs = r.snapshot()
        assert len(reqs) == 1, [q.summary() for q in reqs]
        assert reqs[0].response_headers.get("X-Plausible-Dropped") == "1"
        assert [why for why, _ in r.dropped] == ["not_found"]
        assert res.stats["server_dropped"] == 1, res.stats
        assert res.stats["pending"] == 0 and res.stats["dead"] == 0, res.stats
        assert res.stats["retried"] == 0, res.stats
    finally:
        r.stop()


def test_bot_user_agent_dropped_shows_in_status(herald, plausible):
    cfg = herald.config([pdest(plausible)])
    import_events(herald, cfg, [
        {"type": "track", "event": "Crawl",
         "context": {"userAgent": "Mozilla/5.0 (compatible; Googlebot/2.1; "
                                  "+http://www.google.com/bot.html)"}},
        {"type": "track", "event": "Human", "context": {"userAgent": BROWSER_UA}},
    ])
    assert plausible.wait_for_dropped(1, 10) and plausible.wait_for_events(1, 10)
    time.sleep(0.3)
    assert len(plausible.snapshot()) == 2, [q.summary() for q in plausible.snapshot()]
    st = status(herald, cfg)
    assert st["server_dropped"] == 1 and st["dead"] == 0 and st["pending"] == 0, st


def test_400_dead_letters_with_the_reason_and_later_events_go(herald, plausible):
    error = {"errors": {"props": ["keys should have at most 300 bytes and values 2000 bytes"]}}
    plausible.script([(400, {"Content-Type": "application/json"}, json.dumps(error))])
    cfg = herald.config([pdest(plausible, max_concurrency=1)])
    res = herald.produce(cfg, 4, flush_ms=10000)
    assert res.flush == 0, res.describe()
    plausible.wait_for_requests(4, 5)
    dls = herald.dead_letters()
    assert len(dls) == 1, dls
    d = dls[0]
    assert d["http_status"] == 400 and d["dest"] == "p", d
    assert d["reason"] == ("HTTP 400: props: keys should have at most 300 bytes and values "
                           "2000 bytes"), d["reason"]
    assert d["event"]["properties"]["seq"] == 0, d["event"]
    assert sorted(seq_counts(plausible.events)) == ["1", "2", "3"]
    assert len(plausible.snapshot()) == 4  # never retried
    res2 = herald.produce(cfg, 2, start=4, flush_ms=10000)
    assert res2.flush == 0 and res2.stats["dead"] == 1 and res2.stats["pending"] == 0, \
        res2.describe()
    plausible.wait_for_requests(6, 5)
    assert sorted(seq_counts(plausible.events)) == ["1", "2", "3", "4", "5"]


def test_500_is_retried_then_delivered(herald, plausible):
    plausible.script([(500, {}, "boom"), (502, {}, "bad gateway")])
    cfg = herald.config([pdest(plausible)])
    res = herald.produce(cfg, 1, flush_ms=10000)
    assert res.flush == 0, res.describe()
    plausible.wait_for_requests(3, 5)
    assert [q.status for q in plausible.snapshot()] == [500, 502, 202]
    assert seq_counts(plausible.events) == {"0": 1}
    assert res.stats["retried"] >= 2 and res.stats["dead"] == 0, res.stats


@pytest.mark.threads
def test_concurrent_requests_over_keepalive_connections(herald):
    n, delay = 100, 0.05
    r = PlausibleReceiver(delay=delay).start()
    try:
        cfg = herald.config([pdest(r, max_concurrency=8)], flush_interval_ms=0)
        res = herald.produce(cfg, n, flush_ms=20000)
        assert res.flush == 0, res.describe()
        r.wait_for_requests(n, 5)
        reqs = r.snapshot()
        counts = seq_counts(r.events)
        assert sorted(counts, key=int) == [str(i) for i in range(n)] and \
            set(counts.values()) == {1}, counts
        assert len(reqs) == n, len(reqs)
        span = max(q.t_mono_done for q in reqs) - min(q.t_mono for q in reqs)
        # One at a time would take n * delay = 5 s.
        assert span < n * delay / 3, "100 requests took %.2f s: not concurrent" % span
        assert 1 < r.max_in_flight <= 8, r.max_in_flight
        peers = r.peers()
        # Keep-alive: a handful of connections carry all 100 requests.
        assert len(peers) <= 16, "%d connections for %d requests" % (len(peers), n)
    finally:
        r.stop()


def test_long_event_name_is_dead_lettered_without_a_request(herald, plausible):
    cfg = herald.config([pdest(plausible)])
    import_events(herald, cfg, [
        {"type": "track", "event": "x" * 121},
        {"type": "track", "event": "\u00e9" * 120},  # 120 characters, 240 bytes: fits
    ])
    assert plausible.wait_for_events(1, 10)
    time.sleep(0.2)
    assert [e["name"] for e in plausible.events] == ["\u00e9" * 120]
    assert len(plausible.snapshot()) == 1
    dls = herald.dead_letters()
    assert len(dls) == 1 and dls[0]["http_status"] == 0, dls
    assert dls[0]["reason"] == ("plausible: event name of 121 characters is over "
                                "Plausible's limit of 120"), dls[0]["reason"]


def test_identify_group_alias_are_skipped_not_dead_lettered(herald, plausible):
    """Plausible has no identify, group or alias: the backend declines them,
    they leave the queue unsent, counted as skipped, and fill no dead letters."""
    cfg = herald.config([pdest(plausible)])
    import_events(herald, cfg, [
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "group", "groupId": "g1"},
        {"type": "alias", "previousId": "a", "userId": "u1"},
        {"type": "track", "event": "After"},
    ])
    assert plausible.wait_for_events(1, 10)
    assert herald.dead_letters() == []
    counters = herald.counters()
    assert counters["skipped"] == 3
    assert counters["sent"] == 1
    assert [e["name"] for e in plausible.events] == ["After"]
    assert len(plausible.requests) == 1
    assert herald.query("SELECT count(*) FROM outbox")[0][0] == 0


def test_page_url_over_2000_bytes_and_data_urls_are_dead_lettered(herald, plausible):
    cfg = herald.config([pdest(plausible)])
    import_events(herald, cfg, [
        {"type": "page", "properties": {"url": "https://example.com/?q=" + "a" * 2000}},
        {"type": "track", "event": "D", "context": {"page": {"url": "data:text/html,hi"}}},
        {"type": "page", "properties": {"url": "https://example.com/ok"}},
    ])
    assert plausible.wait_for_events(1, 10)
    reasons = sorted(d["reason"] for d in herald.dead_letters())
    assert len(reasons) == 2, reasons
    assert "over Plausible's limit of 2000 bytes" in reasons[1], reasons
    assert "data: scheme" in reasons[0], reasons
    assert [e["url"] for e in plausible.events] == ["https://example.com/ok"]


# --------------------------------------------------------------------------
# Configuration and loading


@pytest.mark.parametrize("settings, message", [
    ({"colour": "blue"}, "unknown or mistyped setting \"colour\""),
    ({"domain": None}, "\"domain\" is required"),
    ({"url": "ftp://x"}, "url must start with http:// or https://"),
    ({"user_agent": "myapp/1.0"}, "looks like a bot"),
    ({"props": "traits"}, "props must be \"properties\" or \"none\""),
])
def test_bad_config_fails_at_open_with_a_clear_message(herald, plausible, settings, message):
    d = pdest(plausible)
    d.update(settings)
    d = {k: v for k, v in d.items() if v is not None}
    cfg = herald.config([d])
    p = herald.emit("--config", cfg, "track", "X")
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert not plausible.snapshot()


def test_loaded_as_a_module(herald, plausible):
    module = build_dir() / "herald-backend-plausible.so"
    assert module.is_file(), "build %s first" % module
    cfg = herald.config([pdest(plausible, backend=str(module.resolve()))])
    import_events(herald, cfg, [{"type": "track", "event": "FromModule",
                                 "properties": {"nested": [1]},
                                 "context": {"userAgent": BROWSER_UA, "ip": "198.51.100.2"}}])
    assert plausible.wait_for_events(1, 10)
    e = plausible.events[0]
    assert e["name"] == "FromModule" and e["forwarded_for"] == "198.51.100.2"
    assert e["props"] == {"_herald_cut": "1 prop not sent: nested (array)"}


def test_plausible_without_props_setting(herald, plausible):
    cfg = herald.config([pdest(plausible, props="none")])
    import_events(herald, cfg, [{"type": "track", "event": "P", "properties": {"a": 1}}])
    assert plausible.wait_for_events(1, 10)
    assert "props" not in plausible.snapshot()[0].json


# --------------------------------------------------------------------------
# The receiver itself holds to the contract it stands in for.


def _post(receiver, body, headers):
    """POST with exactly these headers (urllib would add a Content-Type)."""
    conn = http.client.HTTPConnection(receiver.host, receiver.port, timeout=5)
    try:
        conn.request("POST", "/api/event", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode()
    finally:
        conn.close()


def test_receiver_validates_like_plausible(plausible):
    ok = {"name": "pageview", "url": "https://example.com/", "domain": DOMAIN}
    js = {"Content-Type": "application/json", "User-Agent": BROWSER_UA}
    raw = json.dumps(ok).encode()
    assert _post(plausible, raw, js)[0] == 202
    assert _post(plausible, raw, {"Content-Type": "text/plain", "User-Agent": BROWSER_UA})[0] \
        == 202
    st, _, body = _post(plausible, raw, {"User-Agent": BROWSER_UA})  # no Content-Type
    assert st == 400 and "url" in body
    st, _, body = _post(plausible, gzip.compress(raw),
                        {"Content-Type": "text/plain", "Content-Encoding": "gzip"})
    assert st == 400 and "Unable to parse" in body
    assert _post(plausible, json.dumps([ok]).encode(), js)[0] == 400
    assert _post(plausible, json.dumps(dict(ok, name="n" * 121)).encode(), js)[0] == 400
    assert _post(plausible, json.dumps(dict(ok, url="data:x,y")).encode(), js)[0] == 400
    assert _post(plausible, json.dumps(dict(ok, props={"k": "v" * 2001})).encode(), js)[0] \
        == 400
    st, hdrs, _ = _post(plausible, raw, dict(js, **{"User-Agent": "herald/0.1.0"}))
    assert st == 202 and hdrs.get("X-Plausible-Dropped") == "1"
    props = dict({"p%02d" % i: i for i in range(31)}, nested={"a": 1}, lst=[1])
    assert _post(plausible, json.dumps(dict(ok, props=props)).encode(), js)[0] == 202
    # Recorded just after the answer went out.
    assert plausible.wait_for(lambda r: len(r.snapshot()) == 10, 5)
    assert plausible.events[-1]["props"] == {"p%02d" % i: str(i) for i in range(30)}
    assert len(plausible.events) == 3 and len(plausible.dropped) == 1
