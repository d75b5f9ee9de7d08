"""Pilot: the History pane (6 / h) shows the connections that closed — how each ended, its lifetime and
bytes — from the real collector (tracepoint as root), and the shared filter filters them."""

from __future__ import annotations

import socket
import threading

import pytest
from sockhelp_closed import CLIENT_SENDS, SERVER_SENDS, one_connection
from sockmon.core.table.collector import Collector
from sockmon.core.table.tracepoint import tracing_available
from sockmon.tui.app import SockmonApp
from sockmon.tui.screens.closed import ClosedScreen
from test_tui_fixtures import sync, wait_for

pytestmark = pytest.mark.timeout(90)
OK, WHY = tracing_available()


@pytest.fixture
def listener():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    yield lst
    lst.close()


def ours(app, port):
    return [c for c in app.closed_pane.table.visible_rows() if port in (c.sport, c.dport)]


@pytest.mark.skipif(not OK, reason=WHY)
@sync
async def test_history_pane_shows_fin_and_rst_closes_and_filters_them(listener):
    port = listener.getsockname()[1]
    app = SockmonApp(interval=0.2, is_root=True,
                     collector_factory=lambda **kw: Collector(port=port, **kw))
    async with app.run_test(size=(200, 50)) as pilot:
        assert await wait_for(pilot, lambda: app.collector is not None and app.snapshot is not None)
        done = []
        t = threading.Thread(target=lambda: done.extend(one_connection(listener, how, 0.6) for how in ("FIN", "RST")))
        t.start()
        await pilot.press("6")
        assert await wait_for(pilot, lambda: not t.is_alive() and len(ours(app, port)) == 4, timeout=20,
                              what="4 closed ends")
        t.join()
        rows = ours(app, port)
        by_end = {(c.src, c.sport, c.dst, c.dport): c for c in rows}
        for conn in done:
            for end, received, sent in (((*conn.client, *conn.server), SERVER_SENDS, CLIENT_SENDS),
                                        ((*conn.server, *conn.client), CLIENT_SENDS, SERVER_SENDS)):
                c = by_end[end]
                assert c.ended == conn.how
                assert (c.bytes_received, c.bytes_sent) == (received, sent)
        # newest first: the RST connection closed last
        assert [c.ended for c in rows][:2] == ["RST", "RST"]
        text = app.closed_pane.table
        assert app.focused is text
        # the shared filter: RST ends were ESTABLISHED when they closed, FIN ends were not
        await pilot.press("slash", *f"port:{port} established")
        assert {c.ended for c in app.closed_pane.table.visible_rows()} == {"RST"}
        assert len(app.closed_pane.table.visible_rows()) == 2
        await pilot.press(*" -established")
        assert app.closed_pane.table.visible_rows() == []
        for _ in range(len(" established -established")):
            await pilot.press("backspace")
        await pilot.press(*" -established")
        assert {c.ended for c in app.closed_pane.table.visible_rows()} == {"FIN"}
        await pilot.press(*" port:http")  # a bad term: one line, nothing filtered, the app goes on
        assert "bad port" in app.closed_pane.filter_error
        for _ in range(len(" port:http")):
            await pilot.press("backspace")
        await pilot.press("enter")  # back to the table
        assert app.focused is app.closed_pane.table
        await pilot.press("enter")  # the record
        assert await wait_for(pilot, lambda: isinstance(app.screen, ClosedScreen))
        assert app.screen.record.ended == "FIN"
        await pilot.press("escape")
        assert not isinstance(app.screen, ClosedScreen)


@sync
async def test_hostile_process_name_in_history_is_inert():
    """A closed record's owner name reaches the screen inert (never markup, never a terminal escape)."""
    from sockmon.core.records import Process
    from sockmon.core.table.closed import ClosedConnection

    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(200, 30)) as pilot:
        rec = ClosedConnection(1, socket.AF_INET, "127.0.0.1", 1, "127.0.0.1", 2, 1, "RST", 1.0, 1.0e9, None,
                               None, False, (), "tracepoint", owner=Process(7, "[bold]x\x1b[2J", "root"))
        app.closed_pane.show_records([rec], version=1, total=1, source="tracepoint")
        await pilot.press("6")
        await pilot.pause()
        svg = app.export_screenshot()
        assert "[bold]x\\x1b[2J" in svg.replace("&#160;", " ") or "[bold]x" in svg
        assert "\x1b" not in svg
