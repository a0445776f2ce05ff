#!/usr/bin/env python3
"""A loopback Plausible Events API for herald's tests: it answers
``POST /api/event`` as Plausible's server does (BACKENDS.md section 1) and
records what it accepted.

Validation, in the server's order:

- ``POST /api/event`` only (anything else is 404);
- an ``Accept`` header that excludes JSON is 406;
- ``Content-Type``: ``application/json`` is parsed as JSON (a parse failure
  is 400); no Content-Type leaves the body unread, so the request is
  ``400 url is required``; any other type (``text/plain``, what the JS
  tracker sends) is read raw, at most 1,000,000 bytes, and JSON-decoded
  (``400 Unable to parse request body as json``). ``Content-Encoding`` is not
  honoured: a gzip body fails to decode the same way;
- the body is one JSON object (an array is not a batch);
- ``n``/``name`` required, at most 120 characters; ``u``/``url`` required,
  at most 2000 bytes, not a ``data:`` URL; ``d``/``domain`` not blank (absent:
  the url's host); ``r``/``referrer`` truncated to 2000 characters;
- ``m``/``meta``/``p``/``props``: an object or a JSON string of one; pairs
  whose key or value is a list/map, ``null`` or blank are silently
  discarded, values stringified, the first 30 kept (the rest silently cut);
  any key over 300 bytes or value over 2000 bytes is 400.

Accepted events are ``202 ok``. Silent drops answer ``202 ok`` with
``X-Plausible-Dropped: 1`` and are recorded in ``dropped``, not ``events``:
a bot User-Agent (containing bot, crawler, spider, Headless or ``curl/``, or a
bare ``name/version`` / single word; a missing User-Agent is not a bot), a
domain outside ``sites`` (when given: Plausible's unknown-site drop), and
``X-Plausible-IP-Type: dc_ip``.

Errors are Plausible's shape: ``{"errors": {"field": ["message"]}}``.

Scripting (``script``, ``responder``) works as in ``examples/receiver.py``;
``delay`` holds every answer that long (to observe concurrency);
``max_in_flight`` is the most requests seen in progress at once and
``peers`` the distinct client (address, port) pairs, i.e. connections.

Standalone: ``python3 tests/integration/plausible_receiver.py --port 8000``.
"""

import argparse
import json
import re
import signal
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from receiver import Receiver, ValidationError  # noqa: E402

READ_BODY_LIMIT = 1_000_000
MAX_NAME_CHARS = 120
MAX_URL_BYTES = 2000
MAX_REFERRER_CHARS = 2000
MAX_PROPS = 30
MAX_KEY_BYTES = 300
MAX_VALUE_BYTES = 2000

BOT_WORDS = re.compile(r"bot|crawler|spider|headless|curl/", re.IGNORECASE)
BARE_PRODUCT = re.compile(r"^[^\s/]+(/[^\s]*)?$")  # "name/version" or one word


def is_bot(user_agent):
    """Our stand-in for Plausible's UAInspector bot check."""
    if not user_agent:
        return False  # a missing UA is accepted (no browser, no OS)
    return bool(BOT_WORDS.search(user_agent) or BARE_PRODUCT.match(user_agent.strip()))


class PlausibleError(ValidationError):
    """A 400 with Plausible's {"errors": {field: [message]}} body."""

    def __init__(self, field, message, status=400):
        super().__init__(status, json.dumps({"errors": {field: [message]}}))
        self.field = field


class Dropped(Exception):
    def __init__(self, why):
        super().__init__(why)
        self.why = why


def _first(doc, *names):
    for n in names:
        v = doc.get(n)
        if v is not None:
            return v
    return None


