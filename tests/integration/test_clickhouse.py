"""The clickhouse backend against a real ClickHouse server from Debian
(clickhouse-server 18.16.1 on bookworm), started on loopback for this module
by ``scripts/clickhouse-server.sh`` (which installs the package with apt-get
when it is missing and we are root). Rows are read back with SQL over the
HTTP interface (``SELECT … FORMAT JSON``).

Tables are created from docs/clickhouse.sql (renamed per test), so the
documented schema is what is tested. A loopback proxy in front of the server
records what herald put on the wire (Content-Encoding, auth headers) and
counts requests.

Marked ``clickhouse``. To use a server of your own instead, set
``HERALD_CLICKHOUSE_URL`` (and ``HERALD_CLICKHOUSE_USER`` /
``HERALD_CLICKHOUSE_PASSWORD``: a user that may create and drop tables).
"""

import datetime
import http.client
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import REPO, build_dir


@pytest.fixture(autouse=True)
def _caller_data_unredacted(herald):
    """These tests check how the backend maps the caller's own data (IPs,
    user agents, emails in traits) onto the wire, so redaction, which is on
    by default, is turned off here; it has its own tests (test_privacy.py,
    tests/unit/test_redact.c, tests/unit/test_enrich.c)."""
    herald.redact = {"enabled": False}

SCRIPT = REPO / "scripts" / "clickhouse-server.sh"
SCHEMA = REPO / "docs" / "clickhouse.sql"

pytestmark = pytest.mark.clickhouse


# --------------------------------------------------------------------------
# The server


class ClickHouse:
    def __init__(self, url, user, password):
        self.url = url.rstrip("/")
        self.user = user
        self.password = password
        self.port = urllib.parse.urlsplit(self.url).port

    def sql(self, query, user=None, password=None):
        """Run one statement; returns the response text. Fails the test on an error."""
        req = urllib.request.Request(self.url + "/", data=query.encode(), method="POST",
                                     headers={"X-ClickHouse-User": user or self.user,
                                              "X-ClickHouse-Key": password or self.password})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            pytest.fail("ClickHouse refused %r: HTTP %d %s" % (query[:200], e.code,
                                                              e.read().decode(errors="replace")))

    def rows(self, query):
        """Rows of a SELECT as dicts (FORMAT JSON: 64-bit integers come as strings)."""
        out = json.loads(self.sql(query + " FORMAT JSON"))["data"]
        print("SQL> %s -> %d rows" % (" ".join(query.split()), len(out)))
        return out

    def create_table(self, name, dedup=False):
        """The documented table (docs/clickhouse.sql) under another name."""
        for stmt in schema_statements():
            wanted = "herald_events_dedup" if dedup else "herald_events"
            m = re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", stmt)
            if m and m.group(1) == wanted:
                self.sql("DROP TABLE IF EXISTS %s" % name)
                self.sql(stmt.replace(m.group(0), "CREATE TABLE %s" % name, 1))
                return name
        pytest.fail("docs/clickhouse.sql has no %s table" % ("dedup" if dedup else "main"))


