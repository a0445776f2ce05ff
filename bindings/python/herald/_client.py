"""herald.Client: the C client behind a Python object."""

import ctypes
import json
import os
import threading
from typing import Any, Dict, List, Mapping, Optional

from . import _errors
from ._errors import Closed, Error, InvalidArgument, NotObject, error_for
from ._json import object_json, to_json
from ._lib import load

_INT_MAX = 2**31 - 1

# Per-call overrides: keyword -> message field (herald_send).
OVERRIDES = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "timestamp": "timestamp",
    "context": "context",
    "message_id": "messageId",
    "integrations": "integrations",
}


def _ms(timeout: Optional[float], what: str) -> int:
    """Seconds (float) to the C library's int milliseconds; None -> -1
    (no limit)."""
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidArgument("%s must be a number of seconds or None, not %s"
                              % (what, type(timeout).__name__))
    if timeout != timeout or timeout < 0:
        raise InvalidArgument("%s must be >= 0 seconds or None, got %r" % (what, timeout))
    ms = timeout * 1000.0
    return _INT_MAX if ms >= _INT_MAX else int(ms + 0.5)


def _cstr(value: Any, what: str, required: bool = True) -> Optional[bytes]:
    """A str argument as UTF-8 bytes for the C call."""
    if value is None and not required:
        return None
    if type(value) is not str and not isinstance(value, str):
        raise InvalidArgument("%s must be a str, not %s" % (what, type(value).__name__))
    if required and not value:
        raise InvalidArgument("%s must be a non-empty string" % what)
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("%s is not valid Unicode (lone surrogate)" % what) from None
    if b"\x00" in data:
        raise InvalidArgument("%s holds a NUL character" % what)
    return data


def _obj(value: Any, what: str) -> bool:
    """True for a non-empty Mapping, False for None or an empty one; raises
    NotObject for anything else."""
    if value is None:
        return False
    if not isinstance(value, Mapping):
        raise NotObject("%s must be a dict (a JSON object), not %s"
                        % (what, type(value).__name__))
    return bool(value)


def _check_overrides(method: str, overrides: Mapping[str, Any]) -> None:
    unknown = [k for k in overrides if k not in OVERRIDES]
    if unknown:
        raise TypeError("%s() got unexpected keyword argument%s %s; per-call overrides are %s"
                        % (method, "s" if len(unknown) > 1 else "",
                           ", ".join(repr(k) for k in unknown), ", ".join(OVERRIDES)))


