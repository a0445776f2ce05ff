#!/usr/bin/env python3
"""A loopback PostHog capture service for herald's tests: it answers as
PostHog's Rust capture (``rust/capture``) does (BACKENDS.md section 4) and
records what it accepted.

Validation, in capture's order:

- paths: ``/batch`` and ``/batch/`` (body limit 20 MB); ``/i/v0/e``, ``/e``,
  ``/capture``, ``/track``, ``/engage`` with or without a trailing ``/``
  (2 MB); anything else is 404. POST only here (capture also routes GET
  and answers OPTIONS); a body over the path's limit is ``413`` (axum's
  body limit);
- compression: the ``?compression=`` hint (``gzip``, ``gzip-js``), else
  ``Content-Encoding`` (``gzip``, ``gzip-js``); gzip magic bytes ``1f 8b 08``
  are decoded whatever the hint says. A gzip stream that does not inflate is
  ``400 failed to decode request``; inflating past the limit is the
  ``too_big_status`` (413, as newer capture answers ``EventTooBig``);
- body shapes (untagged): a JSON array of events; ``{"api_key"|"token",
  "batch": [...], "sent_at"?, "historical_migration"?}``; one event object.
  Not JSON: ``400 failed to parse request: ...``; no events:
  ``400 request holds no event``;
- the token: the batch's ``api_key`` (alias ``token``) wins, else each event's
  ``token``/``$token``/``api_key`` or ``properties.token``. None:
  ``401 event submitted without an api_key``; different ones in one request:
  ``401 batch submitted with inconsistent api_key values``; the shape check
  (empty, over 64 characters, not ASCII, ``phx_`` personal keys, NUL):
  ``401 API key is not valid: <reason>``. Capture does not look keys up: a
  well-shaped unknown key is accepted and its events are dropped later
  (recorded in ``dropped``). ``unknown_key="401"`` answers as PostHog's older
  Django capture did instead: ``401 Project API key invalid...``;
- every event: ``event`` a non-empty string (``400 event submitted with an
  empty event name``); ``distinct_id`` / ``$distinct_id`` /
  ``properties.distinct_id`` present (``400 event submitted without a
  distinct_id``) and not empty (``400 event submitted with an empty
  distinct_id``), stringified and cut to 200 characters; ``uuid``, if
  present, a UUID; ``properties`` an object; ``timestamp`` and ``sent_at``
  RFC 3339 strings (this receiver is stricter than capture, which falls
  back to its clock); every event at most 1,000,000 bytes (capture's Kafka
  message cap; ``too_big_status``).

Success is ``200 {"status":"Ok"}`` (``204`` with ``?beacon=1``).

``events`` holds the accepted events as sent (dicts), ``uuid_counts`` how
often each uuid was accepted: PostHog de-duplicates on it. Each recorded
request has ``json`` (the decoded body), ``messages`` (its events) and these
facts in ``info(rec)``: the token, ``sent_at``, how the body was
decompressed, ``historical_migration`` and the distinct_ids as capture keeps
them. Scripting (``script``, ``responder``) works as in
``examples/receiver.py``.

Standalone: ``python3 tests/integration/posthog_receiver.py --port 8010``.
"""

import argparse
import datetime
import json
import signal
import sys
import threading
import urllib.parse
import uuid as uuidlib
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from receiver import Receiver, ValidationError  # noqa: E402

BATCH_PATHS = ("/batch", "/batch/")
EVENT_PATHS = tuple(p + s for p in ("/i/v0/e", "/e", "/capture", "/track", "/engage")
                    for s in ("", "/"))
BATCH_LIMIT = 20 * 1024 * 1024
EVENT_LIMIT = 2 * 1024 * 1024
MAX_EVENT_BYTES = 1_000_000
MAX_DISTINCT_ID_CHARS = 200
MAX_TOKEN_CHARS = 64


def _rfc3339(value):
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else None


def token_problem(token):
    """capture's validate_token: None when the shape is fine, else the reason."""
    token = token.strip()
    if not token:
        return "empty"
    if len(token) > MAX_TOKEN_CHARS:
        return "too_long"
    if not token.isascii():
        return "not_ascii"
    if token.startswith("phx_"):
        return "personal_api_key"
    if "\0" in token:
        return "null_byte"
    return None


