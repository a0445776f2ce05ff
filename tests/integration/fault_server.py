"""A loopback HTTP(S) server that misbehaves on cue, for herald's fault tests.

Raw sockets, standard library only, 127.0.0.1 only. Every request gets a
connection of its own (answers carry ``Connection: close``), so each action
below applies to exactly one request of the client::

    s = FaultServer().start()            # or FaultServer(tls=(cert, key))
    s.script([rst_on_accept(), stall(3), respond(503, {"Retry-After": "1"})])
    s.responder = lambda req: None       # optional hook, like receiver.py's
    ... point herald at s.url() ...
    s.wait_for_events(10)
    s.stop()                             # connecting is refused until start()

What the server does for a request is, in order: the next scripted action if
any is queued, else ``responder(request)`` if that returns an action, else
``default`` (an ordinary 200 that records the events). Actions are tuples
made by the helpers below:

- ``rst_on_accept()``: accept, then reset (SO_LINGER 0) before reading
- ``rst_mid_request()``: read the headers and part of the body, then reset
- ``rst_after_request()``: read the whole request, then reset
- ``half_response_rst()``: send half a status line and headers, then reset
- ``truncated(status, declared, sent)``: headers with Content-Length
  ``declared``, ``sent`` bytes of body, then a normal close
- ``stall(seconds)``: read the request, answer nothing for that long (ends
  early when the client hangs up)
- ``slow_body(seconds, status)``: headers at once, then one body byte every
  0.2 s for that long
- ``huge(status, size)``: headers with Content-Length ``size``, then the body
  streamed in 1 MiB pieces until done, the client hangs up, or ``max_seconds``;
  ``bytes_sent`` of the request records how much went out
- ``redirect(status, location)``: a 3xx with Location
- ``respond(status, headers, body)``: an ordinary answer; a 2xx records the
  events the request carries (by messageId)

A status of 2xx accepts the events only if the body is a well-formed
Segment batch (``{"batch": [...]}``) or a single message object; anything
else is answered 400 (``error`` says why).
"""

import gzip
import json
import select
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib


# ---------------------------------------------------------------------------
# actions


def rst_on_accept():
    return ("rst_on_accept",)


def rst_after_request():
    return ("rst_after_request",)


def rst_mid_request():
    return ("rst_mid_request",)


def half_response_rst():
    return ("half_response_rst",)


def truncated(status=200, declared=1000, sent=10):
    return ("truncated", status, declared, sent)


def stall(seconds=3.0):
    return ("stall", float(seconds))


def slow_body(seconds=3.0, status=200):
    return ("slow_body", float(seconds), status)


def huge(status=200, size=100 * 1024 * 1024, max_seconds=15.0):
    return ("huge", status, int(size), float(max_seconds))


def redirect(status, location):
    return ("respond", status, {"Location": location}, "moved to %s" % location)


def respond(status=200, headers=None, body="ok"):
    return ("respond", status, dict(headers or {}), body)


REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other",
    307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 413: "Payload Too Large", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class Request:
    """One request (or connection, for faults before any request)."""

    def __init__(self):
        self.index = None
        self.t_accept = None      # monotonic
        self.t_mono = None        # monotonic, request fully read
        self.t_wall = None
        self.method = None
        self.path = None
        self.headers = {}         # lowercased names
        self.raw_body = b""
        self.body = b""           # decoded (gunzipped)
        self.json = None
        self.messages = None
        self.action = None
        self.status = None
        self.bytes_sent = 0       # body bytes that went out (huge)
        self.t_done = None
        self.error = None

    def __repr__(self):
        return "<Request #%s %s %s action=%s status=%s sent=%s%s>" % (
            self.index, self.method, self.path, self.action and self.action[0],
            self.status, self.bytes_sent, " error=%r" % self.error if self.error else "")


