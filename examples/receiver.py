#!/usr/bin/env python3
"""A loopback receiver for herald: a Segment-compatible collector that records
everything it sees.

It validates requests the way RudderStack's gateway does (see BACKENDS.md 3.2):

- ``Content-Encoding`` absent or exactly ``gzip`` (a bad gzip stream is 400);
- ``Content-Type: application/json``;
- the body is JSON; ``/v1/batch`` takes ``{"batch": [...], "sentAt": "..."}``
  with a non-empty list of message objects, the single-event paths
  (``/v1/track`` ...) take one message object;
- every message has ``type`` in track/page/screen/identify/group/alias, a
  ``messageId`` string, an RFC 3339 ``timestamp`` string and a ``userId`` or
  ``anonymousId`` (else 400 "request neither has anonymousId nor userId");
  a track has an ``event``.

Success is ``200 ok``. Any failing message fails the whole request, as in
RudderStack.

Used two ways:

- as a module by the integration tests::

      from receiver import Receiver
      r = Receiver()              # 127.0.0.1, ephemeral port
      r.start()
      r.script([(500, {}, ""), (503, {"Retry-After": "2"}, "busy")])
      ...
      r.wait_for_events(1000, timeout=10)
      r.stop()                    # connections are refused until start()

- standalone, printing what arrives::

      python3 examples/receiver.py --port 8765 [--log FILE]

Standard library only. Binds 127.0.0.1 unless told otherwise.
"""

import argparse
import base64
import datetime
import gzip
import json
import signal
import socket
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGE_TYPES = ("track", "page", "screen", "identify", "group", "alias")
DEFAULT_SINGLE_PATHS = tuple("/v1/" + t for t in MESSAGE_TYPES)


class ValidationError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """One request as the receiver saw it and answered it."""

    __slots__ = (
        "index", "t_mono", "t_wall", "t_mono_done", "t_wall_done", "method",
        "path", "query", "headers", "header_list", "raw_len", "raw_body",
        "decoded_len", "decoded", "json", "messages", "status",
        "response_body", "response_headers", "error", "scripted", "peer",
    )

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, None)

    @property
    def gzipped(self):
        return self.headers.get("content-encoding") == "gzip"

    def summary(self):
        enc = self.headers.get("content-encoding") or "identity"
        n = len(self.messages) if self.messages else 0
        line = "%s %s -> %s %s raw=%s decoded=%s events=%d" % (
            self.method, self.path, self.status, enc, self.raw_len,
            self.decoded_len, n)
        if self.error:
            line += " error=%r" % self.error
        if self.scripted:
            line += " (scripted)"
        return line

    def __repr__(self):
        return "<Request #%s %s>" % (self.index, self.summary())


def _parse_rfc3339(value):
    if not isinstance(value, str) or not value:
        return False
    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return dt.tzinfo is not None and "T" in value


def validate_message(msg, forced_type=None):
    """Raise ValidationError if `msg` would be refused by the gateway."""
    if not isinstance(msg, dict):
        raise ValidationError(400, "event is not a valid rudder event")
    mtype = forced_type or msg.get("type")
    if mtype not in MESSAGE_TYPES:
        raise ValidationError(400, "invalid message type %r" % (mtype,))
    mid = msg.get("messageId")
    if not isinstance(mid, str) or not mid:
        raise ValidationError(400, "messageId missing or not a string")
    if not _parse_rfc3339(msg.get("timestamp")):
        raise ValidationError(400, "timestamp missing or not RFC 3339: %r"
                              % (msg.get("timestamp"),))
    uid = msg.get("userId")
    aid = msg.get("anonymousId")
    if not ((isinstance(uid, str) and uid) or (isinstance(aid, str) and aid)):
        raise ValidationError(400, "request neither has anonymousId nor userId")
    if mtype == "track":
        ev = msg.get("event")
        if not isinstance(ev, str) or not ev:
            raise ValidationError(400, "track without event")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, receiver):
        self.receiver = receiver
        self.open_sockets = set()
        self.sock_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        with self.sock_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sock_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self):
        with self.sock_lock:
            socks = list(self.open_sockets)
            self.open_sockets.clear()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # Connections torn down by stop() or by a client giving up are
        # expected here; keep the test output quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "herald-receiver/0.1"
    sys_version = ""
    # Headers and body go out in two writes; without TCP_NODELAY the body
    # waits for the client's delayed ACK (~40 ms a response on Linux).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # silence the default stderr log
        pass

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        n = int(length)
        data = self.rfile.read(n) if n > 0 else b""
        if len(data) != n:
            raise ConnectionError("short body")
        return data

    def _handle(self):
        rcv = self.server.receiver
        rec = Request()
        rec.t_mono = time.monotonic()
        rec.t_wall = time.time()
        rec.method = self.command
        path, _, query = self.path.partition("?")
        rec.path = path
        rec.query = query
        rec.header_list = list(self.headers.items())
        rec.headers = {k.lower(): v for k, v in self.headers.items()}
        rec.peer = self.client_address
        try:
            body = self._read_body()
        except (ConnectionError, ValueError, OSError):
            self.close_connection = True
            return
        if body is None:
            rec.raw_len = 0
            rec.raw_body = b""
            rcv._finish(self, rec, 411, {}, "length required",
                        error="no Content-Length", close=True)
            return
        rec.raw_len = len(body)
        rec.raw_body = body
        rcv._dispatch(self, rec)

    do_POST = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_DELETE = _handle

    def do_GET(self):
        self._handle()


