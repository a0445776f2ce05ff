"""Conversion of Python values to the JSON text the C library takes.

Rules (docs/python.md, "JSON conversion"):

- dict (any Mapping) -> object; list/tuple -> array; str, bool, None as is;
- int -> integer, refused outside the signed 64-bit range (the library
  parses with jansson, which cannot hold larger integers);
- float -> number, NaN and +-Infinity refused;
- decimal.Decimal -> number (an integral value as an exact integer, others
  as the nearest double, the precision jansson keeps), non-finite refused;
- datetime.datetime with a tzinfo -> RFC 3339 string in UTC,
  "2024-05-01T12:00:00.250Z" (microseconds kept when not whole ms);
  a naive datetime is refused: herald cannot know its time zone;
- datetime.date -> "2024-05-01"; uuid.UUID -> its canonical string;
- dict keys must be str (int, float, bool and None keys are converted the
  way json.dumps does);
- anything else (bytes, set, arbitrary objects), strings holding a NUL
  character or lone surrogates, circular references -> SerializationError
  naming the path of the value, e.g. "properties.cart[2].price".

The common case goes through one json.dumps call; only when that fails, or
when the text may hold an integer too large for 64 bits, the value is walked
in Python to find and name the problem.
"""

import datetime
import decimal
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any, Optional

from ._errors import NotObject, SerializationError

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

# 19 digits in a row: an integer of that size may not fit in int64 (strings
# holding such runs only cost the slow, exact path).
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UTC = datetime.timezone.utc

_KEY_TYPES = (str, int, float, bool, type(None))


class _Fallback(Exception):
    """Raised by the fast path's default hook: take the slow path."""


def format_datetime(value: datetime.datetime, path: str = "value") -> str:
    """An aware datetime as an RFC 3339 UTC string with a Z suffix."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise SerializationError(
            "%s: naive datetime %s has no time zone; attach one, e.g. "
            "dt.replace(tzinfo=datetime.timezone.utc) or dt.astimezone()"
            % (path, value.isoformat()), path)
    try:
        utc = value.astimezone(_UTC)
    except (OverflowError, ValueError) as e:
        raise SerializationError("%s: datetime %s cannot be expressed in UTC: %s"
                                 % (path, value.isoformat(), e), path) from None
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _fast_default(o: Any) -> Any:
    if isinstance(o, datetime.datetime):
        if o.tzinfo is None:
            raise _Fallback()
        return format_datetime(o)
    if isinstance(o, datetime.date):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        if not o.is_finite():
            raise _Fallback()
        if o == o.to_integral_value():
            return int(o)
        return float(o)
    if isinstance(o, uuid.UUID):
        return str(o)
    if isinstance(o, Mapping):
        return dict(o)
    raise _Fallback()


def _child(path: str, key: Any) -> str:
    if isinstance(key, str) and _IDENT.match(key):
        return "%s.%s" % (path, key) if path else key
    return "%s[%r]" % (path, key)


def _check_str(s: str, path: str) -> str:
    if "\x00" in s:
        raise SerializationError("%s: string holds a NUL character (\\x00), which herald "
                                 "does not accept" % path, path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise SerializationError("%s: string is not valid Unicode (lone surrogate)" % path,
                                 path) from None
    return s


def _check_int(i: int, path: str) -> int:
    if i < INT64_MIN or i > INT64_MAX:
        raise SerializationError(
            "%s: integer %d is outside the signed 64-bit range [-2**63, 2**63-1]; "
            "send it as a string" % (path, i), path)
    return i


def _check_float(f: float, path: str) -> float:
    if not math.isfinite(f):
        raise SerializationError("%s: %r is not a JSON number (NaN and Infinity are refused)"
                                 % (path, f), path)
    return f


def _convert(value: Any, path: str, active: set) -> Any:
    """Walk `value` and return plain JSON data, or raise SerializationError."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return _check_str(value, path)
    if isinstance(value, int):
        return _check_int(value, path)
    if isinstance(value, float):
        return _check_float(value, path)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise SerializationError("%s: Decimal %s is not a JSON number" % (path, value), path)
        if value == value.to_integral_value():
            return _check_int(int(value), path)
        return _check_float(float(value), path)
    if isinstance(value, datetime.datetime):
        return format_datetime(value, path)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        ident = id(value)
        if ident in active:
            raise SerializationError("%s: circular reference" % path, path)
        active.add(ident)
        try:
            out = {}
            for k, v in value.items():
                if not isinstance(k, _KEY_TYPES):
                    raise SerializationError(
                        "%s: key %r is a %s; object keys must be strings"
                        % (path, k, type(k).__name__), path)
                if isinstance(k, str):
                    _check_str(k, _child(path, k))
                elif isinstance(k, float):
                    _check_float(k, _child(path, k))
                out[k] = _convert(v, _child(path, k), active)
            return out
        finally:
            active.discard(ident)
    if isinstance(value, (list, tuple)):
        ident = id(value)
        if ident in active:
            raise SerializationError("%s: circular reference" % path, path)
        active.add(ident)
        try:
            return [_convert(v, "%s[%d]" % (path, i), active) for i, v in enumerate(value)]
        finally:
            active.discard(ident)
    tname = type(value).__name__
    if isinstance(value, (bytes, bytearray, memoryview)):
        hint = "decode it to str, or base64-encode it"
    elif isinstance(value, (set, frozenset)):
        hint = "convert it to a list"
    elif isinstance(value, datetime.time):
        hint = "format it as a string"
    else:
        hint = ("supported: dict, list, tuple, str, int, float, bool, None, datetime, "
                "date, Decimal, UUID")
    raise SerializationError("%s: a value of type %s cannot be converted to JSON (%s)"
                             % (path, tname, hint),
                             path)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=_fast_default)


def to_json(value: Any, path: str) -> bytes:
    """Any convertible value as compact UTF-8 JSON text."""
    try:
        text = _dumps(value)
        if _LONG_DIGITS.search(text) is None and "\\u0000" not in text:
            return text.encode("utf-8")
    except (_Fallback, TypeError, ValueError, RecursionError):
        pass
    try:
        plain = _convert(value, path, set())
    except RecursionError:
        raise SerializationError("%s: nested too deeply" % path, path) from None
    return json.dumps(plain, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def object_json(value: Optional[Any], what: str) -> Optional[bytes]:
    """A dict (Mapping) as JSON object text; None or an empty dict -> None
    (the library's "empty object"). Anything else raises NotObject."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise NotObject("%s must be a dict (a JSON object), not %s"
                        % (what, type(value).__name__))
    if not value:
        return None
    return to_json(value, what)


def plain(value: Any, path: str) -> Any:
    """Convert for embedding into a message dict built by the binding."""
    try:
        return _convert(value, path, set())
    except RecursionError:
        raise SerializationError("%s: nested too deeply" % path, path) from None
