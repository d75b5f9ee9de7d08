"""Lab panes (Client, Server, Timeline) driven with Pilot against real loopback sockets.

A tiny host app mounts the three panes as tabs (the real SockmonApp is tested in test_tui_lab_app.py).
"""

from __future__ import annotations

import socket

import pytest
import test_tui_fixtures
from sockmon.core import states as S
from sockmon.core.lab.payload import parse_hex
from sockmon.core.lab.server import ServerEngine
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.forms import hexdump, parse_timeout
from sockmon.tui.lab.server import ServerPane
from sockmon.tui.lab.timeline import TimelinePane
from test_tui_fixtures import LabHost, connect_client, run, start_server_from_pane, timeline_text, wait_for
from textual.widgets import DataTable, Input, RichLog, Select, Static, TabbedContent

echo_server = test_tui_fixtures.echo_server  # the shared fixture, for this module's tests
pytestmark = pytest.mark.timeout(60)


def received_text(app) -> str:
    log = app.query_one("#client-received", RichLog)
    return "\n".join(strip.text for strip in log.lines)


def static_text(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def table_rows(four_tuple, states=None):
    from sockmon.core.table.snapshot import take_snapshot

    snap = take_snapshot(port=four_tuple[1], with_info=False, states=states)
    return [s for s in snap.sockets if s.four_tuple == four_tuple]


# ---------------------------------------------------------------------- pure helpers
def test_parsers_refuse_bad_values():
    from sockmon.core.errors import BadInput

    assert parse_hex("de ad:BE ef") == b"\xde\xad\xbe\xef"
    assert parse_timeout(" 0.5 ") == 0.5
    for bad in ("zz", "abc", "1", ""):
        with pytest.raises(BadInput):
            parse_hex(bad)
    for bad in ("", "x", "0", "-1", "nan", "1e9"):
        with pytest.raises(BadInput):
            parse_timeout(bad)
    assert hexdump(b"hello\n")[0].startswith("000000  68 65 6c 6c 6f 0a")


# ---------------------------------------------------------------------- client lifecycle
def test_client_connect_send_close_shows_time_wait(echo_server):
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address)
            tup = (*pane.local, *pane.peer)
            timeline = app.query_one(TimelinePane)
            await wait_for(pilot, lambda: "ESTABLISHED" in timeline_text(app), what="ESTABLISHED in timeline")
            assert timeline.client_tuple == tup
            assert "ESTABLISHED" in static_text(app, "#client-status")
            # send text, see the echo in the received view (text + hex)
            field = pane.query_one("#client-send-text", Input)
            field.value = "hello"
            field.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: "◀ 7 B  'hello\\r\\n'" in received_text(app), what="echo received")
            assert "▶ 7 B  'hello\\r\\n'" in received_text(app), "what was sent is shown too"
            assert "68 65 6c 6c 6f 0d 0a" in received_text(app)
            await wait_for(pilot, lambda: "in     7 bytes" in timeline_text(app), what="bytes in timeline")
            # close: active close → FIN_WAIT… → TIME_WAIT, followed by 4-tuple after the fd is gone
            pane.focus()
            await pilot.press("x")
            await wait_for(pilot, lambda: pane.fd_closed, what="fd closed")
            await wait_for(pilot, lambda: "TIME_WAIT" in timeline_text(app), timeout=8, what="TIME_WAIT in timeline")
            assert table_rows(tup, states=[S.TIME_WAIT]), "the kernel table has the TIME_WAIT row"
            await wait_for(pilot, lambda: "TIME_WAIT" in static_text(app, "#client-status"),
                           what="TIME_WAIT in the client status")
            assert "fd closed" in static_text(app, "#client-status")
            assert app.is_running

    run(scenario())


