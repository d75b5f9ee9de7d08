"""What the Client and Timeline show after a close, against the kernel's own state (``ss`` of the same
4-tuple, read at the same moment): the real SockmonApp, its real collector, loopback sockets."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest
from sockmon.core.lab.server import ServerEngine
from sockmon.tui.app import SockmonApp
from sockmon.tui.lab.client import ClientPane
from test_tui_fixtures import connect_client, run, wait_for
from textual.widgets import Input, Static

pytestmark = pytest.mark.timeout(90)


def ss_state(tup) -> str | None:
    """The kernel's state of exactly this 4-tuple (``ss -tan``), or None when it has no row."""
    src, sport, dst, dport = tup
    out = subprocess.run(["ss", "-tanH", "src", f"{src}:{sport}", "dst", f"{dst}:{dport}"], capture_output=True,
                         text=True, check=True).stdout.split()
    names = {"ESTAB": "ESTABLISHED", "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2"}
    return (names.get(out[0]) or out[0].replace("-", "_")) if out else None


def ss_bytes(tup) -> tuple[int, int]:
    """(bytes_received, bytes_acked) of exactly this 4-tuple, from ``ss -ti`` (absent: 0)."""
    src, sport, dst, dport = tup
    out = subprocess.run(["ss", "-tinH", "src", f"{src}:{sport}", "dst", f"{dst}:{dport}"], capture_output=True,
                         text=True, check=True).stdout
    got = {k: int(v) for k, v in re.findall(r"\b(bytes_received|bytes_acked):(\d+)", out)}
    return got.get("bytes_received", 0), got.get("bytes_acked", 0)


def client_status(app) -> str:
    return str(app.query_one(ClientPane).query_one("#client-status", Static).render())


def header(app) -> str:
    return app.timeline.header_text()


def conn_row(app, tup):
    return next((s for s in app.connections.table.visible_rows() if tuple(s.four_tuple) == tuple(tup)), None)


async def select_row(app, pilot, tup) -> None:
    """The user picks the row of ``tup`` in Connections (as a key press would: by_user)."""
    await wait_for(pilot, lambda: conn_row(app, tup) is not None, what=f"{tup} in Connections")
    table = app.connections.table
    key = table.key_fn(conn_row(app, tup))
    if table.cursor_key == key:  # a selection is a move: start from another row
        other = next((k for k in table.visible_keys if k != key), None)
        if other is not None:
            table.move_cursor_to_key(other, by_user=False)
    assert table.move_cursor_to_key(key, by_user=True)
    await pilot.pause()


async def finish(app, pilot) -> None:
    app._stop_collector()
    await pilot.pause(0.3)


@pytest.fixture
def server_factory():
    servers = []

    def make(mode: str) -> ServerEngine:
        server = ServerEngine("127.0.0.1", 0, mode=mode, backlog=16)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_graceful_close_that_times_out_shows_fin_wait2_like_the_kernel(server_factory):
    server = server_factory("hold")  # accepts, never reads, never closes

    async def scenario():
        app = SockmonApp(interval=0.25)
        async with app.run_test(size=(160, 50)) as pilot:
            pane = await connect_client(app, pilot, server.address, tab_key="3")
            tup = (*pane.local, *pane.peer)
            await pilot.press("g")  # shutdown WR, wait ≤ 5 s for the peer's FIN (never comes), close()
            await wait_for(pilot, lambda: pane.fd_closed, timeout=10, what="the graceful close timing out")
            await wait_for(pilot, lambda: "kernel: FIN_WAIT2" in client_status(app), timeout=5,
                           what="FIN_WAIT2 in the Client status")
            assert ss_state(tup) == "FIN_WAIT2", "the kernel holds the orphaned 4-tuple in FIN_WAIT2"
            assert "kernel: FIN_WAIT2" in header(app) and "CLOSE " not in client_status(app)
            await pilot.pause(0.6)  # more snapshots: it stays what the kernel says
            assert "kernel: FIN_WAIT2" in client_status(app) and ss_state(tup) == "FIN_WAIT2"
            await finish(app, pilot)

    run(scenario())


def test_close_while_the_timeline_follows_the_selected_row_shows_time_wait(server_factory):
    server = server_factory("echo")

    async def scenario():
        app = SockmonApp(interval=0.25)
        async with app.run_test(size=(160, 50)) as pilot:
            pane = await connect_client(app, pilot, server.address, tab_key="3")
            tup = (*pane.local, *pane.peer)
            await pilot.press("1")
            await select_row(app, pilot, tup)
            assert not app.lab.model.following_client
            await pilot.press("3")
            await pilot.pause()
            pane.focus()
            await pilot.press("g")  # the echo server closes on our FIN: we end in TIME_WAIT
            await wait_for(pilot, lambda: pane.fd_closed, timeout=10, what="closed")
            await wait_for(pilot, lambda: "kernel: TIME_WAIT" in client_status(app), timeout=5,
                           what="TIME_WAIT in the Client status")
            assert ss_state(tup) == "TIME_WAIT"
            await wait_for(pilot, lambda: "kernel: TIME_WAIT" in header(app), timeout=3, what="in the Timeline")
            row = await wait_for(pilot, lambda: conn_row(app, tup), what="the TIME_WAIT row")
            assert row.state_name == "TIME_WAIT" and not row.inode
            assert "ESTABLISHED" not in client_status(app) and "CLOSE " not in client_status(app)
            await finish(app, pilot)

    run(scenario())


