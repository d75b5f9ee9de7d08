"""Hostile process names and command lines are inert everywhere they are shown.

Real child processes own real loopback connections; their names (prctl PR_SET_NAME) and argv hold a
terminal title sequence (ESC ] 0 ; X BEL), a clear-screen sequence (ESC [ 2 J) and Rich markup ([/x],
which makes Rich raise, and [bold red]X, which restyles). `sockmon ls` must print them with the control
characters as visible escapes; the TUI must survive Connections, Detail and Keepalive on their sockets,
and what it draws must hold no raw control character and show the markup literally.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
from sockmon.core.table.collector import Collector
from sockmon.core.text import inert
from sockmon.tui.app import SockmonApp
from sockmon.tui.screens.detail import DetailScreen
from test_tui_fixtures import sync, wait_for

pytestmark = pytest.mark.timeout(90)

TITLE = "\x1b]0;X\x07"  # sets the terminal's title
CLEAR = "\x1b[2J"  # clears the screen
CRASH = "[/x]"  # a closing tag without an opening one: Rich raises MarkupError
RESTYLE = "[bold red]X"  # markup that would restyle the screen
EVIL_COMM = TITLE + CLEAR + CRASH  # 14 bytes: fits comm's 15
ARGV = (TITLE, CLEAR, CRASH, RESTYLE)
# Every character a terminal acts on: C0, DEL, C1.
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

CHILD = r"""
import ctypes, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, ctypes.c_char_p(sys.argv[1].encode()), 0, 0, 0) != 0:  # PR_SET_NAME
    raise SystemExit("prctl failed")
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(1)
cli = socket.create_connection(lst.getsockname())
cli.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # a keepalive timer: listed in the Keepalive pane
srv, _ = lst.accept()
print(lst.getsockname()[1], cli.getsockname()[1], flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def _start(comm: str) -> SimpleNamespace:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, comm, *ARGV], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError("the hostile child did not start")
    lport, cport = map(int, line.split())
    with open(f"/proc/{proc.pid}/comm", encoding="utf-8") as fh:
        assert fh.read().rstrip("\n") == comm  # the kernel kept the name as given
    return SimpleNamespace(proc=proc, pid=proc.pid, comm=comm, lport=lport, cport=cport)


@pytest.fixture
def hostile():
    """Two processes: one named ESC]0;X BEL ESC[2J [/x], one named [bold red]X; both with the hostile argv."""
    children = [_start(EVIL_COMM), _start(RESTYLE)]
    yield SimpleNamespace(evil=children[0], red=children[1])
    for c in children:
        c.proc.stdin.close()
        try:
            c.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()


def _ls(port: int) -> bytes:
    return subprocess.run([sys.executable, "-m", "sockmon", "ls", "--port", str(port)], capture_output=True,
                          check=True, timeout=60).stdout


def test_ls_text_output_has_no_control_bytes(hostile):
    out = _ls(hostile.evil.lport) + _ls(hostile.red.lport)
    text = out.decode("utf-8")
    bad = [ch for ch in RAW_CONTROL.findall(text) if ch != "\n"]
    assert bad == [], f"raw control characters in ls output: {bad!r}"
    assert f"{inert(EVIL_COMM)},pid={hostile.evil.pid}" in text  # \x1b]0;X\x07\x1b[2J[/x]
    assert "\\x1b]0;X\\x07\\x1b[2J[/x]" in text
    assert f"{RESTYLE},pid={hostile.red.pid}" in text  # markup means nothing here: shown as typed


def fast_collector(**kw):
    return Collector(interval=kw.pop("interval"), use_tracepoint=False, **kw)


