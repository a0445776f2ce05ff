#!/usr/bin/env python3
"""A loopback Umami collector for herald's tests: it answers ``POST /api/send``
(and ``POST /api/batch`` from 2.17) as Umami's server does (BACKENDS.md
section 2, umami-real.md) and records what it accepted.

It plays one Umami ``version`` (default ``"2.10"``); what changes with it:

=============  ==========================================  ==============================
               up to 2.15 (pages router, yup)              2.16 and later (app router, zod)
=============  ==========================================  ==============================
success        ``200`` text/plain: the cache token (JWT)    ``200 {"cache": token}``, plus
                                                            ``sessionId``/``visitId`` (2.17+)
bot            ``200 {}``                                   ``200 {"beep":"boop"}``
errors         ``400`` plain text, e.g.                     ``400 {"error": {"message",
               ``payload.name must be at most 50 ...``      "code", "status"}}``
no website     ``403 Website not found: <uuid>.``           ``400 {"error": {"message":
                                                            "Website not found."}}``
=============  ==========================================  ==============================

Validation, in the server's order:

- ``POST`` to ``/api/send`` (``/api/batch`` from 2.17; anything else 404, other
  methods 405); ``Content-Encoding`` is not read, so a gzip body is a JSON
  error (400); up to 2.15 the body must be ``application/json`` (else 400)
  and at most 1 MiB (413 ``Body exceeded 1mb limit``);
- the bot check (isbot) on the User-Agent header, from 2.18 on
  ``payload.userAgent`` when given: a stand-in matching a single word or bare
  ``name/version`` and bot/crawler/spider/http/curl/... words; a missing
  User-Agent is not a bot. Unless ``bot_check=False`` (``DISABLE_BOT_CHECK``);
- the schema: ``type`` event|identify; ``payload.website`` a UUID;
  ``hostname`` at most 100 (and Umami's HOSTNAME_REGEX up to 2.15); ``name``
  at most 50; ``language`` 35; ``screen`` 11; ``url``, ``referrer``,
  ``title`` at most 500 up to 2.15 (later the server truncates); ``data`` an
  object; from 2.17 ``ip`` (a valid IP up to 2.20), ``userAgent``,
  ``timestamp`` (integer seconds); from 2.18 ``id``. Lengths count UTF-16
  units, as JavaScript does;
- ``ignore_ips`` (Umami's IGNORE_IP): ``403``;
- the session: from a valid ``x-umami-cache`` token of this website, else
  the website must be known (``websites``), and the session id is
  ``(website, hostname, ip, userAgent)`` up to 2.16, ``(website, ip,
  userAgent)`` from 2.17, ``(website, id)`` when ``id`` is given (2.18+).
  The IP is ``payload.ip`` (2.17+), else the first of ``x-client-ip``,
  ``x-forwarded-for`` (first entry), ``x-real-ip``, else the peer;
- ``identify`` without ``data`` is ``400 Data required.`` up to 2.18;
- ``data`` is stored as PostgreSQL does: a flattened key or a string value
  over 500 characters, an array over 500 characters as JSON, or a number
  outside DECIMAL(19,4) fails the insert: ``500`` (``sql_limits=False``
  plays a ClickHouse-backed server, which stores them).

``events`` holds one dict per accepted event: ``type``, ``payload``,
``session``, ``path`` (send or batch), ``user_agent``, ``ip``,
``forwarded_for``, ``cache_in`` (the ``x-umami-cache`` it came with),
``token`` (the token it was answered with) and ``headers``. ``dropped``
holds (why, payload) of events dropped as bots or ignored IPs.
``element_hook(payload)`` may return (status, message) to fail one element
(or event) as the server would. Scripting (``script``, ``responder``) works
as in ``examples/receiver.py``; ``delay`` holds every answer that long;
``max_in_flight`` is the most requests in progress at once.

Standalone: ``python3 tests/integration/umami_receiver.py --port 3000
--website <uuid>``.
"""

import argparse
import base64
import hashlib
import hmac
import ipaddress
import json
import re
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from receiver import Receiver, ValidationError  # noqa: E402