def test_connect_timeout_leaves_no_syn_sent_on_screen():
    # a listener with backlog 0 and one connection queued: its accept queue is full, further SYNs dropped
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = [socket.create_connection(("127.0.0.1", port))]

    async def scenario():
        app = SockmonApp(interval=0.25)
        async with app.run_test(size=(160, 50)) as pilot:
            pane = app.query_one(ClientPane)
            await pilot.press("3")
            pane.query_one("#client-target", Input).value = f"127.0.0.1:{port}"
            # 3 s: long enough for a refresh to catch SYN_SENT on a loaded machine (a busy CI run holds
            # thousands of TIME_WAITs, and a dump can take most of a second)
            pane.query_one("#client-timeout", Input).value = "3"
            pane.focus()
            await pilot.press("o")
            await wait_for(pilot, lambda: "SYN_SENT" in client_status(app), what="SYN_SENT while connecting")
            await wait_for(pilot, lambda: pane.connect_failed, timeout=8, what="the connect timing out")
            await pilot.pause(0.6)
            syn_sent = subprocess.run(["ss", "-tanH", "state", "syn-sent", "dst", f"127.0.0.1:{port}"],
                                      capture_output=True, text=True, check=True).stdout.strip()
            assert not syn_sent, "the engine closed the socket: the kernel has no SYN_SENT"
            assert "SYN_SENT" not in client_status(app) and "closed" in client_status(app)
            assert "kernel: SYN_SENT" not in header(app) and "connect failed" in header(app)
            await finish(app, pilot)

    try:
        run(scenario())
    finally:
        for s in (*fillers, lst):
            s.close()


def test_rst_close_header_does_not_contradict_itself(server_factory):
    server = server_factory("echo")

    async def scenario():
        app = SockmonApp(interval=0.25)
        async with app.run_test(size=(160, 50)) as pilot:
            pane = await connect_client(app, pilot, server.address, tab_key="3")
            tup = (*pane.local, *pane.peer)
            await pilot.press("a")  # linger 0 + close: RST, no TIME_WAIT
            await wait_for(pilot, lambda: pane.fd_closed, what="closed")
            await wait_for(pilot, lambda: app.lab.model.gone, timeout=5, what="the row gone from a snapshot")
            assert ss_state(tup) is None
            text = header(app)
            assert "still" not in text and "kernel: —" not in text
            assert "forgotten" in text and "kernel: no row" in text
            assert "no row left" in client_status(app)
            await finish(app, pilot)

    run(scenario())


def test_timeline_byte_counts_are_the_followed_sockets_own(server_factory):
    server = server_factory("echo")

    async def scenario():
        app = SockmonApp(interval=0.25)
        async with app.run_test(size=(160, 50)) as pilot:
            pane = await connect_client(app, pilot, server.address, tab_key="3")
            tup = (*pane.local, *pane.peer)
            pane.query_one("#client-send-text", Input).value = "hello"
            pane.action_send()
            await wait_for(pilot, lambda: pane.bytes_in == 7, what="the echo")  # hello + CRLF (default ending)
            assert "in 7 B  out 7 B" in header(app)  # the client's own (engine) counts
            await pilot.press("1")
            for _ in range(3):  # select it, elsewhere, and again: the numbers never add up
                await select_row(app, pilot, tup)
                want = ss_bytes(tup)
                text = f"bytes_received {want[0]}  bytes_acked {want[1]}"
                await wait_for(pilot, lambda t=text: t in header(app), what=f"{text} in {header(app)!r}")
                app.timeline.action_follow_client()  # the Timeline's `f`: back on the client
                assert "in 7 B  out 7 B" in header(app)
            # the other end: the server's accepted socket (peer and local swapped), its own counters
            other = (tup[2], tup[3], tup[0], tup[1])
            await select_row(app, pilot, other)
            want = ss_bytes(other)
            await wait_for(pilot, lambda: f"bytes_received {want[0]}  bytes_acked {want[1]}" in header(app),
                           what="the server socket's own counters")
            assert "in 7 B  out 7 B" not in header(app)
            await finish(app, pilot)

    run(scenario())
