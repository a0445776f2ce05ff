"""herald-emit against the loopback receiver: import, track, flush, status,
dead letters."""

import json
import re

from conftest import seq_counts


def reported_lines(stderr):
    """Line numbers the CLI reported as bad ("...line N: reason")."""
    return [int(m.group(1)) for m in re.finditer(r"\bline (\d+):", stderr)]


def _events_rows(herald):
    if not herald.db.exists():
        return None
    tables = {r[0] for r in herald.query("SELECT name FROM sqlite_master WHERE type='table'")}
    if "events" not in tables:
        return None
    return herald.query("SELECT COUNT(*) FROM events")[0][0]


# b ---------------------------------------------------------------------------

def test_cli_import_10k_with_a_bad_line(herald, receiver):
    n = 10000
    bad_line = n // 2 + 1          # 1-based line number of the bad line
    lines = []
    seq = 0
    for lineno in range(1, n + 2):
        if lineno == bad_line:
            lines.append('{"type": "track", "event": "Imported", "userId": ')
            continue
        lines.append(json.dumps({"type": "track", "event": "Imported", "userId": "u-%d" % (seq % 7),
                                 "messageId": "imp-%05d" % seq, "properties": {"seq": seq}}))
        seq += 1
    path = herald.tmp / "events.ndjson"
    path.write_text("\n".join(lines) + "\n")
    cfg = herald.config([herald.dest(receiver)])

    p = herald.emit("--config", cfg, "--timeout", 60, "import", path, timeout=180)
    assert p.returncode == 0, "import exit %d (bad lines are skipped, not fatal)" % p.returncode
    assert reported_lines(p.stderr) == [bad_line], \
        "wanted only line %d reported on stderr, got %s: %r" % (
            bad_line, reported_lines(p.stderr)[:10], p.stderr[-500:])

    ids = receiver.accepted_ids()
    want = {"imp-%05d" % i for i in range(n)}
    missing = sorted(want - set(ids))
    assert not missing, "%d imported events never arrived, e.g. %s" % (len(missing), missing[:10])
    assert set(ids) == want, sorted(set(ids) - want)[:10]
    dups = {k: v for k, v in ids.items() if v > 1}
    assert not dups, "%d imported events arrived twice, e.g. %s" % (len(dups),
                                                                    sorted(dups.items())[:10])
    assert seq_counts(receiver.events) == {i: 1 for i in range(n)}
    byid = {m["messageId"]: m for m in receiver.events}
    assert byid["imp-00007"]["userId"] == "u-0" and byid["imp-00007"]["event"] == "Imported"
    assert all(r.status == 200 for r in receiver.snapshot())
    assert max(len(r.messages) for r in receiver.snapshot()) <= 100
    c = herald.counters()
    assert c.get("accepted") == n and c.get("sent") == n, c


def test_cli_import_stdin_reports_invalid_message(herald, receiver):
    lines = [
        json.dumps({"type": "track", "event": "A", "userId": "u", "messageId": "m-1"}),
        json.dumps({"type": "track", "userId": "u", "messageId": "m-2"}),  # no event
        json.dumps({"type": "identify", "userId": "u", "messageId": "m-3",
                    "traits": {"plan": "pro"}}),
        json.dumps({"type": "nonsense", "userId": "u", "messageId": "m-4"}),
        "",
        json.dumps({"type": "page", "name": "Home", "anonymousId": "a", "messageId": "m-6"}),
    ]
    cfg = herald.config([herald.dest(receiver)])
    p = herald.emit("--config", cfg, "--timeout", 30, "import", "-",
                    stdin="\n".join(lines) + "\n")
    assert p.returncode == 0, "import exit %d" % p.returncode
    assert reported_lines(p.stderr) == [2, 4], p.stderr
    assert set(receiver.accepted_ids()) == {"m-1", "m-3", "m-6"}, receiver.accepted_ids()
    assert receiver.accepted_ids() == {"m-1": 1, "m-3": 1, "m-6": 1}