def test_client_linger_zero_close_leaves_no_time_wait(echo_server):
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address)
            tup = (*pane.local, *pane.peer)
            assert not pane.options.linger.enabled
            await pilot.press("L")  # off → 0
            await wait_for(pilot, lambda: pane.options.linger.enabled and pane.options.linger.seconds == 0,
                           what="linger 0 read back")
            assert "0 (close sends RST)" in static_text(app, "#client-options")
            await wait_for(pilot, lambda: "linger on, 0 s" in timeline_text(app), what="OPTION in timeline")
            await pilot.press("x")
            await wait_for(pilot, lambda: pane.fd_closed, what="fd closed")
            await pilot.pause(0.5)
            assert not table_rows(tup), "linger 0 + close: RST, no TIME_WAIT (no row at all)"
            assert "TIME_WAIT" not in timeline_text(app)
            # the cycle goes on: 0 → N → off (on a new connection)
            pane = await connect_client(app, pilot, echo_server.address)
            await pilot.press("L")
            await wait_for(pilot, lambda: pane.options.linger.seconds == 0 and pane.options.linger.enabled)
            await pilot.press("L")
            await wait_for(pilot, lambda: pane.options.linger.seconds == 5, what="linger 5 read back")
            await pilot.press("L")
            await wait_for(pilot, lambda: not pane.options.linger.enabled, what="linger off read back")
            await pilot.press("a")
            await wait_for(pilot, lambda: pane.fd_closed, what="abort")

    run(scenario())


def test_client_keepalive_nodelay_user_timeout_read_back(echo_server):
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address)
            pane.query_one("#client-ka-idle", Input).value = "7"
            pane.query_one("#client-ka-intvl", Input).value = "3"
            pane.query_one("#client-ka-cnt", Input).value = "2"
            await pilot.press("K")
            await wait_for(pilot, lambda: pane.options.keepalive.enabled, what="keepalive on")
            ka = pane.options.keepalive
            assert (ka.idle, ka.intvl, ka.cnt) == (7, 3, 2)
            text = static_text(app, "#client-options")
            assert "SO_KEEPALIVE on idle 7 intvl 3 cnt 2" in text
            assert "13 s after the last segment received (idle 7 + intvl 3 × cnt 2)" in text  # 7 + 3 × 2
            # the kernel's own socket: SO_KEEPALIVE set on the real socket
            from sockmon.core.table.snapshot import take_snapshot

            snap = take_snapshot(port=pane.local[1], with_info=False)
            row = [s for s in snap.sockets if s.four_tuple == (*pane.local, *pane.peer)][0]
            assert row.timer is not None and row.timer.name == "keepalive"
            await pilot.press("n")
            await wait_for(pilot, lambda: pane.options.nodelay, what="nodelay on")
            assert "TCP_NODELAY on" in static_text(app, "#client-options")
            await pilot.press("u")
            await wait_for(pilot, lambda: pane.options.user_timeout_ms == 5000, what="user timeout")
            assert "replaces the probe count" in static_text(app, "#client-options")
            await pilot.press("K")
            await wait_for(pilot, lambda: not pane.options.keepalive.enabled, what="keepalive off")
            await pilot.press("u")
            await wait_for(pilot, lambda: pane.options.user_timeout_ms == 0, what="user timeout off")
            await pilot.press("W")  # shutdown WR: the echo server closes back
            await wait_for(pilot, lambda: "shutdown(SHUT_WR)" in timeline_text(app), what="shutdown in timeline")
            await pilot.press("g")
            await wait_for(pilot, lambda: pane.fd_closed, what="graceful close")

    run(scenario())


def test_client_refused_and_timeout_errors_are_notified():
    async def scenario():
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = app.query_one(ClientPane)
            pane.query_one("#client-target", Input).value = f"127.0.0.1:{port}"
            pane.focus()
            await pilot.press("o")
            await wait_for(pilot, lambda: pane.last_error and "ECONNREFUSED" in pane.last_error, what="refused")
            assert "nothing is listening" in pane.last_error
            assert not any("ECONNREFUSED" in n.message for n in app._notifications), "on screen: inline, no toast over the pane"
            assert "ECONNREFUSED" in str(app.query_one("#client-error").render())
            assert "ECONNREFUSED" in timeline_text(app)
            # actions while not connected: a clear message, nothing dies
            await pilot.press("K")
            await wait_for(pilot, lambda: "ENOTCONN" in (pane.last_error or "") or "not connected" in
                           (pane.last_error or ""), what="not connected")
            assert app.is_running

    run(scenario())


