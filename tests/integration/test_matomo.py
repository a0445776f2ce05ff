"""The Matomo backend end to end: herald (producer program and CLI) against
the loopback Matomo tracker of matomo_receiver.py, which answers bulk
tracking requests as Matomo's BulkTracking plugin does."""

import datetime
import gzip
import hashlib
import http.client
import json
import time

import pytest
from conftest import build_dir

from matomo_receiver import MatomoReceiver


@pytest.fixture(autouse=True)
def _caller_data_unredacted(herald):
    """These tests check how the backend maps the caller's own data (IPs,
    user agents, emails in traits) onto the wire, so redaction, which is on
    by default, is turned off here; it has its own tests (test_privacy.py,
    tests/unit/test_redact.c, tests/unit/test_enrich.c)."""
    herald.redact = {"enabled": False}

FALLBACK_UA = "Mozilla/5.0 (X11; Linux x86_64) herald/0.1.0"
BROWSER_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.1 Safari/605.1.15")
TOKEN = "3f2a9c61d0b84e7fa5c2b19e8d7f6a40"          # write access to site 1
SUPER_TOKEN = "9d1e4b7c2a5f8e3d6c9b2a5f8e1d4c7b"    # superuser


@pytest.fixture
def matomo():
    r = MatomoReceiver(site_tokens={TOKEN: [1]}, superuser_tokens={SUPER_TOKEN},
                       seq_dimension=1).start()
    yield r
    r.stop()


def mdest(receiver, name="m", **kw):
    d = {"name": name, "backend": "matomo", "url": receiver.base_url(), "site_id": 1}
    d.update(kw)
    return d


def vid(s):
    return hashlib.sha1(s.encode()).hexdigest()[:16]


