"""The posthog backend end to end: herald (the CLI and the producer program)
against the loopback capture service of posthog_receiver.py, which validates
as PostHog's Rust capture does (BACKENDS.md section 4)."""

import datetime
import gzip
import http.client
import json
import sqlite3
import uuid

import pytest
from conftest import build_dir

from posthog_receiver import PostHogReceiver


@pytest.fixture(autouse=True)
def _caller_data_unredacted(herald):
    """These tests check how the backend maps the caller's own data (IPs,
    user agents, emails in traits) onto the wire, so redaction, which is on
    by default, is turned off here; it has its own tests (test_privacy.py,
    tests/unit/test_redact.c, tests/unit/test_enrich.c)."""
    herald.redact = {"enabled": False}

API_KEY = "phc_Zx81kQ0aTestProjectKey4711"
MESSAGE_NS = uuid.UUID("38c8eb11-794a-445b-8294-99d6e4e33340")
NO_ID = "posthog: event has neither userId nor anonymousId (PostHog requires a distinct_id)"
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")


@pytest.fixture
def posthog():
    r = PostHogReceiver().start()
    yield r
    r.stop()


def pdest(receiver, name="ph", **kw):
    d = {"name": name, "backend": "posthog", "url": receiver.base_url(), "api_key": API_KEY}
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


def by_event(events):
    return {e["event"]: e for e in events}


# --------------------------------------------------------------------------
# The wire and the mapping


def test_batch_shape_token_and_standard_fields(herald, posthog):
    cfg = herald.config([pdest(posthog, gzip=False)])
    before = datetime.datetime.now(datetime.timezone.utc)
    import_events(herald, cfg, [
        {"type": "track", "event": "Signed Up", "properties": {"plan": "pro", "seats": 3},
         "messageId": "0F1E2D3C-4B5A-4978-8796-A5B4C3D2E1F0",
         "timestamp": "2026-01-02T03:04:05.678Z"},
    ])
    assert posthog.wait_for_uuids(1, 10)
    (req,) = posthog.snapshot()
    assert req.status == 200 and req.path == "/batch/", req.summary()
    assert json.loads(req.response_body) == {"status": "Ok"}
    assert req.headers["content-type"] == "application/json"
    assert "authorization" not in req.headers
    body = req.json
    assert set(body) == {"api_key", "batch", "sent_at"}, body
    assert body["api_key"] == API_KEY
    sent_at = parse_time(body["sent_at"])
    assert before - datetime.timedelta(seconds=1) <= sent_at <= \
        datetime.datetime.now(datetime.timezone.utc)
    (e,) = body["batch"]
    assert set(e) == {"event", "distinct_id", "uuid", "timestamp", "properties"}, e
    assert e["event"] == "Signed Up"
    # uuid is the messageId (lower-cased: the same UUID).
    assert e["uuid"] == "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"
    assert e["timestamp"] == "2026-01-02T03:04:05.678Z"
    p = e["properties"]
    assert p["plan"] == "pro" and p["seats"] == 3
    assert p["$lib"] == "herald" and p["$lib_version"]
    # No user yet: the anonymous id is the distinct_id.
    assert uuid.UUID(e["distinct_id"]).version == 4