# ---------------------------------------------------------------------- server pane
def test_server_no_accept_queue_grows_then_echo_and_per_client_actions():
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            app.query_one(TabbedContent).active = "tab-server"
            pane = app.query_one(ServerPane)
            host, port = await start_server_from_pane(pilot, pane, mode="no-accept")
            assert host == "127.0.0.1"
            assert "LISTEN" in static_text(app, "#server-status")
            peers = [socket.create_connection((host, port), timeout=2) for _ in range(3)]
            try:
                from sockmon.core.table.snapshot import take_snapshot

                def accept_queue():
                    snap = take_snapshot(port=port, states=[S.LISTEN], with_info=False)
                    return [s.recv_q for s in snap.sockets if s.sport == port]

                await wait_for(pilot, lambda: accept_queue() == [3], what="accept queue 3")
                assert pane.clients == []
                # mode change while running: echo accepts the queued clients
                pane.query_one("#server-mode", Select).value = "echo"
                await wait_for(pilot, lambda: len(pane.clients) == 3, what="3 clients accepted")
                table = pane.query_one("#server-clients", DataTable)
                await wait_for(pilot, lambda: table.row_count == 3, what="3 rows")
                assert "mode echo" in static_text(app, "#server-status")
                # per-client actions on the selected row
                cid = pane.selected_client_id()
                target = [p for p in peers if f"127.0.0.1:{p.getsockname()[1]}" == cid][0]
                field = pane.query_one("#server-send-text", Input)
                field.value = "from server"
                field.focus()
                await pilot.press("enter")
                target.settimeout(2)
                assert target.recv(100) == b"from server\r\n"  # text mode: CRLF by default
                pane.query_one("#server-keepalive", Input).value = "30,5,4"
                pane.query_one("#server-set-keepalive").press()
                await wait_for(pilot, lambda: "ka 30/5/4 (50s)" in str(pane._options.get(cid)),
                               what="keepalive read back")
                pane.query_one("#server-linger", Input).value = "0"
                pane.query_one("#server-set-linger").press()
                await wait_for(pilot, lambda: "linger 0 (RST)" in str(pane._options.get(cid)), what="linger")
                pane.focus()
                await pilot.press("a")
                with pytest.raises(ConnectionResetError):
                    while target.recv(100):
                        pass
                await wait_for(pilot, lambda: len(pane.clients) == 2, what="client gone")
                await pilot.press("s")  # stop
                await wait_for(pilot, lambda: pane.engine is None and "stopped" in static_text(app, "#server-status"))
            finally:
                for p in peers:
                    p.close()

    run(scenario())


def test_server_eaddrinuse_is_notified():
    async def scenario():
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        app = LabHost()
        try:
            async with app.run_test(size=(120, 40)) as pilot:
                app.query_one(TabbedContent).active = "tab-server"
                pane = app.query_one(ServerPane)
                pane.query_one("#server-port", Input).value = str(port)
                pane.focus()
                await pilot.press("s")
                await wait_for(pilot, lambda: pane.last_error, what="error")
                assert "EADDRINUSE" in pane.last_error and "address already in use" in pane.last_error
                assert pane.engine is None and app.is_running
                assert pane.query_one("#server-port", Input).value == str(port)
        finally:
            holder.close()

    run(scenario())


