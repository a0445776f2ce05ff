"""Secret hygiene: write keys, auth header values (and the HTTP Basic form of
a write key) and the redaction hash key never reach herald-emit's output
(-vv), the dead-letter table, the bytes of the queue file or the stats JSON;
the queue files are 0600 even under umask 000.

Servers answer 500, 400 and 401 (tests/integration/fault_server.py). Two
kinds: servers that say nothing about the credentials, and servers that
echo them back in their error body, as some APIs do ("invalid key: ...").
"""

import base64
import json
import os
import secrets
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import child_env, wait_until
from fault_server import FaultServer, respond, stall


def make_secrets():
    wk = "wk_live_" + secrets.token_hex(12)
    wk2 = "wk_flag_" + secrets.token_hex(12)
    return {
        "write_key": wk,
        "write_key Basic": base64.b64encode((wk + ":").encode()).decode(),
        "flag write_key": wk2,
        "flag write_key Basic": base64.b64encode((wk2 + ":").encode()).decode(),
        "Bearer token": "tok_" + secrets.token_hex(16),
        "X-Api-Key value": "xk_" + secrets.token_hex(12),
        "hash_key": secrets.token_hex(32),
    }


def forms(value):
    raw = value.encode()
    return {raw, json.dumps(value)[1:-1].encode()}


def find_leaks(secret_values, blobs, skip=()):
    found = []
    for name, value in secret_values.items():
        for where, blob in blobs.items():
            if (name, where) in skip:
                continue
            if any(f in blob for f in forms(value)):
                found.append("%s found in %s" % (name, where))
    return found


def dead_letter_blob(herald):
    """Every column of every dead letter, as text."""
    cols = [r[1] for r in herald.query("PRAGMA table_info(dead_letters)")]
    rows = herald.query("SELECT * FROM dead_letters")
    parts = []
    for row in rows:
        for c, v in zip(cols, row):
            parts.append("%s=%s" % (c, v.decode("utf-8", "replace") if isinstance(v, bytes)
                                    else v))
    return "\n".join(parts).encode()


class Servers:
    """seg: 500 then 400; auth: 401; flag: 500 forever. With echo, each
    error body repeats the request's credentials."""

    def __init__(self, echo):
        self.seg, self.auth, self.flag = (FaultServer().start() for _ in range(3))

        def body(text, req):
            if not echo:
                return text
            return "%s: authorization=%s x-api-key=%s" % (
                text, req.headers.get("authorization", ""), req.headers.get("x-api-key", ""))

        state = {"n": 0}
        lock = threading.Lock()

        def seg(req):
            with lock:
                state["n"] += 1
                first = state["n"] == 1
            return respond(500 if first else 400, {}, body("invalid request", req))

        self.seg.responder = seg
        self.auth.responder = lambda req: respond(401, {}, body("unauthorized", req))
        self.flag.responder = lambda req: respond(500, {}, body("backend down", req))

    def stop(self):
        for s in (self.seg, self.auth, self.flag):
            s.stop()

    def saw_credentials(self, sec):
        """The secrets did go on the wire (else the test proves nothing)."""
        seg = self.seg.snapshot()[0].headers
        auth = self.auth.snapshot()[0].headers
        flag = self.flag.snapshot()[0].headers
        assert seg.get("authorization") == "Basic " + sec["write_key Basic"], seg
        assert seg.get("x-api-key") == sec["X-Api-Key value"], seg
        assert auth.get("authorization") == "Bearer " + sec["Bearer token"], auth
        assert flag.get("authorization") == "Basic " + sec["flag write_key Basic"], flag


def secret_config(herald, servers, sec):
    return herald.config(
        [{"name": "seg", "backend": "rest", "url": servers.seg.url(),
          "write_key": sec["write_key"], "headers": {"X-Api-Key": sec["X-Api-Key value"]}},
         {"name": "auth", "backend": "rest", "url": servers.auth.url(),
          "headers": {"Authorization": "Bearer " + sec["Bearer token"]}}],
        retry_base_ms=50, retry_max_delay_ms=500, retry_max_attempts=2,
        connect_timeout_ms=1000, request_timeout_ms=1000, flush_interval_ms=50,
        redact={"hash_key": sec["hash_key"]})


def run_everything(herald, servers, sec):
    """The CLI (-vv; config file plus --url/--write-key flags), its status
    and dead-letter listings, and the producer (libherald's own stats).
    Returns the blobs to scan."""
    cfg = secret_config(herald, servers, sec)
    flags = ["-vv", "--config", cfg, "--url", servers.flag.url(),
             "--write-key", sec["flag write_key"]]
    blobs = {}
    p = herald.emit(*flags, "--timeout", "10", "track", "Secret Test",
                    "--props", '{"plan":"pro"}')
    assert p.returncode == 0, p.stderr
    assert "dead-lettered" in p.stderr, "the -vv log should show the failures:\n" + p.stderr
    blobs["track stdout"], blobs["track stderr (-vv)"] = p.stdout.encode(), p.stderr.encode()
    for cmd in (["status", "--json"], ["dead-letters", "list", "--json"]):
        q = herald.emit(*flags, *cmd)
        assert q.returncode == 0, q.stderr
        blobs[" ".join(cmd) + " stdout"] = q.stdout.encode()
        blobs[" ".join(cmd) + " stderr (-vv)"] = q.stderr.encode()
    status = json.loads(blobs["status --json stdout"])
    assert status["dead"] == 3 and status["pending"] == 0, status

    res = herald.produce(cfg, 1, flush_ms=15000)
    assert res.flush == 0, res.describe()
    stats_line = [l for l in res.stdout.splitlines() if l.startswith("stats ")]
    assert stats_line and res.stats["last_error"], res.describe()
    blobs["libherald stats JSON"] = stats_line[0].encode()
    blobs["producer stderr"] = res.stderr.encode()

    servers.saw_credentials(sec)
    dls = herald.dead_letters()
    assert len(dls) == 5, dls  # 3 from the CLI run, 2 from the producer's
    assert {d["http_status"] for d in dls} == {400, 401, 500}, dls
    blobs["dead_letters table"] = dead_letter_blob(herald)
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(herald.db) + suffix)
        if path.exists():
            blobs["queue file%s bytes" % suffix] = path.read_bytes()
    return blobs