def test_context_maps_to_posthog_property_names(herald, posthog):
    cfg = herald.config([pdest(posthog)], app_name="Acme Notes", app_version="3.2.1",
                        app_build="771")
    ctx = {"userAgent": BROWSER_UA, "ip": "198.51.100.23", "locale": "de-DE",
           "timezone": "Europe/Berlin", "screen": {"width": 390, "height": 844},
           "os": {"name": "macOS", "version": "14.1"},
           "device": {"type": "desktop", "manufacturer": "Apple", "model": "Mac14,2"},
           "page": {"url": "https://acme.example/pricing?utm_source=nl&utm_medium=mail"
                           "&utm_campaign=fall&gclid=Cj0K",
                    "referrer": "https://www.google.com/search?q=x",
                    "title": "Pricing"}}
    import_events(herald, cfg, [{"type": "track", "event": "Viewed Plans", "context": ctx,
                                 "properties": {"$os": "caller's own wins"}}])
    assert posthog.wait_for_uuids(1, 10)
    p = posthog.events[0]["properties"]
    expected = {
        "$os": "caller's own wins", "$os_version": "14.1", "$device_type": "Desktop",
        "$device_manufacturer": "Apple", "$device_model": "Mac14,2",
        "$app_name": "Acme Notes", "$app_version": "3.2.1", "$app_build": "771",
        "$locale": "de-DE", "$timezone": "Europe/Berlin", "$raw_user_agent": BROWSER_UA,
        "$ip": "198.51.100.23", "$screen_width": 390, "$screen_height": 844,
        "$current_url": ctx["page"]["url"], "$host": "acme.example", "$pathname": "/pricing",
        "title": "Pricing", "$referrer": "https://www.google.com/search?q=x",
        "$referring_domain": "www.google.com",
        "utm_source": "nl", "utm_medium": "mail", "utm_campaign": "fall", "gclid": "Cj0K",
        "$lib": "herald",
    }
    for k, v in expected.items():
        assert p.get(k) == v, (k, p.get(k))
    # The session: a UUIDv7 whose time is the session's start (herald's id).
    sid = uuid.UUID(p["$session_id"])
    assert sid.version == 7, p["$session_id"]
    assert "$geoip_disable" not in p and "$set" not in p


def test_page_and_screen_events(herald, posthog):
    cfg = herald.config([pdest(posthog)])
    import_events(herald, cfg, [
        {"type": "page", "name": "Home", "properties": {"url": "https://acme.example/"}},
        {"type": "screen", "name": "Settings", "properties": {"tab": 2}},
    ])
    assert posthog.wait_for_uuids(2, 10)
    ev = by_event(posthog.events)
    page = ev["$pageview"]["properties"]
    assert page["$current_url"] == "https://acme.example/" and page["name"] == "Home"
    assert page["$host"] == "acme.example" and page["$pathname"] == "/"
    screen = ev["$screen"]["properties"]
    assert screen["$screen_name"] == "Settings" and screen["tab"] == 2


def test_identify_group_and_alias_mapping(herald, posthog):
    cfg = herald.config([pdest(posthog, group_type="organization")])
    anon = "anon-0001"
    import_events(herald, cfg, [
        {"type": "identify", "userId": "user-42", "anonymousId": anon,
         "traits": {"email": "a@example.com", "plan": "pro"}},
        {"type": "group", "userId": "user-42", "anonymousId": anon, "groupId": "acme-inc",
         "traits": {"name": "Acme", "seats": 40}},
        {"type": "alias", "previousId": "old-id-7", "userId": "user-42", "anonymousId": anon},
        {"type": "track", "event": "After", "userId": "user-42", "anonymousId": anon,
         "context": {"groupId": "acme-inc"}},
    ])
    assert posthog.wait_for_uuids(4, 10)
    ev = by_event(posthog.events)

    ident = ev["$identify"]
    assert ident["distinct_id"] == "user-42"
    assert ident["properties"]["$set"] == {"email": "a@example.com", "plan": "pro"}
    assert ident["properties"]["$anon_distinct_id"] == anon  # merges the anonymous person

    group = ev["$groupidentify"]
    assert group["distinct_id"] == "user-42"
    gp = group["properties"]
    assert gp["$group_type"] == "organization" and gp["$group_key"] == "acme-inc"
    assert gp["$group_set"] == {"name": "Acme", "seats": 40}
    assert "$set" not in gp

    alias = ev["$create_alias"]
    assert alias["distinct_id"] == "user-42"
    assert alias["properties"]["alias"] == "old-id-7"
    assert alias["properties"]["distinct_id"] == "user-42"

    # Later events belong to the group.
    assert ev["After"]["properties"]["$groups"] == {"organization": "acme-inc"}
    assert ev["After"]["distinct_id"] == "user-42"


