"""TLS: verification is on by default. A server with a self-signed
certificate is refused (a transport failure: retried, no attempt used,
nothing dead-lettered, the certificate problem in last_error and the CLI's
log), and accepted only with an explicit ca_file holding that certificate,
or with insecure_skip_tls_verify (tests only, never in production).

The certificate is made at test time by the openssl CLI, for
CN=127.0.0.1 with subjectAltName IP:127.0.0.1, valid one day."""

import json
import re
import shutil

import pytest

from conftest import REPO
from fault_server import FaultServer, make_self_signed

CERT_ERROR = re.compile(r"certificate", re.I)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make a test certificate", pytrace=False)
    d = tmp_path_factory.mktemp("tls")
    server = make_self_signed(d, "server")
    other = make_self_signed(d, "other")
    return {"cert": server[0], "key": server[1], "other_ca": other[0]}


@pytest.fixture
def https(certs):
    s = FaultServer(tls=(str(certs["cert"]), str(certs["key"]))).start()
    yield s
    s.stop()


def config(herald, server, url=None, **dest_kw):
    d = {"name": "main", "backend": "rest", "url": url or server.url(), "mode": "batch",
         "gzip": True}
    d.update(dest_kw)
    return herald.config([d], retry_base_ms=50, retry_max_delay_ms=500,
                         connect_timeout_ms=1000, request_timeout_ms=1000,
                         flush_interval_ms=50, retry_max_attempts=1)


def assert_refused(herald, https, res, n, pattern=CERT_ERROR, handshake_fails=True):
    """Not delivered, not dead-lettered, retried; the reason names TLS."""
    assert res.flush == -9, "flush should time out: " + res.describe()
    s = res.stats
    assert s["sent"] == 0 and s["dead"] == 0 and s["pending"] == n, s
    assert s["retried"] > 0, "the TLS failure was not retried: %s" % s
    assert pattern.search(s["last_error"] or ""), \
        "last_error does not name the certificate problem: %r" % s["last_error"]
    assert "no response" in s["last_error"], s["last_error"]
    assert herald.dead_letters() == []
    assert https.snapshot() == [], "an HTTP request got through: %s" % https.snapshot()
    assert https.accepted_ids() == {}
    assert https.connections > 0, "herald never connected"
    if handshake_fails:
        # The chain is refused inside the handshake: the server sees it fail.
        assert https.tls_failures, "no handshake failed (connections=%d)" % https.connections


def test_self_signed_refused_by_default_then_ca_file_delivers(herald, https, certs):
    n = 3
    res = herald.produce(config(herald, https), n, flush_ms=2000)
    assert_refused(herald, https, res, n)

    # The same queue with the certificate as CA: the held events go out.
    cfg = config(herald, https, ca_file=str(certs["cert"]))
    res = herald.produce(cfg, 0, flush_ms=10000)
    assert res.flush == 0, res.describe()
    ids = https.accepted_ids()
    assert len(ids) == n and all(v == 1 for v in ids.values()), ids
    c = herald.counters()
    assert c["accepted"] == n and c["sent"] == n and c.get("dead", 0) == 0, c
    assert herald.query("SELECT COUNT(*) FROM outbox")[0][0] == 0


def test_cli_verbose_log_names_the_certificate_problem(herald, https):
    p = herald.emit("-v", "--db", herald.db, "--url", https.url(), "--timeout", "1.5",
                    "track", "TLS Test")
    assert p.returncode == 0, p.stderr
    assert CERT_ERROR.search(p.stderr), "no certificate error in the log:\n" + p.stderr
    assert "still queued" in p.stderr, p.stderr
    st = herald.emit("--db", herald.db, "--url", https.url(), "status", "--json")
    assert st.returncode == 0, st.stderr
    stats = json.loads(st.stdout)
    assert stats["pending"] == 1 and stats["dead"] == 0 and stats["sent"] == 0, stats
    assert https.snapshot() == []


def test_ca_file_of_another_ca_is_refused(herald, https, certs):
    res = herald.produce(config(herald, https, ca_file=str(certs["other_ca"])), 2,
                         flush_ms=2000)
    assert_refused(herald, https, res, 2)


def test_ca_file_still_checks_the_host_name(herald, https, certs):
    """The certificate names IP 127.0.0.1 only: at https://localhost it is
    the wrong certificate even though its CA is trusted."""
    url = https.url(host="localhost")
    res = herald.produce(config(herald, https, url=url, ca_file=str(certs["cert"])), 2,
                         flush_ms=2000)
    assert_refused(herald, https, res, 2,
                   pattern=re.compile(r"host ?name|subject name", re.I),
                   # The name is checked after the handshake, which the
                   # server therefore sees succeed; no request follows.
                   handshake_fails=False)


def test_insecure_skip_tls_verify_delivers(herald, https):
    n = 3
    res = herald.produce(config(herald, https, insecure_skip_tls_verify=True), n,
                         flush_ms=10000)
    assert res.flush == 0, res.describe()
    ids = https.accepted_ids()
    assert len(ids) == n and all(v == 1 for v in ids.values()), ids
    c = herald.counters()
    assert c["sent"] == n and c.get("dead", 0) == 0, c


def test_docs_say_insecure_is_never_for_production():
    text = (REPO / "docs" / "configuration.md").read_text()
    line = next((l for l in text.splitlines() if "`insecure_skip_tls_verify`" in l), "")
    assert "never in production" in line, line
    assert "`false`" in line, "the default must be documented as false: %s" % line
