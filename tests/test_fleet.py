"""The fleet model (`core/fleet.py`), `sockmon fleet` text output and the TUI's Fleet screen, against a small
HTTP server on loopback that answers Prometheus's query API with fixed vectors (the real Prometheus end to
end is tests/test_prometheus_fleet.py), a server that is not Prometheus, and a port nobody listens on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prom_helpers import free_port
from sockmon.core.errors import BadInput
from sockmon.core.fleet import FleetError, PrometheusClient, parse_url, query_fleet
from sockmon.tui.app import SockmonApp
from sockmon.tui.screens.fleet import HOW_TO, FleetScreen
from test_tui_fixtures import sync, wait_for

from sockmon.cli.fleet import format_view

pytestmark = pytest.mark.timeout(60)

EVIL = "\x1b]0;X\x07[/x]"  # a title escape, a BEL and markup in an instance / process label
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _vec(*rows):
    return [{"metric": m, "value": [1.0, str(v)]} for m, v in rows]


def answer(query: str) -> list:
    a = {"instance": "127.0.0.1:9464", "job": "sockmon"}
    b = {"instance": EVIL, "job": "sockmon", "netns": "ns1"}
    if query.startswith("max by (instance, netns, state)"):
        return _vec(({**a, "state": "established"}, 40), ({**a, "state": "listen"}, 3),
                    ({**b, "state": "time_wait"}, 7))
    if "overflows" in query:
        return _vec((a, 2.5), (b, 0))
    if "drops" in query:
        return _vec((a, 2.5), (b, 0))
    if "retransmits" in query:
        return _vec((a, 0.25), (b, "NaN"))
    if "transitions_total" in query:
        return _vec(({**a, "old": "syn_sent", "new": "established"}, 4),
                    ({**a, "old": "established", "new": "fin_wait1"}, 3))
    if "exporter_info" in query:
        return _vec(({"instance": a["instance"], "transitions": "tracepoint"}, 1))
    listener = {**b, "local": "127.0.0.1:8080", "process": EVIL}
    quiet = {**a, "local": "[::]:22", "process": "sshd"}
    if query.startswith("sockmon_listen_queue and"):
        return _vec((listener, 9), (quiet, 0))
    if query.startswith("sockmon_listen_backlog and"):
        return _vec((listener, 10), (quiet, 128))
    return []


class _FakeProm(BaseHTTPRequestHandler):
    mode = "prometheus"

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.server.mode == "html":
            body, code, ctype = b"<html>hello</html>", 200, "text/html"
        elif self.server.mode == "error":
            body, code, ctype = json.dumps({"status": "error", "errorType": "bad_data",
                                            "error": "parse error at char 3"}).encode(), 400, "application/json"
        else:
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["query"][0]
            self.server.queries.append(q)
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": answer(q)}}).encode()
            code, ctype = 200, "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_prom():
    servers = []

    def start(mode: str = "prometheus") -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeProm)
        srv.mode = mode
        srv.queries = []
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_query_fleet_model(fake_prom):
    view = query_fleet(fake_prom())
    hosts = {(h.instance, h.netns): h for h in view.hosts}
    a = hosts[("127.0.0.1:9464", "")]
    assert a.sockets == {"established": 40, "listen": 3} and a.total == 43
    assert (a.overflows_per_s, a.drops_per_s, a.retransmits_per_s, a.transitions_per_s) == (2.5, 2.5, 0.25, 7.0)
    assert a.top_transitions[0] == ("syn_sent", "established", 4.0) and a.transitions_source == "tracepoint"
    b = hosts[(EVIL, "ns1")]
    assert b.retransmits_per_s == 0.0 and b.transitions_per_s is None  # NaN → 0; no series → unknown
    assert [li.local for li in view.listeners] == ["127.0.0.1:8080", "[::]:22"]  # 90 % full first
    assert view.listeners[0].fill == 0.9
    d = view.as_dict()
    assert d["hosts"][0]["instance"] and d["listeners"][0]["fill"] == 0.9


def test_fleet_text_is_inert(fake_prom):
    text = "\n".join(format_view(query_fleet(fake_prom())))
    assert not RAW_CONTROL.search(text)
    assert "\\x1b]0;X\\x07[/x]" in text and "90%" in text and "NETNS" in text


def test_fleet_errors_are_one_line(fake_prom):
    with pytest.raises(FleetError, match="did not answer with JSON"):
        query_fleet(fake_prom("html"))
    with pytest.raises(FleetError, match="HTTP 400: parse error"):
        PrometheusClient(fake_prom("error")).query("up")
    with pytest.raises(FleetError, match="cannot reach Prometheus"):
        query_fleet(f"http://127.0.0.1:{free_port()}")
    for bad in ("127.0.0.1:9090", "ftp://127.0.0.1", "http://", "http://127.0.0.1:99999", "http://h/?q=1"):
        with pytest.raises(BadInput):
            parse_url(bad)
    assert parse_url("http://127.0.0.1:9090/prom/") == "http://127.0.0.1:9090/prom"
    out = subprocess.run([sys.executable, "-m", "sockmon", "fleet", "--prometheus", f"http://127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1 and "cannot reach" in out.stderr


def test_fleet_watch_keeps_going_and_stops_on_sigterm(fake_prom):
    url = fake_prom()
    proc = subprocess.Popen([sys.executable, "-m", "sockmon", "fleet", "--prometheus", url, "--json", "--watch",
                             "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        assert first["hosts"] and second["hosts"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


async def _fleet_screen(app, pilot) -> FleetScreen:
    await pilot.press("F")
    await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen), timeout=5, what="the fleet screen")
    return app.screen


@sync
async def test_tui_fleet_without_url_says_how():
    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _fleet_screen(app, pilot)
        assert "--prometheus URL" in str(screen.query_one("#fleet-status").render())
        assert HOW_TO.startswith("The fleet view")
        await pilot.press("escape")
        assert not isinstance(app.screen, FleetScreen)


@sync
async def test_tui_fleet_shows_hosts_inert_and_survives_prometheus_down(fake_prom):
    url = fake_prom()
    app = SockmonApp(collector_factory=None, is_root=True, prometheus=url)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await _fleet_screen(app, pilot)
        await wait_for(pilot, lambda: screen.view is not None, timeout=10, what="the first fleet answer")
        hosts = screen.query_one("#fleet-hosts")
        assert hosts.row_count == 2
        cells = [str(c) for r in range(hosts.row_count) for c in hosts.get_row_at(r)]
        assert "\\x1b]0;X\\x07[/x]" in cells and not any(RAW_CONTROL.search(c) for c in cells)
        listeners = screen.query_one("#fleet-listeners")
        assert str(listeners.get_row_at(0)[6]) == "90%"
        # Prometheus goes away: one line, the last answer stays, the app keeps running
        screen._client = PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2)
        before = screen.refreshes
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.refreshes > before, timeout=10, what="the failed refresh")
        status = str(screen.query_one("#fleet-status").render())
        assert "cannot reach Prometheus" in status and "last answer" in status
        assert screen.has_class("-error") is False and screen.query_one("#fleet-status").has_class("-error")
        await pilot.press("escape")
        assert app.is_running and not isinstance(app.screen, FleetScreen)


@sync
async def test_tui_fleet_bad_url_is_one_line():
    app = SockmonApp(collector_factory=None, is_root=True, prometheus="ftp://nowhere")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _fleet_screen(app, pilot)
        assert "give an http(s) URL" in str(screen.query_one("#fleet-status").render())


def test_main_refuses_a_bad_prometheus_url():
    out = subprocess.run([sys.executable, "-m", "sockmon", "--prometheus", "nope"], capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "--prometheus" in out.stderr
