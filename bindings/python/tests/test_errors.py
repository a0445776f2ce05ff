"""Every kind of bad input raises its herald.Error subclass, with the
library's code and message."""

import os

import pytest

import herald
from conftest import dest, events


def check(e, cls, code, name, words=None):
    assert type(e) is cls, repr(e)
    assert isinstance(e, herald.Error)
    assert e.code == code and e.name == name
    assert e.message and isinstance(e.message, str)
    assert str(e).startswith("HERALD_E_%s: " % name)
    if words:
        assert words in e.message, e.message


def test_status_table_matches_the_header():
    header = (os.path.dirname(__file__) + "/../../../include/herald/herald.h")
    text = open(header).read()
    import re
    codes = dict((name, int(value)) for name, value in
                 re.findall(r"HERALD_E_([A-Z_]+)\s*=\s*(-\d+)", text))
    assert codes, "no HERALD_E_ codes found in herald.h"
    for name, value in codes.items():
        assert herald.STATUS_NAMES.get(value) == name, (name, value)
        cls = herald.ERROR_CLASSES[value]
        assert cls.code == value and cls.name == name
        e = herald._errors.error_for(value, "m")
        assert type(e) is cls and e.code == value
    unknown = herald._errors.error_for(-99, "future")
    assert type(unknown) is herald.Error and unknown.code == -99


def test_invalid_argument_from_binding_and_library(make_client):
    c = make_client()
    for call, words in [(lambda: c.track(""), "event"),
                        (lambda: c.track(None), "event name must be a str"),
                        (lambda: c.track(b"bytes"), "event name must be a str"),
                        (lambda: c.track("a\x00b"), "NUL"),
                        (lambda: c.identify(""), "user_id"),
                        (lambda: c.group(""), "group_id"),
                        (lambda: c.alias("", "u"), "previous_id"),
                        (lambda: c.alias("p", ""), "user_id"),
                        (lambda: c.page(7), "name must be a str"),
                        (lambda: c.flush(-1), "timeout"),
                        (lambda: c.flush("soon"), "timeout")]:
        with pytest.raises(herald.InvalidArgument) as ei:
            call()
        check(ei.value, herald.InvalidArgument, -1, "INVALID_ARGUMENT", words)
    # Refused by the C library itself: message from herald_last_error()
    with pytest.raises(herald.InvalidArgument) as ei:
        c.send({"type": "purchase"})
    check(ei.value, herald.InvalidArgument, -1, "INVALID_ARGUMENT", '"type" must be one of')
    with pytest.raises(herald.InvalidArgument) as ei:
        c.send({"type": "track"})
    check(ei.value, herald.InvalidArgument, -1, "INVALID_ARGUMENT", '"event" is required')
    with pytest.raises(herald.InvalidArgument) as ei:
        c.track("x", message_id="m" * 101)
    check(ei.value, herald.InvalidArgument, -1, "INVALID_ARGUMENT", "messageId")
    assert c.stats()["rejected"] == 3


def test_invalid_json_from_the_library(make_client):
    c = make_client()
    # 1 and "1" are distinct Python keys but the same JSON key: jansson
    # refuses the duplicate.
    with pytest.raises(herald.InvalidJSON) as ei:
        c.track("Dup", {1: "a", "1": "b"})
    check(ei.value, herald.InvalidJSON, -2, "INVALID_JSON", "properties")
    assert c.stats()["rejected"] == 1


def test_not_object(make_client):
    c = make_client()
    with pytest.raises(herald.NotObject) as ei:
        c.track("x", [1, 2])
    check(ei.value, herald.NotObject, -3, "NOT_OBJECT", "properties must be a dict")
    with pytest.raises(herald.NotObject):
        c.identify("u", "traits")
    with pytest.raises(herald.NotObject):
        c.send(["type", "track"])
    with pytest.raises(herald.NotObject) as ei:       # from the library
        c.track("x", context="not an object")
    check(ei.value, herald.NotObject, -3, "NOT_OBJECT", "context")