class PostHogReceiver(Receiver):
    """Loopback PostHog capture. Thread-safe."""

    def __init__(self, host="127.0.0.1", port=0, known_keys=None, unknown_key="drop",
                 too_big_status=413, keep_bodies=True, on_request=None):
        super().__init__(host=host, port=port, batch_path="/batch/", single_paths=(),
                         keep_bodies=keep_bodies, on_request=on_request)
        self.known_keys = set(known_keys) if known_keys else None
        self.unknown_key = unknown_key
        self.too_big_status = too_big_status
        self.uuid_counts = {}
        self.dropped = []        # events of unknown projects (capture accepts, ingestion drops)
        self.rec_info = {}       # request index -> {"token", "sent_at", "decompressed", ...}
        self._pending_info = threading.local()

    def base_url(self):
        """What a herald destination's "url" is set to."""
        return "http://%s:%d" % (self.host, self.port)

    def wait_for_uuids(self, n, timeout=10.0):
        return self.wait_for(lambda r: len(r.accepted_uuids()) >= n, timeout)

    def accepted_uuids(self):
        with self._lock:
            return dict(self.uuid_counts)

    def info(self, rec):
        with self._lock:
            return self.rec_info.get(rec.index, {})

    # -- validation ---------------------------------------------------------
    def _decode_and_validate(self, rec):
        info = {"token": None, "sent_at": None, "decompressed": None,
                "historical_migration": None, "distinct_ids": []}
        self._pending_info.value = info
        if rec.path in BATCH_PATHS:
            limit = BATCH_LIMIT
        elif rec.path in EVENT_PATHS:
            limit = EVENT_LIMIT
        else:
            raise ValidationError(404, "not found")
        if rec.method != "POST":
            raise ValidationError(405, "method not allowed")
        if rec.raw_len > limit:
            raise ValidationError(413, "length limit exceeded")

        query = urllib.parse.parse_qs(rec.query or "")
        hint = (query.get("compression") or [None])[0]
        if hint is None:
            hint = rec.headers.get("content-encoding")
        body = rec.raw_body or b""
        if body[:3] == b"\x1f\x8b\x08" or (hint or "").lower() in ("gzip", "gzip-js"):
            try:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = d.decompress(body, limit + 1)
                if len(out) > limit:
                    raise ValidationError(self.too_big_status, "maximum event size exceeded")
                out += d.flush()
                if not d.eof:
                    raise zlib.error("truncated")
            except (zlib.error, EOFError, OSError) as e:
                raise ValidationError(400, "failed to decode request: %s" % e)
            info["decompressed"] = "magic" if body[:3] == b"\x1f\x8b\x08" else "hint"
            if body[:3] == b"\x1f\x8b\x08" and hint:
                info["decompressed"] = "gzip (%s)" % hint
            body = out
        elif hint:
            raise ValidationError(400, "failed to decode request: unsupported compression %r"
                                  % hint)
        rec.decoded_len = len(body)
        if self.keep_bodies:
            rec.decoded = body
        ctype = (rec.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            raise ValidationError(400, "failed to decode request: form bodies not supported "
                                  "by this receiver")
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValidationError(400, "failed to parse request: %s" % e)
        rec.json = doc

        batch_token = None
        if isinstance(doc, list):
            events = doc
        elif isinstance(doc, dict) and "batch" in doc:
            events = doc["batch"]
            if not isinstance(events, list):
                raise ValidationError(400, "failed to parse request: batch is not a list")
            batch_token = doc.get("api_key", doc.get("token"))
            sent_at = doc.get("sent_at")
            if sent_at is not None:
                if _rfc3339(sent_at) is None:
                    raise ValidationError(400, "failed to parse request: invalid sent_at %r"
                                          % (sent_at,))
                info["sent_at"] = sent_at
            hm = doc.get("historical_migration")
            if hm is not None and not isinstance(hm, bool):
                raise ValidationError(400, "failed to parse request: historical_migration")
            info["historical_migration"] = hm
        elif isinstance(doc, dict):
            events = [doc]
        else:
            raise ValidationError(400, "failed to parse request: not an event or a batch")
        if not events:
            raise ValidationError(400, "request holds no event")
        for e in events:
            if not isinstance(e, dict):
                raise ValidationError(400, "failed to parse request: event is not an object")

        # The token.
        if batch_token is not None:
            if not isinstance(batch_token, str):
                raise ValidationError(400, "failed to parse request: api_key is not a string")
            token = batch_token
        else:
            found = set()
            for e in events:
                props = e.get("properties") if isinstance(e.get("properties"), dict) else {}
                t = e.get("token", e.get("$token", e.get("api_key", props.get("token"))))
                if t is not None:
                    found.add(t)
            if len(found) > 1:
                raise ValidationError(401, "batch submitted with inconsistent api_key values")
            if not found:
                raise ValidationError(401, "event submitted without an api_key")
            token = found.pop()
            if not isinstance(token, str):
                raise ValidationError(400, "failed to parse request: token is not a string")
        problem = token_problem(token)
        if problem:
            raise ValidationError(401, "API key is not valid: %s" % problem)
        token = token.strip()
        info["token"] = token

        # The events.
        for e in events:
            name = e.get("event")
            if not isinstance(name, str) or not name:
                raise ValidationError(400, "event submitted with an empty event name")
            props = e.get("properties")
            if props is not None and not isinstance(props, dict):
                raise ValidationError(400, "failed to parse request: properties is not an "
                                      "object")
            did = e.get("distinct_id", e.get("$distinct_id",
                                             (props or {}).get("distinct_id")))
            if did is None:
                raise ValidationError(400, "event submitted without a distinct_id")
            did = did if isinstance(did, str) else json.dumps(did)
            if did == "":
                raise ValidationError(400, "event submitted with an empty distinct_id")
            u = e.get("uuid")
            if u is not None:
                try:
                    uuidlib.UUID(u)
                except (TypeError, ValueError, AttributeError):
                    raise ValidationError(400, "failed to parse request: invalid uuid %r"
                                          % (u,))
            ts = e.get("timestamp")
            if ts is not None and _rfc3339(ts) is None:
                raise ValidationError(400, "failed to parse request: invalid timestamp %r"
                                      % (ts,))
            if len(json.dumps(e, ensure_ascii=False).encode()) > MAX_EVENT_BYTES:
                raise ValidationError(self.too_big_status, "maximum event size exceeded")
            info["distinct_ids"].append(did[:MAX_DISTINCT_ID_CHARS])

        if self.known_keys is not None and token not in self.known_keys:
            if self.unknown_key == "401":
                raise ValidationError(401, "Project API key invalid. You can find your project "
                                      "API key in PostHog project settings.")
            with self._lock:
                self.dropped.extend(events)
            rec.messages = []
            return []
        rec.messages = events
        return events

    # -- recording ----------------------------------------------------------
    def _finish(self, handler, rec, status, headers, body, error=None, accepted=None,
                close=False):
        if status == 200 and error is None and rec.path is not None:
            query = urllib.parse.parse_qs(rec.query or "")
            if (query.get("beacon") or [None])[0] == "1":
                status, body = 204, ""
            elif body == "ok":
                body = json.dumps({"status": "Ok"})
                headers = dict(headers, **{"Content-Type": "application/json"})
        info = getattr(self._pending_info, "value", None) or {}
        self._pending_info.value = None
        # Record by uuid, and the per-request facts, before the base class
        # records the request and wakes waiters.
        with self._lock:
            index = len(self.requests)
            self.rec_info[index] = info
            for e in accepted or []:
                key = e.get("uuid")
                self.uuid_counts[key] = self.uuid_counts.get(key, 0) + 1
        super()._finish(handler, rec, status, headers, body, error=error, accepted=accepted,
                        close=close)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Loopback PostHog capture for herald")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8010)
    ap.add_argument("--key", action="append", help="known project API key (repeatable)")
    args = ap.parse_args(argv)

    def show(rec):
        body = (rec.decoded or b"").decode("utf-8", "replace")
        sys.stdout.write("%s %s %s\n" % (rec.status, rec.error or "", body))
        sys.stdout.flush()

    r = PostHogReceiver(host=args.host, port=args.port, known_keys=args.key, on_request=show)
    r.start()
    sys.stderr.write("posthog receiver listening on %s\n" % r.base_url())
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(3600):
            pass
    finally:
        r.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