BODY_LIMIT = 1024 * 1024
HOSTNAME_REGEX = re.compile(
    r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$")
# yup's uuid rule (Umami 2.x): versions 1-5, RFC variant, or the nil UUID.
YUP_UUID = re.compile(r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                      r"[0-9a-f]{12}|00000000-0000-0000-0000-000000000000)$", re.I)
ZOD_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

BOT_WORDS = re.compile(r"bot|crawl|spider|headless|https?:|curl|wget|python|scrap|fetch|"
                       r"monitor|libwww|okhttp|java/", re.IGNORECASE)
SINGLE_TOKEN = re.compile(r"^\S+$")  # a bare "name/version" or one word


def is_bot(user_agent):
    """Our stand-in for isbot, as Umami calls it."""
    if not user_agent:
        return False
    return bool(SINGLE_TOKEN.match(user_agent) or BOT_WORDS.search(user_agent))


def js_length(text):
    """String length as JavaScript counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def parse_version(text):
    parts = [int(p) for p in text.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts[:3])


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UmamiError(Exception):
    """A failure the server answers for one event (status, message, code)."""

    def __init__(self, status, message, code=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or {400: "bad-request", 403: "forbidden",
                             413: "payload-too-large"}.get(status, "server-error")


class Dropped(Exception):
    def __init__(self, why, body):
        super().__init__(why)
        self.why = why
        self.body = body


def flatten(data, prefix=""):
    """Umami's flattenJSON: nested objects become "a.b" keys."""
    out = []
    for key, value in data.items():
        name = prefix + "." + key if prefix else key
        if isinstance(value, dict) and value:
            out.extend(flatten(value, name))
        elif isinstance(value, dict):
            continue
        else:
            out.append((name, value))
    return out


class UmamiReceiver(Receiver):
    """Loopback Umami server. Thread-safe."""

    def __init__(self, host="127.0.0.1", port=0, version="2.10", websites=None, delay=0.0,
                 ignore_ips=(), bot_check=True, sql_limits=True, keep_bodies=True,
                 on_request=None):
        super().__init__(host=host, port=port, batch_path="/api/send", single_paths=(),
                         keep_bodies=keep_bodies, on_request=on_request)
        self.version = parse_version(version)
        self.website = str(uuid.uuid4())
        self.websites = set(websites) if websites is not None else {self.website}
        self.delay = delay
        self.ignore_ips = set(ignore_ips)
        self.bot_check = bot_check
        self.sql_limits = sql_limits
        self.element_hook = None
        self.secret = b"herald-umami-receiver"
        self.dropped = []
        self.sessions = {}         # session id -> the first payload that made it
        self.in_flight = 0
        self.max_in_flight = 0
        self._seq = 0

    def base_url(self):
        """What a herald destination's "url" is set to."""
        return "http://%s:%d" % (self.host, self.port)

    # -- version features --------------------------------------------------
    def at_least(self, *v):
        return self.version >= tuple(v) + (0,) * (3 - len(v))

    # -- inspection -------------------------------------------------------
    def wait_for_dropped(self, n, timeout=10.0):
        return self.wait_for(lambda r: len(r.dropped) >= n, timeout)

    def session_ids(self):
        with self._lock:
            return {e["session"] for e in self.events}

    # -- tokens -----------------------------------------------------------
    def _token(self, session, website):
        self._seq += 1
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64url(json.dumps({"id": session, "websiteId": website,
                                  "iat": int(time.time()), "n": self._seq}).encode())
        sig = b64url(hmac.new(self.secret, (head + "." + body).encode(),
                              hashlib.sha256).digest())
        return "%s.%s.%s" % (head, body, sig)

    def _parse_token(self, token):
        try:
            head, body, sig = token.split(".")
            want = b64url(hmac.new(self.secret, (head + "." + body).encode(),
                                   hashlib.sha256).digest())
            if not hmac.compare_digest(want, sig):
                return None
            return json.loads(b64url_decode(body))
        except (ValueError, TypeError):
            return None

    # -- answers ----------------------------------------------------------
    def _error_answer(self, e):
        if self.at_least(2, 16):
            body = json.dumps({"error": {"message": e.message, "code": e.code,
                                         "status": e.status}})
            return e.status, {"Content-Type": "application/json"}, body
        return e.status, {"Content-Type": "text/plain; charset=utf-8"}, e.message

    def _ok_answer(self, token, session):
        if self.at_least(2, 16):
            doc = {"cache": token}
            if self.at_least(2, 17):
                doc.update(sessionId=session, visitId=str(uuid.uuid5(uuid.NAMESPACE_DNS,
                                                                     session + "visit")))
            return 200, {"Content-Type": "application/json"}, json.dumps(doc)
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, token

    def _bot_answer(self):
        body = '{"beep":"boop"}' if self.at_least(2, 16) else "{}"
        return 200, {"Content-Type": "application/json"}, body

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
            accepted, err = [], None
            try:
                status, headers, body, accepted = self._handle(rec)
            except ValidationError as e:
                status, headers, body, err = e.status, {}, e.message, e.message
            except UmamiError as e:
                status, headers, body = self._error_answer(e)
                err = e.message
            except Dropped as d:
                status, headers, body = d.body
                err = d.why
            responder = self.responder
            if responder is not None:
                answer = responder(rec)
                if answer is not None:
                    status, headers, body = answer[0], dict(answer[1]), answer[2]
                    rec.scripted = "responder"
            if scripted is not None and scripted[0] is not None:
                status, headers, body = scripted[0], dict(scripted[1]), scripted[2]
                rec.scripted = "script"
                accepted = accepted if 200 <= status < 300 else []
            self._finish(handler, rec, status, headers, body, error=err,
                         accepted=accepted or None)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handle(self, rec):
        if rec.path not in ("/api/send", "/api/batch") or (
                rec.path == "/api/batch" and not self.at_least(2, 17)):
            raise ValidationError(404, "404 Not Found")
        if rec.method != "POST":
            raise ValidationError(405, "405 Method Not Allowed")
        body = rec.raw_body or b""
        rec.decoded_len = len(body)
        if self.keep_bodies:
            rec.decoded = body
        pages_router = not self.at_least(2, 16)
        if pages_router and len(body) > BODY_LIMIT:
            raise ValidationError(413, "Body exceeded 1mb limit")
        ctype = (rec.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            doc = None
        if pages_router and (ctype != "application/json" or doc is None):
            raise UmamiError(400, "Invalid JSON" if ctype == "application/json"
                             else "type is a required field")
        rec.json = doc
        if rec.path == "/api/batch":
            return self._batch(rec, doc)
        try:
            event = self._collect(rec, doc, "send")
        except Dropped as d:
            with self._lock:
                self.dropped.append((d.why, (doc or {}).get("payload")))
            raise
        status, headers, answer = self._ok_answer(event["token"], event["session"])
        return status, headers, answer, [event]

    def _batch(self, rec, doc):
        if not isinstance(doc, list):
            raise UmamiError(400, "Bad request")
        details, processed, first_token, accepted = [], 0, None, []
        for index, element in enumerate(doc):
            try:
                event = self._collect(rec, element, "batch")
            except Dropped as d:
                with self._lock:
                    self.dropped.append((d.why, (element or {}).get("payload")))
                processed += 1
                continue
            except UmamiError as e:
                details.append({"index": index, "response": {"error": {
                    "message": e.message, "code": e.code, "status": e.status}}})
                continue
            processed += 1
            accepted.append(event)
            first_token = first_token or event["token"]
        answer = {"size": len(doc), "processed": processed, "errors": len(details),
                  "details": details}
        if self.at_least(3, 0, 2) and first_token:
            answer["cache"] = first_token
        return 200, {"Content-Type": "application/json"}, json.dumps(answer), accepted

    def _client_ip(self, rec, payload):
        if self.at_least(2, 17) and isinstance(payload.get("ip"), str):
            return payload["ip"]
        h = rec.headers
        if h.get("x-client-ip"):
            return h["x-client-ip"]
        if h.get("x-forwarded-for"):
            return h["x-forwarded-for"].split(",")[0].strip()
        if h.get("x-real-ip"):
            return h["x-real-ip"]
        return rec.peer[0]

    def _validate(self, doc):
        """The schema of /api/send for this version; returns (type, payload)."""
        if not isinstance(doc, dict):
            raise UmamiError(400, "type is a required field")
        kind = doc.get("type")
        if not isinstance(kind, str) or kind.lower() not in ("event", "identify"):
            raise UmamiError(400, 'type must match the following: "/event|identify/i"')
        payload = doc.get("payload")
        if not isinstance(payload, dict):
            raise UmamiError(400, "payload is a required field")
        website = payload.get("website")
        uuid_rule = ZOD_UUID if self.at_least(2, 16) else YUP_UUID
        if not isinstance(website, str):
            raise UmamiError(400, "payload.website is a required field")
        if not uuid_rule.match(website):
            raise UmamiError(400, "payload.website must be a valid UUID")
        strict = not self.at_least(2, 16)
        limits = {"hostname": 100, "language": 35, "screen": 11, "name": 50}
        if strict:
            limits.update(url=500, referrer=500, title=500)
        for field in ("hostname", "language", "screen", "name", "url", "referrer", "title"):
            value = payload.get(field)
            if value is None:
                continue
            if not isinstance(value, str):
                raise UmamiError(400, "payload.%s must be a `string` type" % field)
            if field in limits and js_length(value) > limits[field]:
                raise UmamiError(400, "payload.%s must be at most %d characters"
                                 % (field, limits[field]))
        hostname = payload.get("hostname")
        if strict and hostname is not None and not HOSTNAME_REGEX.match(hostname):
            raise UmamiError(400, "payload.hostname must match the following: %s"
                             % HOSTNAME_REGEX.pattern)
        if "data" in payload and not isinstance(payload["data"], dict):
            raise UmamiError(400, "payload.data must be a `object` type")
        if self.at_least(2, 17):
            if "ip" in payload:
                ip = payload["ip"]
                if not isinstance(ip, str):
                    raise UmamiError(400, "payload.ip must be a string")
                if not self.at_least(3, 0):
                    try:
                        ipaddress.ip_address(ip)
                    except ValueError:
                        raise UmamiError(400, "payload.ip: Invalid ip")
            if "userAgent" in payload and not isinstance(payload["userAgent"], str):
                raise UmamiError(400, "payload.userAgent must be a string")
            if "timestamp" in payload and (not isinstance(payload["timestamp"], int)
                                           or isinstance(payload["timestamp"], bool)):
                raise UmamiError(400, "payload.timestamp must be an integer")
        if self.at_least(2, 18) and "id" in payload and not isinstance(payload["id"], str):
            raise UmamiError(400, "payload.id must be a string")
        return kind.lower(), payload

    def _collect(self, rec, doc, path):
        """One event through /api/send's logic; returns the recorded event."""
        header_ua = rec.headers.get("user-agent")
        ua = header_ua
        if self.at_least(2, 17) and isinstance(doc, dict) and isinstance(
                doc.get("payload"), dict) and isinstance(doc["payload"].get("userAgent"), str):
            ua = doc["payload"]["userAgent"]
        bot_ua = ua if self.at_least(2, 18) else header_ua
        pages_router = not self.at_least(2, 16)
        if pages_router and self.bot_check and is_bot(bot_ua):
            raise Dropped("bot", self._bot_answer())
        kind, payload = self._validate(doc)
        if not pages_router and self.bot_check and is_bot(bot_ua):
            raise Dropped("bot", self._bot_answer())
        ip = self._client_ip(rec, payload)
        if ip in self.ignore_ips:
            body = (json.dumps({"error": {"message": "Forbidden", "code": "forbidden",
                                          "status": 403}})
                    if self.at_least(2, 16) else "403 Forbidden")
            raise Dropped("ignored ip", (403, {}, body))
        website = payload["website"]
        cache_in = rec.headers.get("x-umami-cache")
        session = None
        if cache_in:
            claims = self._parse_token(cache_in)
            if claims and claims.get("websiteId") == website:
                session = claims["id"]
        if session is None:
            if website not in self.websites:
                if pages_router:
                    raise UmamiError(403, "Website not found: %s." % website)
                raise UmamiError(400, "Website not found.")
            if self.at_least(2, 18) and isinstance(payload.get("id"), str):
                parts = (website, payload["id"])
            elif self.at_least(2, 17):
                parts = (website, ip, ua)
            else:
                parts = (website, payload.get("hostname"), ip, ua)
            session = str(uuid.uuid5(uuid.NAMESPACE_DNS, json.dumps(parts)))
        if self.element_hook is not None:
            failure = self.element_hook(payload)
            if failure is not None:
                raise UmamiError(failure[0], failure[1])
        data = payload.get("data")
        if kind == "identify" and data is None and not self.at_least(2, 19):
            raise UmamiError(400, "Data required.")
        if isinstance(data, dict) and self.sql_limits:
            for key, value in flatten(data):
                if js_length(key) > 500:
                    raise UmamiError(500, "Internal Server Error")
                if isinstance(value, str) and js_length(value) > 500:
                    raise UmamiError(500, "Internal Server Error")
                text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
                if isinstance(value, list) and js_length(text) > 500:
                    raise UmamiError(500, "Internal Server Error")
                if (isinstance(value, (int, float)) and not isinstance(value, bool)
                        and abs(value) >= 1e15):
                    raise UmamiError(500, "Internal Server Error")
        with self._lock:
            self.sessions.setdefault(session, payload)
            token = self._token(session, website)
            self._seq += 1
            seq = self._seq
        return {"messageId": "umami-%d" % seq, "type": kind, "payload": payload,
                "session": session, "path": path, "user_agent": ua, "ip": ip,
                "forwarded_for": rec.headers.get("x-forwarded-for"), "cache_in": cache_in,
                "token": token, "headers": dict(rec.headers)}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Loopback Umami server for herald")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3000)
    ap.add_argument("--version", default="2.10", help="the Umami version to play")
    ap.add_argument("--website", action="append", default=None,
                    help="a known website UUID (repeatable; default: one, printed)")
    args = ap.parse_args(argv)
    out_lock = threading.Lock()

    def show(rec):
        with out_lock:
            sys.stdout.write("%s\n" % rec.summary())
            if rec.decoded:
                sys.stdout.write(rec.decoded.decode("utf-8", "replace") + "\n")
            sys.stdout.flush()

    r = UmamiReceiver(host=args.host, port=args.port, version=args.version,
                      websites=args.website, on_request=show)
    if args.website is None:
        r.websites = {r.website}
    r.start()
    sys.stderr.write("umami receiver %s listening on %s, website %s\n"
                     % (args.version, r.base_url(), ", ".join(sorted(r.websites))))
    sys.stderr.flush()
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
