"""herald.Client end to end: every method into the loopback receiver,
per-call overrides, stats, flush and close, the closed client."""

import datetime
import gc
import gzip
import json
import time
import uuid

import pytest

import herald
from conftest import LIBRARY, dest, events, wait_until


def by_type(events, kind):
    return [e for e in events if e["type"] == kind]


def test_version_and_library(make_client):
    assert herald.library_version() == "0.1.0"
    assert herald.library_version(str(LIBRARY)) == "0.1.0"
    c = make_client()
    assert c.library_path == str(LIBRARY)
    assert not c.closed
    assert "open" in repr(c)


def test_every_method_arrives(make_client, receiver):
    c = make_client(receiver, gzip_min_bytes=0)
    c.track("Order Completed", {"order_id": "o-1", "total": 12.5, "items": [1, 2]})
    c.page("Pricing", {"path": "/pricing"})
    c.page()
    c.screen("Settings", {"tab": "privacy"})
    c.screen(None, {"tab": "none"})
    c.identify("user-42", {"plan": "pro", "seats": 12})
    c.track("After Identify")
    c.group("company-7", {"name": "ACME"})
    c.alias("anon-previous", "user-42")
    before_reset = c.stats()["accepted"]
    c.reset()
    c.track("After Reset")
    assert c.flush(15) is True

    ev = events(receiver, 10)
    assert len(ev) == 10, [e["type"] for e in ev]
    assert len({e["messageId"] for e in ev}) == 10
    assert not receiver.duplicates()
    track = by_type(ev, "track")
    assert [t["event"] for t in track] == ["Order Completed", "After Identify", "After Reset"]
    assert track[0]["properties"] == {"order_id": "o-1", "total": 12.5, "items": [1, 2]}
    assert "userId" not in track[0]
    assert track[1]["userId"] == "user-42"
    assert "userId" not in track[2]
    assert track[2]["anonymousId"] != track[0]["anonymousId"]
    pages = by_type(ev, "page")
    assert pages[0]["name"] == "Pricing" and pages[0]["properties"]["path"] == "/pricing"
    assert "name" not in pages[1] and pages[1]["properties"] == {}
    screens = by_type(ev, "screen")
    assert screens[0]["name"] == "Settings" and screens[0]["properties"] == {"tab": "privacy"}
    assert "name" not in screens[1]
    ident = by_type(ev, "identify")[0]
    assert ident["userId"] == "user-42" and ident["traits"] == {"plan": "pro", "seats": 12}
    grp = by_type(ev, "group")[0]
    assert grp["groupId"] == "company-7" and grp["traits"] == {"name": "ACME"}
    al = by_type(ev, "alias")[0]
    assert al["previousId"] == "anon-previous" and al["userId"] == "user-42"
    for e in ev:
        assert e["context"]["library"]["name"] == "herald"

    # What went over the wire: gzipped Segment batches whose gunzipped body is
    # exactly what the receiver decoded.
    reqs = [r for r in receiver.snapshot() if r.status == 200]
    assert reqs
    for r in reqs:
        assert r.headers.get("content-encoding") == "gzip"
        body = json.loads(gzip.decompress(r.raw_body))
        assert body == r.json
        assert isinstance(body["batch"], list) and body["sentAt"]
    assert c.stats()["accepted"] == before_reset + 1