def test_cli_import_strict_exit_1_keeps_good_lines(herald, receiver):
    lines = ['{"event": "NoType", "userId": "u", "messageId": "s-1"}',   # track by default
             '{not json',
             '{"type": "track", "event": "B", "userId": "u", "messageId": "s-3"}']
    cfg = herald.config([herald.dest(receiver)])
    p = herald.emit("--config", cfg, "--timeout", 30, "import", "-", "--strict",
                    stdin="\n".join(lines) + "\n")
    assert p.returncode == 1, "import --strict with a bad line: exit %d" % p.returncode
    assert reported_lines(p.stderr) == [2], p.stderr
    assert receiver.accepted_ids() == {"s-1": 1, "s-3": 1}, receiver.accepted_ids()
    assert {m["messageId"]: m["type"] for m in receiver.events}["s-1"] == "track"


# track / invalid input --------------------------------------------------------

def test_cli_track_delivers(herald, receiver):
    cfg = herald.config([herald.dest(receiver)])
    p = herald.emit("--config", cfg, "--timeout", 20, "track", "Signed Up",
                    "--props", '{"plan": "pro", "seats": 3}', "--user", "user-42")
    assert p.returncode == 0, p.stderr
    assert len(receiver.events) == 1, receiver.snapshot()
    m = receiver.events[0]
    assert m["type"] == "track" and m["event"] == "Signed Up", m
    assert m["properties"] == {"plan": "pro", "seats": 3}, m
    assert m["userId"] == "user-42", m


def test_cli_invalid_props_exit_2_stores_nothing(herald, receiver):
    cfg = herald.config([herald.dest(receiver)])
    for props in ('{"plan": ', '[1, 2]', '"text"'):
        p = herald.emit("--config", cfg, "--timeout", 5, "track", "X", "--props", props)
        assert p.returncode == 2, "props %r: exit %d" % (props, p.returncode)
        assert p.stderr.strip(), "props %r: no message on stderr" % props
    rows = _events_rows(herald)
    assert not rows, "events stored after invalid input: %s" % rows
    assert not receiver.snapshot()
    if herald.db.exists():
        c = herald.counters()
        assert not c.get("accepted"), c


def test_cli_usage_error_exit_2(herald, receiver):
    cfg = herald.config([herald.dest(receiver)])
    assert herald.emit("--config", cfg, "no-such-command").returncode == 2
    assert herald.emit("--config", cfg, "track").returncode == 2      # NAME missing


# flush / status ----------------------------------------------------------------

def test_cli_flush_timeout_exit_3(herald, receiver):
    cfg = herald.config([herald.dest(receiver)], retry_max_attempts=1000)
    receiver.stop()
    p = herald.emit("--config", cfg, "--no-flush", "track", "Queued")
    assert p.returncode == 0, p.stderr
    p = herald.emit("--config", cfg, "--timeout", 1, "flush", timeout=30)
    assert p.returncode == 3, "flush against a dead receiver: exit %d" % p.returncode
    p = herald.emit("--config", cfg, "status", "--json")
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["pending"] == 1 and st["sent"] == 0, st
    receiver.start()
    p = herald.emit("--config", cfg, "--timeout", 20, "flush")
    assert p.returncode == 0, p.stderr
    assert len(receiver.accepted_ids()) == 1


def test_cli_status_json_counts_retries(herald, receiver):
    receiver.script([(500, {}, "internal error")] * 3)
    cfg = herald.config([herald.dest(receiver)], retry_max_delay_ms=200)
    p = herald.emit("--config", cfg, "--timeout", 20, "track", "Retried", "--user", "u1")
    assert p.returncode == 0, p.stderr
    assert [r.status for r in receiver.snapshot()] == [500, 500, 500, 200]
    p = herald.emit("--config", cfg, "status", "--json")
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    for key in ("retried", "sent", "dead", "pending", "destinations"):
        assert key in st, "status --json lacks %r: %s" % (key, st)
    assert st["retried"] == 3 and st["sent"] == 1 and st["dead"] == 0, st
    assert st["pending"] == 0, st
    assert [d["name"] for d in st["destinations"]] == ["main"], st


