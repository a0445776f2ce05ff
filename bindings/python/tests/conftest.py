"""Fixtures for the Python binding's tests.

Run from the repository root with Debian's pytest:

    HERALD_BUILD_DIR=build /usr/bin/python3 -m pytest bindings/python/tests

The tests import the binding from this source tree (bindings/python) and
drive the real shared library of a meson build: HERALD_LIBRARY is set to
$HERALD_BUILD_DIR/libherald.so (HERALD_BUILD_DIR defaults to ``build``,
relative to the repository root). Events go to the validating loopback
receiver of examples/receiver.py. A missing library is a failure, never a
skip.
"""

import os
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BINDING = HERE.parent                     # bindings/python
REPO = HERE.parents[2]
sys.path.insert(0, str(BINDING))
sys.path.insert(0, str(REPO / "examples"))

from receiver import Receiver  # noqa: E402


def build_dir() -> Path:
    d = Path(os.environ.get("HERALD_BUILD_DIR", "build"))
    return d if d.is_absolute() else REPO / d


LIBRARY = build_dir() / "libherald.so"
os.environ["HERALD_LIBRARY"] = str(LIBRARY)

import herald  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def library():
    if not LIBRARY.is_file():
        pytest.fail("libherald.so not found at %s: build it first (meson setup %s && ninja -C %s),"
                    " or point HERALD_BUILD_DIR at a build directory"
                    % (LIBRARY, build_dir(), build_dir()), pytrace=False)
    return LIBRARY


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def dest(receiver, name="main", **kw):
    d = {"name": name, "backend": "rest", "url": receiver.url(), "mode": "batch"}
    d.update(kw)
    return d


FAST = {
    "flush_interval_ms": 50,
    "retry_base_ms": 50,
    "retry_max_delay_ms": 500,
    "connect_timeout_ms": 2000,
    "request_timeout_ms": 10000,
}


class Factory:
    """Opens clients on a per-test queue file and closes them at teardown."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.db = str(tmp_path / "q.db")
        self.made = []

    def __call__(self, receiver=None, destinations=None, **opts):
        cfg = dict(FAST)
        cfg["db_path"] = self.db
        if destinations is not None:
            cfg["destinations"] = destinations
        elif receiver is not None:
            cfg["destinations"] = [dest(receiver)]
        cfg.update(opts)
        c = herald.Client(**cfg)
        self.made.append(c)
        return c

    def close_all(self):
        for c in self.made:
            c.close(0)


@pytest.fixture
def make_client(tmp_path):
    f = Factory(tmp_path)
    yield f
    f.close_all()


def events(receiver, n, timeout=10.0):
    """The receiver's accepted events once at least n distinct messageIds
    arrived: a flush returns when the receiver has answered, which can be a
    moment before the receiver has recorded what it answered."""
    receiver.wait_for_events(n, timeout)
    return list(receiver.events)


def wait_until(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def child_env():
    """Environment for child processes: HERALD_LIBRARY of this run and the
    binding on PYTHONPATH."""
    env = dict(os.environ)
    env["HERALD_LIBRARY"] = str(LIBRARY)
    env["PYTHONPATH"] = str(BINDING) + (os.pathsep + env["PYTHONPATH"]
                                        if env.get("PYTHONPATH") else "")
    return env