def test_identify_then_track_through_the_library_uses_the_user_id(herald, posthog):
    cfg = herald.config([pdest(posthog)])
    for args in (["identify", "u-9", "--traits", '{"plan": "team"}'],
                 ["track", "Exported"], ["group", "g-1"]):
        p = herald.emit("--config", cfg, "--timeout", "10", *args)
        assert p.returncode == 0, p.stderr
    assert posthog.wait_for_uuids(3, 10)
    ev = by_event(posthog.events)
    assert {e["distinct_id"] for e in posthog.events} == {"u-9"}
    assert ev["$identify"]["properties"]["$anon_distinct_id"] != "u-9"
    assert ev["$groupidentify"]["properties"]["$groups"] == {"company": "g-1"}
    # One session: every event carries the same $session_id.
    assert len({e["properties"]["$session_id"] for e in posthog.events}) == 1


def test_uuid_from_a_message_id_that_is_not_a_uuid_is_deterministic(herald, posthog):
    cfg = herald.config([pdest(posthog)])
    import_events(herald, cfg, [
        {"type": "track", "event": "A", "messageId": "order-4711-created"},
        {"type": "track", "event": "B", "messageId": "{not a uuid}"},
    ])
    assert posthog.wait_for_uuids(2, 10)
    ev = by_event(posthog.events)
    assert ev["A"]["uuid"] == str(uuid.uuid5(MESSAGE_NS, "order-4711-created"))
    assert ev["B"]["uuid"] == str(uuid.uuid5(MESSAGE_NS, "{not a uuid}"))


def test_retry_keeps_uuid_and_sends_a_fresh_sent_at(herald, posthog):
    posthog.script([(503, {"Retry-After": "1"}, "transient error, please retry")])
    cfg = herald.config([pdest(posthog, gzip=False)])
    res = herald.produce(cfg, 3, flush_ms=10000)
    assert res.flush == 0, res.describe()
    posthog.wait_for_requests(2, 5)
    first, second = posthog.snapshot()[:2]
    assert (first.status, second.status) == (503, 200)
    # The same events with the same uuids: PostHog de-duplicates the retry.
    assert [e["uuid"] for e in first.json["batch"]] == \
        [e["uuid"] for e in second.json["batch"]]
    assert first.json["batch"] == second.json["batch"]
    delta = parse_time(second.json["sent_at"]) - parse_time(first.json["sent_at"])
    assert delta >= datetime.timedelta(milliseconds=900), (first.json["sent_at"],
                                                           second.json["sent_at"])
    assert set(posthog.accepted_uuids().values()) == {1}


def test_uuid_is_the_message_id_on_every_attempt(herald, posthog):
    posthog.script([(500, {}, "boom"), (429, {}, "rate limited")])
    cfg = herald.config([pdest(posthog)])
    mid = "7d444840-9dc0-11d1-b245-5ffdce74fad2"
    import_events(herald, cfg, [{"type": "track", "event": "Once", "messageId": mid}])
    posthog.wait_for_requests(3, 5)
    reqs = posthog.snapshot()
    assert [q.status for q in reqs] == [500, 429, 200]
    assert [q.json["batch"][0]["uuid"] for q in reqs] == [mid] * 3
    assert posthog.accepted_uuids() == {mid: 1}


