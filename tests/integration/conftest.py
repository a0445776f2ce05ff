"""Shared fixtures for herald's integration tests.

Run from the repository root with Debian's pytest:

    HERALD_BUILD_DIR=build /usr/bin/python3 -m pytest tests/integration

The tests drive the real binaries of a meson build (HERALD_BUILD_DIR, default
``build`` relative to the repository root): ``tests/integration/producer``
(links libherald directly) and ``examples/herald-emit/herald-emit`` (the CLI),
against the loopback receiver in ``examples/receiver.py``. Nothing talks to
anything but 127.0.0.1. A missing binary is a failure, never a skip.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))

from receiver import Receiver  # noqa: E402


def build_dir():
    d = Path(os.environ.get("HERALD_BUILD_DIR", "build"))
    return d if d.is_absolute() else REPO / d


def sanitizers():
    """The sanitizers the build under test was compiled with (meson's
    b_sanitize), e.g. {"address", "undefined"}; empty for a plain build."""
    info = build_dir() / "meson-info" / "intro-buildoptions.json"
    try:
        options = json.loads(info.read_text())
    except (OSError, ValueError):
        return set()
    for o in options:
        if o["name"] == "b_sanitize" and o["value"] not in ("none", ""):
            return set(o["value"].split(","))
    return set()


def _binary(rel, what):
    path = build_dir() / rel
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("%s not found at %s: build it first (meson setup %s && meson compile -C %s),"
                    " or point HERALD_BUILD_DIR at a build directory"
                    % (what, path, build_dir(), build_dir()), pytrace=False)
    return path


@pytest.fixture(scope="session")
def producer_bin():
    return _binary("tests/integration/producer", "the producer test program")


@pytest.fixture(scope="session")
def emit_bin():
    return _binary("examples/herald-emit/herald-emit", "the herald-emit CLI")


def wrapper():
    """HERALD_TEST_WRAPPER: a command every herald process runs under, e.g.
    "valgrind --error-exitcode=99 --leak-check=full" (.ci/run uses it)."""
    return os.environ.get("HERALD_TEST_WRAPPER", "").split()


def child_env():
    """The environment for herald processes: ours minus HERALD_* (the CLI
    reads HERALD_* settings), so the tests see only what they configure."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}


def _umask022():
    os.umask(0o022)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def make_receiver():
    """Factory for more receivers (each on its own ephemeral port)."""
    made = []

    def make(**kw):
        r = Receiver(**kw).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


# --------------------------------------------------------------------------
# Results


class ProducerResult:
    """Parsed output of one producer run."""

    def __init__(self, proc_rc, stdout, stderr, args):
        self.returncode = proc_rc
        self.stdout = stdout
        self.stderr = stderr
        self.args = args
        self.ok = []          # seqs whose call returned HERALD_OK
        self.err = []         # (seq, code)
        self.opened = None
        self.flush = None
        self.close = None
        self.stats = None
        for line in stdout.split("\n")[:-1]:  # a last line without \n is cut
            parts = line.split(" ", 1)
            kind = parts[0]
            rest = parts[1] if len(parts) > 1 else ""
            if kind == "ok":
                self.ok.append(int(rest))
            elif kind == "err":
                seq, code = rest.split()
                self.err.append((int(seq), int(code)))
            elif kind == "open":
                self.opened = int(rest)
            elif kind == "open_err":
                self.opened = int(rest)
            elif kind == "flush":
                self.flush = int(rest)
            elif kind == "close":
                self.close = int(rest)
            elif kind == "stats":
                self.stats = json.loads(rest)

    def describe(self):
        err = self.stderr.strip()
        return ("producer %s -> rc=%s opened=%s ok=%d err=%d flush=%s close=%s stats=%s%s"
                % (" ".join(self.args[1:]), self.returncode, self.opened, len(self.ok),
                   len(self.err), self.flush, self.close, self.stats,
                   ("\nstderr: " + err[-2000:]) if err else ""))


def seq_counts(events):
    """properties.seq -> number of times it was accepted."""
    out = {}
    for m in events:
        seq = (m.get("properties") or {}).get("seq")
        out[seq] = out.get(seq, 0) + 1
    return out


# --------------------------------------------------------------------------
# The per-test workspace: queue file, config files, runners, db readers.


