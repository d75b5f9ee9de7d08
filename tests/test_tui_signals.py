"""SIGTERM, SIGHUP and SIGINT end the real TUI cleanly: exit status 0, the terminal restored, no tracefs
instance left behind. The real ``python -m sockmon`` runs in a pseudo-terminal (no tmux needed)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
import test_tui_fixtures
from sockmon.core.table.tracepoint import list_instances, tracing_available

pytestmark = pytest.mark.timeout(90)
echo_server = test_tui_fixtures.echo_server  # the shared fixture, for this module's tests

LEAVE_ALT_SCREEN = b"\x1b[?1049l"
MOUSE_OFF = b"\x1b[?1000l"
CURSOR_SHOWN = b"\x1b[?25h"


def _read_some(fd: int, timeout: float) -> bytes:
    """What the program wrote to the terminal within ``timeout`` s (b"" at EOF / nothing)."""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child closed its side
        return b""


class TuiInPty:
    """``python -m sockmon`` on a fresh 120x40 pseudo-terminal; everything it writes is kept."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
        env.pop("TEXTUAL", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "sockmon", "--interval", "0.25", *args],
                                     stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                     close_fds=True)
        os.close(slave)
        self.out = bytearray()

    def pump(self, timeout: float = 0.1) -> bytes:
        data = _read_some(self.master, timeout)
        self.out += data
        return data

    def wait_drawn(self, timeout: float = 30.0) -> None:
        """Until the first snapshot is on screen (the status bar counts sockets)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if b"sockets:" in self.out and self.proc.poll() is None:
                return
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"the TUI never drew its first snapshot: {bytes(self.out[-2000:])!r}")

    def finish(self, timeout: float = 20.0) -> tuple[int, bytes]:
        """Exit status, and the bytes written from now until the program exited."""
        mark = len(self.out)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump()
        while self.pump(0.2):  # what is left in the pty
            pass
        status = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        return status, bytes(self.out[mark:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def _instances_of(pid: int) -> list[str]:
    return [n for n in list_instances() if n.startswith(f"sockmon-{pid}-")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_signal_ends_the_tui_cleanly(sig):
    exact = os.geteuid() == 0 and tracing_available()[0]
    tui = TuiInPty()
    try:
        tui.wait_drawn()
        pid = tui.proc.pid
        if exact:
            # the collector made its tracefs instance (in a worker thread, before the first snapshot)
            assert _instances_of(pid), "expected a tracefs instance while the TUI runs"
        assert LEAVE_ALT_SCREEN not in tui.out
        tui.proc.send_signal(sig)
        status, after = tui.finish()
    finally:
        tui.close()
    assert status == 0, f"{sig.name}: exit status {status}; output tail {after[-800:]!r}"
    assert LEAVE_ALT_SCREEN in after, f"{sig.name}: never left the alternate screen"
    assert MOUSE_OFF in after, f"{sig.name}: mouse reporting left on"
    assert CURSOR_SHOWN in after, f"{sig.name}: cursor left hidden"
    assert b"Traceback" not in after
    assert _instances_of(pid) == [], f"{sig.name}: tracefs instance left behind"


def test_sighup_after_the_terminal_is_gone_still_removes_the_tracefs_instance():
    """The real hang-up: the terminal side closes first, then SIGHUP. Nothing can be drawn any more,
    but the process must still end (no hang on a dead terminal) and leave no tracefs instance."""
    tui = TuiInPty()
    try:
        tui.wait_drawn()
        pid = tui.proc.pid
        os.close(tui.master)
        tui.master = os.open(os.devnull, os.O_RDONLY)  # so close() has something to close
        tui.proc.send_signal(signal.SIGHUP)
        status = tui.proc.wait(timeout=20)
    finally:
        tui.close()
    assert status == 0
    assert _instances_of(pid) == []


# ---------------------------------------------------------------------------------------------------
# The built-in client's socket is closed by the time the app has exited (not left to a daemon thread).

def _client_side_state(local, peer):
    from sockmon.core.table.snapshot import take_snapshot

    snap = take_snapshot(port=local[1], with_info=False)
    for s in snap.sockets:
        if (s.src, s.sport, s.dst, s.dport) == (local[0], local[1], peer[0], peer[1]):
            return s.state_name
    return None


@pytest.mark.parametrize("how", ["q", "SIGTERM"])
def test_exit_closes_the_built_in_clients_socket(echo_server, how):
    from sockmon.tui.app import SockmonApp
    from test_tui_fixtures import connect_client, run

    async def scenario():
        app = SockmonApp(collector_factory=None, is_root=True)
        async with app.run_test(size=(160, 48)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address, tab_key="3")
            local, peer = tuple(pane.local[:2]), tuple(pane.peer[:2])
            assert _client_side_state(local, peer) == "ESTABLISHED"
            if how == "q":
                await pilot.press("q")
            else:
                app.exit_on_signal(signal.SIGTERM)
        return app, local, peer

    app, local, peer = run(scenario())
    assert app.return_code == 0
    # our end went through close(): FIN_WAIT*/TIME_WAIT (or gone), never still ESTABLISHED
    assert _client_side_state(local, peer) in (None, "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSING")