def test_gzip_bodies_and_gzip_off(herald):
    on = PostHogReceiver().start()
    off = PostHogReceiver().start()
    try:
        cfg = herald.config([pdest(on, name="on"), pdest(off, name="off", gzip=False)])
        res = herald.produce(cfg, 30, pad=300, flush_ms=10000)
        assert res.flush == 0, res.describe()
        on.wait_for_uuids(30, 5)
        off.wait_for_uuids(30, 5)
        assert len(on.accepted_uuids()) == 30 and len(off.accepted_uuids()) == 30
        for q in on.snapshot():
            assert q.headers.get("content-encoding") == "gzip", q.summary()
            assert q.raw_body[:3] == b"\x1f\x8b\x08"
            assert on.info(q)["decompressed"] == "gzip (gzip)"
            assert q.raw_len < q.decoded_len
        for q in off.snapshot():
            assert "content-encoding" not in q.headers and off.info(q)["decompressed"] is None
    finally:
        on.stop()
        off.stop()


def test_options_geoip_and_historical_migration(herald, posthog):
    cfg = herald.config([pdest(posthog, geoip=False, historical_migration=True)])
    import_events(herald, cfg, [{"type": "track", "event": "Backfill"}])
    assert posthog.wait_for_uuids(1, 10)
    req = posthog.snapshot()[0]
    assert req.json["historical_migration"] is True
    assert posthog.info(req)["historical_migration"] is True
    assert posthog.events[0]["properties"]["$geoip_disable"] is True


# --------------------------------------------------------------------------
# Keys


@pytest.mark.parametrize("key, message", [
    ("phx_personalKey123", "api_key is a personal API key (\"phx_...\")"),
    ("", "api_key must be the project API key"),
    ("phc_" + "k" * 61, "api_key must be the project API key"),
    ("phc_with space", "api_key must be the project API key"),
    (None, "\"api_key\" is required"),
])
def test_bad_keys_refused_at_open(herald, posthog, key, message):
    d = pdest(posthog, api_key=key)
    if key is None:
        del d["api_key"]
    cfg = herald.config([d])
    p = herald.emit("--config", cfg, "track", "X")
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    if key:
        assert key not in p.stderr.replace("***", "")
    assert not posthog.snapshot()


def test_401_reason_names_the_project_key_and_hides_it(herald):
    """An older capture (Django) or a proxy that checks keys answers 401 for
    an unknown project key: dead-lettered with a reason that says so, and the
    key in neither the -vv log nor the dead letters."""
    wrong = "phc_WrongProjectKey000000000000"
    r = PostHogReceiver(known_keys={API_KEY}, unknown_key="401").start()
    try:
        echo = r.responder = lambda rec: (401, {}, "Project API key invalid: %s" % wrong) \
            if rec.json and rec.json.get("api_key") == wrong else None
        assert echo
        cfg = herald.config([pdest(r, api_key=wrong)])
        p = herald.emit("-vv", "--config", cfg, "--timeout", "10", "track", "Lost")
        dls = herald.dead_letters()
        assert len(dls) == 1, dls
        d = dls[0]
        assert d["http_status"] == 401
        assert d["reason"].startswith("HTTP 401: project API key rejected: Project API key "
                                      "invalid"), d["reason"]
        assert "configuration error: check api_key" in d["reason"]
        assert len(r.snapshot()) == 1  # not retried
        st = herald.emit("-vv", "--config", cfg, "--no-flush", "dead-letters", "list", "--json")
        for where, text in {"track -vv": p.stdout + p.stderr,
                            "dead-letters -vv": st.stdout + st.stderr,
                            "reason": d["reason"], "response": d["response"] or ""}.items():
            assert wrong not in text, "%s leaks the key:\n%s" % (where, text)
        assert wrong.encode() not in herald.db.read_bytes()
    finally:
        r.stop()


def test_capture_401_for_a_key_it_refuses(herald, posthog):
    """Rust capture's own 401s (no key, a personal key) never come from
    herald's requests (refused at open), but read as configuration errors."""
    posthog.script([(401, {}, "API key is not valid: personal_api_key")])
    cfg = herald.config([pdest(posthog)])
    res = herald.produce(cfg, 2, flush_ms=10000)
    assert res.flush == 0, res.describe()
    dls = herald.dead_letters()
    assert len(dls) == 2
    assert {d["reason"] for d in dls} == {
        "HTTP 401: project API key rejected: API key is not valid: personal_api_key "
        "(configuration error: check api_key, the project API key \"phc_...\" from Project "
        "settings)"}


