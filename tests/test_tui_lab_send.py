"""The Client and Server panes as a new user drives them, inside the real SockmonApp, against real loopback
sockets: press 3, type the target, Enter, type PING, Enter — a line server answers; line endings, C escapes
and multi-line pastes; the Server pane's direct mode picker, send to all, sorted clients and accept queue;
every lab key visible at 80x24.
"""

from __future__ import annotations

import socket
import threading

import pytest
import test_tui_fixtures
from sockmon.core.lab.payload import LineEnding
from sockmon.tui.app import SockmonApp
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.server import ServerPane
from test_tui_fixtures import run, start_server_from_pane, wait_for
from textual import events
from textual.widgets import DataTable, Input, RichLog, Select, Static

pytestmark = pytest.mark.timeout(90)
echo_server = test_tui_fixtures.echo_server


class LineServer:
    """Answers complete lines only (LF or CRLF): ``PING`` → ``+PONG\\r\\n``, anything else → ``+OK <line>``.
    Keeps every complete line it saw (raw, with its ending) and what is left without an ending."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines: list[bytes] = []
        self.partial = b""
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.conns.append(conn)
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.lines.append(line + b"\n")
                word = line.rstrip(b"\r")
                conn.sendall(b"+PONG\r\n" if word == b"PING" else b"+OK " + word + b"\r\n")
            self.partial = buf

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(2)


@pytest.fixture
def line_server():
    server = LineServer()
    yield server
    server.close()


def data_log(app) -> str:
    return "\n".join(strip.text for strip in app.query_one("#client-received", RichLog).lines)


def pongs(app) -> int:
    """Replies seen in the data log (its ◀ lines show them escaped; the hexdump shows dots)."""
    return data_log(app).count("+PONG\\r\\n")


def app_without_collector() -> SockmonApp:
    return SockmonApp(collector_factory=None)


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[{":": "colon", ".": "full_stop", " ": "space"}.get(c, c) for c in text])


# ---------------------------------------------------------------------- must show: PING → +PONG
def test_press_3_type_target_enter_ping_enter_gets_pong(line_server):
    async def scenario():
        app = app_without_collector()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("3")
            await pilot.pause()
            pane = app.query_one(ClientPane)
            target = pane.query_one("#client-target", Input)
            assert app.focused is target, "entering the Client pane focuses Target"
            await type_text(pilot, f"127.0.0.1:{line_server.port}")  # digits go into the field
            assert target.value == f"127.0.0.1:{line_server.port}"
            assert app.query_one("#tabs").active == "client", "typed digits did not switch panes"
            await pilot.press("enter")
            send = pane.query_one("#client-send-text", Input)
            await wait_for(pilot, lambda: app.focused is send, what="the send box focused after the connect")
            assert pane.state == "ESTABLISHED"
            assert "CRLF" in str(pane.query_one("#client-ending", Static).render()), "the ending is shown"
            await type_text(pilot, "PING")
            await pilot.press("enter")
            await wait_for(pilot, lambda: "+PONG" in data_log(app), what="+PONG in the data log")
            assert line_server.lines == [b"PING\r\n"]
            log = data_log(app)
            assert "▶ 6 B  'PING\\r\\n'" in log and "◀ 7 B  '+PONG\\r\\n'" in log
            import re

            assert re.search(r"\d\d:\d\d:\d\d\.\d{3} ▶ 6 B", log), "wall-clock time on each line"
            assert send.value == "", "the line went out: the box is empty for the next one"

            # LF only (ctrl+n in the field: CRLF → none → LF)
            await pilot.press("ctrl+n", "ctrl+n")
            assert pane.ending is LineEnding.LF
            await type_text(pilot, "PING")
            await pilot.press("enter")
            await wait_for(pilot, lambda: line_server.lines[-1:] == [b"PING\n"], what="LF line")
            await wait_for(pilot, lambda: pongs(app) == 2, what="second +PONG")

            # a multi-line paste (CRLF): every line goes out, not only the first one
            await pilot.press("ctrl+n")
            assert pane.ending is LineEnding.CRLF
            app.post_message(events.Paste("GET / HTTP/1.0\nHost: x\nPING\n"))
            await wait_for(pilot, lambda: len(line_server.lines) == 5, what="three pasted lines")
            assert line_server.lines[2:] == [b"GET / HTTP/1.0\r\n", b"Host: x\r\n", b"PING\r\n"]
            await wait_for(pilot, lambda: pongs(app) == 3, what="third +PONG")

            # C escapes: PING\r\n typed literally, with no ending
            await pilot.press("ctrl+n")  # → none
            await pilot.press("ctrl+t")  # escapes on
            assert pane.ending is LineEnding.NONE and pane.escapes
            send.value = "PING\\r\\n"
            await pilot.press("enter")
            await wait_for(pilot, lambda: pongs(app) == 4, what="+PONG from \\r\\n escapes")

            # "none": no line ending, so the server never answers
            await pilot.press("ctrl+t")  # escapes off
            await type_text(pilot, "PING")
            await pilot.press("enter")
            await wait_for(pilot, lambda: line_server.partial == b"PING", what="4 bytes, no ending")
            await pilot.pause(0.5)
            assert pongs(app) == 4, "no line, no answer"
            assert "▶ 4 B  'PING'" in data_log(app)

    run(scenario())


def test_click_on_the_client_tab_or_tab_key_focuses_target():
    async def scenario():
        app = app_without_collector()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.click("#tabs Tab#--content-tab-client")
            await pilot.pause()
            assert app.focused is app.query_one("#client-target", Input)
            # Tab from the tab bar enters the pane the same way
            await pilot.press("escape")
            app.query_one("#tabs Tabs").focus()
            await pilot.press("tab")
            await pilot.pause()
            assert app.focused is app.query_one("#client-target", Input)

    run(scenario())


# ---------------------------------------------------------------------- Server pane
def bound_client(addr: str, port: int, server_port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 0))
    s.connect(("127.0.0.1", server_port))
    s.settimeout(3)
    return s


def test_server_mode_picker_skips_close_and_reset_clients_sorted_send_to_all():
    async def scenario():
        app = app_without_collector()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("4")
            pane = app.query_one(ServerPane)
            host, port = await start_server_from_pane(pilot, pane, mode="no-accept", backlog=8)
            # peers from 127.0.0.10 before 127.0.0.2: a string sort would list .10 first
            peers = [bound_client(a, 0, port) for a in ("127.0.0.10", "127.0.0.2", "127.0.0.3")]
            try:
                await pilot.pause(0.3)
                pane.focus()
                await pilot.press("m")  # opens the picker; choosing echo goes there directly
                select = pane.query_one("#server-mode", Select)
                assert select.expanded
                await pilot.press("up", "up", "up", "enter")  # no-accept → hold → discard → echo (highlight only)
                await wait_for(pilot, lambda: len(pane.clients) == 3, what="the queued clients accepted")
                assert select.value == "echo" and pane.mode == "echo"
                log = "\n".join(s.text for s in pane.query_one("#server-log", RichLog).lines)
                assert "mode close" not in log and "mode reset" not in log and "FIN" not in log
                # every queued client survived: it still gets its echo
                for p in peers:
                    p.sendall(b"x")
                    assert p.recv(10) == b"x"
                # sorted by peer address (numerically), then port
                table = pane.query_one("#server-clients", DataTable)
                await wait_for(pilot, lambda: table.row_count == 3)
                first_cells = [str(table.get_row_at(i)[0]) for i in range(3)]
                assert [c.split(":")[0] for c in first_cells] == ["127.0.0.2", "127.0.0.3", "127.0.0.10"]
                assert first_cells[0].endswith(":12:34.567") is False
                # events carry wall-clock times
                import re

                assert re.match(r"\d\d:\d\d:\d\d\.\d{3} ", log.splitlines()[0])
                # C focuses the client list
                pane.focus()
                await pilot.press("C")
                assert app.focused is table
                # send to all (A), text with CRLF
                pane.focus()
                await pilot.press("A")
                field = pane.query_one("#server-send-text", Input)
                field.focus()
                await type_text(pilot, "hi all")
                await pilot.press("enter")
                for p in peers:
                    assert p.recv(100) == b"hi all\r\n"
                # hex to the selected client only
                pane.focus()
                await pilot.press("A", "M")  # back to the selected one; send mode text → hex
                assert pane.query_one("#server-send-mode", Select).value == "hex"
                field.focus()
                await type_text(pilot, "6f 6b")
                await pilot.press("enter")
                chosen = pane.selected_client_id()
                target = [p for p in peers if f"{p.getsockname()[0]}:{p.getsockname()[1]}" == chosen][0]
                assert target.recv(100) == b"ok"
                log = "\n".join(s.text for s in pane.query_one("#server-log", RichLog).lines)
                assert "[all 3 clients] " in log and "▶ 8 B  'hi all\\r\\n'" in log
                assert f"[{chosen}] " in log and "▶ 2 B  'ok'" in log
            finally:
                for p in peers:
                    p.close()
            await pilot.press("s")

    run(scenario())


def test_server_pane_shows_its_accept_queue_from_the_apps_snapshot():
    async def scenario():
        app = SockmonApp(interval=0.25)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("4")
            pane = app.query_one(ServerPane)
            host, port = await start_server_from_pane(pilot, pane, mode="no-accept", backlog=1)
            peers = []
            try:
                status = pane.query_one("#server-status", Static)
                await wait_for(pilot, lambda: "queue 0/1 (queued/backlog)" in str(status.render()),
                               what="queue 0/1")
                for _ in range(2):
                    peers.append(socket.create_connection((host, port), timeout=2))
                await wait_for(pilot, lambda: "queue 2/1" in str(status.render()), what="queue 2/1 in the pane")
                assert pane.clients == []
            finally:
                for p in peers:
                    p.close()
                await pilot.press("s")
                app._stop_collector()
                await pilot.pause(0.3)

    run(scenario())


# ---------------------------------------------------------------------- 80x24
def screen_text(app) -> str:
    """What the terminal shows, without any whitespace (the SVG export splits text runs by style)."""
    import html
    import re

    svg = app.export_screenshot()
    return "".join(html.unescape("".join(re.findall(r"<text[^>]*>(.*?)</text>", svg))).split())


def test_every_lab_key_is_on_screen_at_80x24_and_errors_stay_inline():
    async def scenario():
        app = app_without_collector()
        async with app.run_test(size=(80, 24)) as pilot:
            for key, cls in (("3", ClientPane), ("alt+4", ServerPane)):
                await pilot.press(key)  # Target has the focus after 3: alt+digit switches from a field
                await pilot.pause()
                pane = app.query_one(cls)
                keys = pane.query_one(f"#{pane.PREFIX}-keys", Static)
                assert keys.region.bottom <= 24 - 2, "the key line sits above the status bar and the footer"
                text = screen_text(app)
                for b in cls.BINDINGS:
                    if b.key == "escape":
                        continue
                    key_text = b.key_display or b.key.split(",")[0]
                    if b.group is not None:
                        key_text = "/".join(x.key_display or x.key for x in cls.BINDINGS if x.group == b.group)
                    label = b.group.description if b.group else b.description
                    assert "".join(f"{key_text} {label}".split()) in text, b
            # an error on the Client pane: inline, no toast over the state line
            await pilot.press("3")
            await pilot.pause()
            pane = app.query_one(ClientPane)
            pane.query_one("#client-target", Input).value = "127.0.0.1:0"
            await pilot.press("enter")
            await pilot.pause()
            assert pane.last_error and "port" in pane.last_error
            assert not app._notifications, "no toast while the pane shows the error inline"
            assert "".join(pane.last_error.split())[:30] in screen_text(app)

    run(scenario())