# ---------------------------------------------------------------------- bad input in every field
CLIENT_BAD = [
    ("#client-target", "nohost", "o", "HOST:PORT"),
    ("#client-target", "127.0.0.1:99999", "o", "out of range"),
    ("#client-target", ":80", "o", "empty host"),
    ("#client-timeout", "abc", "o", "bad timeout"),
    ("#client-timeout", "0", "o", "bad timeout"),
    ("#client-send-text", "zz", "send-hex", "bad hex"),
    ("#client-linger-n", "-3", "linger-submit", "bad linger seconds"),
    ("#client-ka-idle", "0", "K", "keepalive idle"),
    ("#client-ka-intvl", "ten", "K", "keepalive intvl"),
    ("#client-ka-cnt", "1000", "K", "keepalive cnt"),
    ("#client-user-timeout", "-5", "u", "user timeout"),
]
SERVER_BAD = [
    ("#server-host", "", "s", "empty host"),
    ("#server-host", "a b", "s", "bad host"),
    ("#server-port", "70000", "s", "out of range"),
    ("#server-port", "http", "s", "not a number"),
    ("#server-backlog", "-1", "s", "bad backlog"),
    ("#server-linger", "maybe", "set-linger", "bad linger"),
    ("#server-keepalive", "1,2", "set-keepalive", "IDLE,INTVL,CNT"),
]


def test_bad_input_in_every_field_is_refused_and_kept(echo_server):
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            client = await connect_client(app, pilot, echo_server.address)
            for selector, value, trigger, expected in CLIENT_BAD:
                field = client.query_one(selector, Input)
                old = field.value
                field.value = value
                await pilot.pause()
                client.clear_error()
                if trigger == "send-hex":
                    client.query_one("#client-send-mode", Select).value = "hex"
                    await pilot.pause()
                    field.focus()
                    await pilot.press("enter")
                elif trigger == "linger-submit":
                    field.focus()
                    await pilot.press("enter")
                else:
                    client.focus()
                    if trigger in ("K", "u") and client.options is not None:
                        await pilot.pause()
                    await pilot.press(trigger)
                await pilot.pause()
                assert client.last_error and expected in client.last_error, (selector, value, client.last_error)
                assert expected in static_text(app, "#client-error")
                assert field.value == value, "the typed text stays in the field"
                if trigger not in ("send-hex", "linger-submit"):
                    assert app.focused is client, "focus stays on the pane: later keys never land in the field"
                assert field.has_class("-invalid") or selector == "#client-send-text"
                assert app.is_running
                field.value = old
                await pilot.pause()
            assert client.state == "ESTABLISHED", "bad input never touched the connection"

            app.query_one(TabbedContent).active = "tab-server"
            server = app.query_one(ServerPane)
            for selector, value, trigger, expected in SERVER_BAD:
                field = server.query_one(selector, Input)
                old = field.value
                field.value = value
                await pilot.pause()
                server.clear_error()
                if trigger == "s":
                    server.focus()
                    await pilot.press("s")
                else:
                    server.query_one(f"#server-{trigger}").press()
                await pilot.pause()
                assert server.last_error and expected in server.last_error, (selector, value, server.last_error)
                assert field.value == value
                assert server.engine is None
                field.value = old
                await pilot.pause()
            # per-client actions with no server running: refused with a message
            server.focus()
            await pilot.press("a")
            assert "not running" in server.last_error
            assert app.is_running

    run(scenario())


def test_keys_do_not_fire_while_typing(echo_server):
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address)
            field = pane.query_one("#client-send-text", Input)
            field.value = ""
            field.focus()
            await pilot.press("c", "l", "o", "s", "e", "x", "L", "K", "a")
            await pilot.pause(0.3)
            assert field.value == "closexLKa"
            assert pane.state == "ESTABLISHED" and not pane.fd_closed
            assert not pane.options.linger.enabled and not pane.options.keepalive.enabled
            await pilot.press("escape")
            assert app.focused is pane
            await pilot.press("a")
            await wait_for(pilot, lambda: pane.fd_closed, what="abort after leaving the field")

    run(scenario())