def iso(seconds_ago):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def epoch(ts):
    return int(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def import_events(herald, cfg, messages, *opts, timeout=15, ok=True):
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    p = herald.emit("--config", cfg, "--timeout", str(timeout), *opts, "import", "-",
                    stdin=stdin)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def status(herald, cfg):
    p = herald.emit("--config", cfg, "--no-flush", "status", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def by_key(hits):
    """Events by e_a, pageviews by action_name (else url)."""
    return {h["e_a"] if h["kind"] == "event" else (h["action_name"] or h["url"]): h
            for h in hits}


def seq_counts(hits):
    out = {}
    for h in hits:
        seq = h["dimensions"].get("1")
        out[seq] = out.get(seq, 0) + 1
    return out


# --------------------------------------------------------------------------
# Mapping


def test_pageview_event_and_screen_mapping(herald, matomo):
    cfg = herald.config([mdest(matomo)])
    page_ts = iso(90)
    import_events(herald, cfg, [
        {"type": "page", "name": "Pricing", "anonymousId": "anon-1", "timestamp": page_ts,
         "properties": {"url": "https://acme.example/pricing?utm_source=newsletter",
                        "referrer": "https://www.google.com/", "title": "Pricing | Acme"},
         "context": {"userAgent": BROWSER_UA, "locale": "de-DE",
                     "screen": {"width": 390, "height": 844}}},
        {"type": "page", "anonymousId": "anon-1",
         "properties": {"url": "https://acme.example/docs", "title": "Docs | Acme"}},
        {"type": "track", "event": "Signup", "anonymousId": "anon-1",
         "properties": {"eventCategory": "Account", "eventLabel": "pro plan", "value": 42.5,
                        "plan": "pro"},
         "context": {"page": {"url": "https://acme.example/signup",
                              "referrer": "https://acme.example/pricing"}}},
        {"type": "track", "event": "Export", "anonymousId": "anon-1",
         "properties": {"revenue": "19.99", "eventLabel": 7},
         "context": {"app": {"name": "Acme Notes"}}},
        {"type": "screen", "name": "Settings/Privacy Screen", "anonymousId": "anon-1",
         "context": {"app": {"name": "Acme Notes"}}},
    ])
    assert matomo.wait_for_events(5, 10)
    reqs = matomo.snapshot()
    assert all(r.status == 200 for r in reqs), [r.summary() for r in reqs]
    for r in reqs:
        assert r.method == "POST" and r.path == "/matomo.php" and r.query == "", r.summary()
        assert r.headers.get("content-type") == "application/json", r.headers
        assert "content-encoding" not in r.headers, r.headers
        assert set(r.json) == {"requests"}, r.json  # no token configured: none sent
        for q in r.json["requests"]:
            assert q.startswith("?idsite=1&rec=1&"), q
            assert "send_image" not in q and "token_auth" not in q and "cip=" not in q, q
    assert matomo.answers[-1]["status"] == "success" and not matomo.invalid
    hits = by_key(matomo.hits)

    page = hits["Pricing"]
    assert page["kind"] == "pageview" and page["idsite"] == 1
    assert page["url"] == "https://acme.example/pricing?utm_source=newsletter"
    assert page["urlref"] == "https://www.google.com/"
    assert page["ua"] == BROWSER_UA and page["lang"] == "de-DE" and page["res"] == "390x844"
    assert page["_id"] == vid("anon-1") and page["visitor_id"] == vid("anon-1")
    assert page["cdt"] == epoch(page_ts), (page["cdt"], page_ts)  # recent: no token needed
    assert page["uid"] is None and page["cip"] is None

    # A page without a name is titled by its title.
    assert hits["Docs | Acme"]["url"] == "https://acme.example/docs"

    signup = hits["Signup"]
    assert signup["kind"] == "event"
    assert (signup["e_c"], signup["e_a"], signup["e_n"], signup["e_v"]) == \
        ("Account", "Signup", "pro plan", 42.5)
    assert signup["url"] == "https://acme.example/signup"
    assert signup["urlref"] == "https://acme.example/pricing"
    assert signup["ua"] == FALLBACK_UA  # no context.userAgent
    assert "pro" not in signup["params"].values()  # other properties are not sent
    assert set(signup["params"]) == {"idsite", "rec", "e_c", "e_a", "e_n", "e_v", "url",
                                     "urlref", "_id", "cdt", "ua"}, signup["params"]

    export = hits["Export"]
    assert (export["e_c"], export["e_a"], export["e_n"], export["e_v"]) == \
        ("herald", "Export", "7", 19.99)
    assert export["url"] == "https://acme-notes/", export["url"]  # the app name as host

    screen = hits["Settings/Privacy Screen"]
    assert screen["kind"] == "pageview"
    assert screen["url"] == "https://acme-notes/Settings/Privacy%20Screen", screen["url"]
    assert not herald.dead_letters()


def test_default_url_category_dimensions_and_bots(herald, matomo):
    cfg = herald.config([mdest(matomo, default_url="app://notes.example/app",
                               event_category="Notes", bots=True,
                               dimensions={"1": "$.properties.seq",
                                           "4": ["$.properties.tier", "$.context.app.version"],
                                           "5": "$.properties.missing"})])
    import_events(herald, cfg, [
        {"type": "track", "event": "Sync", "properties": {"seq": 1},
         "context": {"app": {"version": "3.2.1"}}},
        {"type": "screen", "name": "Home", "properties": {"seq": 2, "tier": "gold"},
         "context": {"userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}},
    ])
    assert matomo.wait_for_events(2, 10)
    hits = by_key(matomo.hits)
    assert hits["Sync"]["url"] == "app://notes.example/app"
    assert hits["Sync"]["e_c"] == "Notes"
    assert hits["Sync"]["dimensions"] == {"1": "1", "4": "3.2.1"}
    assert hits["Home"]["url"] == "app://notes.example/app/Home"
    assert hits["Home"]["dimensions"] == {"1": "2", "4": "gold"}
    # bots=1: a bot user agent is recorded, not excluded.
    assert hits["Home"]["params"]["bots"] == "1" and not matomo.excluded


def test_long_urls_are_sent_whole_and_matomo_cuts_them(herald, matomo):
    long_url = "https://acme.example/search?q=" + "\u00e9" * 1500
    import_events(herald, cfg := herald.config([mdest(matomo)]), [
        {"type": "page", "name": "Search", "properties": {"url": long_url}},
    ])
    assert matomo.wait_for_events(1, 10)
    hit = matomo.hits[0]
    # Not refused: Matomo cuts URLs and titles to page_maximum_length (1024 bytes).
    assert hit["params"]["url"] == long_url
    assert hit["url"] == long_url.encode()[:1024].decode("utf-8", "ignore")
    assert not herald.dead_letters() and status(herald, cfg)["pending"] == 0


def test_visitor_id_deterministic_per_anonymous_id_and_uid_for_users(herald, matomo):
    cfg = herald.config([mdest(matomo)])
    events = [
        {"type": "track", "event": "A", "anonymousId": "device-1"},
        {"type": "track", "event": "B", "anonymousId": "device-1"},
        {"type": "track", "event": "C", "anonymousId": "device-2"},
        {"type": "track", "event": "D", "anonymousId": "device-2", "userId": "user-42"},
    ]
    import_events(herald, cfg, events)
    assert matomo.wait_for_events(4, 10)
    # Another process, another queue file: the same ids.
    herald.db = herald.tmp / "other.db"
    import_events(herald, herald.config([mdest(matomo)]), events[:1])
    assert matomo.wait_for_events(5, 10)
    ids = [(h["e_a"], h["_id"]) for h in matomo.hits]
    assert ids == [("A", vid("device-1")), ("B", vid("device-1")), ("C", vid("device-2")),
                   ("D", vid("device-2")), ("A", vid("device-1"))], ids
    d = by_key(matomo.hits)["D"]
    assert d["uid"] == "user-42" and d["visitor_id"] == vid("user-42")
    assert all(by_key(matomo.hits)[k]["uid"] is None for k in "ABC")


def test_producer_events_share_one_visitor_and_arrive_once_in_bulks(herald, matomo):
    cfg = herald.config([mdest(matomo, dimensions={"1": "$.properties.seq"})],
                        flush_interval_ms=0)
    n = 250
    res = herald.produce(cfg, n, flush_ms=20000)
    assert res.flush == 0, res.describe()
    matomo.wait_for_events(n, 10)
    counts = seq_counts(matomo.hits)
    assert sorted(counts, key=int) == [str(i) for i in range(n)], counts
    assert set(counts.values()) == {1}
    sizes = [len(r.json["requests"]) for r in matomo.snapshot()]
    assert sum(sizes) == n and max(sizes) <= 100, sizes  # batch_max_events
    assert len({h["_id"] for h in matomo.hits}) == 1
    assert all(h["kind"] == "event" and h["e_a"] == "Test Event" for h in matomo.hits)


def test_identify_group_alias_are_skipped_not_sent(herald, matomo):
    cfg = herald.config([mdest(matomo)])
    import_events(herald, cfg, [
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "group", "groupId": "g1"},
        {"type": "alias", "previousId": "a", "userId": "u1"},
    ])
    time.sleep(0.3)
    assert not matomo.snapshot()
    counters = herald.counters()
    assert counters["skipped"] == 3 and not herald.dead_letters()
    assert herald.query("SELECT count(*) FROM outbox")[0][0] == 0
    # In a batch with other events they are left out of "requests".
    import_events(herald, cfg, [
        {"type": "identify", "userId": "u2"},
        {"type": "track", "event": "After", "userId": "u2"},
    ])
    assert matomo.wait_for_events(1, 10)
    assert [len(r.json["requests"]) for r in matomo.snapshot()] == [1]
    assert matomo.hits[0]["uid"] == "u2"
    assert herald.query("SELECT count(*) FROM outbox")[0][0] == 0


# --------------------------------------------------------------------------
# token_auth and time


def test_token_auth_in_body_never_in_url_logs_or_dead_letters(herald, matomo):
    cfg = herald.config([mdest(matomo, token_auth=TOKEN)])
    p = import_events(herald, cfg, [
        {"type": "track", "event": "WithToken",
         "context": {"ip": "203.0.113.7", "userAgent": BROWSER_UA}},
    ], "-vv")
    assert matomo.wait_for_events(1, 10)
    assert TOKEN not in p.stderr and TOKEN not in p.stdout
    r = matomo.snapshot()[0]
    assert r.json["token_auth"] == TOKEN and r.query == ""
    assert all(TOKEN not in q for q in r.json["requests"])
    assert all(TOKEN not in v for _, v in r.header_list)
    hit = matomo.hits[0]
    assert hit["cip"] == "203.0.113.7" and hit["authenticated"]

    # A server that echoes the token in an error: not in the dead letter.
    matomo.script([(400, {"Content-Type": "text/plain"},
                    "refused token_auth=%s for idsite=1" % TOKEN)])
    p = import_events(herald, cfg, [{"type": "track", "event": "Echo"}], "-vv")
    assert TOKEN not in p.stderr and TOKEN not in p.stdout
    dls = herald.dead_letters()
    assert len(dls) == 1 and dls[0]["http_status"] == 400, dls
    assert "[secret]" in dls[0]["response"] and "[secret]" in dls[0]["reason"], dls[0]
    for d in dls:
        assert all(TOKEN not in str(v) for v in d.values()), d
    p = herald.emit("--config", cfg, "--no-flush", "-vv", "dead-letters")
    assert TOKEN not in p.stdout + p.stderr
    for f in herald.tmp.iterdir():
        if f.name.startswith("q.db"):
            assert TOKEN.encode() not in f.read_bytes(), f


def test_old_events_without_token_are_recorded_at_delivery(herald, matomo):
    cfg = herald.config([mdest(matomo)])
    old, recent = iso(3 * 86400), iso(3600)
    import_events(herald, cfg, [
        {"type": "track", "event": "Old", "timestamp": old, "context": {"ip": "198.51.100.9"}},
        {"type": "track", "event": "Recent", "timestamp": recent},
    ])
    assert matomo.wait_for_events(2, 10)
    hits = by_key(matomo.hits)
    # Matomo refuses a cdt over 24 h old without a token: none is sent, and
    # the event is recorded when it arrives instead of being refused.
    assert "cdt" not in hits["Old"]["params"] and abs(hits["Old"]["time"] - time.time()) < 60
    assert hits["Recent"]["cdt"] == epoch(recent)
    # No token: context.ip is not sent either (cip needs one).
    assert "cip" not in hits["Old"]["params"]
    assert not matomo.invalid and not herald.dead_letters()


def test_old_events_with_token_keep_their_time(herald, matomo):
    cfg = herald.config([mdest(matomo, token_auth=TOKEN)])
    old, older = iso(3 * 86400), iso(40 * 86400)
    import_events(herald, cfg, [
        {"type": "page", "name": "Old", "timestamp": old},
        {"type": "track", "event": "Older", "timestamp": older},
    ])
    assert matomo.wait_for_events(2, 10)
    hits = by_key(matomo.hits)
    assert hits["Old"]["cdt"] == epoch(old) and hits["Older"]["cdt"] == epoch(older)
    assert hits["Old"]["authenticated"] and not matomo.invalid


# --------------------------------------------------------------------------
# Responses


def test_invalid_request_in_a_bulk_dead_letters_only_that_event(herald):
    """With a superuser token Matomo names the invalid requests
    (invalid_indices): only those events are dead-lettered, the others are
    delivered, nothing is sent twice."""
    r = MatomoReceiver(superuser_tokens={SUPER_TOKEN}, delete_logs_older_than=180).start()
    try:
        cfg = herald.config([mdest(r, token_auth=SUPER_TOKEN)])
        import_events(herald, cfg, [
            {"type": "identify", "userId": "u1"},        # not a request: indices shift
            {"type": "track", "event": "A"},
            {"type": "track", "event": "Ancient", "timestamp": iso(400 * 86400)},
            {"type": "track", "event": "C"},
        ])
        assert r.wait_for_events(2, 10)
        time.sleep(0.3)  # a resend would come within retry_base_ms
        reqs = r.snapshot()
        assert len(reqs) == 1 and len(reqs[0].json["requests"]) == 3, \
            [q.summary() for q in reqs]
        assert r.answers == [{"status": "success", "tracked": 2, "invalid": 1,
                              "invalid_indices": [1]}]
        assert sorted(h["e_a"] for h in r.hits) == ["A", "C"]
        dls = herald.dead_letters()
        assert len(dls) == 1 and dls[0]["event"]["event"] == "Ancient", dls
        assert dls[0]["http_status"] == 200
        assert "refused as invalid by Matomo" in dls[0]["reason"], dls[0]["reason"]
        st = status(herald, cfg)
        assert st["dead"] == 1 and st["pending"] == 0 and st["server_dropped"] == 0, st
    finally:
        r.stop()


def test_unnamed_invalid_requests_are_counted_as_dropped(herald, matomo):
    """Without a superuser token Matomo reports only how many requests were
    invalid: they are counted as dropped (a resend would duplicate the
    others); when every request is invalid, each is known and dead-lettered."""
    matomo.delete_logs_older_than = 180
    cfg = herald.config([mdest(matomo, token_auth=TOKEN)])
    import_events(herald, cfg, [
        {"type": "track", "event": "A", "properties": {"seq": 1}},
        {"type": "track", "event": "Ancient", "timestamp": iso(400 * 86400)},
    ])
    assert matomo.wait_for_events(1, 10)
    time.sleep(0.3)
    assert matomo.answers == [{"status": "success", "tracked": 1, "invalid": 1}]
    assert [h["e_a"] for h in matomo.hits] == ["A"] and len(matomo.snapshot()) == 1
    st = status(herald, cfg)
    assert st["server_dropped"] == 1 and st["dead"] == 0 and st["pending"] == 0, st
    assert not herald.dead_letters()

    import_events(herald, cfg, [
        {"type": "track", "event": "Ancient2", "timestamp": iso(500 * 86400)},
        {"type": "track", "event": "Ancient3", "timestamp": iso(600 * 86400)},
    ])
    assert matomo.wait_for_requests(2, 10)
    time.sleep(0.3)
    assert matomo.answers[-1] == {"status": "success", "tracked": 0, "invalid": 2}
    dls = herald.dead_letters()
    assert sorted(d["event"]["event"] for d in dls) == ["Ancient2", "Ancient3"], dls
    assert len(matomo.snapshot()) == 2


def test_5xx_is_retried_then_delivered_once(herald, matomo):
    error = json.dumps({"status": "error", "tracked": 0, "invalid": 0})
    matomo.script([(500, {"Content-Type": "application/json"}, error),
                   (503, {}, "Service Unavailable")])
    cfg = herald.config([mdest(matomo, dimensions={"1": "$.properties.seq"})])
    res = herald.produce(cfg, 5, flush_ms=10000)
    assert res.flush == 0, res.describe()
    matomo.wait_for_requests(3, 5)
    assert [q.status for q in matomo.snapshot()] == [500, 503, 200]
    assert seq_counts(matomo.hits) == {str(i): 1 for i in range(5)}
    assert res.stats["retried"] >= 2 and res.stats["dead"] == 0, res.stats


def test_bulk_requiring_a_token_is_retried_with_a_hint_until_one_is_set(herald):
    r = MatomoReceiver(site_tokens={TOKEN: [1]}, bulk_requires_auth=True).start()
    try:
        cfg = herald.config([mdest(r)])
        p = import_events(herald, cfg, [{"type": "track", "event": "Held"}], "-v",
                          timeout=1, ok=False)
        assert r.wait_for_requests(1, 5) and r.snapshot()[0].status == 500
        assert "token_auth" in p.stderr and "bulk_requests_require_authentication" in p.stderr, \
            p.stderr
        assert not r.hits and not herald.dead_letters()
        st = status(herald, cfg)
        assert st["pending"] == 1 and st["dead"] == 0, st
        cfg2 = herald.config([mdest(r, token_auth=TOKEN)], retry_max_delay_ms=100)
        p = herald.emit("--config", cfg2, "--timeout", "10", "flush")
        assert p.returncode == 0, p.stderr
        assert [h["e_a"] for h in r.hits] == ["Held"]
    finally:
        r.stop()


@pytest.mark.parametrize("code", [401, 403])
def test_401_403_dead_letter_naming_token_auth(herald, matomo, code):
    matomo.script([(code, {}, "Forbidden")])
    cfg = herald.config([mdest(matomo, token_auth=TOKEN)])
    import_events(herald, cfg, [{"type": "track", "event": "X"}])
    dls = herald.dead_letters()
    assert len(dls) == 1 and dls[0]["http_status"] == code, dls
    assert "token_auth" in dls[0]["reason"], dls[0]["reason"]
    assert len(matomo.snapshot()) == 1


def test_an_answer_that_is_not_matomos_dead_letters(herald, matomo):
    matomo.script([(200, {"Content-Type": "text/html"}, "<html>Sign in</html>")])
    cfg = herald.config([mdest(matomo)])
    import_events(herald, cfg, [{"type": "track", "event": "Lost?"}])
    dls = herald.dead_letters()
    assert len(dls) == 1, dls
    assert "without Matomo's bulk tracking answer" in dls[0]["reason"], dls[0]["reason"]


# --------------------------------------------------------------------------
# Configuration and loading


@pytest.mark.parametrize("url, path", [
    ("{base}/", "/matomo.php"),
    ("{base}/piwik.php", "/piwik.php"),
])
def test_endpoint_from_url(herald, matomo, url, path):
    cfg = herald.config([mdest(matomo, url=url.format(base=matomo.base_url()))])
    import_events(herald, cfg, [{"type": "track", "event": "E"}])
    assert matomo.wait_for_events(1, 10)
    assert matomo.snapshot()[0].path == path


@pytest.mark.parametrize("settings, message", [
    ({"colour": "blue"}, "unknown or mistyped setting \"colour\""),
    ({"site_id": None}, "\"site_id\" is required"),
    ({"site_id": 0}, "site_id must be the site's id in Matomo"),
    ({"site_id": "abc"}, "site_id must be the site's id in Matomo"),
    ({"url": "ftp://x"}, "url must start with http:// or https://"),
    ({"url": "https://m.example/?x=1"}, "without white space, query or fragment"),
    ({"token_auth": "a b"}, "token_auth must be a Matomo auth token"),
    ({"dimensions": {"x": "$.a"}}, "is not a custom dimension id"),
    ({"dimensions": {"1": "properties.a"}}, "a path looks like"),
    ({"default_url": "notes"}, "default_url must be an absolute URL"),
])
def test_bad_config_fails_at_open_with_a_clear_message(herald, matomo, settings, message):
    d = mdest(matomo)
    d.update(settings)
    d = {k: v for k, v in d.items() if v is not None}
    cfg = herald.config([d])
    p = herald.emit("--config", cfg, "track", "X")
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert not matomo.snapshot()


def test_site_id_as_string_and_loaded_as_a_module(herald, matomo):
    module = build_dir() / "herald-backend-matomo.so"
    assert module.is_file(), "build %s first" % module
    cfg = herald.config([mdest(matomo, backend=str(module.resolve()), site_id="1",
                               token_auth=TOKEN)])
    import_events(herald, cfg, [{"type": "track", "event": "FromModule",
                                 "timestamp": iso(2 * 86400),
                                 "context": {"ip": "2001:db8::1"}}])
    assert matomo.wait_for_events(1, 10)
    h = matomo.hits[0]
    assert h["e_a"] == "FromModule" and h["cip"] == "2001:db8::1" and h["cdt"] is not None
    assert matomo.snapshot()[0].json["token_auth"] == TOKEN


# --------------------------------------------------------------------------
# The receiver itself holds to the contract it stands in for.


def _post(receiver, body, headers=None, path="/matomo.php"):
    conn = http.client.HTTPConnection(receiver.host, receiver.port, timeout=5)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_receiver_validates_like_matomo(matomo):
    now = int(time.time())
    ok = "?idsite=1&rec=1&url=https%3A%2F%2Fa.example%2F&_id=0123456789abcdef"

    def bulk(requests, **extra):
        return json.dumps(dict({"requests": requests}, **extra)).encode()

    st, body = _post(matomo, b"idsite=1&rec=1")  # not a bulk request
    assert st == 400 and "part of Matomo" in body
    st, body = _post(matomo, gzip.compress(bulk([ok])), {"Content-Encoding": "gzip"})
    assert st == 400  # the tracker does not decode gzip
    assert _post(matomo, bulk([ok]), path="/other.php")[0] == 404
    st, body = _post(matomo, b'{"requests": [broken')
    assert st == 200 and json.loads(body) == {"status": "success", "tracked": 0, "invalid": 0}
    requests = [
        ok,                                                   # 0 tracked
        "idsite=1&rec=1&url=x",                               # no "?": skipped, no index
        "?idsite=7&rec=1",                                    # 1 unknown site
        "?idsite=1&rec=1&cid=abc",                            # 2 cid not 16 characters
        "?idsite=1&rec=1&cip=203.0.113.1",                    # 3 cip without a token
        "?idsite=1&rec=1&cdt=%d" % (now - 2 * 86400),         # 4 old cdt without a token
        "?idsite=1&rec=1&cdt=%d" % (now - 3600),              # 5 recent cdt: fine
        "?idsite=1&url=norec",                                # 6 excluded (no rec), tracked
        "?idsite=1&rec=1&ua=Googlebot%2F2.1",                 # 7 excluded (bot), tracked
        "?idsite=1&rec=1&_id=short&cdt=%d" % (now + 999),     # 8 short _id ignored, future cdt
    ]
    st, body = _post(matomo, bulk(requests))
    assert st == 200 and json.loads(body) == {"status": "success", "tracked": 5, "invalid": 4}
    st, body = _post(matomo, bulk(requests, token_auth=SUPER_TOKEN))
    assert json.loads(body) == {"status": "success", "tracked": 7, "invalid": 2,
                                "invalid_indices": [1, 2]}
    st, body = _post(matomo, bulk(requests, token_auth=TOKEN))
    assert json.loads(body) == {"status": "success", "tracked": 7, "invalid": 2}
    assert _post(matomo, bulk([ok], send_image="0"))[0] == 204
    hits = matomo.hits
    assert hits[0]["visitor_id"] == "0123456789abcdef"
    short = [h for h in hits if h["params"].get("_id") == "short"][0]
    assert short["visitor_id"] is None and short["cdt"] is None
    assert sorted(why for why, _ in matomo.excluded) == ["bot", "bot", "bot", "rec", "rec",
                                                         "rec"]
    r = MatomoReceiver(bulk_requires_auth=True, site_tokens={TOKEN: [1]}).start()
    try:
        st, body = _post(r, bulk([ok]))
        assert st == 500 and json.loads(body)["status"] == "error"
        assert _post(r, bulk([ok], token_auth=TOKEN))[0] == 200
    finally:
        r.stop()