class Herald:
    def __init__(self, tmp_path, request):
        self.tmp = tmp_path
        self.db = tmp_path / "q.db"
        self._request = request
        self._ncfg = 0
        # A "redact" setting every config gets unless it sets its own
        # (None: herald's default, redaction on).
        self.redact = None

    # -- config ------------------------------------------------------------
    def dest(self, receiver, name="main", path=None, **kw):
        d = {"name": name, "backend": "rest", "url": receiver.url(path),
             "mode": "batch", "gzip": True}
        d.update(kw)
        return d

    def config(self, destinations, **opts):
        """Write a herald_open_json() config file; returns its path."""
        cfg = {
            "db_path": str(self.db),
            "flush_interval_ms": 100,
            "retry_base_ms": 50,
            "retry_max_delay_ms": 1000,
            "connect_timeout_ms": 2000,
            "request_timeout_ms": 10000,
            "destinations": destinations,
        }
        if self.redact is not None:
            cfg["redact"] = self.redact
        cfg.update(opts)
        self._ncfg += 1
        path = self.tmp / ("config%d.json" % self._ncfg)
        path.write_text(json.dumps(cfg, indent=2))
        return path

    # -- processes -----------------------------------------------------------
    def producer_args(self, config, count, start=0, threads=1, pad=0, flush_ms=None,
                      close_ms=None, interval_us=None):
        args = wrapper() + [str(self._request.getfixturevalue("producer_bin")),
                "--config", str(config), "--count", str(count), "--start", str(start),
                "--threads", str(threads), "--pad", str(pad)]
        if flush_ms is not None:
            args += ["--flush-ms", str(flush_ms)]
        if close_ms is not None:
            args += ["--close-ms", str(close_ms)]
        if interval_us is not None:
            args += ["--interval-us", str(interval_us)]
        return args

    def produce(self, config, count, timeout=120, **kw):
        args = self.producer_args(config, count, **kw)
        try:
            p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=timeout, env=child_env(),
                               preexec_fn=_umask022, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            pytest.fail("producer did not finish in %ss: %s\nstdout tail: %s\nstderr: %s"
                        % (timeout, " ".join(args),
                           (e.stdout or b"")[-500:], (e.stderr or b"")[-2000:]))
        res = ProducerResult(p.returncode, p.stdout, p.stderr, args)
        print(res.describe())
        assert res.opened == 0, "producer could not open the client:\n" + res.describe()
        assert res.returncode == 0, "producer exited with %d:\n%s" % (res.returncode,
                                                                     res.describe())
        return res

    def spawn_producer(self, config, count, **kw):
        """Start a producer in the background; returns (Popen, ProducerReader)."""
        args = self.producer_args(config, count, **kw)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=child_env(), preexec_fn=_umask022,
                             stdin=subprocess.DEVNULL)
        return p, ProducerReader(p, args)

    def emit(self, *args, stdin=None, timeout=120):
        """Run herald-emit with `args` (global options first); returns the
        CompletedProcess (text)."""
        argv = wrapper() + [str(self._request.getfixturevalue("emit_bin"))] + [str(a) for a in args]
        try:
            p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=timeout,
                               env=child_env(), preexec_fn=_umask022,
                               stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            pytest.fail("herald-emit did not finish in %ss: %s\nstderr: %s"
                        % (timeout, " ".join(argv), (e.stderr or b"")[-2000:]))
        print("herald-emit %s -> rc=%d\nstdout: %s\nstderr: %s"
              % (" ".join(argv[1:]), p.returncode, p.stdout[-1500:], p.stderr[-1500:]))
        return p

    # -- the queue file ------------------------------------------------------
    def query(self, sql, params=(), db=None):
        path = Path(db) if db else self.db
        assert path.exists(), "queue file %s does not exist" % path
        con = sqlite3.connect("file:%s?mode=rw" % path, uri=True, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def counters(self, db=None):
        return {name: value for name, value in
                self.query("SELECT name, value FROM counters", db=db)}

    def dead_letters(self, db=None):
        cols = [r[1] for r in self.query("PRAGMA table_info(dead_letters)", db=db)]
        rows = self.query("SELECT * FROM dead_letters ORDER BY id", db=db)
        out = []
        for row in rows:
            d = dict(zip(cols, row))
            body = d.get("body")
            if isinstance(body, (bytes, str)) and body:
                try:
                    d["event"] = json.loads(body)
                except ValueError:
                    d["event"] = None
            else:
                d["event"] = None
            out.append(d)
        return out


class ProducerReader:
    """Collects a background producer's stdout lines as they come."""

    def __init__(self, proc, args):
        self.proc = proc
        self.args = args
        self.first_ok = threading.Event()
        self._buf = bytearray()
        self._err = bytearray()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self._te = threading.Thread(target=self._read_err, daemon=True)
        self._te.start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                break
            self._buf += chunk
            if not self.first_ok.is_set() and b"\nok " in b"\n" + bytes(self._buf):
                self.first_ok.set()
        self.first_ok.set()

    def _read_err(self):
        while True:
            chunk = self.proc.stderr.read1(65536)
            if not chunk:
                break
            self._err += chunk

    def kill(self):
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, timeout=60):
        """Wait for the process and its output; returns a ProducerResult."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(10)
        self._t.join(10)
        self._te.join(10)
        return ProducerResult(self.proc.returncode, self._buf.decode(),
                              self._err.decode(errors="replace"), self.args)


@pytest.fixture
def herald(tmp_path, request):
    return Herald(tmp_path, request)


def wait_until(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)