def schema_statements():
    text = SCHEMA.read_text()
    lines = [line.split("--", 1)[0] for line in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory):
    env = os.environ
    if env.get("HERALD_CLICKHOUSE_URL"):
        yield ClickHouse(env["HERALD_CLICKHOUSE_URL"], env.get("HERALD_CLICKHOUSE_USER", "default"),
                         env.get("HERALD_CLICKHOUSE_PASSWORD", ""))
        return
    state = tmp_path_factory.mktemp("clickhouse")
    started = time.monotonic()
    p = subprocess.run(["bash", str(SCRIPT), "start", str(state)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=900, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        pytest.fail("scripts/clickhouse-server.sh start failed (%d):\n%s"
                    % (p.returncode, p.stderr[-4000:]), pytrace=False)
    print("clickhouse-server started in %.1f s" % (time.monotonic() - started))
    values = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    try:
        yield ClickHouse(values["HERALD_CLICKHOUSE_URL"], values["HERALD_CLICKHOUSE_USER"],
                         values["HERALD_CLICKHOUSE_PASSWORD"])
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", values["HERALD_CLICKHOUSE_STATE"]],
                       timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def table(clickhouse, request):
    name = "t_%s_%s" % (re.sub(r"\W", "_", request.node.name)[:40], uuid.uuid4().hex[:6])
    clickhouse.create_table(name)
    yield name
    clickhouse.sql("DROP TABLE IF EXISTS %s" % name)


# --------------------------------------------------------------------------
# A recording proxy in front of the server


class Proxy:
    """Forwards POSTs to ClickHouse and records each request's headers."""

    FORWARDED = ("Content-Encoding", "Content-Type", "X-ClickHouse-User", "X-ClickHouse-Key",
                 "Authorization")

    def __init__(self, target_port):
        self.requests = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                headers = {k: self.headers[k] for k in proxy.FORWARDED if k in self.headers}
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                with proxy.lock:
                    proxy.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "bytes": len(body), "status": resp.status})
                self.send_response(resp.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(clickhouse):
    p = Proxy(clickhouse.port)
    yield p
    p.close()


# --------------------------------------------------------------------------
# herald


def dest(clickhouse, table_name, url=None, **kw):
    d = {"name": "ch", "backend": "clickhouse", "url": url or clickhouse.url,
         "table": table_name, "user": clickhouse.user, "password": clickhouse.password}
    d.update(kw)
    return d


def send(herald, cfg, messages, timeout=60):
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    p = herald.emit("--config", cfg, "--timeout", str(timeout), "import", "--strict", "-",
                    stdin=stdin)
    assert p.returncode == 0, p.stderr
    assert "still queued" not in p.stderr, p.stderr
    return p


def unix(ts):
    """(seconds, milliseconds) of an RFC 3339 time."""
    dt = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(dt.timestamp() // 1), dt.microsecond // 1000


TYPES = ["track", "page", "screen", "identify", "group", "alias"]


def message(i, run):
    """Message i of every type in turn, with a timestamp of its own."""
    kind = TYPES[i % len(TYPES)]
    base = datetime.datetime(2025, 1, 5, 9, 12, 44, 123000, tzinfo=datetime.timezone.utc)
    t = base + datetime.timedelta(minutes=i, milliseconds=7 * i)
    if i % 4 == 1:  # another zone: the same instant
        ts = t.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat(
            timespec="milliseconds")
    elif i % 4 == 2:  # whole seconds
        ts = t.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)
    m = {"type": kind, "messageId": "%s-%03d" % (run, i), "timestamp": ts,
         "anonymousId": "anon-%d" % (i % 5), "userId": "user-%d" % (i % 7)}
    if kind == "track":
        m["event"] = "Order Completed"
        m["properties"] = {"seq": i, "revenue": round(9.99 + i, 2), "ratio": 0.1, "currency": "EUR", "tags": ["a", "b"],
                           "nested": {"k": "v", "n": i, "deep": {"x": None}},
                           "text": "Grüße 🚀 \"quoted\" \\ back\nnew line\ttab", "flag": True,
                           "big": 2 ** 53 + i, "neg": -i}
    elif kind == "page":
        m["name"] = "Pricing"
        m["properties"] = {"url": "https://acme.example/pricing?utm_source=nl&utm_campaign=fall",
                           "seq": i}
    elif kind == "screen":
        m["name"] = "Settings Screen"
        m["properties"] = {"seq": i}
    elif kind == "identify":
        m["traits"] = {"plan": "pro", "seq": i, "email": "u%d@example.com" % i}
    elif kind == "group":
        m["groupId"] = "acme-%d" % i
        m["traits"] = {"employees": 12 + i}
    else:
        m["previousId"] = "anon-%d" % (i % 5)
    return m


# --------------------------------------------------------------------------
# Tests


def test_every_type_inserted_and_read_back(herald, clickhouse, table):
    run = uuid.uuid4().hex[:8]
    messages = [message(i, run) for i in range(60)]
    cfg = herald.config([dest(clickhouse, table, batch_max_events=25)])
    send(herald, cfg, messages)
    assert herald.dead_letters() == []
    rows = clickhouse.rows("SELECT *, toUnixTimestamp(timestamp) AS ts FROM %s ORDER BY message_id"
                           % table)
    assert [r["message_id"] for r in rows] == [m["messageId"] for m in messages]
    for m, r in zip(messages, rows):
        where = m["messageId"]
        assert r["type"] == m["type"], where
        assert r["event"] == m.get("event", m.get("name", "")), where
        assert r["user_id"] == m["userId"], where
        assert r["anonymous_id"] == m["anonymousId"], where
        assert r["previous_id"] == m.get("previousId", ""), where
        seconds, ms = unix(m["timestamp"])
        assert int(r["ts"]) == seconds, where
        assert int(r["timestamp_ms"]) == ms, where
        assert json.loads(r["properties"]) == m.get("properties", {}), where
        if m["type"] == "track":  # reals as written, not 17 digits (9.9900000000000002)
            assert '"revenue":%r,"ratio":0.1,' % m["properties"]["revenue"] in r["properties"]
        assert json.loads(r["traits"]) == m.get("traits", {}), where
        context = json.loads(r["context"])
        assert context["library"]["name"] == "herald", where
        assert int(r["session_id"]) == context["session"]["id"] > 0, where
        assert int(r["session_sequence"]) == context["session"]["sequence"], where
        assert r["library_version"] == context["library"]["version"], where
        assert r["os_name"] == context["os"]["name"], where
        assert r["group_id"] == m.get("groupId", context.get("groupId", "")), where
        if m["type"] == "page":
            assert r["page_url"] == m["properties"]["url"], where
            assert r["page_path"] == "/pricing", where
            assert r["campaign_source"] == "nl", where
            assert r["campaign_name"] == "fall", where
    # One request per batch: 60 events in batches of at most 25.
    assert herald.counters().get("requests", 3) <= 4


def test_gzip_and_auth_headers_on_the_wire(herald, clickhouse, table, proxy):
    run = uuid.uuid4().hex[:8]
    messages = [message(i, run) for i in range(40)]
    cfg = herald.config([dest(clickhouse, table, url=proxy.url)])
    send(herald, cfg, messages)
    assert int(clickhouse.rows("SELECT count() AS n FROM %s" % table)[0]["n"]) == 40
    assert proxy.requests, "no request went through the proxy"
    for r in proxy.requests:
        h = {k.lower(): v for k, v in r["headers"].items()}
        assert h.get("content-encoding") == "gzip", h
        assert h.get("x-clickhouse-user") == clickhouse.user
        assert h.get("x-clickhouse-key") == clickhouse.password
        assert "authorization" not in h  # never two authentication methods at once
        assert r["path"].startswith("/?query=INSERT%20INTO%20%60" + table + "%60%20FORMAT"
                                    "%20JSONEachRow"), r["path"]
        assert r["status"] == 200

    # gzip off: plain bodies, still inserted.
    proxy.requests.clear()
    cfg = herald.config([dest(clickhouse, table, url=proxy.url, gzip=False)])
    send(herald, cfg, [message(i, run + "b") for i in range(40)])
    assert int(clickhouse.rows("SELECT count() AS n FROM %s" % table)[0]["n"]) == 80
    assert proxy.requests
    assert all("Content-Encoding" not in r["headers"] for r in proxy.requests)


def dead_letter_run(herald, clickhouse, proxy, table_name, count=30, db="q.db", **kw):
    """Send `count` messages through the proxy (into a queue file of their
    own: `db`); returns (messages, dead letters, seconds taken)."""
    run = uuid.uuid4().hex[:8]
    messages = [message(i, run) for i in range(count)]
    db = herald.tmp / db
    cfg = herald.config([dest(clickhouse, table_name, url=proxy.url, **kw)],
                        retry_base_ms=50, retry_max_delay_ms=200, db_path=str(db))
    proxy.requests.clear()
    started = time.monotonic()
    send(herald, cfg, messages, timeout=30)
    elapsed = time.monotonic() - started
    dead = herald.dead_letters(db=db)
    return messages, dead, elapsed


def test_wrong_password_dead_letters_with_a_configuration_reason(herald, clickhouse, table,
                                                                 proxy):
    messages, dead, elapsed = dead_letter_run(herald, clickhouse, proxy, table,
                                              password="wrong-" + clickhouse.password,
                                              batch_max_events=10)
    assert len(dead) == len(messages)
    for d in dead:
        assert d["reason"].startswith("configuration: ClickHouse code 193 WRONG_PASSWORD"), d
        assert clickhouse.password not in d["reason"]
        assert d["http_status"] == 401
    # Not retried: one request per batch of 10, and the queue is drained at once.
    assert len(proxy.requests) == 3, proxy.requests
    assert elapsed < 20
    assert int(clickhouse.rows("SELECT count() AS n FROM %s" % table)[0]["n"]) == 0

    # Fixed: the dead letters replay into the table.
    cfg = herald.config([dest(clickhouse, table)])
    p = herald.emit("--config", cfg, "--timeout", "30", "dead-letters", "replay")
    assert p.returncode == 0, p.stderr
    assert "replayed 30" in p.stdout
    got = clickhouse.rows("SELECT message_id FROM %s ORDER BY message_id" % table)
    assert [r["message_id"] for r in got] == [m["messageId"] for m in messages]
    assert herald.dead_letters() == []


def test_unknown_user_and_unknown_table(herald, clickhouse, table, proxy):
    _, dead, _ = dead_letter_run(herald, clickhouse, proxy, table, count=5, user="nobody")
    assert len(dead) == 5
    assert all(d["reason"].startswith("configuration: ClickHouse code 192 UNKNOWN_USER")
               for d in dead), dead[0]["reason"]

    _, dead, _ = dead_letter_run(herald, clickhouse, proxy, "no_such_table", count=5, db="2.db")
    assert len(dead) == 5
    assert all(d["reason"].startswith("configuration: ClickHouse code 60 UNKNOWN_TABLE")
               for d in dead), dead[0]["reason"]
    assert all(d["http_status"] == 404 for d in dead)
    assert len(proxy.requests) == 1

    _, dead, _ = dead_letter_run(herald, clickhouse, proxy, "no_such_db.events", count=2,
                                 db="3.db")
    assert [d["reason"][:50] for d in dead] == [
        "configuration: ClickHouse code 81 UNKNOWN_DATABASE"] * 2


def test_mapped_column_missing_from_the_table(herald, clickhouse, table, proxy):
    columns = {"message_id": "$.messageId", "no_such_column": "$.event"}
    _, dead, _ = dead_letter_run(herald, clickhouse, proxy, table, count=12, columns=columns)
    assert len(dead) == 12
    assert all("code 117 INCORRECT_DATA: Unknown field found" in d["reason"] and
               d["reason"].startswith("configuration:") for d in dead), dead[0]["reason"]
    # A configuration error is not bisected: the batch is refused once.
    assert len(proxy.requests) == 1

    # ... unless the table is told to skip unknown fields.
    _, dead, _ = dead_letter_run(herald, clickhouse, proxy, table, count=12, columns=columns,
                                 db="2.db", settings={"input_format_skip_unknown_fields": 1})
    assert dead == []
    assert int(clickhouse.rows("SELECT count() AS n FROM %s" % table)[0]["n"]) == 12


def test_config_errors_retry_policy(herald, clickhouse, table, proxy):
    """config_errors "retry": kept and retried (within retry_max_attempts), then
    dead-lettered as given up."""
    _, dead, _ = dead_letter_run(herald, clickhouse, proxy, table, count=3,
                                 password="wrong", config_errors="retry",
                                 retry_max_attempts=3)
    assert len(dead) == 3
    assert all("configuration: ClickHouse code 193" in d["reason"] for d in dead)
    assert all(d["reason"].startswith("gave up") for d in dead), dead[0]["reason"]
    assert len(proxy.requests) == 3


CUSTOM_TABLE = """CREATE TABLE {name} (
    message_id String, event String, qty UInt32, small UInt8, at DateTime, day Date,
    price Float64, ok UInt8, raw_json String, source String
) ENGINE = MergeTree ORDER BY message_id"""

CUSTOM_COLUMNS = {
    "message_id": "$.messageId",
    "event": ["$.event", "$.name", "$.type"],
    "qty": {"path": "$.properties.qty", "type": "raw"},
    "small": {"path": "$.properties.small", "type": "uint8", "default": 7},
    "at": {"path": ["$.properties.at", "$.timestamp"], "type": "datetime"},
    "day": {"path": "$.timestamp", "type": "date"},
    "price": {"path": "$.properties.price", "type": "float64"},
    "ok": {"path": "$.properties.ok", "type": "bool"},
    "raw_json": {"path": "$", "type": "json"},
    "source": {"const": "herald"},
}


@pytest.fixture
def custom_table(clickhouse):
    name = "custom_%s" % uuid.uuid4().hex[:8]
    clickhouse.sql(CUSTOM_TABLE.format(name=name))
    yield name
    clickhouse.sql("DROP TABLE IF EXISTS %s" % name)


def track(run, i, **props):
    return {"type": "track", "event": "Item Added", "messageId": "%s-%03d" % (run, i),
            "timestamp": "2025-03-01T23:59:59.999Z", "anonymousId": "a", "properties": props}


def test_one_bad_row_is_isolated_by_the_server(herald, clickhouse, custom_table, proxy):
    """qty goes raw into a UInt32 column: "lots" makes ClickHouse refuse the
    whole INSERT (18.16: code 27, HTTP 500). herald splits the batch until the
    event is alone, dead-letters it, and inserts the other 29."""
    run = uuid.uuid4().hex[:8]
    messages = [track(run, i, qty=i, price=i + 0.25, ok=i % 2 == 0) for i in range(30)]
    messages[17]["properties"]["qty"] = "lots"
    cfg = herald.config([dest(clickhouse, custom_table, url=proxy.url, columns=CUSTOM_COLUMNS)])
    send(herald, cfg, messages)
    dead = herald.dead_letters()
    assert [d["event"]["messageId"] for d in dead] == [messages[17]["messageId"]]
    reason = dead[0]["reason"]
    assert reason.startswith("ClickHouse code 27 CANNOT_PARSE_INPUT_ASSERTION_FAILED"), reason
    assert "(while read the value of key qty)" in reason
    assert "lots" not in reason  # the reason never quotes event data
    rows = clickhouse.rows("SELECT message_id, qty, price, ok, source FROM %s ORDER BY message_id"
                           % custom_table)
    assert [r["message_id"] for r in rows] == [m["messageId"] for i, m in enumerate(messages)
                                               if i != 17]
    for r in rows:
        i = int(r["message_id"].rsplit("-", 1)[1])
        assert (int(r["qty"]), r["price"], int(r["ok"]), r["source"]) == (
            i, i + 0.25, int(i % 2 == 0), "herald")
    # Bisection, not a retry loop: a bounded number of requests (14 for 30
    # events here: the core doubles the batch size again after each success).
    assert 2 < len(proxy.requests) <= 20, len(proxy.requests)
    assert sum(r["status"] != 200 for r in proxy.requests) <= 8


def test_values_that_do_not_fit_are_never_sent(herald, clickhouse, custom_table, proxy):
    """18.16 would store these silently wrong (300 in a UInt8 wraps to 44, an
    unparsable DateTime becomes 1970): herald checks them before sending and
    dead-letters only those events, with the column and path as the reason."""
    run = uuid.uuid4().hex[:8]
    messages = [track(run, i, qty=i, small=i, at=1700000000 + i) for i in range(12)]
    messages[3]["properties"]["small"] = 300
    messages[5]["properties"]["at"] = "garbage"
    messages[8]["properties"]["at"] = "2200-01-01T00:00:00Z"  # beyond DateTime (2106)
    messages[9]["properties"]["ok"] = "maybe"
    del messages[10]["properties"]["small"]  # absent: the column's default (7)
    messages[11]["properties"]["small"] = "255"  # a decimal string that fits
    cfg = herald.config([dest(clickhouse, custom_table, url=proxy.url, columns=CUSTOM_COLUMNS)])
    send(herald, cfg, messages)
    dead = {d["event"]["messageId"]: d["reason"] for d in herald.dead_letters()}
    assert set(dead) == {messages[i]["messageId"] for i in (3, 5, 8, 9)}
    # One reason for the batch's dead letters: it names every column concerned
    # and the first event's problem.
    assert set(dead.values()) == {
        "clickhouse: 4 events of the batch do not fit their columns (small, at, ok); the first: "
        "column small: $.properties.small is not an integer within the column type's range "
        "(unsigned)"}
    assert all("garbage" not in r and "maybe" not in r for r in dead.values())

    # Alone in its batch, an event gets its own reason.
    db = herald.tmp / "single.db"
    cfg = herald.config([dest(clickhouse, custom_table, columns=CUSTOM_COLUMNS, batch_max_events=1)],
                        db_path=str(db))
    send(herald, cfg, [messages[i] for i in (5, 8, 9)])
    assert [d["reason"] for d in herald.dead_letters(db=db)] == [
        "clickhouse: column at: $.properties.at is not an RFC 3339 time (or unix seconds) within "
        "DateTime's range (1970-2106)"] * 2 + [
        "clickhouse: column ok: $.properties.ok is not a boolean (true/false, 1/0)"]
    rows = clickhouse.rows("SELECT message_id, small, toUnixTimestamp(at) AS at, "
                           "toString(day) AS day, raw_json FROM %s ORDER BY message_id"
                           % custom_table)
    assert len(rows) == 8
    assert len(proxy.requests) == 1  # the good events in one request, none refused
    for r in rows:
        i = int(r["message_id"].rsplit("-", 1)[1])
        assert int(r["small"]) == {10: 7, 11: 255}.get(i, i)
        assert int(r["at"]) == 1700000000 + i
        assert r["day"] == "2025-03-01"
        assert json.loads(r["raw_json"])["messageId"] == r["message_id"]


def test_replacing_merge_tree_keeps_one_row_per_message(herald, clickhouse):
    """The documented dedup variant: the same events sent twice (as a retry
    after a lost response would) count once with FINAL."""
    name = clickhouse.create_table("dedup_%s" % uuid.uuid4().hex[:8], dedup=True)
    try:
        run = uuid.uuid4().hex[:8]
        messages = [message(i, run) for i in range(24)]
        for attempt in range(2):
            cfg = herald.config([dest(clickhouse, name)])
            send(herald, cfg, messages)
        raw = int(clickhouse.rows("SELECT count() AS n FROM %s" % name)[0]["n"])
        final = int(clickhouse.rows("SELECT count() AS n FROM %s FINAL" % name)[0]["n"])
        assert raw == 48
        assert final == 24
    finally:
        clickhouse.sql("DROP TABLE IF EXISTS %s" % name)


def test_module_by_absolute_path(herald, clickhouse, table):
    module = build_dir() / "herald-backend-clickhouse.so"
    assert module.is_file(), "%s not built" % module
    cfg = herald.config([dest(clickhouse, table, backend=str(module))])
    res = herald.produce(cfg, 250, flush_ms=20000, close_ms=1000)
    assert len(res.ok) == 250
    rows = clickhouse.rows("SELECT event, properties FROM %s" % table)
    assert len(rows) == 250
    assert {r["event"] for r in rows} == {"Test Event"}
    assert sorted(json.loads(r["properties"])["seq"] for r in rows) == list(range(250))


@pytest.mark.parametrize("override, message", [
    ({"table": "events; DROP TABLE x"}, "clickhouse: table"),
    ({"table": None}, "\"table\" is required"),
    ({"url": "http://default:pw@127.0.0.1:8123"}, "must not carry credentials"),
    ({"url": "http://127.0.0.1:8123/?user=x"}, "without white space, query or fragment"),
    ({"settings": {"insert_deduplication_token": "x"}}, "insert_deduplication_token"),
    ({"settings": {"password": "x"}}, "setting \"password\" is refused"),
    ({"columns": {"qty": {"path": "$.x", "type": "uint128"}}}, "unknown type \"uint128\""),
    ({"columns": {"bad name": "$.x"}}, "column name \"bad name\""),
    ({"columns": {"a": {"const": 300, "type": "uint8"}}}, "the const value is not an integer"),
    ({"columns": {"a": "x.y"}}, "a path looks like"),
    ({"config_errors": "ignore"}, "config_errors must be"),
    ({"bogus": 1}, "unknown or mistyped setting \"bogus\""),
])
def test_config_is_checked_at_open(herald, override, message):
    d = {"name": "ch", "backend": "clickhouse", "url": "http://127.0.0.1:8123",
         "table": "herald_events", "password": "s3cret-pw"}
    for k, v in override.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    cfg = herald.config([d])
    p = herald.emit("--config", cfg, "--no-flush", "track", "x")
    assert p.returncode != 0
    assert message in p.stderr
    assert "s3cret-pw" not in p.stderr
