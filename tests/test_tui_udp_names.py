"""The TUI's socket-type toggle (`u`: UDP bound sockets beside TCP listeners, UNIX sockets) and its
names toggle (`n`: names arrive from a background resolver; the UI never waits for it)."""

from __future__ import annotations

import html
import os
import re
import socket
import threading
import time

import pytest
from sockmon.core.names import ServiceNames
from sockmon.core.records import Snapshot, Socket
from sockmon.core.states import ESTABLISHED, LISTEN
from sockmon.core.table.collector import Collector
from sockmon.tui.app import SockmonApp
from test_tui_fixtures import sync, wait_for

pytestmark = pytest.mark.timeout(60)


def fast_collector(**kw):
    return Collector(interval=kw.pop("interval"), use_tracepoint=False, **kw)


def screen_text(app) -> str:
    svg = app.export_screenshot()
    return html.unescape(" ".join(re.findall(r"<text[^>]*>(.*?)</text>", svg))).replace("\xa0", " ")


def inode_of(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


@sync
async def test_udp_bound_sockets_beside_tcp_listeners_and_unix_on_toggle(tmp_path):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.connect(udp.getsockname())
    path = str(tmp_path / "tui.sock")
    ux = socket.socket(socket.AF_UNIX)
    ux.bind(path)
    ux.listen(2)
    uport = udp.getsockname()[1]
    app = SockmonApp(interval=0.2, collector_factory=fast_collector)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            def listening(inode):
                return next((s for s in app.listening.table.rows.rows.values() if s.inode == inode), None)

            assert await wait_for(pilot, lambda: listening(inode_of(tcp)) is not None)
            assert app.snapshot.udp == () and app.snapshot.unix == ()  # not collected until shown
            assert listening(inode_of(udp)) is None
            await pilot.press("u")  # TCP+UDP
            assert app.socket_types == frozenset({"tcp", "udp"})
            row = await wait_for(pilot, lambda: listening(inode_of(udp)), what="UDP row in Listening")
            assert row.protocol == socket.IPPROTO_UDP and listening(inode_of(tcp)) is not None
            # an owner shows in the tick that first sees the socket, or at the latest the next one
            assert await wait_for(pilot, lambda: getattr(app.listening.owner_of(listening(inode_of(udp))), "pid",
                                                         None) == os.getpid(), what="UDP owner")
            await pilot.pause(0.3)
            text = screen_text(app)
            lines = [x for x in text.split("│") if f"127.0.0.1:{uport} " in x and "UDP: no accept queue" in x]
            assert lines and " udp " in lines[0]  # in Listening, marked as UDP
            assert "UDP bound" in text and "TCP+UDP" in text
            # the connected UDP socket is a connection, not a listener
            conn = await wait_for(pilot, lambda: next((s for s in app.connections.table.rows.rows.values()
                                                       if s.inode == inode_of(peer)), None))
            assert conn.state == ESTABLISHED and conn.dport == uport
            app.connections.apply_filter(f"dport = :{uport}")  # on a busy host the row may be off screen
            await pilot.pause(0.3)
            assert "udp ESTAB" in screen_text(app)
            # Enter on a UDP row: a warning, not a TCP detail screen
            app.open_detail(conn)
            await pilot.pause(0.1)
            assert app.screen is app.screen_stack[0]

            await pilot.press("u", "u")  # UDP, then UNIX
            assert app.socket_types == frozenset({"unix"})
            urow = await wait_for(pilot, lambda: listening(inode_of(ux)), what="UNIX listener")
            assert urow.path == path and urow.state == LISTEN
            assert await wait_for(pilot, lambda: listening(inode_of(tcp)) is None)  # TCP hidden now
            await pilot.pause(0.3)
            assert f"{path} {inode_of(ux)}"[-20:] in screen_text(app) and "u_str" in screen_text(app)
            await pilot.press("u", "u")  # all, then back to TCP
            assert app.socket_types == frozenset({"tcp"})
            assert await wait_for(pilot, lambda: app.snapshot.udp == () and listening(inode_of(udp)) is None)
    finally:
        for s in (tcp, udp, peer, ux):
            s.close()


@sync
async def test_names_toggle_never_blocks_the_ui_on_a_slow_resolver():
    svc = ServiceNames()
    port = next(p for p in (6379, 22, 80, 443, 53) if svc.name(p, "tcp"))
    service = svc.name(port, "tcp")
    lst = Socket(socket.AF_INET, LISTEN, "127.0.0.1", port, "0.0.0.0", 0, 0, 128, None, 0, 0, 1)
    est = Socket(socket.AF_INET, ESTABLISHED, "127.0.0.1", port, "127.0.0.1", 45678, 0, 0, None, 0, 0, 2)
    snap = Snapshot(sockets=(lst, est), taken_at=time.monotonic(), wall_time=time.time(), source="netlink")
    release = threading.Event()
    calls = []

    def slow(addr: str):
        calls.append(addr)
        release.wait(20)  # a resolver stuck on an unreachable DNS server
        return "slowhost"

    app = SockmonApp(collector_factory=None)
    app.host_resolve = slow
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            app.inject_snapshot(snap)
            await pilot.pause(0.2)
            assert f"127.0.0.1:{port}" in screen_text(app)  # numeric by default
            t0 = time.perf_counter()
            await pilot.press("n")
            await pilot.pause(0.3)
            text = screen_text(app)
            # the service name at once; the host number until its name arrives
            assert f"127.0.0.1:{service}" in text and "slowhost" not in text
            assert calls == ["127.0.0.1"] and not release.is_set()
            await pilot.press("u")  # the UI goes on answering keys while the resolver hangs
            assert app.socket_types == frozenset({"tcp", "udp"})
            assert time.perf_counter() - t0 < 5
            release.set()
            assert await wait_for(pilot, lambda: f"slowhost:{service}" in screen_text(app), what="name arrives")
            assert "45678" in screen_text(app)  # a port with no service stays a number
            await pilot.press("n")
            await pilot.pause(0.2)
            assert "slowhost" not in screen_text(app) and f"127.0.0.1:{port}" in screen_text(app)
    finally:
        release.set()


def hosts_has_localhost() -> bool:
    try:
        with open("/etc/hosts") as fh:
            return any(line.split()[:2] == ["127.0.0.1", "localhost"] for line in fh if line.strip())
    except OSError:
        return False


@pytest.mark.skipif(not hosts_has_localhost(), reason="/etc/hosts does not name 127.0.0.1 localhost")
@sync
async def test_names_toggle_shows_localhost_from_etc_hosts():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    app = SockmonApp(interval=0.2, collector_factory=fast_collector)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            assert await wait_for(pilot, lambda: f"127.0.0.1:{port}" in screen_text(app))
            await pilot.press("n")
            assert await wait_for(pilot, lambda: f"localhost:{port}" in screen_text(app), what="localhost")
    finally:
        lst.close()


def _typed_app_before(presses: tuple[str, ...]):
    """An app fed TCP (the fixture), UDP and UNIX sockets (injected data, frozen clock), and the keys
    that pick the socket types shown."""
    import dataclasses

    from sockmon.core import states as S
    from sockmon.core.records import Process, UnixSocket
    from test_tui_fixtures import PROCS, frozen_clock, snapshot, summary

    udp = (Socket(socket.AF_INET, S.CLOSE, "0.0.0.0", 53, "0.0.0.0", 0, 0, 0, None, 0, 501, 301,
                  protocol=socket.IPPROTO_UDP),
           Socket(socket.AF_INET6, S.CLOSE, "::1", 5353, "::", 0, 768, 0, None, 0, 502, 302,
                  protocol=socket.IPPROTO_UDP),
           Socket(socket.AF_INET, S.ESTABLISHED, "127.0.0.1", 40000, "127.0.0.1", 53, 0, 0, None, 0, 503, 303,
                  protocol=socket.IPPROTO_UDP))
    unix = (UnixSocket(socket.SOCK_STREAM, S.LISTEN, "/run/app.sock", 9001, 0, 1, 128, 0, 401),
            UnixSocket(socket.SOCK_SEQPACKET, S.LISTEN, "@abstract", 9002, 0, 0, 16, 0, 402),
            UnixSocket(socket.SOCK_STREAM, S.ESTABLISHED, "/run/app.sock", 9003, 9004, 5, 0, 0, 403),
            UnixSocket(socket.SOCK_DGRAM, S.CLOSE, "", 9005, 0, 0, 0, 0, 404))

    async def run_before(pilot):
        app = pilot.app
        base = snapshot()
        owners = dict(base.owners)
        owners.update({501: Process(800, "dnsmasq", "nobody"), 502: Process(801, "avahi-daemon", "avahi"),
                       503: PROCS[201], 9001: Process(900, "app", "app"), 9003: Process(900, "app", "app")})
        snap = dataclasses.replace(base, udp=udp, unix=unix, owners=owners,
                                   protocols=frozenset({"tcp", "udp", "unix"}))
        app.inject_snapshot(snap, (), summary(), duration_ms=12.0, transition_source="tracepoint")
        await pilot.press(*presses)
        await pilot.pause()

    return SockmonApp(collector_factory=None, is_root=True, clock=frozen_clock()), run_before


def test_listening_with_udp_80x24(snap_compare):
    """80×24, TCP+UDP: bound UDP sockets beside the TCP listeners, marked udp / udp6."""
    app, run_before = _typed_app_before(("u",))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_all_socket_types_wide(snap_compare):
    """TCP+UDP+UNIX: UNIX listeners in Listening, connected UDP and UNIX sockets in Connections."""
    app, run_before = _typed_app_before(("u", "u", "u", "u"))
    assert snap_compare(app, terminal_size=(130, 44), run_before=run_before)