def test_unknown_project_key_is_accepted_and_dropped_by_capture(herald):
    """What PostHog Cloud does with a well-shaped unknown key: 200, and the
    events vanish in ingestion. herald cannot tell: documented."""
    r = PostHogReceiver(known_keys={"phc_other"}).start()
    try:
        cfg = herald.config([pdest(r)])
        res = herald.produce(cfg, 2, flush_ms=10000)
        assert res.flush == 0 and res.stats["dead"] == 0, res.describe()
        assert len(r.dropped) == 2 and not r.events
    finally:
        r.stop()


# --------------------------------------------------------------------------
# Responses


def test_400_bisects_to_the_bad_event(herald, posthog):
    def refuse(rec):
        if rec.messages and any(e["properties"].get("seq") == 3 for e in rec.messages):
            return 400, {}, "failed to parse request: invalid type: map, expected a string"
        return None
    posthog.responder = refuse
    cfg = herald.config([pdest(posthog)])
    res = herald.produce(cfg, 8, flush_ms=10000)
    assert res.flush == 0, res.describe()
    dls = herald.dead_letters()
    assert [d["event"]["properties"]["seq"] for d in dls] == [3], dls
    assert dls[0]["reason"] == ("HTTP 400: event refused: failed to parse request: invalid "
                                "type: map, expected a string")
    assert sorted(e["properties"]["seq"] for e in posthog.events) == [0, 1, 2, 4, 5, 6, 7]


@pytest.mark.parametrize("status", [413, 400])
def test_event_too_big_splits_then_dead_letters_alone(herald, posthog, status):
    """413 (newer capture) or 400 "maximum event size exceeded" (older):
    split the batch, and dead-letter only the event that is too big alone."""
    def too_big(rec):
        if rec.messages and any(e["properties"].get("seq") == 2 for e in rec.messages):
            return status, {}, "maximum event size exceeded"
        return None
    posthog.responder = too_big
    cfg = herald.config([pdest(posthog)])
    res = herald.produce(cfg, 6, flush_ms=10000)
    assert res.flush == 0, res.describe()
    dls = herald.dead_letters()
    assert [(d["event"]["properties"]["seq"], d["http_status"]) for d in dls] == [(2, status)]
    assert sorted(e["properties"]["seq"] for e in posthog.events) == [0, 1, 3, 4, 5]


def test_429_503_and_no_response_are_retried(herald, posthog):
    posthog.script([(429, {}, "rate limited"), (503, {}, "transient error, please retry"),
                    (500, {}, "oops")])
    cfg = herald.config([pdest(posthog)])
    res = herald.produce(cfg, 2, flush_ms=10000)
    assert res.flush == 0, res.describe()
    assert [q.status for q in posthog.snapshot()] == [429, 503, 500, 200]
    assert len(posthog.accepted_uuids()) == 2 and res.stats["dead"] == 0


def test_404_says_check_the_url(herald, posthog):
    cfg = herald.config([pdest(posthog, url=posthog.base_url() + "/capture")])
    import_events(herald, cfg, [{"type": "track", "event": "Lost"}])
    dls = herald.dead_letters()
    assert posthog.snapshot()[0].path == "/capture/batch/"
    assert len(dls) == 1 and dls[0]["http_status"] == 404
    assert "configuration error: check url" in dls[0]["reason"], dls[0]["reason"]


# --------------------------------------------------------------------------
# Limits and distinct_id


