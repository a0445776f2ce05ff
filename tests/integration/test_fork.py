"""fork() with an open client: parent and child both keep using it.

The child must not share the parent's SQLite connection, curl handles or
delivery thread: it reopens the queue on its first call and starts its own
thread, while the parent keeps the delivery lock. Every event of both
processes arrives exactly once and the queue file stays intact.

Not under AddressSanitizer: the ASan runtimes Debian ships (GCC 12's
libasan, LLVM 14's compiler-rt) replace malloc without locking their
allocator across fork(), so a child forked while any other thread of the
parent is inside malloc inherits a held allocator lock and its first
allocation blocks for ever (seen as a child stuck in
SizeClassAllocator64::GetFromAllocator under sqlite3_prepare_v3). glibc's
malloc, which herald uses in every other build, takes its arena locks in
fork() itself. The test runs on the plain gcc build (.ci/run: TSan cannot
follow a fork of a threaded process, and under memcheck the parent's state
the child abandons on purpose counts as definitely lost).
"""

import subprocess

from conftest import build_dir, child_env, sanitizers

import pytest


@pytest.mark.threads
def test_fork_parent_and_child_keep_working(herald, receiver):
    if "address" in sanitizers():
        pytest.skip("the ASan allocator is not fork-safe in a threaded process (see above)")
    forker = build_dir() / "tests" / "integration" / "forker"
    assert forker.is_file(), "%s not built" % forker
    cfg = herald.config([herald.dest(receiver)], flush_interval_ms=50)
    p = subprocess.run([str(forker), str(cfg), "300", str(herald.db)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120, env=child_env())
    print(p.stdout, p.stderr)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "child ok 300" in p.stdout and "parent ok 600" in p.stdout
    assert "child close 0" in p.stdout and "parent close 0" in p.stdout
    # The child opened a connection of its own and runs a delivery thread of
    # its own; the parent's two connections (calls and delivery, staging
    # ingest) stay untouched: three descriptors of the file in the child.
    assert "child db fds 3" in p.stdout, p.stdout
    threads = int(p.stdout.split("child threads ")[1].split()[0])
    assert threads >= 2, p.stdout
    assert receiver.wait_for(lambda r: len(r.events) >= 900, timeout=20)
    seen = {}
    for e in receiver.events:
        key = (e["properties"]["who"], e["properties"]["phase"], e["properties"]["seq"])
        seen[key] = seen.get(key, 0) + 1
    assert len(seen) == 900, "missing events: %d of 900" % len(seen)
    assert max(seen.values()) == 1, "an event arrived twice"
    assert herald.query("PRAGMA integrity_check") == [("ok",)]
    assert herald.counters()["sent"] == 900