# dead letters -----------------------------------------------------------------

def test_cli_dead_letters_list_and_replay(herald, receiver):
    state = {"reject": True}
    receiver.responder = lambda rec: (400, {}, "rejected for the test") if state["reject"] else None
    cfg = herald.config([herald.dest(receiver)])
    for i in range(3):
        p = herald.emit("--config", cfg, "--no-flush", "track", "DL",
                        "--props", json.dumps({"seq": i}), "--user", "u1")
        assert p.returncode == 0, p.stderr
    p = herald.emit("--config", cfg, "--timeout", 20, "flush")
    assert p.returncode == 0, "flush with every batch rejected: exit %d" % p.returncode

    p = herald.emit("--config", cfg, "dead-letters", "list", "--json")
    assert p.returncode == 0, p.stderr
    dls = json.loads(p.stdout)
    assert isinstance(dls, list) and len(dls) == 3, dls
    for d in dls:
        assert d["destination"] == "main" and d["http_status"] == 400, d
        assert d["reason"], d
        assert "rejected for the test" in (d.get("response") or ""), d
        assert d["event"]["event"] == "DL", d
    assert sorted(d["event"]["properties"]["seq"] for d in dls) == [0, 1, 2]
    assert not receiver.accepted_ids()

    state["reject"] = False
    p = herald.emit("--config", cfg, "--timeout", 20, "dead-letters", "replay")
    assert p.returncode == 0, p.stderr
    p = herald.emit("--config", cfg, "--timeout", 20, "flush")
    assert p.returncode == 0, p.stderr
    assert seq_counts(receiver.events) == {0: 1, 1: 1, 2: 1}
    p = herald.emit("--config", cfg, "dead-letters", "list", "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == [], p.stdout


# other commands and flag-only configuration --------------------------------------

def test_cli_every_message_type(herald, receiver):
    cfg = herald.config([herald.dest(receiver)])
    calls = [
        ("identify", "user-7", "--traits", '{"plan": "pro"}'),
        ("page", "Home", "--props", '{"path": "/"}'),
        ("screen", "Settings"),
        ("group", "org-1", "--traits", '{"seats": 5}'),
        ("alias", "anon-1", "user-7"),
        ("track", "After Identify"),
    ]
    for call in calls:
        p = herald.emit("--config", cfg, "--no-flush", *call)
        assert p.returncode == 0, "%s: exit %d" % (call[0], p.returncode)
    p = herald.emit("--config", cfg, "--timeout", 20, "flush")
    assert p.returncode == 0, p.stderr
    byt = {m["type"]: m for m in receiver.events}
    assert sorted(byt) == sorted(["identify", "page", "screen", "group", "alias", "track"]), byt
    assert byt["identify"]["userId"] == "user-7" and byt["identify"]["traits"] == {"plan": "pro"}
    assert byt["page"]["name"] == "Home" and byt["page"]["properties"] == {"path": "/"}
    assert byt["screen"]["name"] == "Settings"
    assert byt["group"]["groupId"] == "org-1" and byt["group"]["traits"] == {"seats": 5}
    assert byt["alias"]["previousId"] == "anon-1" and byt["alias"]["userId"] == "user-7"
    # identify's user id is persisted in the queue file and carried by later
    # events, even from another process.
    assert byt["track"].get("userId") == "user-7", byt["track"]


def test_cli_url_and_header_flags(herald, receiver):
    p = herald.emit("--db", herald.db, "--url", receiver.url(), "--header", "X-Tenant: acme",
                    "--timeout", 20, "track", "Flags Only", "--user", "u1")
    assert p.returncode == 0, p.stderr
    reqs = receiver.snapshot()
    assert len(reqs) == 1 and reqs[0].status == 200, reqs
    assert reqs[0].headers.get("x-tenant") == "acme", reqs[0].headers
    assert receiver.events[0]["event"] == "Flags Only"
