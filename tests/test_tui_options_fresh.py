"""Options on screen are the kernel's at the latest refresh, whoever changed them; the lab follows --netns.

A child process owns a loopback connection and changes its own socket options while the app shows it:
the Keepalive pane and the Detail screen show the new values (and the new dead-peer prediction) within
one refresh. With ``netns=NAME`` the built-in server and client create their sockets in that namespace:
their connection is in the app's view and not in the host's dump."""

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
from sockmon.core.table.collector import Collector
from sockmon.core.table.snapshot import take_snapshot
from sockmon.tui.app import SockmonApp
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.server import ServerPane
from sockmon.tui.screens.detail import DetailScreen
from test_tui_app import screen_text
from test_tui_fixtures import connect_client, start_server_from_pane, sync, wait_for

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(os.geteuid() != 0, reason="another process's options need root (pidfd_getfd)")]

CHILD = textwrap.dedent("""
    import socket, sys
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    print(cli.getsockname()[1], lst.getsockname()[1], flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "ka":
            idle, intvl, cnt = map(int, cmd[1:])
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
            cli.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        elif cmd[0] == "nodelay":
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print("done", flush=True)
""")


def fast_collector(**kw):
    return Collector(interval=kw.pop("interval"), use_tracepoint=False, **kw)


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cport, lport = map(int, proc.stdout.readline().split())

    def tell(cmd: str) -> None:
        proc.stdin.write(cmd + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"

    yield proc, cport, lport, tell
    proc.kill()
    proc.wait(10)


@sync
async def test_owner_changes_keepalive_and_the_panes_show_it_within_one_refresh(child):
    proc, cport, lport, tell = child
    app = SockmonApp(interval=0.3, collector_factory=fast_collector, is_root=True)
    async with app.run_test(size=(180, 50)) as pilot:
        conns = app.connections
        table = conns.table
        row = await wait_for(pilot, lambda: next((s for s in table.visible_rows()
                                                  if s.sport == cport and s.dport == lport
                                                  and s.state_name == "ESTABLISHED"), None),
                             what="the child's connection in Connections")
        assert await wait_for(pilot, lambda: app.owner_of(row) is not None and app.owner_of(row).pid == proc.pid,
                              what="its owner")
        table.focus()
        table.move_cursor_to_key(table.key_fn(row))
        ka = app.keepalive
        assert await wait_for(pilot, lambda: ka.socket is not None and ka.socket.sport == cport
                              and ka.keepalive is not None, what="the selected socket's options")
        assert ka.keepalive.enabled is False and f"pid {proc.pid}" in ka.read_note

        await pilot.press("2")  # the Keepalive tab reads the options each refresh while it is shown
        await pilot.pause(0.2)
        tell("ka 41 7 5")  # the owner changes its own socket; sockmon is not involved
        applied = app.updates_applied
        await wait_for(pilot, lambda: ka.keepalive.enabled, timeout=5, what="keepalive on, read back")
        # within one refresh: the next snapshot after the change (plus the read, which is off the UI thread)
        assert app.updates_applied - applied <= 2, app.updates_applied - applied
        k = ka.keepalive
        assert (k.idle, k.intvl, k.cnt) == (41, 7, 5)
        await pilot.press("2")
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "41 s" in text
        # the kernel's rule, 41 + 7 × 5 = 76 s after the last segment received; the child turned SO_KEEPALIVE
        # on after setting the idle time, so the timer runs from that moment: up to ~1 s later than the rule
        assert "idle 41 + intvl 7 × cnt 5" in text
        at = int(re.search(r"ETIMEDOUT (\d+) s after the last segment received", text).group(1))
        assert 76 <= at <= 78, text
        assert re.search(r"last received [\d.]+ s ago → in ≈ 7\d s if silent from now", text), text

        # Detail on the same socket: the options box follows a change within one refresh too
        await pilot.press("1")
        table.focus()
        table.move_cursor_to_key(table.key_fn(row))
        await pilot.pause(0.1)
        app.open_detail(next(s for s in table.visible_rows() if s.sport == cport and s.dport == lport
                             and s.state_name == "ESTABLISHED"))
        detail = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, DetailScreen) else None)
        await wait_for(pilot, lambda: detail.options is not None, what="detail options")
        assert detail.options.nodelay is False and detail.options.keepalive.idle == 41
        tell("nodelay")
        applied = app.updates_applied
        await wait_for(pilot, lambda: detail.options.nodelay, timeout=5, what="TCP_NODELAY read back in Detail")
        assert app.updates_applied - applied <= 2


@pytest.fixture
def netns():
    if not shutil.which("ip"):
        pytest.skip("needs iproute2")
    name = f"smlab{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@sync
async def test_the_lab_runs_in_the_namespace_the_app_shows(netns):
    app = SockmonApp(interval=0.3, netns=netns, collector_factory=fast_collector, is_root=True)
    async with app.run_test(size=(180, 50)) as pilot:
        assert f"lab in netns {netns}" in screen_text(app)
        await pilot.press("4")
        server = app.query_one(ServerPane)
        host, port = await start_server_from_pane(pilot, server, mode="hold")
        await pilot.press("3")
        client = await connect_client(app, pilot, (host, port))
        tup = (*client.local, *client.peer)
        rows = await wait_for(pilot, lambda: [s for s in app.connections.table.visible_rows()
                                              if tuple(s.four_tuple) == tup], what="the client's connection")
        assert rows[0].state_name == "ESTABLISHED"
        assert await wait_for(pilot, lambda: any(s.sport == port for s in app.listening.table.visible_rows()),
                              what="the built-in server's listener")
        host_view = take_snapshot(port=port, with_info=False)
        # (only exact matches: the host's own churn may reuse the port number for unrelated sockets)
        assert not [s for s in host_view.sockets if tuple(s.four_tuple) == tup
                    or (s.sport == port and s.state_name == "LISTEN" and s.src == host)]
        in_ns = take_snapshot(netns=netns, port=port, with_info=False)
        assert [s for s in in_ns.sockets if tuple(s.four_tuple) == tup]
        await pilot.press("3")
        app.query_one(ClientPane).action_abort()
        await pilot.press("4")
        await pilot.press("s")
        await pilot.pause(0.3)