class Client:
    """A herald client: a durable queue file plus a delivery thread.

    ``Client(**options)`` takes the options of docs/configuration.md as
    keyword arguments (db_path is required), e.g.::

        Client(db_path="app.db",
               destinations=[{"name": "main", "url": "https://.../v1/batch"}],
               flush_interval_ms=1000)

    plus ``library=PATH`` to pick the shared library explicitly (else
    $HERALD_LIBRARY, else the system's libherald.so.0).

    Every method may be called from any thread at the same time. close()
    waits for calls in progress on other threads, then releases the client;
    later calls raise herald.Closed. Used as a context manager, the client is
    closed on exit with ``close_timeout`` seconds (default 5.0) to deliver.
    """

    #: Seconds the context manager's exit gives close() to deliver.
    close_timeout: float = 5.0

    def __init__(self, *, library: Optional[str] = None, **options: Any) -> None:
        self._handle: Optional[int] = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0          # calls inside the C library right now
        self._closing = False
        self._close_result: Optional[bool] = None
        self._lib = load(library)
        self.library_path: str = self._lib._name
        if "db_path" in options and isinstance(options["db_path"], os.PathLike):
            options["db_path"] = os.fspath(options["db_path"])
        config = to_json(options, "options")
        out = ctypes.c_void_p()
        st = self._lib.herald_open_json(ctypes.byref(out), config)
        if st != 0:
            raise error_for(st, self._open_error(st))
        self._handle = out.value
        self.db_path: str = str(options.get("db_path"))

    # -- plumbing -----------------------------------------------------------
    def _open_error(self, st: int) -> str:
        # The reason of this thread's last failed herald_open*().
        buf = ctypes.create_string_buffer(1024)
        n = self._lib.herald_last_error(None, buf, len(buf))
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            self._lib.herald_last_error(None, buf, len(buf))
        return buf.value.decode("utf-8", "replace") or self._strerror(st)

    def _strerror(self, st: int) -> str:
        return self._lib.herald_strerror(st).decode("utf-8", "replace")

    def _enter(self) -> int:
        with self._lock:
            if self._closing or self._handle is None:
                raise Closed("the client is closed")
            self._active += 1
            return self._handle

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._closing:
                self._idle.notify_all()

    def _error(self, handle: int, st: int) -> Error:
        # NB: the client's last error is shared with other threads and the
        # delivery thread; read it right after the failure.
        buf = ctypes.create_string_buffer(512)
        n = self._lib.herald_last_error(handle, buf, len(buf))
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            self._lib.herald_last_error(handle, buf, len(buf))
        message = buf.value.decode("utf-8", "replace") or self._strerror(st)
        return error_for(st, message)

    def _call(self, fn: Any, *args: Any) -> int:
        handle = self._enter()
        try:
            st = fn(handle, *args)
            if st < 0 and st != _errors.E_TIMEOUT:
                raise self._error(handle, st)
            return st
        finally:
            self._leave()

    def _send(self, method: str, message: Dict[str, Any], overrides: Mapping[str, Any]) -> None:
        _check_overrides(method, overrides)
        for key, field in OVERRIDES.items():
            if key in overrides and overrides[key] is not None:
                message[field] = overrides[key]
        self._call(self._lib.herald_send, to_json(message, ""))

    # -- events ---------------------------------------------------------------
    def track(self, name: str, properties: Optional[Mapping[str, Any]] = None,
              **overrides: Any) -> None:
        """Queue a track event named `name` ("Order Completed"). Raises
        herald.Error subclasses (docs/python.md)."""
        if overrides:
            _cstr(name, "event name")
            msg: Dict[str, Any] = {"type": "track", "event": name}
            if _obj(properties, "properties"):
                msg["properties"] = properties
            return self._send("track", msg, overrides)
        self._call(self._lib.herald_track, _cstr(name, "event name"),
                   object_json(properties, "properties"))

    def page(self, name: Optional[str] = None, properties: Optional[Mapping[str, Any]] = None,
             **overrides: Any) -> None:
        """Queue a page view; name may be None."""
        self._view("page", self._lib.herald_page, name, properties, overrides)

    def screen(self, name: Optional[str] = None, properties: Optional[Mapping[str, Any]] = None,
               **overrides: Any) -> None:
        """Queue a screen view; name may be None."""
        self._view("screen", self._lib.herald_screen, name, properties, overrides)

    def _view(self, kind: str, fn: Any, name: Optional[str],
              properties: Optional[Mapping[str, Any]], overrides: Mapping[str, Any]) -> None:
        cname = _cstr(name, "name", required=False)
        if overrides:
            msg: Dict[str, Any] = {"type": kind}
            if name is not None:
                msg["name"] = name
            if _obj(properties, "properties"):
                msg["properties"] = properties
            return self._send(kind, msg, overrides)
        self._call(fn, cname, object_json(properties, "properties"))

    def identify(self, user_id: str, traits: Optional[Mapping[str, Any]] = None,
                 **overrides: Any) -> None:
        """Set the user id of this and every later event (persisted in the
        queue file) and queue an identify event with traits."""
        if "user_id" in overrides:
            raise TypeError("identify() got multiple values for argument 'user_id'")
        uid = _cstr(user_id, "user_id")
        if overrides:
            msg: Dict[str, Any] = {"type": "identify", "userId": user_id}
            if _obj(traits, "traits"):
                msg["traits"] = traits
            return self._send("identify", msg, overrides)
        self._call(self._lib.herald_identify, uid, object_json(traits, "traits"))

    def group(self, group_id: str, traits: Optional[Mapping[str, Any]] = None,
              **overrides: Any) -> None:
        """Queue a group event."""
        gid = _cstr(group_id, "group_id")
        if overrides:
            msg: Dict[str, Any] = {"type": "group", "groupId": group_id}
            if _obj(traits, "traits"):
                msg["traits"] = traits
            return self._send("group", msg, overrides)
        self._call(self._lib.herald_group, gid, object_json(traits, "traits"))

    def alias(self, previous_id: str, user_id: str, **overrides: Any) -> None:
        """Queue an alias event linking previous_id to user_id."""
        if "user_id" in overrides:
            raise TypeError("alias() got multiple values for argument 'user_id'")
        pid = _cstr(previous_id, "previous_id")
        uid = _cstr(user_id, "user_id")
        if overrides:
            msg = {"type": "alias", "previousId": previous_id, "userId": user_id}
            return self._send("alias", msg, overrides)
        self._call(self._lib.herald_alias, pid, uid)

    def send(self, message: Mapping[str, Any]) -> None:
        """Queue a whole Segment message given as a dict (herald_send):
        "type" is required; messageId, timestamp, userId... are kept."""
        _obj(message, "message")
        self._call(self._lib.herald_send, to_json(message, ""))

    def reset(self) -> None:
        """Forget the user (as on logout): clears the user id and starts a new
        anonymous id for later events."""
        self._call(self._lib.herald_reset)

    # -- consent and erasure (libraries that have them) ------------------------
    def _optional(self, name: str) -> Any:
        fn = getattr(self._lib, name, None)
        if fn is None or fn.argtypes is None:
            raise Error("this libherald (%s) has no %s()" % (self.library_path, name),
                        _errors.E_INVALID_ARGUMENT)
        return fn

    def set_consent(self, granted: bool) -> None:
        """Grant or revoke consent to analytics (persisted in the queue
        file); granting releases events held while it was not granted."""
        self._call(self._optional("herald_set_consent"), 1 if granted else 0)

    @property
    def consent(self) -> bool:
        """Whether consent is granted."""
        out = ctypes.c_int()
        self._call(self._optional("herald_get_consent"), ctypes.byref(out))
        return bool(out.value)

    def erase_user(self) -> int:
        """Delete the current user's queued events and dead letters and start
        a new identity; returns how many rows were deleted."""
        n = ctypes.c_uint64()
        self._call(self._optional("herald_erase_user"), ctypes.byref(n))
        return n.value

    # -- delivery ---------------------------------------------------------------
    def flush(self, timeout: Optional[float] = 10.0) -> bool:
        """Wait up to `timeout` seconds (None: no limit) until every queued
        event is delivered or dead-lettered. Returns True when the queue is
        empty, False on timeout (the rest stays queued). Raises
        herald.Disabled when the client was opened with deliver=False."""
        ms = _ms(timeout, "timeout")
        return self._call(self._lib.herald_flush, ms) == 0

    def close(self, timeout: Optional[float] = 5.0) -> bool:
        """Deliver for at most `timeout` seconds (0: not at all, None: no
        limit), stop the delivery thread and release the client. Returns True
        if the queue drained, False if events remain on disk for the next open.
        Waits for calls in progress on other threads first. Closing again
        returns the first result."""
        ms = _ms(timeout, "timeout")
        if ms < 0:
            ms = _INT_MAX
        with self._lock:
            if self._closing:
                while self._handle is not None:
                    self._idle.wait()
                return bool(self._close_result)
            if self._handle is None:
                return bool(self._close_result)
            self._closing = True
            while self._active:
                self._idle.wait()
            handle = self._handle
        st = -1
        try:
            st = self._lib.herald_close(handle, ms)
        finally:
            with self._lock:
                self._close_result = st == 0
                self._handle = None
                self._idle.notify_all()
        return st == 0

    @property
    def closed(self) -> bool:
        return self._handle is None or self._closing

    # -- observability ----------------------------------------------------------
    def _json_out(self, fn: Any, *args: Any) -> Any:
        out = ctypes.c_void_p()
        self._call(fn, *args, ctypes.byref(out))
        try:
            return json.loads(ctypes.string_at(out.value).decode("utf-8"))
        finally:
            self._lib.herald_free(out)

    def stats(self) -> Dict[str, Any]:
        """Counters of the queue file (queued, queued_bytes, pending,
        accepted, rejected, sent, retried, dead, evicted, dead_letters,
        requests, bytes_raw, bytes_sent), plus db_path, last_error and
        destinations: [{name, backend, pending, paused_until_ms,
        consecutive_failures}]."""
        return self._json_out(self._lib.herald_stats_json)

    def dead_letters(self, limit: int = 0) -> List[Dict[str, Any]]:
        """Dead letters, oldest first, at most `limit` (0: all)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidArgument("limit must be an int >= 0")
        return self._json_out(self._lib.herald_dead_letters_json, limit)

    def replay_dead_letters(self, destination: Optional[str] = None) -> int:
        """Queue dead letters again (of one destination, or all); returns how
        many."""
        n = ctypes.c_uint64()
        self._call(self._lib.herald_dead_letters_replay,
                   _cstr(destination, "destination", required=False), ctypes.byref(n))
        return n.value

    # -- protocol ---------------------------------------------------------------
    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(self.close_timeout)

    def __del__(self) -> None:
        # Never blocks: no delivery wait; queued events stay in the file.
        handle = getattr(self, "_handle", None)
        if handle is None or getattr(self, "_closing", True):
            return
        self._handle = None
        try:
            self._lib.herald_close(handle, 0)
        except Exception:  # interpreter shutdown: ctypes may be gone
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return "<herald.Client %s db_path=%r>" % (state, getattr(self, "db_path", None))
