"""Redaction happens before anything touches disk or the network.

Every case of the PII corpus (../shared/pii-corpus.jsonl, PII.md §9) is sent
through the CLI. Part is delivered to the loopback receiver; the rest is held
in the queue while a process keeps the file open, so the SQLite file, its
-wal and the process's staging file all hold events at the moment their raw
bytes are scanned. None of the
substrings the corpus says must be redacted may appear in those bytes, in
anything the receiver got, in dead letters, or in the CLI's verbose log.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, child_env, wait_until

CORPUS = Path(os.environ.get("HERALD_PII_CORPUS",
                             REPO.parent / "shared" / "pii-corpus.jsonl"))


def load_corpus():
    if not CORPUS.is_file():
        pytest.fail("PII corpus not found at %s (set HERALD_PII_CORPUS)" % CORPUS,
                    pytrace=False)
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def messages_for(cases):
    """Each case placed as PII.md §9.3 places it (URL cases both ways)."""
    out = []
    for i, case in enumerate(cases):
        value = case["input"]
        if case["context"] == "value":
            out.append({"type": "track", "event": "Corpus %d" % i,
                        "properties": {"note": value}})
        elif case["context"] == "key":
            out.append({"type": "track", "event": "Corpus %d" % i, "properties": value})
        else:
            out.append({"type": "page", "name": "Corpus %d" % i,
                        "properties": {"url": value}})
            out.append({"type": "track", "event": "Corpus %d" % i,
                        "context": {"page": {"url": value}}})
    return out


def forms(secret):
    """The byte forms a leaked substring could take in JSON text."""
    raw = secret.encode("utf-8")
    escaped = json.dumps(secret)[1:-1].encode("utf-8")
    ascii_escaped = json.dumps(secret, ensure_ascii=True)[1:-1].encode("ascii")
    return {raw, escaped, ascii_escaped}


def scannable(cases):
    """(case, secret) pairs a whole-file scan can judge. The harness of PII.md
    §9.3 looks at one event at a time; a raw scan sees every event and
    herald's own fields at once, so it leaves out what could be there for
    another reason: a substring another case must keep (a corpus trap such as
    an invalid IBAN shares digits with a valid one), and short hex/digit
    fragments that random UUIDs and ids contain by chance."""
    kept_text = [json.dumps(c["input"], ensure_ascii=False) for c in cases]
    out = []
    for i, case in enumerate(cases):
        for secret in case["expect_redacted"]:
            if len(secret) < 6 or re.fullmatch(r"[0-9a-fA-F.:\- ]{0,12}", secret):
                continue
            if any(secret in text and secret not in cases[j]["expect_redacted"]
                   for j, text in enumerate(kept_text) if j != i):
                continue
            out.append((case, secret))
    return out


def leaks(cases, blobs):
    found = []
    pairs = scannable(cases)
    assert len(pairs) > 100, "too few secrets left to scan: %d" % len(pairs)
    for case, secret in pairs:
        if True:
            for name, blob in blobs.items():
                if any(f in blob for f in forms(secret)):
                    found.append("%r (input %r) found in %s" % (secret, case["input"], name))
    return found


def test_corpus_secrets_never_reach_disk_log_or_wire(herald, receiver, emit_bin):
    cases = load_corpus()
    assert len(cases) >= 133
    msgs = messages_for(cases)
    ndjson = "".join(json.dumps(m) + "\n" for m in msgs)
    cfg = herald.config([herald.dest(receiver)])

    # Delivered: everything the receiver gets.
    p = herald.emit("-vv", "--config", cfg, "import", "-", stdin=ndjson)
    assert p.returncode == 0, p.stderr
    assert len(receiver.events) == len(msgs)
    logs = p.stdout + p.stderr

    # Held: the receiver is down and a second import keeps the file open,
    # so the events sit in the database and its write-ahead log.
    receiver.stop()
    out_path, err_path = herald.tmp / "held.out", herald.tmp / "held.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([str(emit_bin), "-vv", "--config", str(cfg), "--no-flush",
                                 "import", "-"], stdin=subprocess.PIPE, stdout=out, stderr=err,
                                env=child_env())
    try:
        proc.stdin.write(ndjson.encode("utf-8"))
        proc.stdin.flush()
        wal = Path(str(herald.db) + "-wal")
        assert wait_until(lambda: herald.query("SELECT count(*) FROM events")[0][0]
                          == len(msgs), timeout=30), "the held events never arrived"
        assert wal.exists() and wal.stat().st_size > 0, "no write-ahead log to scan"
        blobs = {
            "the queue file": herald.db.read_bytes(),
            "its -wal": wal.read_bytes(),
        }
        # Every event passed through the importing process's staging file.
        stages = sorted(herald.db.parent.glob(herald.db.name + "-stage-*"))
        assert stages, "no staging file to scan"
        for stage in stages:
            blobs["staging file " + stage.name] = stage.read_bytes()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0, err_path.read_text()
    logs += out_path.read_text() + err_path.read_text()

    blobs["the queue file after close"] = herald.db.read_bytes()
    blobs["the CLI's verbose log"] = logs.encode("utf-8")
    blobs["the dead letters"] = json.dumps(herald.dead_letters(), default=str).encode()
    for i, r in enumerate(receiver.requests):
        blobs["request %d at the receiver" % i] = r.decoded or b""

    found = leaks(cases, blobs)
    assert not found, "%d leaks:\n%s" % (len(found), "\n".join(found[:40]))

    # Redaction is counted per rule, and the counts never carry values.
    counters = herald.counters()
    assert sum(v for k, v in counters.items() if k.startswith("redact_")) > 0


def test_kept_text_survives(herald, receiver):
    """The traps: what must be kept is kept, at the receiver."""
    cases = [c for c in load_corpus() if c["context"] == "value"]
    msgs = messages_for(cases)
    cfg = herald.config([herald.dest(receiver)])
    p = herald.emit("--config", cfg, "import", "-",
                    stdin="".join(json.dumps(m) + "\n" for m in msgs))
    assert p.returncode == 0, p.stderr
    notes = {}
    for e in receiver.events:
        notes[e["event"]] = e["properties"].get("note", "")
    missing = []
    for i, case in enumerate(cases):
        note = notes.get("Corpus %d" % i)
        assert note is not None, "event %d did not arrive" % i
        for kept in case["expect_kept"]:
            if kept not in note:
                missing.append("%r lost from %r -> %r" % (kept, case["input"], note))
    assert not missing, "\n".join(missing[:40])
