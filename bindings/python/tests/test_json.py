"""JSON conversion: what arrives for each Python type, and the clear error
for each value that has no JSON form."""

import datetime
import decimal
import uuid
from collections import OrderedDict

import pytest

import herald
from conftest import events

UTC = datetime.timezone.utc


def test_values_arrive_as_json(make_client, receiver):
    c = make_client(receiver)
    props = {
        "str": "héllo ✓ 𝄞",
        "int": 42,
        "neg": -7,
        "int64_max": 2**63 - 1,
        "int64_min": -(2**63),
        "float": 0.1,
        "big_float": 1e300,
        "true": True,
        "none": None,
        "list": [1, "two", None, [3]],
        "tuple": (1, 2),
        "nested": {"a": {"b": {"c": [{"d": 1}]}}},
        "ordered": OrderedDict([("z", 1), ("a", 2)]),
        "aware": datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
        "aware_ms": datetime.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC),
        "aware_us": datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "offset": datetime.datetime(2024, 5, 1, 23, 30, tzinfo=datetime.timezone(
            datetime.timedelta(hours=-5))),
        "date": datetime.date(2024, 2, 29),
        "dec_int": decimal.Decimal("12"),
        "dec_big": decimal.Decimal("9223372036854775807"),
        "dec_frac": decimal.Decimal("19.99"),
        "uuid": uuid.UUID(int=1),
        1: "int key",
        "digits": "12345678901234567890123",  # a long digit run in a string
    }
    c.track("Types", props)
    assert c.flush(10)
    (e,) = events(receiver, 1)
    p = e["properties"]
    assert p["str"] == "héllo ✓ 𝄞"
    assert p["int"] == 42 and p["neg"] == -7
    assert p["int64_max"] == 2**63 - 1 and p["int64_min"] == -(2**63)
    assert p["float"] == 0.1 and p["big_float"] == 1e300
    assert p["true"] is True and p["none"] is None
    assert p["list"] == [1, "two", None, [3]] and p["tuple"] == [1, 2]
    assert p["nested"] == {"a": {"b": {"c": [{"d": 1}]}}}
    assert p["ordered"] == {"z": 1, "a": 2}
    assert p["aware"] == "2024-05-01T12:00:00.000Z"
    assert p["aware_ms"] == "2024-05-01T12:00:00.123Z"
    assert p["aware_us"] == "2024-05-01T12:00:00.123456Z"
    assert p["offset"] == "2024-05-02T04:30:00.000Z"
    assert p["date"] == "2024-02-29"
    assert p["dec_int"] == 12 and isinstance(p["dec_int"], int)
    assert p["dec_big"] == 2**63 - 1
    assert p["dec_frac"] == 19.99
    assert p["uuid"] == "00000000-0000-0000-0000-000000000001"
    assert p["1"] == "int key"
    assert p["digits"] == "12345678901234567890123"


def circular_dict():
    d = {"a": 1}
    d["self"] = d
    return d


def circular_list():
    lst = [1]
    lst.append(lst)
    return lst


class Thing:
    pass


BAD = [
    ("nan", float("nan"), "properties.v", "NaN"),
    ("inf", float("inf"), "properties.v", "Infinity"),
    ("-inf", float("-inf"), "properties.v", "Infinity"),
    ("int64+1", 2**63, "properties.v", "64-bit"),
    ("int64-1", -(2**63) - 1, "properties.v", "64-bit"),
    ("huge int in list", [1, 10**30], "properties.v[1]", "64-bit"),
    ("decimal nan", decimal.Decimal("NaN"), "properties.v", "not a JSON number"),
    ("decimal huge", decimal.Decimal("1e30"), "properties.v", "64-bit"),
    ("bytes", b"\x00\x01", "properties.v", "bytes"),
    ("bytearray", bytearray(b"a"), "properties.v", "bytearray"),
    ("set", {1, 2}, "properties.v", "set"),
    ("frozenset", frozenset(), "properties.v", "frozenset"),
    ("object", Thing(), "properties.v", "Thing"),
    ("nested object", {"deep": [{"x": object()}]}, "properties.v.deep[0].x", "object"),
    ("naive datetime", datetime.datetime(2024, 1, 1), "properties.v", "naive datetime"),
    ("time", datetime.time(12, 0), "properties.v", "time"),
    ("circular dict", circular_dict(), "properties.v.self", "circular"),
    ("circular list", circular_list(), "properties.v[1]", "circular"),
    ("tuple key", {(1, 2): "x"}, "properties.v", "keys must be strings"),
    ("NUL", "a\x00b", "properties.v", "NUL"),
    ("lone surrogate", "\ud800", "properties.v", "surrogate"),
    ("odd key", {"a b": {"c": b""}}, "properties.v['a b'].c", "bytes"),
]


@pytest.mark.parametrize("label,value,path,words", BAD, ids=[b[0] for b in BAD])
def test_unconvertible_values_raise_serialization_error(make_client, label, value, path, words):
    c = make_client()
    with pytest.raises(herald.SerializationError) as ei:
        c.track("Bad", {"v": value})
    e = ei.value
    assert isinstance(e, herald.Error) and isinstance(e, herald.InvalidArgument)
    assert isinstance(e, TypeError) and isinstance(e, ValueError)
    assert e.code == -1 and e.name == "INVALID_ARGUMENT"
    assert e.path == path, e.message
    assert e.message.startswith(path + ":"), e.message
    assert words in e.message, e.message
    # Same through the override path (herald_send) and for traits
    with pytest.raises(herald.SerializationError) as ei2:
        c.track("Bad", {"v": value}, user_id="u")
    assert ei2.value.path == path
    with pytest.raises(herald.SerializationError):
        c.identify("u", {"v": value})
    assert c.stats()["accepted"] == 0


def test_bad_override_values(make_client):
    c = make_client()
    with pytest.raises(herald.SerializationError) as ei:
        c.track("x", timestamp=datetime.datetime(2024, 1, 1))
    assert ei.value.path == "timestamp"
    with pytest.raises(herald.SerializationError) as ei:
        c.track("x", context={"ip": {1, 2}})
    assert ei.value.path == "context.ip"
    with pytest.raises(herald.InvalidArgument) as ei:   # from the library
        c.track("x", timestamp="yesterday")
    assert "RFC 3339" in ei.value.message


def test_deep_nesting_is_refused_clearly(make_client):
    c = make_client()
    v = []
    for _ in range(5000):
        v = [v]
    with pytest.raises(herald.SerializationError, match="nested too deeply"):
        c.track("Deep", {"v": v})


def test_to_json_is_public():
    assert herald.to_json({"a": datetime.date(2020, 1, 2)}, "x") == b'{"a":"2020-01-02"}'
