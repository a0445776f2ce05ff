"""Backends as plugins, end to end.

- The built-in rest backend, built as herald-backend-rest.so, loaded by
  absolute path: events arrive as from the built-in.
- The third-party example in examples/plugin, built out of tree with
  pkg-config (CI builds it against an installed herald and passes the path in
  HERALD_EXAMPLE_PLUGIN; otherwise this test builds it from a copy against the
  build tree's uninstalled herald.pc): its chat messages arrive at a loopback
  webhook.
"""

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import REPO, build_dir


class Webhook:
    """A loopback incoming-webhook: records JSON bodies, answers 200."""

    def __init__(self):
        self.bodies = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                hook.bodies.append((self.headers.get("Content-Type"),
                                    json.loads(self.rfile.read(n))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hooks/T0/B0" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    w = Webhook()
    yield w
    w.close()


def test_rest_module_by_absolute_path(herald, receiver):
    module = build_dir() / "herald-backend-rest.so"
    assert module.is_file(), "%s not built" % module
    cfg = herald.config([herald.dest(receiver, backend=str(module))])
    res = herald.produce(cfg, 250, flush_ms=20000, close_ms=1000)
    assert len(res.ok) == 250
    assert receiver.wait_for(lambda r: len(r.events) >= 250, timeout=20)
    assert sorted(e["properties"]["seq"] for e in receiver.events) == list(range(250))
    assert all(r.headers.get("content-encoding") == "gzip" for r in receiver.requests
               if r.raw_len > 1024)


def example_plugin(tmp_path):
    given = os.environ.get("HERALD_EXAMPLE_PLUGIN")
    if given:
        return given
    if shutil.which("make") is None or shutil.which("pkg-config") is None:
        pytest.fail("make and pkg-config are needed to build examples/plugin", pytrace=False)
    src = tmp_path / "plugin"
    shutil.copytree(REPO / "examples" / "plugin", src)
    env = dict(os.environ, PKG_CONFIG_PATH=str(build_dir() / "meson-uninstalled"))
    p = subprocess.run(["make", "-C", str(src), "PKG=herald-uninstalled"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, p.stdout
    return str(src / "herald-backend-webhook.so")


def test_third_party_plugin_built_out_of_tree(herald, webhook, tmp_path):
    plugin = example_plugin(tmp_path)
    dest = {"name": "alerts", "backend": plugin, "url": webhook.url, "prefix": "[deploy] "}
    cfg = herald.config([dest])
    p = herald.emit("--config", cfg, "track", "Deploy Finished",
                    "--props", '{"service":"api","seconds":93}', "--user", "ops-bot")
    assert p.returncode == 0, p.stderr
    p = herald.emit("--config", cfg, "identify", "ops-bot", "--traits", '{"team":"sre"}')
    assert p.returncode == 0, p.stderr
    texts = [body["text"] for ctype, body in webhook.bodies]
    assert all(ctype == "application/json" for ctype, _ in webhook.bodies)
    assert texts[0] == '[deploy] track Deploy Finished — ops-bot {"service":"api","seconds":93}'
    assert texts[1] == '[deploy] identify  — ops-bot {"team":"sre"}'
    assert herald.counters()["sent"] == 2


def test_third_party_plugin_config_error_is_clear(herald, tmp_path):
    plugin = example_plugin(tmp_path)
    cfg = herald.config([{"name": "alerts", "backend": plugin, "url": "ftp://nope"}])
    p = herald.emit("--config", cfg, "track", "X")
    assert p.returncode == 1
    assert "webhook: unknown or invalid setting \"url\"" in p.stderr
    assert not herald.db.exists()


def test_rest_mapping_end_to_end(herald, webhook):
    """A receiver with its own flat schema, fed through the whole pipeline."""
    dest = {"name": "flat", "backend": "rest", "url": webhook.url, "gzip": False,
            "batch_key": "events", "sent_at_key": "",
            "mapping": {"event_type": ["$.event", "$.name"],
                        "page_url": "$.context.page.url",
                        "session_id": "$.context.session.id",
                        "eventCategory": "$.properties.eventCategory",
                        "companyId": "$.context.groupId",
                        "metadata": "$.properties",
                        "source": {"const": "herald"}}}
    cfg = herald.config([dest])
    assert herald.emit("--config", cfg, "group", "acme").returncode == 0
    p = herald.emit("--config", cfg, "page", "Pricing",
                    "--props", '{"url":"https://acme.example/pricing","eventCategory":"nav"}')
    assert p.returncode == 0, p.stderr
    events = [e for _, body in webhook.bodies for e in body["events"]]
    page = [e for e in events if e.get("event_type") == "Pricing"][0]
    group = [e for e in events if "event_type" not in e]
    assert len(group) == 1 and group[0]["source"] == "herald"  # absent paths are omitted
    assert page["page_url"] == "https://acme.example/pricing"
    assert page["eventCategory"] == "nav"
    assert page["companyId"] == "acme"
    assert page["source"] == "herald"
    assert isinstance(page["session_id"], int)
    assert page["metadata"] == {"url": "https://acme.example/pricing", "eventCategory": "nav"}
    assert all("sentAt" not in body for _, body in webhook.bodies)
