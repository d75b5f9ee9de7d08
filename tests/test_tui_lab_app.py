"""The lab panes inside the real SockmonApp with its real collector, against loopback sockets.

Client pane → ESTABLISHED → close → TIME_WAIT in the timeline and the Connections pane; linger 0 +
close → no TIME_WAIT; keepalive read back; built-in server in no-accept mode → the Listening pane's
accept queue grows; bad input refused while the app keeps running.
"""

from __future__ import annotations

import socket

import pytest
import test_tui_fixtures
from sockmon.tui.app import SockmonApp
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.server import ServerPane
from test_tui_fixtures import connect_client, run, start_server_from_pane, timeline_text, wait_for
from textual.widgets import Input, Static

echo_server = test_tui_fixtures.echo_server  # the shared fixture, for this module's tests
pytestmark = pytest.mark.timeout(90)


def connections_rows(app, four_tuple):
    return [s for s in app.connections.table.visible_rows() if tuple(s.four_tuple) == tuple(four_tuple)]


async def finish(app, pilot) -> None:
    """Stop the collector before the test leaves run_test: a snapshot delivered while the screen is being
    torn down hits the app's own widgets (app-side shutdown race, reported), not the lab panes."""
    stop = getattr(app, "_stop_collector", None)
    if stop is not None:
        stop()
    await pilot.pause(0.3)


def make_app():
    return SockmonApp(interval=0.5)


def test_app_client_established_then_time_wait_in_timeline_and_connections(echo_server):
    async def scenario():
        app = make_app()
        async with app.run_test(size=(160, 50)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address, tab_key="3")
            tup = (*pane.local, *pane.peer)
            await wait_for(pilot, lambda: any(s.state_name == "ESTABLISHED" for s in connections_rows(app, tup)),
                           what="ESTABLISHED row in Connections")
            assert "ESTABLISHED" in timeline_text(app)
            await pilot.press("x")
            await wait_for(pilot, lambda: any(s.state_name == "TIME_WAIT" for s in connections_rows(app, tup)),
                           what="TIME_WAIT row in Connections")
            await wait_for(pilot, lambda: "TIME_WAIT" in timeline_text(app), what="TIME_WAIT in the timeline")
            assert app.is_running
            await finish(app, pilot)

    run(scenario())


def test_app_linger_zero_then_close_leaves_no_time_wait_and_keepalive_reads_back(echo_server):
    async def scenario():
        app = make_app()
        async with app.run_test(size=(160, 50)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address, tab_key="3")
            tup = (*pane.local, *pane.peer)
            await pilot.press("K")
            await wait_for(pilot, lambda: pane.options.keepalive.enabled, what="keepalive read back")
            assert "SO_KEEPALIVE on idle 60 intvl 10 cnt 3" in str(pane.query_one("#client-options", Static).render())
            assert "90 s after the last segment received" in str(pane.query_one("#client-options", Static).render())
            await pilot.press("L")
            await wait_for(pilot, lambda: pane.options.linger.enabled and pane.options.linger.seconds == 0)
            await wait_for(pilot, lambda: connections_rows(app, tup), what="row in Connections")
            await pilot.press("x")
            await wait_for(pilot, lambda: pane.fd_closed, what="closed")
            await pilot.pause(1.2)  # two collections later
            assert not [s for s in connections_rows(app, tup) if s.state_name == "TIME_WAIT"]
            assert "TIME_WAIT" not in timeline_text(app)
            assert "RST sent" in timeline_text(app) or "linger on, 0 s" in timeline_text(app)
            await finish(app, pilot)

    run(scenario())


def test_app_server_no_accept_fills_the_listening_accept_queue():
    async def scenario():
        app = make_app()
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.press("4")  # the Server tab
            pane = app.query_one(ServerPane)
            host, port = await start_server_from_pane(pilot, pane, mode="no-accept")
            peers = []
            try:
                def queue() -> list[int]:
                    return [s.recv_q for s in app.listening.table.visible_rows()
                            if s.sport == port and s.state_name == "LISTEN"]

                await wait_for(pilot, lambda: queue() == [0], what="listener in the Listening pane")
                for n in (1, 2, 3, 4):
                    peers.append(socket.create_connection((host, port), timeout=2))
                    await wait_for(pilot, lambda n=n: queue() == [n], what=f"accept queue {n}")
                assert pane.clients == []
                await pilot.press("s")
                await wait_for(pilot, lambda: queue() == [], what="listener gone")
            finally:
                for p in peers:
                    p.close()
            assert app.is_running
            await finish(app, pilot)

    run(scenario())


def test_app_bad_input_and_refused_connect_keep_the_app_running():
    async def scenario():
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        app = make_app()
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.press("3")
            pane = app.query_one(ClientPane)
            target = pane.query_one("#client-target", Input)
            target.value = "localhost:http"
            pane.focus()
            await pilot.press("o")
            assert "not a number" in pane.last_error and target.value == "localhost:http"
            target.value = f"127.0.0.1:{port}"
            pane.focus()
            await pilot.press("o")
            await wait_for(pilot, lambda: "ECONNREFUSED" in (pane.last_error or ""), what="refused")
            assert not any("ECONNREFUSED" in n.message for n in app._notifications), "on screen: inline, no toast over the pane"
            assert "ECONNREFUSED" in str(app.query_one("#client-error").render())
            await pilot.press("4")
            server = app.query_one(ServerPane)
            server.query_one("#server-backlog", Input).value = "many"
            server.focus()
            await pilot.press("s")
            assert "bad backlog" in server.last_error and server.engine is None
            assert app.is_running
            await finish(app, pilot)

    run(scenario())