def test_client_send_modes_hex_and_framed(echo_server):
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address)
            mode = pane.query_one("#client-send-mode", Select)
            field = pane.query_one("#client-send-text", Input)
            await pilot.press("m")  # text → hex
            assert mode.value == "hex"
            field.value = "68 69:21"
            field.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: "◀ 3 B  'hi!'" in received_text(app), what="hex echo (no line ending)")
            pane.focus()
            await pilot.press("m")  # hex → framed
            assert mode.value == "framed"
            field.value = "abc"
            field.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: "00 00 00 03 61 62 63" in received_text(app), what="framed echo")
            assert pane.bytes_out == 3 + 4 + 3

    run(scenario())


def test_client_connect_timeout_against_a_full_accept_queue():
    """no-accept server with backlog 0: once the queue is full the kernel drops SYNs → ETIMEDOUT."""
    async def scenario():
        server = ServerEngine("127.0.0.1", 0, mode="no-accept", backlog=0)
        server.start()
        fillers = []
        try:
            for _ in range(2):
                s = socket.socket()
                s.settimeout(0.3)
                try:
                    s.connect(server.address)
                except OSError:
                    pass
                fillers.append(s)
            app = LabHost()
            async with app.run_test(size=(120, 40)) as pilot:
                pane = app.query_one(ClientPane)
                pane.query_one("#client-target", Input).value = "{}:{}".format(*server.address)
                pane.query_one("#client-timeout", Input).value = "0.5"
                pane.focus()
                await pilot.press("o")
                await wait_for(pilot, lambda: "ETIMEDOUT" in (pane.last_error or ""), what="ETIMEDOUT")
                assert "timed out" in pane.last_error
                assert not any("ETIMEDOUT" in n.message for n in app._notifications), "on screen: inline, no toast over the pane"
                assert "ETIMEDOUT" in str(app.query_one("#client-error").render())
                assert app.is_running
        finally:
            for s in fillers:
                s.close()
            server.stop()

    run(scenario())


def test_timeline_follows_a_selected_socket_and_back():
    from sockmon.core.lab.events import Event, EventKind
    from sockmon.core.records import Socket, Transition

    async def scenario():
        app = LabHost(collect=False)
        async with app.run_test(size=(120, 40)) as pilot:
            timeline = app.query_one(TimelinePane)
            model = timeline.model
            model.follow_client_connecting()
            model.client_endpoints(("127.0.0.1", 40000), ("127.0.0.1", 8080))
            model.add_events([Event(EventKind.CALL, "connect(127.0.0.1:8080)", 10.0, conn="client")])
            # the server side of another connection: accepted socket 127.0.0.1:8080 ← 127.0.0.1:41000
            srv = Socket(socket.AF_INET, S.ESTABLISHED, "127.0.0.1", 8080, "127.0.0.1", 41000, 0, 0, None, 0, 1, 7)
            model.add_events([Event(EventKind.BYTES_IN, "", 11.0, conn="127.0.0.1:41000", nbytes=3, data=b"abc")])
            model.add_transitions([Transition(12.0, socket.AF_INET, "127.0.0.1", 8080, "127.0.0.1", 41000,
                                                 S.ESTABLISHED, S.CLOSE_WAIT, "tracepoint", 2000.0)])
            assert "41000" not in "\n".join(timeline.plain_lines())
            model.follow_socket(srv)
            text = "\n".join(timeline.plain_lines())
            assert "in     3 bytes" in text and "ESTABLISHED → CLOSE_WAIT  (ESTABLISHED for 2.00 s)" in text
            assert "connect(127.0.0.1:8080)" not in text
            assert timeline.kernel_state == "CLOSE_WAIT"
            timeline.focus()
            await pilot.press("f")
            text = "\n".join(timeline.plain_lines())
            assert "connect(127.0.0.1:8080)" in text and "CLOSE_WAIT" not in text
            model.follow_socket(srv)
            model.follow_socket(None)
            assert timeline.following_client

    run(scenario())


