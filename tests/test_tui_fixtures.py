"""Deterministic socket tables for the TUI tests and SVG snapshots (no kernel involved).

Also the one home of the TUI tests' helpers (``run``/``sync``, ``wait_for``, the ``LabHost`` app that
mounts the three lab panes, ``timeline_text``, the ``echo_server`` fixture); pytest collects no tests
from here.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from types import MappingProxyType

import pytest
from msgspec.structs import replace
from sockmon.core import states as S
from sockmon.core.lab.server import ServerEngine
from sockmon.core.records import Process, Snapshot, Socket, Timer, Transition
from sockmon.core.table.summary import Summary, summarize
from sockmon.core.tcpinfo import TcpInfo, encode_tcp_info
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.server import ServerPane
from sockmon.tui.lab.timeline import TimelinePane
from sockmon.tui.lab.wiring import LabWiring
from sockmon.tui.messages import (
    ClientConnecting,
    ClientEndpointsKnown,
    ClientFdClosed,
    EngineEvent,
    LadderPacketsCaptured,
    LadderUnavailableSeen,
)
from textual import on
from textual.app import App, ComposeResult
from textual.widgets import Footer, TabbedContent, TabPane

T0 = 1000.0  # monotonic time of the fixture snapshot
V4, V6 = socket.AF_INET, socket.AF_INET6


def run(coro):
    """Run one async test scenario on its own event loop."""
    return asyncio.run(coro)


def sync(fn):
    """Run an async test body on its own event loop (no pytest-asyncio needed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run(fn(*args, **kwargs))

    return wrapper


async def wait_for(pilot, cond, timeout: float = 10.0, what: str = "condition", step: float = 0.05):
    """Let the app run until ``cond()`` is truthy and return that value; fail the test (AssertionError
    naming ``what``) if it is still falsy after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = cond()
        if value:
            return value
        await pilot.pause(step)
    value = cond()
    if value:
        return value
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class LabHost(App):
    """The three lab panes (Client, Server, Timeline) as tabs, routed like SockmonApp routes them (one
    LabWiring), and, with ``collect``, a real collector feeding the timeline model its snapshots and
    transitions (how it sees FIN_WAIT2 / TIME_WAIT after the client's fd is closed)."""

    def __init__(self, initial: str = "tab-client", *, collect: bool = True) -> None:
        super().__init__()
        self.initial = initial
        self.lab = LabWiring(self)
        self.collect = collect
        self.collector = None

    def compose(self) -> ComposeResult:
        with TabbedContent(initial=self.initial):
            with TabPane("Client", id="tab-client"):
                yield ClientPane()
            with TabPane("Server", id="tab-server"):
                yield ServerPane()
            with TabPane("Timeline", id="tab-timeline"):
                yield TimelinePane(self.lab.model, ladder=self.lab.ladder)
        yield Footer()

    def on_mount(self) -> None:
        if self.collect:
            from sockmon.core.table.collector import Collector

            self.collector = Collector(interval=0.25, on_update=self._from_collector, with_owners=False)

    def on_unmount(self) -> None:
        if self.collector is not None:
            self.collector.stop()

    def _from_collector(self, update) -> None:  # collector thread
        try:
            self.call_from_thread(self.lab.update, update.snapshot, update.transitions)
        except Exception:  # noqa: BLE001 - the app is gone
            pass

    def request_refresh(self) -> None:
        if self.collector is not None:
            self.collector.refresh_now()

    @on(ClientConnecting)
    def _client_connecting(self, message) -> None:
        self.lab.client_connecting(message.generation)

    @on(LadderPacketsCaptured)
    def _ladder_packets(self, message) -> None:
        self.lab.ladder_packets(message.queue, message.generation)

    @on(LadderUnavailableSeen)
    def _ladder_unavailable(self, message) -> None:
        self.lab.ladder_unavailable(message.reason, message.generation)

    @on(ClientEndpointsKnown)
    def _client_endpoints(self, message) -> None:
        self.lab.client_endpoints(message.local, message.peer)

    @on(ClientFdClosed)
    def _client_fd_closed(self, message) -> None:
        self.lab.client_fd_closed()

    @on(EngineEvent)
    def _engine_event(self, message) -> None:
        self.lab.engine_event(message.event)


async def start_server_from_pane(pilot, pane, *, mode: str, backlog: int = 8) -> tuple[str, int]:
    """Fill the Server pane's form (port 0 = any), press `s`, wait until it listens; its (host, port)."""
    from textual.widgets import Input, Select

    pane.query_one("#server-port", Input).value = "0"
    pane.query_one("#server-backlog", Input).value = str(backlog)
    pane.query_one("#server-mode", Select).value = mode
    await pilot.pause()
    pane.focus()
    await pilot.press("s")
    await wait_for(pilot, lambda: pane.address is not None, what="the built-in server listening")
    return pane.address


def timeline_text(app) -> str:
    return "\n".join(app.query_one(TimelinePane).plain_lines())


async def connect_client(app, pilot, address, *, tab_key: str | None = None) -> ClientPane:
    """Connect the Client pane to ``address`` with its ``o`` key and wait for ESTABLISHED with the options
    read back. ``tab_key`` first switches to the Client tab with that key (the real app: "3")."""
    pane = app.query_one(ClientPane)
    if tab_key is not None:
        await pilot.press(tab_key)
        await wait_for(pilot, lambda: app.focused is not None and pane in app.focused.ancestors_with_self,
                       what="focus in the client pane")
    pane.query_one("#client-target").value = f"{address[0]}:{address[1]}"
    pane.focus()
    await pilot.press("o")
    await wait_for(pilot, lambda: pane.state == "ESTABLISHED" and pane.local and pane.options, what="ESTABLISHED")
    await pilot.pause()
    if app.focused is pane.query_one("#client-send-text"):
        await pilot.press("escape")  # connected: the focus went to the send box; the one-key actions again
    return pane


@pytest.fixture
def echo_server():
    """The built-in server engine in echo mode on an ephemeral loopback port."""
    server = ServerEngine("127.0.0.1", 0, mode="echo", backlog=16)
    server.start()
    yield server
    server.stop()


def info(rtt_us=120, cwnd=10, retrans=0, total_retrans=0, **kw) -> TcpInfo:
    base = TcpInfo(*[0] * len(TcpInfo.__struct_fields__))
    return replace(base, state=kw.pop("state", 1), rtt=rtt_us, rttvar=rtt_us // 2, rto=204000, ato=40000,
                   snd_mss=32768, rcv_mss=536, snd_cwnd=cwnd, snd_ssthresh=2147483647, advmss=65483,
                   pmtu=65535, rcv_space=65483, retransmits=retrans, total_retrans=total_retrans,
                   options=7, snd_wscale=7, rcv_wscale=7, **kw)


PROCS = {
    101: Process(4242, "nginx", "www-data", ("nginx", "-g", "daemon off;")),
    102: Process(4242, "nginx", "www-data", ("nginx", "-g", "daemon off;")),
    103: Process(5151, "postgres", "postgres", ("postgres", "-D", "/var/lib/postgresql")),
    104: Process(6060, "sshd", "root", ("sshd", "-D")),
    201: Process(7001, "curl", "alice", ("curl", "http://127.0.0.1:8080/")),
    202: Process(4242, "nginx", "www-data", ("nginx", "-g", "daemon off;")),
    203: Process(7002, "psql", "alice", ("psql", "-h", "::1")),
    204: Process(5151, "postgres", "postgres", ("postgres", "-D", "/var/lib/postgresql")),
    205: Process(7003, "python3", "alice", ("python3", "client.py")),
    206: Process(7004, "ssh", "bob", ("ssh", "127.0.0.1")),
    207: Process(6060, "sshd", "root", ("sshd", "-D")),
    208: Process(7005, "redis-cli", "bob", ("redis-cli",)),
}


def sk(fam, state, src, sport, dst, dport, rq=0, sq=0, timer=None, inode=0, cookie=0, uid=0, tcp=None):
    return Socket(fam, state, src, sport, dst, dport, rq, sq, timer, uid, inode, cookie, 1 if fam else 0,
                  None if tcp is None else encode_tcp_info(tcp), "cubic" if tcp else None)


def sockets() -> list[Socket]:
    any4, any6, lo4, lo6 = "0.0.0.0", "::", "127.0.0.1", "::1"
    return [
        # listeners: one idle, one with a queue, one full (accept queue = backlog), one v6
        sk(V4, S.LISTEN, any4, 8080, any4, 0, 0, 511, inode=101, cookie=1, uid=33),
        sk(V6, S.LISTEN, any6, 8080, any6, 0, 0, 511, inode=102, cookie=2, uid=33),
        sk(V4, S.LISTEN, lo4, 5432, any4, 0, 3, 8, inode=103, cookie=3, uid=113),
        sk(V4, S.LISTEN, any4, 22, any4, 0, 5, 5, inode=104, cookie=4),
        # connections in many states
        sk(V4, S.ESTABLISHED, lo4, 51000, lo4, 8080, 0, 0, None, 201, 10, 1000, info(48, 10)),
        sk(V4, S.ESTABLISHED, lo4, 8080, lo4, 51000, 0, 1448, Timer(S.TIMER_ON, 204, 0), 202, 11, 33,
           info(61, 10)),
        sk(V6, S.ESTABLISHED, lo6, 51002, lo6, 5432, 0, 0, Timer(S.TIMER_KEEPALIVE, 7_200_000 - 1500, 0), 203, 12,
           1000, info(35, 10)),
        sk(V6, S.ESTABLISHED, lo6, 5432, lo6, 51002, 0, 0, None, 204, 13, 113, info(40, 10)),
        sk(V4, S.SYN_SENT, lo4, 51004, "127.0.0.2", 9, 0, 1, Timer(S.TIMER_ON, 2100, 2), 205, 14, 1000,
           info(0, 1, state=2, retrans=2, total_retrans=2)),
        sk(V4, S.FIN_WAIT2, lo4, 51006, lo4, 8080, 0, 0, Timer(S.TIMER_TIMEWAIT, 58_000, 0), 0, 15, 0, None),
        sk(V4, S.CLOSE_WAIT, lo4, 8080, lo4, 51006, 1, 0, None, 202, 16, 33, info(55, 10, state=8)),
        sk(V4, S.TIME_WAIT, lo4, 51008, lo4, 8080, 0, 0, Timer(S.TIMER_TIMEWAIT, 41_500, 0), 0, 17, 0, None),
        sk(V4, S.TIME_WAIT, lo4, 51010, lo4, 8080, 0, 0, Timer(S.TIMER_TIMEWAIT, 12_250, 0), 0, 18, 0, None),
        sk(V4, S.ESTABLISHED, lo4, 22, lo4, 51012, 0, 0, Timer(S.TIMER_KEEPALIVE, 45_000, 1), 207, 19, 0,
           info(90, 10)),
        sk(V4, S.ESTABLISHED, lo4, 51012, lo4, 22, 0, 0, None, 206, 20, 1001, info(88, 10)),
        sk(V4, S.LAST_ACK, lo4, 6379, lo4, 51014, 0, 1, Timer(S.TIMER_ON, 180, 1), 0, 21, 0,
           info(70, 7, state=9, retrans=1, total_retrans=3)),
        sk(V4, S.FIN_WAIT1, lo4, 51016, lo4, 6379, 0, 1, Timer(S.TIMER_ON, 300, 0), 208, 22, 1001,
           info(65, 10, state=4)),
        sk(V4, S.ESTABLISHED, lo4, 8080, lo4, 51018, 0, 212_992, Timer(S.TIMER_PERSIST, 1600, 3), 202, 23, 33,
           info(1200, 3, total_retrans=12)),
    ]


def snapshot(socks=None, taken_at: float = T0) -> Snapshot:
    socks = sockets() if socks is None else socks
    owners = {s.inode: PROCS[s.inode] for s in socks if s.inode in PROCS}
    return Snapshot(tuple(socks), taken_at, 1_763_780_000.0, "netlink", None, MappingProxyType(owners))


def summary(snap: Snapshot | None = None) -> Summary:
    """The core's Summary of ``snap`` (default: the fixture snapshot) with fixed system counters."""
    base = summarize(snap if snap is not None else snapshot(), read_system=False)
    return Summary(total=base.total, by_state=base.by_state, listen_overflows=7, listen_drops=7,
                   keepalive_time=7200, keepalive_intvl=75, keepalive_probes=9, families=base.families)


def transitions() -> list[Transition]:
    lo4 = "127.0.0.1"
    return [
        Transition(T0 - 2.0, V4, lo4, 51000, lo4, 8080, S.CLOSE, S.SYN_SENT, "tracepoint", None),
        Transition(T0 - 1.9998, V4, lo4, 51000, lo4, 8080, S.SYN_SENT, S.ESTABLISHED, "tracepoint", 0.2),
        Transition(T0 - 0.8, V4, lo4, 51006, lo4, 8080, S.ESTABLISHED, S.FIN_WAIT1, "tracepoint", 1200.0),
        Transition(T0 - 0.7999, V4, lo4, 51006, lo4, 8080, S.FIN_WAIT1, S.FIN_WAIT2, "tracepoint", 0.1),
    ]


def frozen_clock(at: float = T0 + 0.25):
    return lambda: at


# A process name that is an attack on the terminal (OSC title, bell, clear screen) and on Rich markup:
# the owner columns must show it inert and in its own cell.
HOSTILE_NAME = "\x1b]0;pwned\x07[bold red]ev\x1b[2Jil"


def hostile_snapshot(taken_at: float = T0) -> Snapshot:
    """The fixture snapshot with the psql client (a keepalive timer, v6) owned by a hostile name."""
    snap = snapshot(taken_at=taken_at)
    owners = dict(snap.owners)
    owners[203] = Process(7002, HOSTILE_NAME, "alice", (HOSTILE_NAME, "-h", "::1"))
    return Snapshot(snap.sockets, snap.taken_at, snap.wall_time, snap.source, snap.netns,
                    MappingProxyType(owners))


# Throughput per fixture connection (local port → (received, acked) bytes per second), for rated_sockets.
FLOWS = {51000: (1_250_000, 40_000), 8080: (40_000, 1_250_000), 51002: (3_000, 250_000), 5432: (250_000, 3_000),
         51012: (800, 1_600)}
WAVE = (0, 1, 3, 6, 3, 1, 0, 2)  # the 51000 ↔ 8080 pair's rate varies: (4 + WAVE[tick % 8]) / 8 of its flow


def _pair(s: Socket) -> bool:
    return {s.sport, s.dport} == {51000, 8080}


def rated_sockets(tick: int) -> list[Socket]:
    """The fixture sockets after ``tick`` one-second refreshes: the byte counters of the ESTABLISHED ones
    advanced by FLOWS; the 51000 ↔ 8080 pair also varies its rate, rtt, cwnd and retransmissions (for
    sparklines)."""
    from sockmon.core.tcpinfo import decode_tcp_info

    out = []
    for s in sockets():
        flow = FLOWS.get(s.sport) if s.state == S.ESTABLISHED and s.tcp_info_bytes is not None else None
        if flow is None:
            out.append(s)
            continue
        t = decode_tcp_info(s.tcp_info_bytes)
        share = [(4 + WAVE[k % 8]) / 8 if _pair(s) else 1.0 for k in range(1, tick + 1)]
        t = replace(t, bytes_received=int(flow[0] * sum(share)), bytes_acked=int(flow[1] * sum(share)))
        if _pair(s):
            t = replace(t, rtt=t.rtt + 40 * WAVE[tick % 8], snd_cwnd=10 + tick // 2,
                        total_retrans=t.total_retrans + tick // 5)
        out.append(replace(s, tcp_info_bytes=encode_tcp_info(t)))
    return out
