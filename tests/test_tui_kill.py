"""``k`` in the TUI: kill the socket under the cursor after a confirmation that names its owner and both
ends. Real Textual (Pilot), the real collector and real loopback connections; plus an SVG snapshot."""

from __future__ import annotations

import errno
import os
import socket
import struct
from types import SimpleNamespace

import pytest
from sockmon.core.records import Process
from sockmon.core.states import ESTABLISHED, LISTEN
from sockmon.core.table.collector import Collector
from sockmon.tui.app import SockmonApp
from sockmon.tui.screens.kill import KillScreen
from test_tui_app import screen_text
from test_tui_fixtures import frozen_clock, snapshot, sockets, summary, sync, wait_for
from textual.app import App
from textual.widgets import Static

pytestmark = pytest.mark.timeout(90)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="SOCK_DESTROY needs CAP_NET_ADMIN")


def fast_collector(**kw):
    return Collector(interval=kw.pop("interval"), use_tracepoint=False, **kw)


@pytest.fixture
def two_connections():
    """Two client connections to the same listener (all ends in this process)."""
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    clients, servers = [], []
    for _ in range(2):
        clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        servers.append(lst.accept()[0])
    yield SimpleNamespace(listener=lst, port=port, victim=clients[0], other=clients[1],
                          victim_peer=servers[0], other_peer=servers[1])
    for s in (*clients, *servers, lst):
        s.close()


def row_of(pane, sport: int, state: int):
    return next((s for s in pane.table.visible_rows() if s is not None and s.sport == sport and s.state == state),
                None)


async def put_cursor_on(pilot, pane, sport: int, state: int):
    row = await wait_for(pilot, lambda: row_of(pane, sport, state), what=f"row of port {sport}")
    assert pane.table.move_cursor_to_key(pane.table.key_fn(row))
    pane.focus_table()
    await pilot.pause()
    assert pane.table.key_fn(pane.table.cursor_row) == pane.table.key_fn(row)
    return row


def still_works(a: socket.socket, b: socket.socket) -> bool:
    a.sendall(b"ping")
    b.settimeout(5)
    return b.recv(4) == b"ping"


@needs_root
@sync
async def test_k_and_confirm_kills_only_that_connection(two_connections):
    c = two_connections
    vport = c.victim.getsockname()[1]
    app = SockmonApp(interval=0.2, collector_factory=fast_collector)
    async with app.run_test(size=(160, 48)) as pilot:
        await put_cursor_on(pilot, app.connections, vport, ESTABLISHED)
        await pilot.press("k")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, KillScreen) and app.screen, what="kill screen")
        text = screen_text(app)
        assert f"127.0.0.1:{vport}" in text and f"127.0.0.1:{c.port}" in text  # both ends
        assert f"pid {os.getpid()}" in text and "ECONNABORTED" in text  # the owner, and what will happen
        assert screen.sock.sport == vport
        await pilot.press("y")
        result = await wait_for(pilot, lambda: app.last_kill, what="the kill's outcome")
        assert result.ok and result.socket.sport == vport
        assert any(f"killed ESTABLISHED 127.0.0.1:{vport}" in str(n.message) for n in app._notifications)
        # the table catches up (the app asked the collector for a snapshot at once)
        await wait_for(pilot, lambda: row_of(app.connections, vport, ESTABLISHED) is None, what="row gone")
        assert row_of(app.connections, c.other.getsockname()[1], ESTABLISHED) is not None
    with pytest.raises(OSError) as exc:
        c.victim.recv(4)
    assert exc.value.errno == errno.ECONNABORTED
    assert still_works(c.other, c.other_peer) and still_works(c.other_peer, c.other)


@sync
@pytest.mark.parametrize("keys", [["escape"], ["n"], ["enter"]], ids=["escape", "n", "enter-on-cancel"])
async def test_cancel_kills_nothing(two_connections, keys):
    c = two_connections
    vport = c.victim.getsockname()[1]
    app = SockmonApp(interval=0.2, collector_factory=fast_collector)
    async with app.run_test(size=(120, 40)) as pilot:
        await put_cursor_on(pilot, app.connections, vport, ESTABLISHED)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, KillScreen), what="kill screen")
        await pilot.press(*keys)
        await wait_for(pilot, lambda: not isinstance(app.screen, KillScreen), what="kill screen closed")
        await pilot.pause(0.5)
        assert app.last_kill is None
        assert row_of(app.connections, vport, ESTABLISHED) is not None
    assert still_works(c.victim, c.victim_peer) and still_works(c.other, c.other_peer)


@needs_root
@sync
async def test_k_on_a_listener(two_connections):
    c = two_connections
    app = SockmonApp(interval=0.2, collector_factory=fast_collector)
    async with app.run_test(size=(160, 48)) as pilot:
        await put_cursor_on(pilot, app.listening, c.port, LISTEN)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, KillScreen), what="kill screen")
        assert "the listener is closed" in screen_text(app)
        await pilot.click("#kill-yes")
        result = await wait_for(pilot, lambda: app.last_kill, what="the kill's outcome")
        assert result.ok and result.socket.state == LISTEN
        await wait_for(pilot, lambda: row_of(app.listening, c.port, LISTEN) is None, what="listener gone")
    with pytest.raises(OSError) as exc:
        c.listener.accept()
    assert exc.value.errno == errno.EINVAL
    assert still_works(c.victim, c.victim_peer)  # accepted connections live on


@sync
async def test_a_failed_kill_is_one_line_and_the_app_keeps_running(two_connections):
    """A socket that is gone by the time the user confirms: the kernel says ENOENT, the app says so."""
    c = two_connections
    vport = c.victim.getsockname()[1]
    app = SockmonApp(interval=30, collector_factory=fast_collector)  # no refresh between the two steps
    async with app.run_test(size=(120, 40)) as pilot:
        await put_cursor_on(pilot, app.connections, vport, ESTABLISHED)
        c.victim.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.victim.close()  # linger 0: a RST, no TIME_WAIT left with these ends (it would keep the cookie)
        await pilot.press("k", "y")
        result = await wait_for(pilot, lambda: app.last_kill, what="the kill's outcome")
        assert not result.ok
        msgs = [str(n.message) for n in app._notifications]
        reason = "already gone" if os.geteuid() == 0 else "needs root"
        assert any(reason in m and "\n" not in m for m in msgs), msgs
        assert app.is_running


@sync
async def test_owner_name_is_shown_inert():
    sock = next(s for s in sockets() if s.state == ESTABLISHED)

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(KillScreen(sock, Process(4242, "[bold red]evil\x1b[2J", "[u]ser")))

    app = Host()
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        what = app.screen.query_one("#kill-what", Static).render()
        plain = str(what)
        assert "[bold red]evil" in plain and "\x1b" not in plain and "[u]ser" in plain


def test_snapshot_kill_screen_80x24(snap_compare):
    async def run_before(pilot):
        app = pilot.app
        app.inject_snapshot(snapshot(), (), summary(), duration_ms=12.0, transition_source="tracepoint")
        await pilot.pause()
        sock = next(s for s in app.connections.table.visible_rows() if s.state == ESTABLISHED)
        app.connections.table.move_cursor_to_key(app.connections.table.key_fn(sock))
        app.connections.focus_table()
        await pilot.pause()
        await pilot.press("k")
        await pilot.pause()

    app = SockmonApp(collector_factory=None, is_root=True, clock=frozen_clock())
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
