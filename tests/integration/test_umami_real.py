"""The Umami backend against a real Umami 2.10.0 server (npm package, built
with the patches of umami-real.md) on PostgreSQL from Debian: herald sends
page views, custom events with properties and identify calls for three
anonymous ids, and the test reads them back from Umami's database with psql.

Marked ``umami_real``; skipped unless a server is given or may be started:

- ``HERALD_UMAMI_START=1``: the module starts one with
  ``scripts/umami-server.sh start`` (a cached build: minutes the first time,
  about 2 s later) and stops it at the end;
- or ``HERALD_UMAMI_URL``, ``HERALD_UMAMI_DATABASE_URL`` (and optionally
  ``HERALD_UMAMI_WEBSITE``) of a running one, e.g.
  ``eval "$(scripts/umami-server.sh start)"``.

Every test inserts its own website row, so tests never see each other's data.
"""

import os
import subprocess
import uuid
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _caller_data_unredacted(herald):
    """Checks how the caller's own data lands in Umami's tables; redaction
    (on by default) has its own tests (test_privacy.py)."""
    herald.redact = {"enabled": False}

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "umami-server.sh"
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")

pytestmark = pytest.mark.umami_real


@pytest.fixture(scope="module")
def server():
    env = os.environ
    if env.get("HERALD_UMAMI_URL") and env.get("HERALD_UMAMI_DATABASE_URL"):
        yield {"url": env["HERALD_UMAMI_URL"], "database_url": env["HERALD_UMAMI_DATABASE_URL"]}
        return
    if env.get("HERALD_UMAMI_START") != "1":
        pytest.skip("no real Umami: set HERALD_UMAMI_START=1 (starts scripts/umami-server.sh)"
                    " or HERALD_UMAMI_URL and HERALD_UMAMI_DATABASE_URL")
    p = subprocess.run(["bash", str(SCRIPT), "start"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=1800,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        pytest.fail("scripts/umami-server.sh start failed (%d):\n%s"
                    % (p.returncode, p.stderr[-4000:]), pytrace=False)
    values = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    try:
        yield {"url": values["HERALD_UMAMI_URL"],
               "database_url": values["HERALD_UMAMI_DATABASE_URL"]}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", values["HERALD_UMAMI_STATE"]],
                       timeout=120, stdin=subprocess.DEVNULL)


def sql(server, query):
    """Rows of a query through psql, as lists of strings."""
    p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                        server["database_url"], "-c", query],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    print("SQL> %s\n%s" % (" ".join(query.split()), p.stdout))
    return [line.split("\t") for line in p.stdout.splitlines() if line]


@pytest.fixture
def website(server):
    """A website row of its own, owned by Umami's admin user."""
    w = str(uuid.uuid4())
    sql(server, "insert into website (website_id, name, domain, user_id, created_at) "
                "select '%s', 'herald-test', 'shop.example', user_id, now() "
                "from \"user\" where username = 'admin' returning website_id" % w)
    return w


def udest(server, website, **kw):
    d = {"name": "umami", "backend": "umami", "url": server["url"], "website": website,
         "version": "2.10"}
    d.update(kw)
    return d


def send(herald, cfg, messages, timeout=60):
    stdin = "".join(__import__("json").dumps(m) + "\n" for m in messages)
    p = herald.emit("--config", cfg, "--timeout", str(timeout), "import", "-", stdin=stdin)
    assert p.returncode == 0, p.stderr
    assert "still queued" not in p.stderr, p.stderr
    return p