class Receiver:
    """Loopback Segment-compatible receiver. Thread-safe."""

    def __init__(self, host="127.0.0.1", port=0, batch_path="/v1/batch",
                 single_paths=DEFAULT_SINGLE_PATHS, max_body_bytes=None,
                 max_raw_body_bytes=None, write_key=None, require_sent_at=True,
                 keep_bodies=True, on_request=None):
        self.host = host
        self.port = port
        self.batch_path = batch_path
        self.single_paths = tuple(single_paths)
        # Checked on the decompressed body, as the RudderStack gateway does.
        self.max_body_bytes = max_body_bytes
        # Checked on the body as received (before gunzip).
        self.max_raw_body_bytes = max_raw_body_bytes
        # When set, HTTP Basic auth with this username is required (401 else).
        self.write_key = write_key
        self.require_sent_at = require_sent_at
        self.keep_bodies = keep_bodies
        self.on_request = on_request
        # Optional hook: responder(request) -> None (normal handling) or
        # (status, headers, body) to answer instead. Runs after decoding,
        # so request.json / request.messages are available (or None).
        self.responder = None

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._script = []
        self._server = None
        self._thread = None
        self.requests = []
        self.events = []          # accepted messages, in arrival order
        self.event_counts = {}    # messageId -> times accepted

    # -- lifecycle --------------------------------------------------------
    def start(self):
        """Listen (again) on self.port; the first start picks a free port."""
        if self._server is not None:
            return self
        last = None
        for _ in range(50):
            try:
                self._server = _Server((self.host, self.port), _Handler, self)
                break
            except OSError as e:  # port of a previous start briefly busy
                last = e
                time.sleep(0.05)
        else:
            raise last
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="receiver-%d" % self.port,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and drop open connections: until start() is called
        again, connecting to the port is refused."""
        srv = self._server
        if srv is None:
            return
        self._server = None
        srv.shutdown()
        srv.server_close()
        srv.drop_connections()
        self._thread.join(5)
        self._thread = None

    @property
    def running(self):
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def url(self, path=None):
        return "http://%s:%d%s" % (self.host, self.port,
                                   self.batch_path if path is None else path)

    # -- scripting ---------------------------------------------------------
    def script(self, responses):
        """Queue canned answers for the next requests, in order. Each item is
        (status, headers, body) or (status, headers, body, delay_s). A status
        of None means "answer normally" (after the delay). A scripted 2xx
        still validates and records the events it carries."""
        with self._lock:
            for item in responses:
                item = tuple(item)
                if len(item) == 3:
                    item = item + (0.0,)
                if len(item) != 4:
                    raise ValueError("script item must be (status, headers, body[, delay])")
                self._script.append(item)

    def script_pending(self):
        with self._lock:
            return len(self._script)

    def clear(self):
        """Forget recorded requests and events (the script is kept)."""
        with self._lock:
            self.requests = []
            self.events = []
            self.event_counts = {}

    # -- inspection -------------------------------------------------------
    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def accepted_ids(self):
        with self._lock:
            return dict(self.event_counts)

    def duplicates(self):
        with self._lock:
            return {k: v for k, v in self.event_counts.items() if v > 1}

    def wait_for(self, predicate, timeout=10.0):
        """Wait until predicate(receiver) is true; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                return value
            with self._cond:
                self._cond.wait(min(left, 0.1))

    def wait_for_events(self, n, timeout=10.0):
        """Wait until at least n distinct messageIds were accepted."""
        return self.wait_for(lambda r: len(r.accepted_ids()) >= n, timeout)

    def wait_for_requests(self, n, timeout=10.0):
        return self.wait_for(lambda r: len(r.snapshot()) >= n, timeout)

    # -- request handling (called from handler threads) --------------------
    def _dispatch(self, handler, rec):
        status, headers, body = 200, {}, "ok"
        scripted = None
        with self._lock:
            if self._script:
                scripted = self._script.pop(0)
        if scripted is not None and scripted[3] > 0:
            time.sleep(scripted[3])

        err = None
        messages = None
        try:
            messages = self._decode_and_validate(rec)
        except ValidationError as e:
            status, body, err = e.status, e.message, e.message

        responder = self.responder
        if responder is not None:
            answer = responder(rec)
            if answer is not None:
                status, headers, body = answer[0], dict(answer[1]), answer[2]
                rec.scripted = "responder"
        if scripted is not None and scripted[0] is not None:
            status, headers, body = scripted[0], dict(scripted[1]), scripted[2]
            rec.scripted = "script"
        accepted = messages if (200 <= status < 300 and err is None) else None
        self._finish(handler, rec, status, headers, body, error=err,
                     accepted=accepted)

    def _decode_and_validate(self, rec):
        if rec.method != "POST":
            if rec.method == "GET" and rec.path in ("/", "/health"):
                return None
            raise ValidationError(405, "method not allowed")
        if rec.path == self.batch_path:
            single_type = None
        elif rec.path in self.single_paths:
            single_type = rec.path.rsplit("/", 1)[-1]
        else:
            raise ValidationError(404, "not found")

        if self.write_key is not None:
            auth = rec.headers.get("authorization", "")
            if not auth.startswith("Basic "):
                raise ValidationError(401, "failed to read writekey from header")
            try:
                user = base64.b64decode(auth[6:], validate=True).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                raise ValidationError(401, "failed to read writekey from header")
            if user != self.write_key:
                raise ValidationError(401, "invalid write key")

        if self.max_raw_body_bytes is not None and rec.raw_len > self.max_raw_body_bytes:
            raise ValidationError(413, "request size exceeds max limit")

        enc = rec.headers.get("content-encoding")
        body = rec.raw_body
        if enc is not None:
            if enc != "gzip":
                raise ValidationError(400, "unsupported content-encoding %r" % enc)
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error):
                raise ValidationError(400, "invalid gzip body")
        rec.decoded_len = len(body)
        if self.keep_bodies:
            rec.decoded = body
        if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
            raise ValidationError(413, "request size exceeds max limit")

        ctype = (rec.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise ValidationError(415, "content-type must be application/json, got %r"
                                  % rec.headers.get("content-type"))
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ValidationError(400, "invalid json")
        rec.json = doc

        if single_type is None:
            if not isinstance(doc, dict):
                raise ValidationError(400, "invalid json")
            batch = doc.get("batch")
            if not isinstance(batch, list) or not batch:
                raise ValidationError(400, "empty batch payload")
            if self.require_sent_at and not _parse_rfc3339(doc.get("sentAt")):
                raise ValidationError(400, "sentAt missing or not RFC 3339")
            for m in batch:
                validate_message(m)
            rec.messages = batch
        else:
            validate_message(doc)
            rec.messages = [doc]
        return rec.messages

    def _finish(self, handler, rec, status, headers, body, error=None,
                accepted=None, close=False):
        if body is None:
            body = ""
        data = body if isinstance(body, bytes) else str(body).encode("utf-8")
        rec.status = status
        rec.response_body = data
        rec.response_headers = dict(headers)
        rec.error = error
        try:
            handler.send_response(status)
            lower = {k.lower() for k in headers}
            if "content-type" not in lower:
                handler.send_header("Content-Type", "text/plain; charset=utf-8")
            for k, v in headers.items():
                if k.lower() != "content-length":
                    handler.send_header(k, str(v))
            handler.send_header("Content-Length", str(len(data)))
            if close:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True
        rec.t_mono_done = time.monotonic()
        rec.t_wall_done = time.time()
        if not self.keep_bodies:
            rec.raw_body = None
        with self._cond:
            rec.index = len(self.requests)
            self.requests.append(rec)
            if accepted:
                for m in accepted:
                    self.events.append(m)
                    mid = m.get("messageId")
                    self.event_counts[mid] = self.event_counts.get(mid, 0) + 1
            self._cond.notify_all()
        cb = self.on_request
        if cb is not None:
            try:
                cb(rec)
            except Exception as e:  # a printing callback must not kill the server
                sys.stderr.write("receiver: on_request failed: %r\n" % (e,))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Loopback Segment-compatible receiver for herald")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--log", metavar="FILE", help="also append everything printed to FILE")
    ap.add_argument("--batch-path", default="/v1/batch")
    ap.add_argument("--max-body", type=int, default=None,
                    help="413 for decoded bodies larger than this many bytes")
    ap.add_argument("--write-key", default=None,
                    help="require HTTP Basic auth with this username")
    ap.add_argument("--quiet", action="store_true",
                    help="print only the summary line of each request")
    args = ap.parse_args(argv)

    logf = open(args.log, "a", encoding="utf-8") if args.log else None
    out_lock = threading.Lock()

    def emit(text):
        with out_lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            if logf:
                logf.write(text + "\n")
                logf.flush()

    def show(rec):
        stamp = datetime.datetime.fromtimestamp(rec.t_wall).strftime("%H:%M:%S.%f")[:-3]
        if not args.quiet and rec.decoded is not None:
            try:
                text = json.dumps(json.loads(rec.decoded), indent=2, ensure_ascii=False)
            except ValueError:
                text = rec.decoded.decode("utf-8", "replace")
            emit(text)
        emit("%s %s" % (stamp, rec.summary()))

    r = Receiver(host=args.host, port=args.port, batch_path=args.batch_path,
                 max_body_bytes=args.max_body, write_key=args.write_key,
                 keep_bodies=True, on_request=show)
    r.start()
    # Not in the log: the log holds only what arrived (bodies and summaries).
    sys.stderr.write("receiver listening on %s\n" % r.url())
    sys.stderr.flush()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Explicitly: a background job of a script starts with SIGINT ignored.
        signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(3600):
            pass
    finally:
        r.stop()
        if logf:
            logf.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