def test_event_over_900_kib_is_dead_lettered_without_a_request(herald, posthog):
    cfg = herald.config([pdest(posthog)], max_event_bytes=2_000_000)
    import_events(herald, cfg, [
        {"type": "track", "event": "Huge", "properties": {"pad": "x" * 930_000}},
        {"type": "track", "event": "Large", "properties": {"pad": "y" * 900_000}},
    ])
    assert posthog.wait_for_uuids(1, 10)
    assert [e["event"] for e in posthog.events] == ["Large"]
    dls = herald.dead_letters()
    assert [(d["event"]["event"], d["http_status"]) for d in dls] == [("Huge", 0)]
    assert "over the posthog backend's limit of 921600" in dls[0]["reason"]


def test_requests_stay_within_5_mb(herald, posthog):
    n = 14
    cfg = herald.config([pdest(posthog, gzip=False)], max_event_bytes=1_000_000,
                        batch_max_bytes=50_000_000, batch_max_events=1000)
    res = herald.produce(cfg, n, pad=700_000, flush_ms=30000)
    assert res.flush == 0, res.describe()
    assert posthog.wait_for_uuids(n, 10)
    sizes = [q.decoded_len for q in posthog.snapshot()]
    assert all(q.status == 200 for q in posthog.snapshot())
    assert max(sizes) <= 5_100_000 and len(sizes) >= 2, sizes
    assert max(sizes) > 4_000_000, sizes  # filled, not one event per request


def test_event_without_user_or_anonymous_id_is_dead_lettered_others_sent(herald, posthog):
    cfg = herald.config([pdest(posthog)])
    import_events(herald, cfg, [{"type": "track", "event": n} for n in ("A", "Nobody", "B")],
                  "--no-flush")
    con = sqlite3.connect(str(herald.db), timeout=10)
    try:
        for eid, body in con.execute("SELECT id, body FROM events").fetchall():
            ev = json.loads(body)
            if ev["event"] == "Nobody":
                ev.pop("anonymousId")
                ev.pop("userId", None)
                new = json.dumps(ev, separators=(",", ":"))
                new = new.encode() if isinstance(body, bytes) else new
                con.execute("UPDATE events SET body = ?, bytes = ? WHERE id = ?",
                            (new, len(new), eid))
        con.commit()
    finally:
        con.close()
    p = herald.emit("--config", cfg, "--timeout", "10", "flush")
    assert p.returncode == 0, p.stderr
    assert posthog.wait_for_uuids(2, 5)
    reqs = posthog.snapshot()
    assert len(reqs) == 1 and [e["event"] for e in reqs[0].messages] == ["A", "B"]
    assert [(d["event"]["event"], d["reason"]) for d in herald.dead_letters()] == \
        [("Nobody", NO_ID)]


# --------------------------------------------------------------------------
# Configuration and loading


@pytest.mark.parametrize("settings, message", [
    ({"url": None}, "\"url\" is required"),
    ({"url": "ftp://x"}, "url must start with http:// or https://"),
    ({"url": "https://us.i.posthog.com/?x=1"}, "without white space, query or fragment"),
    ({"group_type": ""}, "group_type must be a group type name"),
    ({"colour": "blue"}, "unknown or mistyped setting \"colour\""),
])
def test_bad_config_fails_at_open(herald, posthog, settings, message):
    d = pdest(posthog)
    d.update(settings)
    d = {k: v for k, v in d.items() if v is not None}
    cfg = herald.config([d])
    p = herald.emit("--config", cfg, "track", "X")
    assert p.returncode != 0
    assert message in p.stderr, p.stderr


@pytest.mark.parametrize("suffix", ["/batch", "/batch/", "/"])
def test_url_naming_the_batch_endpoint(herald, posthog, suffix):
    cfg = herald.config([pdest(posthog, url=posthog.base_url() + suffix)])
    import_events(herald, cfg, [{"type": "track", "event": "E"}])
    assert posthog.wait_for_uuids(1, 10)
    assert posthog.snapshot()[0].path == "/batch/"


