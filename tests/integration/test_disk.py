"""A queue on a full disk, and a corrupt queue file.

The queue lives on a small tmpfs (the tests run as root, as CI does). On
256 KiB, too small for a staging file, every call commits directly: once the
file system is full, calls fail with HERALD_E_STORAGE and a clear message;
every call that returned OK is in the file, which stays intact; when space
returns, calls succeed again and everything accepted is delivered. On 2.6 MB
a staging file of 1.5 MiB (staging_bytes) fits and keeps taking events after
the queue file is full, until its ring is; none of them is lost.
"""

import json
import os
import subprocess
import time

import pytest

HERALD_E_STORAGE = -6


def mounted_tmpfs(path, size):
    """Mount a tmpfs of `size` at path (a new directory); yields it."""
    path.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs",
                        str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        pytest.fail("cannot mount a tmpfs for the disk-full test (needs root): " + p.stdout,
                    pytrace=False)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)])


@pytest.fixture
def tiny_fs(tmp_path):
    """Too small for a staging file: every call commits directly."""
    yield from mounted_tmpfs(tmp_path / "tiny", "256k")


def test_full_disk_then_recovery(herald, receiver, tiny_fs):
    db = tiny_fs / "q.db"
    cfg = herald.config([herald.dest(receiver)], db_path=str(db), deliver=False)
    res = herald.produce(cfg, 3000, pad=300)
    assert res.ok, "nothing was accepted before the disk filled"
    assert res.err, "the disk never filled: make the file system smaller"
    codes = {code for _, code in res.err}
    assert codes == {HERALD_E_STORAGE}, "unexpected codes %s" % codes
    first_fail = min(seq for seq, _ in res.err)
    assert all(seq < first_fail for seq in res.ok), "calls succeeded after the disk was full"

    # Every accepted event is in the file, and the file is intact.
    assert herald.query("PRAGMA integrity_check", db=db) == [("ok",)]
    stored = {json.loads(b)["properties"]["seq"]
              for (b,) in herald.query("SELECT body FROM events", db=db)}
    assert stored == set(res.ok)

    # The message says what happened (through the CLI, which prints it).
    p = herald.emit("--config", cfg, "--no-flush", "track", "One More", "--props",
                    json.dumps({"pad": "x" * 2000}))
    assert p.returncode == 1
    assert "full" in p.stderr, p.stderr

    # Space returns: calls succeed, and everything accepted is delivered.
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_fs)], check=True)
    more = herald.produce(cfg, 100, start=100000)
    assert len(more.ok) == 100
    cfg2 = herald.config([herald.dest(receiver)], db_path=str(db))
    herald.produce(cfg2, 0, flush_ms=30000, close_ms=1000)
    got = {e["properties"]["seq"] for e in receiver.events}
    assert set(res.ok) | set(more.ok) <= got


@pytest.fixture
def small_fs(tmp_path):
    """Room for a staging file of 1.5 MiB and little more."""
    yield from mounted_tmpfs(tmp_path / "small", "2600k")


def test_full_disk_with_staging_loses_nothing(herald, receiver, small_fs):
    """The queue file fills up while the staging file (space reserved at
    open) keeps taking events; once the ring is full calls fail at once with
    HERALD_E_STORAGE; everything accepted reaches the queue and the receiver
    once there is space again."""
    db = small_fs / "q.db"
    cfg = herald.config([herald.dest(receiver)], db_path=str(db), deliver=False,
                        staging_bytes=3 << 19)
    started = time.monotonic()
    res = herald.produce(cfg, 6000, pad=300, close_ms=0)
    elapsed = time.monotonic() - started
    assert res.ok and res.err, res.describe()
    assert {code for _, code in res.err} == {HERALD_E_STORAGE}, res.describe()
    # Refused at once, not after waiting for space that cannot come.
    assert elapsed < 30, "producing took %.1f s" % elapsed
    committed = herald.query("SELECT count(*) FROM events", db=db)[0][0]
    assert committed < len(res.ok), "the staging file held nothing beyond the queue file"
    # The producer exited with events still staged: its file is kept.
    assert list(small_fs.glob("q.db-stage-*")), "the staged events' file is gone"

    subprocess.run(["mount", "-o", "remount,size=32m", str(small_fs)], check=True)
    cfg2 = herald.config([herald.dest(receiver)], db_path=str(db))
    herald.produce(cfg2, 0, flush_ms=30000, close_ms=1000)
    got = {e["properties"]["seq"] for e in receiver.events}
    assert set(res.ok) <= got, "%d accepted events never arrived" % len(set(res.ok) - got)
    assert herald.query("PRAGMA integrity_check", db=db) == [("ok",)]
    assert not list(small_fs.glob("q.db-stage-*"))


def test_corrupt_file_is_moved_aside(herald, receiver):
    herald.db.write_bytes(b"this is not a database" * 200)
    cfg = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg, 10, flush_ms=10000, close_ms=1000)
    assert len(res.ok) == 10
    aside = [f for f in os.listdir(herald.tmp) if f.startswith("q.db.corrupt-")]
    assert aside, "the corrupt file was not kept aside"
    assert (herald.tmp / aside[0]).read_bytes().startswith(b"this is not a database")
    assert receiver.wait_for(lambda r: len(r.events) >= 10, timeout=10)


def test_truncated_file_is_moved_aside(herald, receiver):
    cfg = herald.config([herald.dest(receiver)], deliver=False)
    herald.produce(cfg, 200, pad=100)
    data = herald.db.read_bytes()
    herald.db.write_bytes(data[:len(data) // 3])
    for suffix in ("-wal", "-shm"):
        try:
            os.unlink(str(herald.db) + suffix)
        except FileNotFoundError:
            pass
    cfg2 = herald.config([herald.dest(receiver)])
    res = herald.produce(cfg2, 5, flush_ms=10000, close_ms=1000)
    assert len(res.ok) == 5
    assert herald.query("PRAGMA integrity_check") == [("ok",)]
