#!/usr/bin/env python3
"""A loopback Matomo tracker for herald's tests: it answers bulk tracking
requests (``POST /matomo.php``) as Matomo 5's BulkTracking plugin does and
records what it would have stored.

Modelled on matomo-org/matomo: plugins/BulkTracking/BulkTracking.php,
plugins/BulkTracking/Tracker/{Requests,Handler,Response}.php,
core/Tracker/{Request,RequestSet,Handler,Response,VisitExcluded}.php and
config/global.ini.php. In the server's order:

- only ``/matomo.php`` and ``/piwik.php`` exist (404 else). A body is a bulk
  request when it contains ``"requests"`` at a position other than 0
  (``strpos`` in Requests::isUsingBulkRequest); ``Content-Encoding`` is never
  decoded (php://input is read as it is), so a gzip body is not a bulk
  request. A request that is not a bulk and has no query parameters is
  ``400`` with Matomo's "This resource is part of Matomo" page.
- the body is ``json_decode``d (a failure leaves no requests: ``200`` with
  ``tracked`` 0); ``token_auth`` comes from the body. Each element of
  ``requests`` is a query string (``parse_url`` + ``parse_str``: only the part
  after ``?`` is read, an element without one is skipped silently and does
  not take an index) or an object of parameters.
- ``bulk_requests_require_authentication`` (off by default): every request
  needs a token with write access to its site, else the whole bulk is
  ``500 {"status":"error","tracked":0,"invalid":0}``.
- per request (an index among the parsed ones), an invalid request is
  counted and skipped, the others tracked (InvalidRequestParameterException
  and UnexpectedWebsiteFoundException are caught per request):
  ``idsite`` not a known site; ``cdt`` (unix seconds or a date string) older
  than 86400 s without a token with write access to that site (a future or
  unparseable cdt is ignored: the request is recorded now); ``cid`` not 16
  characters; ``cip`` without such a token; with ``delete_logs_older_than``
  (days; Matomo's [Deletelogs] setting, off by default) a cdt older than that
  plus the 7-day schedule interval, token or not.
- excluded, yet counted as tracked: ``rec`` missing or 0; a bot user agent
  (``ua``, else the HTTP User-Agent) unless ``bots=1``.
- recorded: ``url`` and ``action_name`` cut to page_maximum_length (1024),
  ``uid`` to 200 characters; the visitor id is sha1(uid)[:16] with a uid
  (enable_userid_overwrites_visitorid), else ``_id`` when it is 16 hex
  digits (a shorter or non-hex ``_id`` is ignored, not an error).
- the answer is ``200`` ``{"status":"success","tracked":T,"invalid":I}``,
  plus ``"invalid_indices":[...]`` when the body's token_auth is a superuser
  token (Handler::isBulkTrackingRequestAuthenticated); ``send_image=0`` in the
  body answers ``204`` without a body.

Tokens: ``superuser_tokens`` (access everywhere, indices reported) and
``site_tokens`` ({token: [site ids]}: write access to those sites).

Each recorded hit is a dict: idsite, kind ("pageview" or "event"), url,
action_name, urlref, e_c, e_a, e_n, e_v, _id, visitor_id, uid, cdt (the
parsed custom time or None), time (what Matomo records), ua, lang, res, cip,
dimensions {id: value}, params (all raw parameters), messageId (``seq:<n>``
from dimension ``seq_dimension`` when given, else a running number), and the
request's token_auth presence. ``invalid`` holds (index, reason, params) and
``excluded`` (reason, params).

Standalone: ``python3 tests/integration/matomo_receiver.py --port 8000 --site 1``.
"""

import argparse
import datetime
import hashlib
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

PAGE_MAXIMUM_LENGTH = 1024      # [Tracker] page_maximum_length
USER_ID_MAX = 200               # log_visit.user_id, truncated since Matomo 4
# [Tracker] tracking_requests_require_authentication_when_custom_timestamp_newer_than
CDT_RECENT_S = 86400
LENGTH_HEX_ID_STRING = 16
MATOMO_PAGE = ("This resource is part of Matomo. Keep full control of your data with the "
               "leading free and open source <a href='https://matomo.org' target='_blank' "
               "rel='noopener noreferrer nofollow'>web analytics & conversion optimisation "
               "platform</a>.<br>\n")

# Our stand-in for DeviceDetector's bot list (a regex of bot names).
BOT_UA = re.compile(r"bot|crawler|spider|slurp|curl/|wget/|python-requests|headlesschrome",
                    re.IGNORECASE)


def is_bot(ua):
    return bool(ua) and bool(BOT_UA.search(ua))


class Invalid(Exception):
    """InvalidRequestParameterException / UnexpectedWebsiteFoundException."""


def parse_cdt(value, now):
    """Request::getCustomTimestamp: numeric seconds or a strtotime() date;
    None when unparseable, in the future or over 20 years old (ignored)."""
    if value is None or value == "":
        return None
    try:
        t = float(value)
    except ValueError:
        try:
            dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        t = dt.timestamp()
    t = int(t)
    if not (t <= now and t > now - 20 * 365 * 86400):
        return None
    return t