def _stringify(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def map_props(raw):
    """Plausible's props rules: returns the kept {key: string} dict."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise PlausibleError("props", "is invalid")
    if not isinstance(raw, dict):
        raise PlausibleError("props", "is invalid")
    pairs = []
    for k, v in raw.items():
        if v is None or isinstance(v, (list, dict)):
            continue
        value = _stringify(v)
        if not k.strip() or not value.strip():
            continue
        pairs.append((k, value))
    for k, value in pairs:
        if len(k.encode()) > MAX_KEY_BYTES or len(value.encode()) > MAX_VALUE_BYTES:
            raise PlausibleError("props",
                                 "keys should have at most 300 bytes and values 2000 bytes")
    return dict(pairs[:MAX_PROPS])


class PlausibleReceiver(Receiver):
    """Loopback Plausible server. Thread-safe. ``events`` holds one dict per
    accepted event: name, url, domain, referrer, props, revenue, interactive,
    the request headers (user_agent, forwarded_for, all headers) and the
    client port."""

    def __init__(self, host="127.0.0.1", port=0, sites=None, delay=0.0, keep_bodies=True,
                 on_request=None):
        super().__init__(host=host, port=port, batch_path="/api/event", single_paths=(),
                         keep_bodies=keep_bodies, on_request=on_request)
        self.sites = set(sites) if sites else None
        self.delay = delay
        self.dropped = []         # (why, event dict) of silently dropped events
        self.in_flight = 0
        self.max_in_flight = 0
        self._seq = 0

    def base_url(self):
        """What a herald destination's "url" is set to."""
        return "http://%s:%d" % (self.host, self.port)

    # -- inspection -------------------------------------------------------
    def peers(self):
        with self._lock:
            return {r.peer for r in self.requests}

    def wait_for_dropped(self, n, timeout=10.0):
        return self.wait_for(lambda r: len(r.dropped) >= n, timeout)

    # -- request handling -------------------------------------------------
    def _dispatch(self, handler, rec):
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self._script.pop(0) if self._script else None
        try:
            delay = self.delay + (scripted[3] if scripted else 0.0)
            if delay > 0:
                time.sleep(delay)
            status, headers, body = 202, {}, "ok"
            err, event, dropped = None, None, None
            try:
                event = self._decode_and_validate(rec)
            except ValidationError as e:
                status, body, err = e.status, e.message, e.message
                if isinstance(e, PlausibleError):
                    headers = {"Content-Type": "application/json; charset=utf-8"}
            except Dropped as d:
                headers = {"X-Plausible-Dropped": "1"}
                dropped = d.why
            responder = self.responder
            if responder is not None:
                answer = responder(rec)
                if answer is not None:
                    status, headers, body = answer[0], dict(answer[1]), answer[2]
                    rec.scripted = "responder"
            if scripted is not None and scripted[0] is not None:
                status, headers, body = scripted[0], dict(scripted[1]), scripted[2]
                rec.scripted = "script"
            ok = 200 <= status < 300 and err is None
            if ok and "X-Plausible-Dropped" in headers and dropped is None:
                dropped = "scripted"
            accepted = [event] if ok and event is not None and dropped is None else None
            if ok and dropped is not None:
                with self._lock:
                    self.dropped.append((dropped, rec.json))
            self._finish(handler, rec, status, headers, body, error=err or dropped,
                         accepted=accepted)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _decode_and_validate(self, rec):
        if rec.method != "POST" or rec.path != "/api/event":
            raise ValidationError(404, "not found")
        accept = (rec.headers.get("accept") or "").lower()
        if accept and not any(a in accept for a in ("json", "*/*", "application/*")):
            raise ValidationError(406, "not acceptable")
        body = rec.raw_body or b""
        rec.decoded_len = len(body)
        if self.keep_bodies:
            rec.decoded = body
        ctype = rec.headers.get("content-type")
        unparseable = PlausibleError("request", "Unable to parse request body as json")
        if ctype is None:
            doc = {}  # Plug.Parsers merges %{}: nothing was read
        elif ctype.split(";", 1)[0].strip().lower() == "application/json":
            try:
                doc = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise ValidationError(400, "malformed request: invalid json")
            if not isinstance(doc, dict):
                doc = {"_json": doc}  # Phoenix puts a non-object under _json
        else:
            if len(body) > READ_BODY_LIMIT:
                raise unparseable
            try:
                doc = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise unparseable
            if not isinstance(doc, dict):
                raise unparseable
        rec.json = doc

        url = _first(doc, "u", "url")
        if url is None:
            raise PlausibleError("url", "is required")
        if not isinstance(url, str) or len(url.encode()) > MAX_URL_BYTES:
            raise PlausibleError("url", "must be a valid url")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme.lower() == "data":
            raise PlausibleError("url", "scheme is not allowed")
        name = _first(doc, "n", "name")
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)
        if not isinstance(name, str) or not name.strip():
            raise PlausibleError("name", "can't be blank")
        if len(name) > MAX_NAME_CHARS:
            raise PlausibleError("name", "should be at most 120 character(s)")
        domain = _first(doc, "d", "domain")
        if domain is None:
            domain = parsed.hostname or ""
        if not isinstance(domain, str) or not domain.strip():
            raise PlausibleError("domain", "can't be blank")
        domains = [d.strip().removeprefix("www.") for d in domain.split(",")]
        referrer = _first(doc, "r", "referrer")
        if isinstance(referrer, str):
            referrer = referrer[:MAX_REFERRER_CHARS]
        props = map_props(_first(doc, "m", "meta", "p", "props"))
        interactive = doc.get("i", doc.get("interactive", True))

        ua = rec.headers.get("user-agent")
        event = {
            "name": name, "url": url, "domain": domain, "domains": domains,
            "hostname": (parsed.hostname or "(none)").removeprefix("www."),
            "pathname": urllib.parse.unquote(parsed.path or "/"),
            "referrer": referrer, "props": props, "revenue": _first(doc, "$", "revenue"),
            "interactive": interactive is not False,
            "user_agent": ua, "forwarded_for": rec.headers.get("x-forwarded-for"),
            "headers": dict(rec.headers), "peer": rec.peer,
        }
        # messageId keys Receiver.event_counts: the producer's seq when there
        # is one (so duplicates show), else a running number.
        with self._lock:
            self._seq += 1
            event["messageId"] = ("seq:%s" % props["seq"]) if "seq" in props \
                else "n:%d" % self._seq
        rec.messages = [event]
        if is_bot(ua):
            raise Dropped("bot")
        if (rec.headers.get("x-plausible-ip-type") or "") == "dc_ip":
            raise Dropped("dc_ip")
        if self.sites is not None and not any(d in self.sites for d in domains):
            raise Dropped("not_found")
        return event


def main(argv=None):
    ap = argparse.ArgumentParser(description="Loopback Plausible Events API for herald")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--site", action="append", help="known site domain (repeatable); "
                    "events for others are dropped as Plausible drops unknown sites")
    args = ap.parse_args(argv)

    def show(rec):
        body = (rec.decoded or b"").decode("utf-8", "replace")
        sys.stdout.write("%s %s ua=%r xff=%r %s\n" % (
            rec.status, rec.error or "", rec.headers.get("user-agent"),
            rec.headers.get("x-forwarded-for"), body))
        sys.stdout.flush()

    r = PlausibleReceiver(host=args.host, port=args.port, sites=args.site, on_request=show)
    r.start()
    sys.stderr.write("plausible receiver listening on %s\n" % r.url())
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