@pytest.fixture
def quiet_servers():
    s = Servers(echo=False)
    yield s
    s.stop()


@pytest.fixture
def echo_servers():
    s = Servers(echo=True)
    yield s
    s.stop()


CLI_OUTPUT = ("track stdout", "track stderr (-vv)", "status --json stdout",
              "status --json stderr (-vv)", "dead-letters list --json stdout",
              "dead-letters list --json stderr (-vv)")


def test_no_secret_anywhere(herald, quiet_servers):
    sec = make_secrets()
    blobs = run_everything(herald, quiet_servers, sec)
    # The hash key in the CLI's -vv output is test_cli_vv_masks_the_hash_key's.
    skip = {("hash_key", where) for where in CLI_OUTPUT}
    found = find_leaks(sec, blobs, skip)
    assert not found, "leaks:\n" + "\n".join(found)


def test_cli_vv_masks_the_hash_key(herald, quiet_servers):
    sec = make_secrets()
    blobs = run_everything(herald, quiet_servers, sec)
    found = find_leaks({"hash_key": sec["hash_key"]},
                       {k: v for k, v in blobs.items() if k in CLI_OUTPUT})
    assert not found, "leaks:\n" + "\n".join(found)


def test_cli_scrubs_secrets_echoed_by_the_server(herald, echo_servers):
    """herald-emit's second line of defence: what a server echoes back is
    masked in everything the CLI prints (same configuration)."""
    sec = make_secrets()
    blobs = run_everything(herald, echo_servers, sec)
    cli = {k: v for k, v in blobs.items() if k in CLI_OUTPUT}
    # The library already replaces what was echoed with [secret]; the CLI
    # masks anything left with ***. Either marker shows the echo happened.
    listed = cli["dead-letters list --json stdout"]
    assert b"***" in listed or b"[secret]" in listed, "nothing was echoed?"
    found = find_leaks({k: v for k, v in sec.items() if k != "hash_key"}, cli)
    assert not found, "leaks:\n" + "\n".join(found)


def test_secrets_echoed_by_the_server_are_not_stored(herald, echo_servers):
    sec = make_secrets()
    blobs = run_everything(herald, echo_servers, sec)
    lib = {k: v for k, v in blobs.items() if k not in CLI_OUTPUT}
    found = find_leaks({k: v for k, v in sec.items() if k != "hash_key"}, lib)
    assert not found, "leaks:\n" + "\n".join(found)


# file modes -------------------------------------------------------------------

def _umask000():
    os.umask(0)


def queue_files(db):
    return {p.name: stat.S_IMODE(p.stat().st_mode)
            for p in (db, Path(str(db) + "-wal"), Path(str(db) + "-shm"),
                      Path(str(db) + ".lock")) if p.exists()}


def test_files_are_0600_under_umask_000(herald, emit_bin):
    """Both the library (producer) and the CLI, while the files are in use
    (a request in flight, so the delivery lock is taken)."""
    server = FaultServer().start()
    server.responder = lambda req: stall(20)
    try:
        for who, db in (("producer", herald.tmp / "lib.db"), ("herald-emit", herald.tmp / "cli.db")):
            cfg = herald.config([{"name": "main", "backend": "rest", "url": server.url()}],
                                db_path=str(db), request_timeout_ms=20000)
            if who == "producer":
                args = herald.producer_args(cfg, 1_000_000, interval_us=2000)
                stdin = subprocess.DEVNULL
            else:
                args = [str(emit_bin), "--config", str(cfg), "import", "-"]
                stdin = subprocess.PIPE
            before = server.connections
            proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=child_env(),
                                    preexec_fn=_umask000)
            try:
                if stdin is subprocess.PIPE:
                    proc.stdin.write(b'{"type":"track","event":"Mode Test"}\n')
                    proc.stdin.flush()
                assert server.wait_for(lambda s: s.connections > before, 10), \
                    "%s never sent a request" % who
                names = ("", "-wal", "-shm", ".lock")
                assert wait_until(lambda: all(Path(str(db) + n).exists() for n in names), 10), \
                    "%s: files in use: %s" % (who, sorted(queue_files(db)))
                modes = queue_files(db)
            finally:
                proc.kill()
                proc.wait(10)
                if proc.stdin:
                    proc.stdin.close()
            print(who, {k: oct(v) for k, v in modes.items()})
            wrong = {k: oct(v) for k, v in modes.items() if v != 0o600}
            assert not wrong, "%s under umask 000: files not 0600: %s" % (who, wrong)
            assert len(modes) == 4, modes
    finally:
        server.stop()