class MatomoReceiver(Receiver):
    """Loopback Matomo tracker (bulk tracking). Thread-safe."""

    def __init__(self, host="127.0.0.1", port=0, sites=(1,), superuser_tokens=(),
                 site_tokens=None, bulk_requires_auth=False, delete_logs_older_than=None,
                 seq_dimension=None, keep_bodies=True, on_request=None):
        super().__init__(host=host, port=port, batch_path="/matomo.php", single_paths=(),
                         keep_bodies=keep_bodies, on_request=on_request)
        self.sites = {int(s) for s in sites}
        self.superuser_tokens = set(superuser_tokens)
        self.site_tokens = {t: {int(s) for s in ids} for t, ids in (site_tokens or {}).items()}
        self.bulk_requires_auth = bulk_requires_auth
        # [Deletelogs] delete_logs_enable with delete_logs_older_than (days),
        # plus delete_logs_schedule_lowest_interval (7 days).
        self.delete_logs_older_than = delete_logs_older_than
        self.seq_dimension = str(seq_dimension) if seq_dimension is not None else None
        self.invalid = []    # (index, reason, params)
        self.excluded = []   # (reason, params)
        self.answers = []    # the JSON answers sent, in order
        self._seq = 0

    def base_url(self):
        return "http://%s:%d" % (self.host, self.port)

    @property
    def hits(self):
        return self.events

    # -- auth -------------------------------------------------------------
    def _authenticated(self, token, idsite):
        """Request::authenticateSuperUserOrAdminOrWrite."""
        if not token:
            return False
        return token in self.superuser_tokens or idsite in self.site_tokens.get(token, ())

    # -- request handling ---------------------------------------------------
    def _dispatch(self, handler, rec):
        with self._lock:
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None and scripted[3] > 0:
            time.sleep(scripted[3])
        status, headers, body, err, hits = 200, {}, "", None, []
        staged_invalid, staged_excluded = [], []
        try:
            status, headers, body, hits, staged_invalid, staged_excluded = self._bulk(rec)
        except ValidationError as e:
            status, body, err = e.status, e.message, e.message
            headers = {"Content-Type": "text/html; charset=utf-8"}
        responder = self.responder
        if responder is not None:
            answer = responder(rec)
            if answer is not None:
                status, headers, body = answer[0], dict(answer[1]), answer[2]
                rec.scripted = "responder"
        if scripted is not None and scripted[0] is not None:
            status, headers, body = scripted[0], dict(scripted[1]), scripted[2]
            rec.scripted = "script"
        # Matomo wraps a bulk in a transaction: nothing is kept unless the
        # answer is a success.
        ok = 200 <= status < 300 and err is None
        with self._lock:
            if ok:
                self.invalid.extend(staged_invalid)
                self.excluded.extend(staged_excluded)
            if isinstance(body, str) and body.startswith("{"):
                self.answers.append(json.loads(body))
        self._finish(handler, rec, status, headers, body, error=err,
                     accepted=hits if ok and hits else None)

    def _bulk(self, rec):
        if rec.path not in ("/matomo.php", "/piwik.php"):
            raise ValidationError(404, "not found")
        raw = rec.raw_body or b""
        rec.decoded_len = len(raw)
        if self.keep_bodies:
            rec.decoded = raw
        if raw.find(b'"requests"') <= 0 and raw.find(b"'requests'") <= 0:
            # Not a bulk: the default handler, with no parameters to track.
            if rec.query:
                raise ValidationError(400, "single-request tracking is not modelled")
            raise ValidationError(400, MATOMO_PAGE)
        try:
            doc = json.loads(raw.decode("utf-8").strip())
        except (UnicodeDecodeError, ValueError):
            doc = None
        rec.json = doc
        if isinstance(doc, dict) and doc.get("send_image") in ("0", 0):
            return 204, {}, "", [], [], []
        token = doc.get("token_auth") if isinstance(doc, dict) else None
        token = token if isinstance(token, str) else ""
        elements = doc.get("requests") if isinstance(doc, dict) else None
        params_list = []
        for element in elements if isinstance(elements, list) else []:
            if isinstance(element, str):
                query = urllib.parse.urlsplit(element).query
                if query:
                    params_list.append(dict(urllib.parse.parse_qsl(query,
                                                                   keep_blank_values=True)))
            elif isinstance(element, dict):
                params_list.append({k: v if isinstance(v, str) else json.dumps(v)
                                    for k, v in element.items()})
            else:
                params_list.append({})  # new Request(non-array): an empty request
        rec.messages = params_list
        headers = {"Content-Type": "application/json"}
        if self.bulk_requires_auth:
            for params in params_list:
                idsite = _int(params.get("idsite"))
                if not token or not self._authenticated(token, idsite):
                    answer = {"status": "error", "tracked": 0, "invalid": 0}
                    return 500, headers, json.dumps(answer), [], [], []
        now = int(time.time())
        tracked, invalid_idx, hits, staged_invalid, staged_excluded = 0, [], [], [], []
        for index, params in enumerate(params_list):
            if not params:
                tracked += 1
                continue
            try:
                hit = self._track(params, token, now, rec)
            except Invalid as e:
                invalid_idx.append(index)
                staged_invalid.append((index, str(e), params))
                continue
            tracked += 1
            if isinstance(hit, str):
                staged_excluded.append((hit, params))
            else:
                hits.append(hit)
        answer = {"status": "success", "tracked": tracked, "invalid": len(invalid_idx)}
        if token and token in self.superuser_tokens:
            answer["invalid_indices"] = invalid_idx
        return 200, headers, json.dumps(answer), hits, staged_invalid, staged_excluded

    def _track(self, p, token, now, rec):
        """One request: a hit dict, an exclusion reason (str), or Invalid."""
        idsite = _int(p.get("idsite"))
        authed = self._authenticated(token, idsite)
        # Tracker::trackRequest asks for the current timestamp first.
        cdt = parse_cdt(p.get("cdt"), now)
        if cdt is not None and now - cdt >= CDT_RECENT_S and not authed:
            raise Invalid("Custom timestamp is %d seconds old, requires &token_auth..."
                          % (now - cdt))
        if cdt is not None and self.delete_logs_older_than is not None and \
                cdt < now - (self.delete_logs_older_than + 7) * 86400:
            raise Invalid("Custom timestamp is older than the configured 'deleted old raw data'"
                          " value of %d days" % self.delete_logs_older_than)
        if idsite <= 0 or idsite not in self.sites:
            raise Invalid("Invalid idSite: '%d'" % idsite)
        cid = p.get("cid", "")
        if cid and len(cid) != LENGTH_HEX_ID_STRING:
            raise Invalid("Visitor ID (cid) %s must be 16 characters long" % cid)
        if p.get("cip") and not authed:
            raise Invalid("Tracker API 'cip' was used, requires valid token_auth")
        ua = p.get("ua", rec.headers.get("user-agent", ""))
        if is_bot(ua) and _int(p.get("bots")) == 0:
            return "bot"
        if _int(p.get("rec")) == 0:
            return "rec"
        uid = p.get("uid", "")[:USER_ID_MAX]
        vid = p.get("_id", "")
        if uid:
            visitor = hashlib.sha1(p["uid"].encode()).hexdigest()[:16]
        elif cid:
            visitor = cid.lower()
        elif len(vid) >= LENGTH_HEX_ID_STRING and re.fullmatch(r"[0-9a-fA-F]{16}", vid[:16]):
            visitor = vid[:16].lower()
        else:
            visitor = None
        e_c, e_a = p.get("e_c", ""), p.get("e_a", "")
        try:
            e_v = float(p["e_v"]) if "e_v" in p else None
        except ValueError:
            e_v = None
        dims = {k[len("dimension"):]: v for k, v in p.items()
                if re.fullmatch(r"dimension[0-9]+", k)}
        hit = {
            "idsite": idsite,
            "kind": "event" if e_c and e_a else "pageview",
            "url": _clean(p.get("url", "")),
            "action_name": _clean(p.get("action_name", "")) or None,
            "urlref": p.get("urlref"),
            "e_c": e_c or None, "e_a": e_a or None, "e_n": p.get("e_n"), "e_v": e_v,
            "_id": p.get("_id"), "visitor_id": visitor, "uid": uid or None,
            "cdt": cdt, "time": cdt if cdt is not None else now,
            "ua": ua, "lang": p.get("lang"), "res": p.get("res"), "cip": p.get("cip"),
            "dimensions": dims, "params": dict(p), "authenticated": authed,
        }
        with self._lock:
            self._seq += 1
            seq = dims.get(self.seq_dimension) if self.seq_dimension else None
            hit["messageId"] = ("seq:%s" % seq) if seq is not None else "n:%d" % self._seq
        return hit


def _int(v):
    """Common::getRequestVar(..., 'int'): a non-numeric value is 0."""
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return 0


def _clean(s):
    """PageUrl::cleanupString: trim, drop \\n \\r \\0, cut to page_maximum_length."""
    s = s.strip().replace("\n", "").replace("\r", "").replace("\0", "")
    return s.encode("utf-8")[:PAGE_MAXIMUM_LENGTH].decode("utf-8", "ignore")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Loopback Matomo bulk tracking API for herald")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--site", action="append", type=int, help="known site id (repeatable)")
    ap.add_argument("--superuser-token", action="append", default=[])
    args = ap.parse_args(argv)

    def show(rec):
        body = (rec.decoded or b"").decode("utf-8", "replace")
        sys.stdout.write("%s %s %s -> %s\n" % (rec.status, rec.error or "", body,
                                               (rec.response_body or b"").decode()))
        sys.stdout.flush()

    r = MatomoReceiver(host=args.host, port=args.port, sites=args.site or (1,),
                       superuser_tokens=args.superuser_token, on_request=show)
    r.start()
    sys.stderr.write("matomo receiver listening on %s/matomo.php\n" % r.base_url())
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
