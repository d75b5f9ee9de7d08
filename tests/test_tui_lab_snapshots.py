"""SVG snapshots of the three lab panes with deterministic data (fixed ports, fixed timestamps, no sockets).

Update after an intended visual change: ``pytest tests/test_tui_lab_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import socket

from sockmon.core import states as S
from sockmon.core.lab.events import Event, EventKind
from sockmon.core.lab.options import Keepalive, Linger, SocketOptions
from sockmon.core.lab.server import ServerClient
from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.server import ServerPane, options_summary
from sockmon.tui.lab.timeline import TimelinePane
from test_tui_fixtures import LabHost
from textual.widgets import RichLog

SIZE = (100, 32)
T0 = 5000.0
LOCAL = ("127.0.0.1", 40000)
PEER = ("127.0.0.1", 8080)


def ev(dt: float, kind: EventKind, detail: str = "", **kw) -> Event:
    return Event(kind, detail, T0 + dt, conn=kw.pop("conn", "client"), **kw)


def tr(dt: float, old: int, new: int, dwell_ms: float | None = None) -> Transition:
    return Transition(T0 + dt, socket.AF_INET, *LOCAL, *PEER, old, new, "tracepoint", dwell_ms)


CLIENT_EVENTS = [
    ev(0.0, EventKind.CALL, "connect(127.0.0.1:8080)"),
    ev(0.0004, EventKind.STATE, "rtt 0.031 ms, cwnd 10", state="ESTABLISHED"),
    ev(0.0005, EventKind.RETURNED, "connect(127.0.0.1:8080) from 127.0.0.1:40000"),
    ev(0.5, EventKind.OPTION, "linger on, 0 s (close sends RST)"),
    ev(0.5001, EventKind.OPTION, "linger off"),
    ev(1.0, EventKind.CALL, "send(6 bytes)"),
    ev(1.0001, EventKind.BYTES_OUT, nbytes=6),
    ev(1.0003, EventKind.BYTES_IN, nbytes=6, data=b"hello\n"),
    ev(1.5, EventKind.FAILED, "setsockopt(TCP_USER_TIMEOUT)", errno_name="EINVAL", meaning="invalid argument",
       action="check the value"),
    ev(2.0, EventKind.CALL, "close()"),
    ev(2.0001, EventKind.CLOSED, "fd closed"),
]
CLIENT_TRANSITIONS = [
    tr(0.0003, S.SYN_SENT, S.ESTABLISHED, 0.042),
    tr(2.00005, S.ESTABLISHED, S.FIN_WAIT1, 2000.0),
    tr(2.0002, S.FIN_WAIT1, S.FIN_WAIT2, 0.15),
    tr(2.0003, S.FIN_WAIT2, S.CLOSE, 0.007),
]


async def fill_timeline(pilot) -> None:
    timeline = pilot.app.query_one(TimelinePane)
    model = timeline.model
    model.follow_client_connecting()
    model.client_endpoints(LOCAL, PEER)
    model.add_events(CLIENT_EVENTS)  # ends with CLOSED: the fd is closed
    model.add_transitions(CLIENT_TRANSITIONS)
    # the socket table then holds the 4-tuple as a timewait socket (no inode, another cookie)
    tw = Socket(socket.AF_INET, S.TIME_WAIT, *LOCAL, *PEER, 0, 0, None, 0, 0, 4242)
    model.observe(Snapshot((tw,), T0 + 2.004, 0.0, "netlink"))
    timeline.refresh_view()
    timeline.focus()
    await pilot.pause()


OPTIONS = SocketOptions(linger=Linger(True, 0), keepalive=Keepalive(True, 60, 10, 3), user_timeout_ms=0,
                        reuseaddr=False, nodelay=True, rcvbuf=131072, sndbuf=16384)


def fixed_clock(ts: float | None = None) -> str:
    return "12:00:01.234" if ts is None else f"12:00:{ts - T0 + 1:06.3f}"


async def fill_client(pilot) -> None:
    pane = pilot.app.query_one(ClientPane)
    pane.state = "ESTABLISHED"
    pane.local, pane.peer = LOCAL, PEER
    pane.options = OPTIONS
    pane.bytes_out = 6
    pane.bytes_in = 20
    pane.clock_text = fixed_clock  # wall-clock times: fixed for the picture
    pane._show_sent(b"hello\r\n")
    pane._show_received(b"hello from server\r\n\x00")
    pane._refresh_display()
    pane.focus()
    await pilot.pause()


class FakeServer:
    """Fixed clients and options: what ServerEngine reports, without sockets."""

    address = ("127.0.0.1", 8080)
    CLIENTS = [
        ServerClient("127.0.0.1:40000", ("127.0.0.1", 40000), ("127.0.0.1", 8080), 12, 12, "ESTABLISHED",
                     False, False),
        ServerClient("127.0.0.1:40002", ("127.0.0.1", 40002), ("127.0.0.1", 8080), 5, 5, "CLOSE_WAIT",
                     False, False, True),
        ServerClient("127.0.0.1:40004", ("127.0.0.1", 40004), ("127.0.0.1", 8080), 0, 3, "FIN_WAIT2",
                     False, True),
    ]

    def clients(self):
        return list(self.CLIENTS)

    def options(self, cid):
        if cid.endswith("40000"):
            return OPTIONS
        return SocketOptions(Linger(False, 0), Keepalive(False, 7200, 75, 9), 0, False, False, 131072, 16384)


async def fill_server(pilot) -> None:
    pane = pilot.app.query_one(ServerPane)
    fake = FakeServer()
    pane.engine = fake
    pane.address = fake.address
    pane._set_clients(pane._generation, fake.clients(),
                      {c.id: options_summary(fake.options(c.id)) for c in fake.CLIENTS})
    log_events = [
        ev(0.0, EventKind.INFO, "listening on 127.0.0.1:8080, mode echo", conn=None),
        ev(0.1, EventKind.ACCEPTED, "accept() → 127.0.0.1:40000 on 127.0.0.1:8080", conn="127.0.0.1:40000"),
        ev(0.2, EventKind.BYTES_IN, nbytes=12, data=b"hello server", conn="127.0.0.1:40000"),
        ev(0.3, EventKind.PEER_CLOSED, "recv() returned 0: the peer sent FIN", conn="127.0.0.1:40002"),
    ]
    pane.clock_text = fixed_clock
    # the listener's row as the app's snapshot has it: 2 connections waiting for accept(), backlog 16
    pane.listener = Socket(socket.AF_INET, S.LISTEN, "127.0.0.1", 8080, "0.0.0.0", 0, 2, 16, None, 0, 0, 7)
    log = pane.query_one("#server-log", RichLog)
    for e in log_events:
        log.write(pane._log_line(e))
    pane._refresh_display()
    pane.focus()
    await pilot.pause()


def test_snapshot_client_pane(snap_compare):
    assert snap_compare(LabHost("tab-client", collect=False), terminal_size=SIZE, run_before=fill_client)


def test_snapshot_server_pane(snap_compare):
    assert snap_compare(LabHost("tab-server", collect=False), terminal_size=SIZE, run_before=fill_server)


def test_snapshot_timeline_pane(snap_compare):
    assert snap_compare(LabHost("tab-timeline", collect=False), terminal_size=SIZE, run_before=fill_timeline)
