"""The socket options screen (`o`): SO_LINGER / keepalive of any socket in the table, read back from the
kernel; another process's socket only after confirmation (root, pidfd_getfd). Real sockets, real Textual."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from sockmon.core.records import Process
from sockmon.core.table.snapshot import take_snapshot
from sockmon.tui.screens.options import SocketOptionsScreen
from test_tui_fixtures import sync, wait_for
from textual.app import App
from textual.widgets import Input

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing another process's socket needs root")

CHILD = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.getsockname()[1], flush=True)
for line in sys.stdin:
    print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
          s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER), flush=True)
"""


class Host(App):
    def __init__(self, screen) -> None:
        super().__init__()
        self.options_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.options_screen)


def kernel_record(port: int):
    # s.inode: only sockets with an fd (a busy host's TIME_WAITs may reuse the port number)
    found = [s for s in take_snapshot(port=port, with_info=False).sockets if s.sport == port and s.inode]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def foreign_socket():
    """A connection held by a child process: (its Socket record, Process, ask-the-child function)."""
    lst = socket.create_server(("127.0.0.1", 0))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(lst.getsockname()[1])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    peer, _ = lst.accept()

    def ask() -> str:
        proc.stdin.write("?\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip()

    yield kernel_record(port), Process(proc.pid, "python3", "root"), ask
    proc.stdin.close()
    proc.wait(5)
    peer.close()
    lst.close()


async def fill(pilot, screen, linger: str, keepalive: str) -> None:
    for wid, text in (("#opt-linger", linger), ("#opt-keepalive", keepalive)):
        field = screen.query_one(wid, Input)
        field.focus()
        field.value = ""
        await pilot.press(*text)


@needs_root
@sync
async def test_foreign_socket_changes_only_after_confirmation(foreign_socket):
    sock, owner, ask = foreign_socket
    screen = SocketOptionsScreen(sock, owner)
    async with Host(screen).run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: screen.current is not None, what="current options read via pidfd_getfd")
        assert screen.query_one("#opt-keepalive", Input).value == "off"
        await fill(pilot, screen, "0", "30,5,2")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Press Apply again to confirm" in screen.message, what="confirmation prompt")
        assert "close() will send RST" in screen.message and f"{owner.pid}/python3" in screen.message
        assert ask() == "0 7200 0", "nothing may change before the user confirms"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.message.startswith("applied"), what="applied message")
        assert screen.current.keepalive.enabled and screen.current.keepalive.idle == 30
        assert screen.current.linger.enabled and screen.current.linger.seconds == 0
    # the owner sees the change (same kernel socket), and `ss -o` shows the keepalive timer now running
    keepalive, idle, linger = ask().split()
    assert (keepalive, idle) == ("1", "30") and linger != "0"
    ss = subprocess.run(["ss", "-tnoH", "sport", "=", str(sock.sport)], capture_output=True, text=True).stdout
    assert "keepalive" in ss, ss


@needs_root
@sync
async def test_changed_values_need_a_new_confirmation(foreign_socket):
    sock, owner, ask = foreign_socket
    screen = SocketOptionsScreen(sock, owner)
    async with Host(screen).run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: screen.current is not None, what="current options")
        await fill(pilot, screen, "off", "40,5,2")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "confirm" in screen.message, what="confirmation prompt")
        await pilot.press("backspace", "3")  # 40,5,3 now: the earlier confirmation no longer counts
        await pilot.press("enter")
        await wait_for(pilot, lambda: "confirm" in screen.message and "cnt=3" in screen.message,
                       what="a new confirmation for the new values")
        assert ask().startswith("0 "), "still unchanged"


@sync
async def test_own_socket_applies_at_once_and_bad_input_keeps_the_text():
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    try:
        sock = kernel_record(cli.getsockname()[1])
        screen = SocketOptionsScreen(sock, Process(os.getpid(), "pytest", "root"))
        async with Host(screen).run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: screen.current is not None, what="current options")
            await fill(pilot, screen, "soon", "60,10,3")
            await pilot.press("enter")
            await wait_for(pilot, lambda: "bad linger 'soon'" in screen.message, what="bad-input message")
            assert screen.query_one("#opt-linger", Input).value == "soon"  # nothing typed is lost
            assert screen.focused is screen.query_one("#opt-linger", Input)
            await fill(pilot, screen, "7", "60,10,3")
            await pilot.press("enter")  # our own socket: no confirmation step
            await wait_for(pilot, lambda: screen.message.startswith("applied"), what="applied message")
        assert cli.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
    finally:
        for s in (cli, srv, lst):
            s.close()


@sync
async def test_time_wait_socket_cannot_be_changed_and_says_why():
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    port = cli.getsockname()[1]
    cli.close()  # active close: the client side ends in TIME_WAIT
    srv.close()
    lst.close()
    sock = await_time_wait(port)
    screen = SocketOptionsScreen(sock, None)
    async with Host(screen).run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert screen.blocked and "TIME_WAIT" in screen.blocked
        assert screen.query_one("#opt-linger", Input).disabled
        await pilot.press("enter")
        assert screen.current is None


def await_time_wait(port: int):
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [s for s in take_snapshot(port=port, with_info=False).sockets
                 if s.sport == port and s.state_name == "TIME_WAIT"]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no TIME_WAIT socket appeared")