def test_overrides_build_whole_messages(make_client, receiver):
    c = make_client(receiver)
    ts = datetime.datetime(2024, 5, 1, 14, 30, 0, 250000,
                           tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    c.track("Imported", {"n": 1}, user_id="u-9", anonymous_id="a-9", timestamp=ts,
            context={"ip": "203.0.113.9", "locale": "fr-FR"}, message_id="msg-track-1",
            integrations={"All": True})
    c.track("String Timestamp", timestamp="2023-01-02T03:04:05Z", message_id="msg-track-2")
    c.page("Home", {"a": 1}, message_id="msg-page", user_id="u-page")
    c.screen("Main", message_id="msg-screen", anonymous_id="a-screen")
    c.identify("u-ident", {"email": "x@example.com"}, message_id="msg-ident",
               anonymous_id="a-ident")
    c.group("g-1", {"plan": "team"}, message_id="msg-group", user_id="u-group")
    c.alias("old-id", "new-id", message_id="msg-alias", timestamp=ts)
    c.track("No Override")
    assert c.flush(15)

    got = {e["messageId"]: e for e in events(receiver, 8)}
    t = got["msg-track-1"]
    assert t["type"] == "track" and t["event"] == "Imported" and t["properties"] == {"n": 1}
    assert t["userId"] == "u-9" and t["anonymousId"] == "a-9"
    assert t["timestamp"] == "2024-05-01T12:30:00.250Z"
    # Redaction is on by default: the IP is personal data, the locale is not.
    assert t["context"]["ip"] == "[ip]" and t["context"]["locale"] == "fr-FR"
    assert t["integrations"] == {"All": True}
    assert got["msg-track-2"]["timestamp"] == "2023-01-02T03:04:05Z"
    assert got["msg-page"]["type"] == "page" and got["msg-page"]["name"] == "Home"
    assert got["msg-page"]["userId"] == "u-page" and got["msg-page"]["properties"] == {"a": 1}
    assert got["msg-screen"]["anonymousId"] == "a-screen"
    assert got["msg-ident"]["userId"] == "u-ident"
    assert got["msg-ident"]["traits"] == {"email": "[email]"}
    assert got["msg-ident"]["anonymousId"] == "a-ident"
    assert got["msg-group"]["groupId"] == "g-1" and got["msg-group"]["userId"] == "u-group"
    assert got["msg-alias"]["previousId"] == "old-id" and got["msg-alias"]["userId"] == "new-id"
    assert got["msg-alias"]["timestamp"] == "2024-05-01T12:30:00.250Z"
    # identify through herald_send sets the user of later events too
    later = [e for e in receiver.events if e.get("event") == "No Override"][0]
    assert later["userId"] == "u-ident"


def test_send_whole_message(make_client, receiver):
    c = make_client(receiver)
    c.send({"type": "track", "event": "Raw", "messageId": "raw-1",
            "properties": {"when": datetime.date(2024, 2, 29)}})
    assert c.flush(10)
    (e,) = events(receiver, 1)
    assert e["messageId"] == "raw-1" and e["properties"] == {"when": "2024-02-29"}


def test_unknown_override_is_a_type_error(make_client):
    c = make_client()
    with pytest.raises(TypeError, match="userId"):
        c.track("x", userId="camel")
    with pytest.raises(TypeError, match="multiple values"):
        c.identify("u", user_id="again")
    with pytest.raises(TypeError):
        c.alias("a", "b", user_id="c")
    assert c.stats()["accepted"] == 0


def test_stats(make_client, receiver):
    c = make_client(receiver)
    s = c.stats()
    for key in ("queued", "queued_bytes", "pending", "accepted", "rejected", "sent", "retried",
                "dead", "evicted", "dead_letters", "requests", "bytes_raw", "bytes_sent"):
        assert isinstance(s[key], int), key
    assert s["db_path"] == make_client.db
    assert s["destinations"][0]["name"] == "main"
    for i in range(25):
        c.track("Counted", {"i": i})
    with pytest.raises(herald.InvalidArgument):
        c.send({"type": "nope"})           # refused by the library: counted
    s = c.stats()
    assert s["accepted"] == 25 and s["rejected"] == 1
    assert s["queued"] + s["sent"] >= 25
    assert c.flush(10)
    s = c.stats()
    assert s["queued"] == 0 and s["pending"] == 0 and s["sent"] == 25
    assert s["requests"] >= 1 and s["bytes_raw"] > 0
    assert s["destinations"][0]["pending"] == 0
    assert c.dead_letters() == []
    assert c.replay_dead_letters() == 0


def test_flush_times_out_with_receiver_down(make_client, receiver):
    receiver.stop()                         # connections refused from now on
    c = make_client(receiver, retry_base_ms=100, retry_max_delay_ms=200)
    c.track("Waiting", {"k": "v"})
    t0 = time.monotonic()
    assert c.flush(0.6) is False
    took = time.monotonic() - t0
    assert 0.5 <= took < 3.0, took
    s = c.stats()
    assert s["pending"] == 1 and s["queued"] == 1
    assert c.flush(0) is False
    receiver.start()                        # same port again
    assert c.flush(15) is True
    assert [e["event"] for e in events(receiver, 1)] == ["Waiting"]


def test_close_with_receiver_down_keeps_events(make_client, receiver):
    receiver.stop()
    c = make_client(receiver)
    c.track("Kept")
    t0 = time.monotonic()
    assert c.close(0.3) is False
    assert time.monotonic() - t0 < 3.0
    assert c.closed
    assert c.close() is False               # closing again: same answer
    receiver.start()
    c2 = make_client(receiver)
    assert c2.flush(15)
    assert [e["event"] for e in events(receiver, 1)] == ["Kept"]


def test_context_manager_delivers_and_closes(make_client, receiver, tmp_path):
    cfg = {"db_path": str(tmp_path / "cm.db"), "destinations": [dest(receiver)],
           "flush_interval_ms": 5000}
    with herald.Client(**cfg) as c:
        c.track("In Context")
        assert not c.closed
    assert c.closed
    assert [e["event"] for e in events(receiver, 1)] == ["In Context"]
    with pytest.raises(herald.Closed):
        c.track("x")


def test_closed_client_raises_closed_never_crashes(make_client):
    c = make_client()
    assert c.close() is True
    for call in (lambda: c.track("x"), lambda: c.page("p"), lambda: c.screen("s"),
                 lambda: c.identify("u"), lambda: c.group("g"), lambda: c.alias("a", "b"),
                 lambda: c.reset(), lambda: c.flush(1), lambda: c.stats(),
                 lambda: c.send({"type": "track", "event": "e"}),
                 lambda: c.track("x", user_id="u"), lambda: c.dead_letters()):
        with pytest.raises(herald.Closed) as ei:
            call()
        assert ei.value.code == -10 and ei.value.name == "CLOSED"
    assert c.close() is True


def test_del_does_not_block(receiver, tmp_path):
    receiver.stop()                         # delivery would wait forever
    c = herald.Client(db_path=str(tmp_path / "d.db"), destinations=[dest(receiver)],
                      flush_interval_ms=0, retry_base_ms=50, connect_timeout_ms=5000)
    for i in range(10):
        c.track("Pending", {"i": i})
    t0 = time.monotonic()
    del c
    gc.collect()
    assert time.monotonic() - t0 < 1.0
    # the events are still in the file
    c2 = herald.Client(db_path=str(tmp_path / "d.db"), deliver=False)
    assert c2.stats()["queued"] == 10
    c2.close()


def test_disabled_delivery_queues_only(make_client, receiver):
    c = make_client(receiver, deliver=False)
    c.track("Queued Only")
    with pytest.raises(herald.Disabled) as ei:
        c.flush(1)
    assert ei.value.code == -12
    assert c.stats()["queued"] == 1
    assert c.close() is False
    c2 = make_client(receiver)             # a delivering open adopts them
    assert c2.flush(10)
    assert [e["event"] for e in events(receiver, 1)] == ["Queued Only"]


def test_consent_and_erase(make_client, receiver):
    c = make_client(receiver, consent_required=True)
    assert c.consent is False
    c.track("Held")
    c.flush(0.3)                            # held: nothing may be sent
    assert receiver.events == [] and receiver.snapshot() == []
    c.set_consent(True)
    assert c.consent is True
    assert c.flush(10)
    assert [e["event"] for e in events(receiver, 1)] == ["Held"]
    assert isinstance(c.erase_user(), int)


def test_library_argument_and_missing_library(tmp_path):
    c = herald.Client(library=str(LIBRARY), db_path=str(tmp_path / "l.db"), deliver=False)
    assert c.library_path == str(LIBRARY)
    c.close()
    with pytest.raises(herald.ConfigError) as ei:
        herald.Client(library=str(tmp_path / "nope.so"), db_path=str(tmp_path / "x.db"))
    assert "nope.so" in ei.value.message and "HERALD_LIBRARY" in ei.value.message


def test_uuid_and_pathlike_options(make_client, receiver, tmp_path):
    c = herald.Client(db_path=tmp_path / "p.db", destinations=[dest(receiver)],
                      flush_interval_ms=50)
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    c.track("U", {"id": u})
    assert c.flush(10)
    c.close()
    assert events(receiver, 1)[0]["properties"] == {"id": str(u)}
    assert wait_until(lambda: (tmp_path / "p.db").exists(), 1)