def _reset(sock):
    """Close with an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _peer_gone(sock, timeout):
    """Wait up to timeout for the peer to hang up; True if it did."""
    try:
        r, _, _ = select.select([sock], [], [], timeout)
    except (OSError, ValueError):
        return True
    if not r:
        return False
    try:
        data = sock.recv(65536)
    except ssl.SSLWantReadError:
        return False
    except OSError:
        return True
    return data == b""


class FaultServer:
    """Loopback server; thread-safe; see the module docstring."""

    def __init__(self, tls=None, host="127.0.0.1", port=0):
        self.host = host
        self.port = port
        self.tls = tls            # (certfile, keyfile) or None
        self.responder = None
        self.default = respond(200, {}, "ok")
        self._ctx = None
        if tls:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(tls[0], tls[1])
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._script = []
        self._listener = None
        self._thread = None
        self._stop = threading.Event()
        self._handlers = set()
        self.connections = 0          # TCP connections accepted
        self.tls_failures = []        # handshake errors (TLS mode)
        self.requests = []
        self.event_counts = {}        # messageId -> times accepted
        self.events = []

    # -- lifecycle ----------------------------------------------------------
    def start(self):
        if self._listener is not None:
            return self
        last = None
        for _ in range(50):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.host, self.port))
                break
            except OSError as e:
                s.close()
                last = e
                time.sleep(0.05)
        else:
            raise last
        s.listen(64)
        s.settimeout(0.05)
        self.port = s.getsockname()[1]
        self._listener = s
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept_loop, args=(s,),
                                        name="fault-server-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening, end every handler (stalls and streams too)."""
        s = self._listener
        if s is None:
            return
        self._listener = None
        self._stop.set()
        self._thread.join(5)
        s.close()
        with self._lock:
            handlers = list(self._handlers)
        for t in handlers:
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def url(self, path="/v1/batch", host=None):
        return "%s://%s:%d%s" % ("https" if self.tls else "http", host or self.host,
                                 self.port, path)

    # -- scripting / inspection ----------------------------------------------
    def script(self, actions):
        with self._lock:
            self._script.extend(actions)

    def script_pending(self):
        with self._lock:
            return len(self._script)

    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def accepted_ids(self):
        with self._lock:
            return dict(self.event_counts)

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            v = predicate(self)
            if v or time.monotonic() >= deadline:
                return v
            with self._cond:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def wait_for_events(self, n, timeout=10.0):
        return self.wait_for(lambda s: len(s.accepted_ids()) >= n, timeout)

    def wait_for_requests(self, n, timeout=10.0):
        return self.wait_for(lambda s: len(s.snapshot()) >= n, timeout)

    # -- the server ---------------------------------------------------------
    def _accept_loop(self, listener):
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self._lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._handlers.add(t)
            t.start()

    def _next_action(self, req):
        with self._lock:
            if self._script:
                return self._script.pop(0)
        responder = self.responder
        if responder is not None:
            a = responder(req)
            if a is not None:
                return a
        return self.default

    def _record(self, req, accepted=None):
        req.t_done = time.monotonic()
        with self._cond:
            req.index = len(self.requests)
            self.requests.append(req)
            for m in accepted or ():
                mid = m.get("messageId")
                self.events.append(m)
                self.event_counts[mid] = self.event_counts.get(mid, 0) + 1
            self._cond.notify_all()

    def _serve(self, conn):
        try:
            self._serve_inner(conn)
        finally:
            with self._lock:
                self._handlers.discard(threading.current_thread())

    def _serve_inner(self, conn):
        req = Request()
        req.t_accept = time.monotonic()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(10)
        if self._ctx is None:
            # Peek at the script: a reset before reading must not read.
            with self._lock:
                first = self._script[0] if self._script else None
                if first is not None and first[0] == "rst_on_accept":
                    self._script.pop(0)
            if first is not None and first[0] == "rst_on_accept":
                req.action = first
                _reset(conn)
                self._record(req)
                return
        else:
            try:
                conn = self._ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                with self._lock:
                    self.tls_failures.append(repr(e))
                    self._cond.notify_all()
                _reset(conn)
                return
        mid = False
        if self._ctx is None:
            with self._lock:
                mid = bool(self._script) and self._script[0][0] == "rst_mid_request"
                if mid:
                    req.action = self._script.pop(0)
        try:
            if not self._read_request(conn, req, partial=mid):
                conn.close()
                return
        except (OSError, ValueError) as e:
            req.error = "reading the request: %r" % (e,)
            self._record(req)
            _reset(conn)
            return
        req.t_mono = time.monotonic()
        req.t_wall = time.time()
        if mid:
            _reset(conn)
            self._record(req)
            return
        self._decode(req)
        action = self._next_action(req)
        req.action = action
        try:
            self._perform(conn, req, action)
        except OSError as e:
            if req.error is None:
                req.error = "answering: %r" % (e,)
            _reset(conn)
            self._record(req)

    def _read_request(self, conn, req, partial=False):
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            buf += chunk
            if len(buf) > MAX_HEADER_BYTES:
                raise ValueError("request headers too long")
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        req.method, req.path, _ = lines[0].split(" ", 2)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            req.headers[name.strip().lower()] = value.strip()
        n = int(req.headers.get("content-length", "0"))
        if n > MAX_BODY_BYTES:
            raise ValueError("request body too long")
        body = rest
        if partial:
            n = n // 2
        while len(body) < n:
            chunk = conn.recv(min(65536, n - len(body)))
            if not chunk:
                raise ValueError("short body")
            body += chunk
        req.raw_body = body[:n]
        return True

    def _decode(self, req):
        body = req.raw_body
        try:
            if req.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            req.body = body
            req.json = json.loads(body.decode("utf-8")) if body else None
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as e:
            req.error = "undecodable body: %r" % (e,)
            return
        doc = req.json
        if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
            msgs = doc["batch"]
        elif isinstance(doc, dict) and "messageId" in doc:
            msgs = [doc]
        else:
            req.error = "not a batch or a message"
            return
        if not msgs or not all(isinstance(m, dict) and isinstance(m.get("messageId"), str)
                               for m in msgs):
            req.error = "a message without messageId"
            return
        req.messages = msgs

    def _head(self, status, headers, length):
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
        lower = {k.lower() for k in headers}
        if "content-type" not in lower:
            lines.append("Content-Type: text/plain; charset=utf-8")
        for k, v in headers.items():
            if k.lower() not in ("content-length", "connection"):
                lines.append("%s: %s" % (k, v))
        if length is not None:
            lines.append("Content-Length: %d" % length)
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _perform(self, conn, req, action):
        kind = action[0]
        if kind in ("rst_on_accept", "rst_mid_request", "rst_after_request"):
            _reset(conn)
            self._record(req)
        elif kind == "half_response_rst":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
            time.sleep(0.05)
            _reset(conn)
            self._record(req)
        elif kind == "truncated":
            _, status, declared, sent = action
            req.status = status
            conn.sendall(self._head(status, {}, declared) + b"x" * sent)
            req.bytes_sent = sent
            time.sleep(0.05)
            conn.close()
            self._record(req)
        elif kind == "stall":
            deadline = time.monotonic() + action[1]
            while not self._stop.is_set() and time.monotonic() < deadline:
                if _peer_gone(conn, min(0.05, max(0.0, deadline - time.monotonic()))):
                    break
            conn.close()
            self._record(req)
        elif kind == "slow_body":
            _, seconds, status = action
            req.status = status
            n = int(seconds / 0.2) + 1
            conn.sendall(self._head(status, {}, n))
            deadline = time.monotonic() + seconds
            while not self._stop.is_set() and time.monotonic() < deadline:
                conn.sendall(b"x")
                req.bytes_sent += 1
                if _peer_gone(conn, 0.2):
                    break
            conn.close()
            self._record(req)
        elif kind == "huge":
            _, status, size, max_seconds = action
            req.status = status
            conn.sendall(self._head(status, {}, size))
            piece = b"y" * (1024 * 1024)
            deadline = time.monotonic() + max_seconds
            try:
                while (req.bytes_sent < size and not self._stop.is_set()
                       and time.monotonic() < deadline):
                    n = min(len(piece), size - req.bytes_sent)
                    conn.sendall(piece[:n] if n < len(piece) else piece)
                    req.bytes_sent += n
            except OSError as e:
                req.error = "client hung up: %r" % (e,)
            try:
                conn.close()
            except OSError:
                pass
            # The status line went out: a 2xx accepted the events, whether
            # or not the client read the whole body.
            self._record(req, req.messages if 200 <= status < 300 else None)
        elif kind == "respond":
            _, status, headers, body = action
            data = body if isinstance(body, bytes) else str(body).encode("utf-8")
            accepted = None
            if 200 <= status < 300:
                if req.messages is None:
                    status, data = 400, ("bad request: %s" % req.error).encode()
                else:
                    accepted = req.messages
            req.status = status
            conn.sendall(self._head(status, headers, len(data)) + data)
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            _peer_gone(conn, 0.5)  # let the client read, then close
            conn.close()
            self._record(req, accepted)
        else:
            raise ValueError("unknown action %r" % (action,))


# ---------------------------------------------------------------------------
# TLS material


def make_self_signed(directory, name="server", cn="127.0.0.1", san="IP:127.0.0.1"):
    """A fresh self-signed certificate and key (PEM) made by the openssl CLI;
    returns (certfile, keyfile)."""
    cert = directory / ("%s.crt" % name)
    key = directory / ("%s.key" % name)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=%s" % cn, "-addext", "subjectAltName=%s" % san,
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return cert, key