def screen_chars(app) -> str:
    """Every character the compositor would send for the current screen, line by line (before the
    driver adds its own escape sequences): exactly the text that reaches the terminal."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


def assert_inert(app, where: str) -> str:
    text = screen_chars(app)
    bad = [ch for ch in RAW_CONTROL.findall(text) if ch != "\n"]
    assert bad == [], f"{where}: raw control characters on screen: {bad!r}"
    return text


def _row(table, sport: int):
    return next((s for s in table.visible_rows() if s.sport == sport), None)


@sync
async def test_tui_survives_and_shows_hostile_names_inert(hostile):
    evil, red = hostile.evil, hostile.red
    app = SockmonApp(interval=0.2, collector_factory=fast_collector)
    async with app.run_test(size=(200, 60)) as pilot:
        conns = app.connections
        # both owners known in the Connections table
        await wait_for(pilot, lambda: (_row(conns.table, evil.cport) is not None
                                       and conns.owner_of(_row(conns.table, evil.cport)) is not None
                                       and _row(conns.table, red.cport) is not None
                                       and conns.owner_of(_row(conns.table, red.cport)) is not None),
                       timeout=20, what="the hostile children's connections with owners")
        assert conns.owner_of(_row(conns.table, evil.cport)).name == EVIL_COMM
        await pilot.pause()
        text = assert_inert(app, "Connections")
        assert f"{red.pid}/{RESTYLE}" in text  # literal, not restyled
        assert f"{evil.pid}/\\x1b]0;X" in text  # cut to the column, but visibly escaped

        # Detail on the evil process's socket: name and cmdline in full, inert and literal
        table = conns.table
        table.focus()
        assert table.move_cursor_to_key(table.key_fn(_row(table, evil.cport)))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the Detail screen")
        await pilot.pause()
        text = assert_inert(app, "Detail")
        assert inert(EVIL_COMM) in text
        assert "\\x1b]0;X\\x07 \\x1b[2J [/x] [bold red]X" in text  # the cmdline's hostile arguments
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DetailScreen), what="back from Detail")

        # the Keepalive pane on the same socket (the owner row of its side box)
        await pilot.press("2")
        ka = app.keepalive
        kt = ka.timers.table
        await wait_for(pilot, lambda: _row(kt, evil.cport) is not None, what="the keepalive timer row")
        kt.focus()
        assert kt.move_cursor_to_key(kt.key_fn(_row(kt, evil.cport)))
        await wait_for(pilot, lambda: ka.socket is not None and ka.socket.sport == evil.cport
                       and ka.owner is not None, what="the keepalive side box on the evil socket")
        await pilot.pause()
        text = assert_inert(app, "Keepalive")
        assert f"{evil.pid}/{inert(EVIL_COMM)}" in text

        # the red one in Detail too: its name is shown as typed
        await pilot.press("1")
        await pilot.pause()
        table.focus()
        assert table.move_cursor_to_key(table.key_fn(_row(table, red.cport)))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="Detail of the red one")
        await pilot.pause()
        text = assert_inert(app, "Detail (red)")
        assert RESTYLE in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DetailScreen), what="back from Detail")

        # the process view: both names as rows, inert and literal
        await pilot.press("g")
        procs = app.processes.table
        await wait_for(pilot, lambda: {evil.pid, red.pid} <= {t.pid for t in procs.visible_rows()},
                       what="both hostile processes in the process view")
        await pilot.pause()
        text = assert_inert(app, "Processes")
        assert RESTYLE in text and "\\x1b]0;X" in text
        assert app.is_running


# ---------------------------------------------------------------------------------------------------
# The lab panes: what a peer sends and what an error says are shown inert too.
PEER_BYTES = (TITLE + CLEAR + CRASH + RESTYLE).encode() + b"\xc2\x9b\xe2\x80\xae\xff"  # + C1 CSI, RLO, bad UTF-8


@pytest.fixture
def hostile_peer():
    """A loopback server that sends PEER_BYTES to whoever connects, then stays open."""
    import threading

    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    held = []

    def serve():
        try:
            conn, _ = lst.accept()
        except OSError:
            return
        held.append(conn)
        conn.sendall(PEER_BYTES)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield lst.getsockname()[:2]
    lst.close()
    t.join(5)
    for c in held:
        c.close()


@sync
async def test_lab_panes_show_peer_bytes_and_errors_inert(hostile_peer):
    from sockmon.tui.lab.timeline import TimelinePane
    from test_tui_fixtures import LabHost, connect_client

    app = LabHost()
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await connect_client(app, pilot, hostile_peer)
        log = app.query_one("#client-received")
        await wait_for(pilot, lambda: any("[/x]" in strip.text for strip in log.lines), what="the peer's bytes")
        pane.show_error(f"connect failed: {EVIL_COMM} {RESTYLE}")  # an error carrying outside text
        await pilot.pause()
        text = assert_inert(app, "Client pane")
        assert "\\x1b]0;X\\x07\\x1b[2J[/x][bold red]X" in text  # the received line, escaped and literal
        assert f"connect failed: {inert(EVIL_COMM)} {RESTYLE}" in text  # the error line
        timeline = app.query_one(TimelinePane)
        await wait_for(pilot, lambda: any("bytes" in line and "[/x]" in line for line in timeline.plain_lines()),
                       what="the bytes line in the timeline")
        app.query_one("TabbedContent").active = "tab-timeline"
        await pilot.pause()
        assert_inert(app, "Timeline pane")


def test_headless_event_lines_are_inert_and_json_stays_lossless(capfd):
    """`sockmon connect` / `serve` print engine events; their details carry peer text and errors."""
    import json

    from sockmon.core.lab.events import EventKind, make_event

    from sockmon.cli.output import EventPrinter

    ev = make_event(EventKind.ERROR, f"peer said {EVIL_COMM}\u202e")
    EventPrinter(as_json=False)(ev)
    EventPrinter(as_json=True)(ev)
    text_line, json_line = capfd.readouterr().out.splitlines()
    assert not RAW_CONTROL.search(text_line) and "\u202e" not in text_line
    assert f"peer said {inert(EVIL_COMM)}\\u202e" in text_line
    assert json.loads(json_line)["detail"] == f"peer said {EVIL_COMM}\u202e"  # lossless


@sync
async def test_detail_shows_link_local_addresses_whole():
    """Rich markup would read "[fe80::1]" as a style tag and drop it: addresses must be literal too."""
    from sockmon.core import states as S
    from test_tui_fixtures import V6, sk, snapshot

    sock = sk(V6, S.ESTABLISHED, "fe80::1", 22, "fe80::2", 51000, cookie=99)
    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(160, 48)) as pilot:
        app.inject_snapshot(snapshot([sock]))
        await pilot.pause()
        app.open_detail(sock)
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the Detail screen")
        await pilot.pause()
        text = screen_chars(app)
        assert re.search(r"local\s+\[fe80::1\]:22 +│", text), text  # the Socket box row, not the sockaddr head
        assert re.search(r"peer\s+\[fe80::2\]:51000 +│", text), text