def test_loaded_as_a_module(herald, posthog):
    module = build_dir() / "herald-backend-posthog.so"
    assert module.is_file(), "build %s first" % module
    cfg = herald.config([pdest(posthog, backend=str(module.resolve()))])
    mid = "3b241101-e2bb-4255-8caf-4136c566a962"
    import_events(herald, cfg, [{"type": "identify", "userId": "mod-user", "messageId": mid,
                                 "traits": {"k": "v"}}])
    assert posthog.wait_for_uuids(1, 10)
    e = posthog.events[0]
    assert (e["event"], e["distinct_id"], e["uuid"]) == ("$identify", "mod-user", mid)
    assert e["properties"]["$set"] == {"k": "v"}
    assert posthog.snapshot()[0].json["api_key"] == API_KEY


# --------------------------------------------------------------------------
# The receiver itself holds to the contract it stands in for.


def _post(receiver, path, body, headers=None):
    conn = http.client.HTTPConnection(receiver.host, receiver.port, timeout=5)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_receiver_validates_like_capture(posthog):
    ev = {"event": "e", "distinct_id": "d", "properties": {}}
    ok = {"api_key": API_KEY, "batch": [ev]}

    def post(doc, path="/batch/", raw=None, headers=None):
        return _post(posthog, path, raw if raw is not None else json.dumps(doc).encode(),
                     headers or {"Content-Type": "application/json"})

    assert post(ok) == (200, '{"status": "Ok"}')
    assert post(ok, path="/batch")[0] == 200
    assert post(ok, path="/nope/")[0] == 404
    assert post(dict(ev, api_key=API_KEY), path="/i/v0/e/")[0] == 200  # one event
    assert post([dict(ev, token=API_KEY)])[0] == 200                     # a bare array
    assert post({"batch": [ev]}) == (401, "event submitted without an api_key")
    assert post([dict(ev, token="phc_a"), dict(ev, token="phc_b")]) == \
        (401, "batch submitted with inconsistent api_key values")
    assert post(dict(ok, api_key="phx_personal")) == \
        (401, "API key is not valid: personal_api_key")
    assert post(dict(ok, api_key="k" * 65)) == (401, "API key is not valid: too_long")
    assert post(dict(ok, batch=[])) == (400, "request holds no event")
    assert post(dict(ok, batch=[dict(ev, event="")])) == \
        (400, "event submitted with an empty event name")
    no_id = {k: v for k, v in ev.items() if k != "distinct_id"}
    assert post(dict(ok, batch=[no_id])) == (400, "event submitted without a distinct_id")
    assert post(dict(ok, batch=[dict(no_id, properties={"distinct_id": "x"})]))[0] == 200
    assert post(dict(ok, batch=[dict(ev, distinct_id="")])) == \
        (400, "event submitted with an empty distinct_id")
    assert post(dict(ok, batch=[dict(ev, uuid="nope")]))[0] == 400
    assert post(dict(ok, sent_at="yesterday"))[0] == 400
    assert post(None, raw=b"{not json")[0] == 400
    raw = json.dumps(ok).encode()
    # gzip by header, by magic bytes alone, and a broken stream.
    assert post(None, raw=gzip.compress(raw), headers={"Content-Encoding": "gzip"})[0] == 200
    assert post(None, raw=gzip.compress(raw))[0] == 200
    assert post(None, raw=gzip.compress(raw)[:20], headers={"Content-Encoding": "gzip"})[0] \
        == 400
    big = dict(ok, batch=[dict(ev, properties={"pad": "x" * 1_000_001})])
    assert post(big) == (413, "maximum event size exceeded")
    st, _ = _post(posthog, "/batch/?beacon=1", raw, {"Content-Type": "application/json"})
    assert st == 204
    assert posthog.wait_for(lambda r: len(r.snapshot()) == 22, 5)
    assert len(posthog.events) == 8