def test_too_large(make_client):
    c = make_client(max_event_bytes=1024)
    with pytest.raises(herald.TooLarge) as ei:
        c.track("Big", {"blob": "x" * 2000})
    check(ei.value, herald.TooLarge, -4, "TOO_LARGE", "max_event_bytes")
    c.track("Small", {"blob": "x"})


def test_queue_full(make_client):
    c = make_client(max_queue_events=2, overflow_policy="reject_new", deliver=False)
    c.track("1")
    c.track("2")
    with pytest.raises(herald.QueueFull) as ei:
        c.track("3")
    check(ei.value, herald.QueueFull, -5, "QUEUE_FULL")
    assert c.stats()["rejected"] == 1 and c.stats()["queued"] == 2


def test_storage_error(tmp_path):
    d = tmp_path / "a-directory"
    d.mkdir()
    with pytest.raises(herald.StorageError) as ei:
        herald.Client(db_path=str(d), deliver=False)
    check(ei.value, herald.StorageError, -6, "STORAGE")
    assert isinstance(ei.value, OSError)


def test_config_errors(tmp_path, receiver):
    db = str(tmp_path / "c.db")
    cases = [
        ({"db_path": db, "flush_intervall_ms": 5}, '"flush_intervall_ms"'),
        ({"db_path": db, "overflow_policy": "sometimes"}, '"overflow_policy"'),
        ({"db_path": db, "max_queue_events": -3}, '"max_queue_events"'),
        ({"db_path": db, "destinations": [{"name": "bad name!", "url": receiver.url()}]},
         "name must be"),
        ({"db_path": db, "destinations": [{"name": "x", "backend": "carrier-pigeon",
                                           "url": receiver.url()}]}, "carrier-pigeon"),
        ({"db_path": db, "destinations": [{"name": "x"}]}, '"url" is required'),
        ({}, "db_path is required"),
    ]
    for opts, words in cases:
        with pytest.raises(herald.ConfigError) as ei:
            herald.Client(**opts)
        check(ei.value, herald.ConfigError, -8, "CONFIG", words)
    with pytest.raises(herald.SerializationError) as ei:
        herald.Client(db_path=db, destinations=[{"name": "x", "url": b"bytes"}])
    assert ei.value.path == "options.destinations[0].url"


def test_closed(make_client):
    c = make_client()
    c.close()
    with pytest.raises(herald.Closed) as ei:
        c.track("x")
    check(ei.value, herald.Closed, -10, "CLOSED")


def test_disabled(make_client):
    c = make_client(deliver=False)
    with pytest.raises(herald.Disabled) as ei:
        c.flush(1)
    check(ei.value, herald.Disabled, -12, "DISABLED")


def test_no_consent(make_client, receiver):
    c = make_client(receiver, consent_required=True, consent_policy="drop")
    with pytest.raises(herald.NoConsent) as ei:
        c.track("Dropped")
    check(ei.value, herald.NoConsent, -13, "NO_CONSENT")
    c.set_consent(True)
    c.track("Kept")
    assert c.flush(10)
    assert [e["event"] for e in events(receiver, 1)] == ["Kept"]


def test_timeout_class_is_a_timeout_error():
    e = herald.Timeout("late")
    assert isinstance(e, TimeoutError) and e.code == -9 and e.name == "TIMEOUT"


def test_integrations_override_routes_between_destinations(make_client, receiver):
    from receiver import Receiver
    other = Receiver().start()
    try:
        c = make_client(destinations=[dest(receiver, "main"), dest(other, "backup")])
        c.track("Both")
        c.track("Main Only", integrations={"All": False, "main": True})
        c.track("Not Backup", integrations={"backup": False})
        assert c.flush(10)
        assert [e["event"] for e in events(receiver, 3)] == ["Both", "Main Only", "Not Backup"]
        assert [e["event"] for e in events(other, 1)] == ["Both"]
    finally:
        other.stop()