def test_connect_again_replaces_the_connection_cleanly(echo_server):
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address)
            first = pane.local
            await pilot.press("o")  # connect again: the old engine is stopped, its teardown is not shown
            await wait_for(pilot, lambda: pane.local not in (None, first) and pane.state == "ESTABLISHED",
                           what="second connection")
            await pilot.pause(0.5)
            assert not pane.fd_closed
            timeline = app.query_one(TimelinePane)
            assert timeline.client_tuple == (*pane.local, *pane.peer)
            text = "\n".join(timeline.plain_lines())
            assert str(first[1]) not in text and "closed" not in text
            # what happened to the old connection is said, in the data log
            assert f"the old connection 127.0.0.1:{first[1]}" in received_text(app)
            assert "close(): FIN, our side then goes FIN_WAIT → TIME_WAIT" in received_text(app)
            assert app.focused is pane.query_one("#client-send-text", Input), "connected: type what to send"
            await pilot.press("escape")
            await pilot.press("a")
            await wait_for(pilot, lambda: pane.fd_closed, what="abort")

    run(scenario())


def test_enter_in_a_form_field_applies_it_and_gives_the_keys_back(echo_server):
    async def scenario():
        app = LabHost()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = app.query_one(ClientPane)
            target = pane.query_one("#client-target", Input)
            target.value = f"{echo_server.address[0]}:{echo_server.address[1]}"
            target.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: pane.state == "ESTABLISHED" and pane.options, what="ESTABLISHED")
            await pilot.pause()
            assert app.focused is pane.query_one("#client-send-text", Input), "connected: the send box has focus"
            await pilot.press("escape")
            assert app.focused is pane, "Escape: the one-key actions work again"
            await pilot.press("i")
            assert app.focused is pane.query_one("#client-send-text", Input), "i jumps to the data field"
            await pilot.press("escape")
            idle = pane.query_one("#client-ka-idle", Input)
            idle.value = "9"
            idle.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: pane.options.keepalive.enabled and pane.options.keepalive.idle == 9,
                           what="keepalive from Enter in the idle field")
            assert app.focused is pane
            # a bad value keeps the focus in the field, with the reason shown
            idle.value = "0"
            idle.focus()
            await pilot.press("enter")
            assert app.focused is idle and "keepalive idle" in (pane.last_error or "")

            app.query_one(TabbedContent).active = "tab-server"
            server = app.query_one(ServerPane)
            server.query_one("#server-port", Input).value = "0"
            backlog = server.query_one("#server-backlog", Input)
            backlog.value = "4"
            backlog.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: server.address is not None, what="server started by Enter")
            assert app.focused is server

    run(scenario())


def test_timeline_dates_time_wait_from_the_close_transition():
    async def scenario():
        from sockmon.core.records import Snapshot, Socket, Transition

        app = LabHost("tab-timeline", collect=False)
        async with app.run_test(size=(160, 30)) as pilot:
            timeline = app.query_one(TimelinePane)
            local, peer = ("127.0.0.1", 40000), ("127.0.0.1", 8080)
            model = timeline.model
            model.follow_client_connecting()
            model.client_endpoints(local, peer)
            model.add_transitions([
                Transition(100.0, socket.AF_INET, *local, *peer, S.ESTABLISHED, S.FIN_WAIT1, "tracepoint", None),
                Transition(100.5, socket.AF_INET, *local, *peer, S.FIN_WAIT2, S.CLOSE, "tracepoint", 0.1),
            ])
            model.client_fd_closed()
            tw = Socket(socket.AF_INET, S.TIME_WAIT, *local, *peer, 0, 0, None, 0, 0, 99)  # no inode, new cookie
            model.observe(Snapshot((tw,), 102.0, 0.0, "netlink"))
            timeline.refresh_view()
            await pilot.pause()
            last = timeline.plain_lines()[-1]
            assert "TIME_WAIT" in last
            assert "(since the → CLOSE at +0.500s: timewait socket)" in last
            assert "CLOSE for" not in last, "the 4-tuple was never 1.5 s in CLOSE"

    run(scenario())