def test_pageviews_custom_events_and_sessions_read_back(herald, server, website):
    anons = ["anon-%s" % uuid.uuid4().hex[:8] for _ in range(3)]

    def context(**kw):
        c = {"userAgent": BROWSER_UA, "locale": "de-DE", "screen": {"width": 1920, "height": 1080}}
        c.update(kw)
        return c

    messages = []
    for i, anon in enumerate(anons):
        for n in range(3):
            messages.append({
                "type": "page", "name": "Page %d" % n, "anonymousId": anon,
                "properties": {"url": "https://shop.example/v%d/p%d?utm_source=news" % (i, n),
                               "referrer": "https://www.google.com/search?q=herald",
                               "title": "Page %d" % n},
                "context": context()})
        messages.append({
            "type": "track", "event": "Signup", "anonymousId": anon,
            "properties": {"plan": "pro-%d" % i, "seats": 3 + i, "trial": True,
                           "nested": {"a": 1.5}},
            "context": context(page={"url": "https://shop.example/v%d/signup" % i})})
        messages.append({
            "type": "track", "event": "Checkout Completed", "anonymousId": anon,
            "properties": {"revenue": 19.99, "currency": "EUR"},
            "context": context(page={"url": "https://shop.example/v%d/checkout" % i})})
        messages.append({
            "type": "identify", "anonymousId": anon, "userId": "user-%d" % i,
            "traits": {"tier": "gold", "age": 30 + i},
            "context": context(page={"url": "https://shop.example/v%d/account" % i})})
    cfg = herald.config([udest(server, website)])
    send(herald, cfg, messages)
    c = herald.counters()
    assert c.get("sent") == len(messages), c
    assert c.get("dead", 0) == 0 and c.get("server_dropped", 0) == 0, (c, herald.dead_letters())

    # Page views (event_type 1) with their paths, queries, titles and referrers.
    rows = sql(server, """
        select url_path, url_query, page_title, referrer_domain, referrer_path, referrer_query
        from website_event where website_id = '%s' and event_type = 1
        order by url_path""" % website)
    assert rows == [["/v%d/p%d" % (i, n), "utm_source=news", "Page %d" % n, "google.com",
                     "/search", "q=herald"] for i in range(3) for n in range(3)], rows

    # Custom events (event_type 2) by name and path.
    rows = sql(server, """
        select event_name, url_path from website_event
        where website_id = '%s' and event_type = 2 order by url_path""" % website)
    want = []
    for i in range(3):
        want += [["Checkout Completed", "/v%d/checkout" % i], ["Signup", "/v%d/signup" % i]]
    assert rows == want, rows

    # Their properties in event_data: 1 string, 2 number, 3 boolean.
    rows = sql(server, """
        select e.url_path, d.event_key, d.string_value, d.number_value, d.data_type
        from event_data d join website_event e on e.event_id = d.website_event_id
        where d.website_id = '%s' order by e.url_path, d.event_key""" % website)
    want = []
    for i in range(3):
        want += [["/v%d/checkout" % i, "currency", "EUR", "", "1"],
                 ["/v%d/checkout" % i, "revenue", "19.9900", "19.9900", "2"],
                 ["/v%d/signup" % i, "nested.a", "1.5000", "1.5000", "2"],
                 ["/v%d/signup" % i, "plan", "pro-%d" % i, "", "1"],
                 ["/v%d/signup" % i, "seats", "%d.0000" % (3 + i), "%d.0000" % (3 + i), "2"],
                 ["/v%d/signup" % i, "trial", "true", "", "3"]]
    assert rows == want, rows

    # Exactly one session per anonymous id: every event of visitor i (its
    # paths start with /v<i>/) in one session, and three sessions in all.
    rows = sql(server, """
        select split_part(url_path, '/', 2) as visitor, count(distinct session_id), count(*)
        from website_event where website_id = '%s' group by 1 order by 1""" % website)
    assert rows == [["v%d" % i, "1", "5"] for i in range(3)], rows
    rows = sql(server, """
        select hostname, browser, os, device, screen, language, country
        from session where website_id = '%s'""" % website)
    assert len(rows) == 3, rows
    # The stand-in visitor address is local to Umami: no country.
    assert all(r == ["shop.example", "chrome", "Linux", "desktop", "1920x1080", "de-DE", ""]
               for r in rows), rows

    # identify: the traits and user id as session data of the visitor's session.
    rows = sql(server, """
        select split_part(e.url_path, '/', 2), d.session_key, d.string_value, d.data_type
        from session_data d
        join (select distinct session_id, url_path from website_event
              where website_id = '%s' and event_type = 1) e on e.session_id = d.session_id
        where d.website_id = '%s' and e.url_path like '%%/p0'
        order by 1, 2""" % (website, website))
    want = []
    for i in range(3):
        want += [["v%d" % i, "age", "%d.0000" % (30 + i), "2"],
                 ["v%d" % i, "tier", "gold", "1"],
                 ["v%d" % i, "userId", "user-%d" % i, "1"]]
    assert rows == want, rows


def test_visitors_in_order_with_cache_tokens(herald, server, website):
    # One request at a time: every later event of a visitor carries its
    # token, which Umami 2.10 takes the session from.
    anons = ["tok-%s" % uuid.uuid4().hex[:8] for _ in range(2)]
    messages = [{"type": "page", "anonymousId": anons[n % 2],
                 "properties": {"url": "https://shop.example/t%d/%d" % (n % 2, n)}}
                for n in range(8)]
    cfg = herald.config([udest(server, website, max_concurrency=1)])
    send(herald, cfg, messages)
    rows = sql(server, """
        select split_part(url_path, '/', 2), count(distinct session_id), count(*)
        from website_event where website_id = '%s' group by 1 order by 1""" % website)
    assert rows == [["t0", "1", "4"], ["t1", "1", "4"]], rows
    assert sql(server, "select count(*) from session where website_id = '%s'"
               % website) == [["2"]]


def test_what_umami_would_refuse_is_never_stored(herald, server, website):
    cfg = herald.config([udest(server, website)])
    send(herald, cfg, [
        {"type": "page", "properties": {"url": "https://shop.example/bot"},
         "context": {"userAgent": "curl/8.0.1"}},
        {"type": "track", "event": "n" * 51},
        {"type": "track", "event": "Long", "properties": {"note": "z" * 600}},
        {"type": "page", "properties": {"url": "https://shop.example/" + "p" * 500}},
        {"type": "page", "properties": {"url": "https://shop.example/ok"}},
    ])
    c = herald.counters()
    assert c.get("server_dropped") == 1 and c.get("sent") == 2, c
    reasons = sorted(d["reason"] for d in herald.dead_letters())
    assert len(reasons) == 3, reasons
    assert c.get("retried", 0) == 0, c
    rows = sql(server, "select url_path, event_type from website_event where website_id = '%s'"
               % website)
    assert rows == [["/ok", "1"]], rows


def test_unknown_website_is_dead_lettered(herald, server):
    cfg = herald.config([udest(server, str(uuid.uuid4()))])
    send(herald, cfg, [{"type": "track", "event": "E"}])
    dls = herald.dead_letters()
    assert len(dls) == 1 and dls[0]["http_status"] == 403, dls
    assert "Umami does not know website" in dls[0]["reason"], dls[0]
