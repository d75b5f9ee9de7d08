import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from sockhelp import tcp_pair
from sockmon.core.errors import SockmonError
from sockmon.core.lab.sockio import IncompleteRead, recv_exact, send_all

SIZE = 8 * 1024 * 1024


class CountingSocket(socket.socket):
    """Counts short writes (kernel accepted less than offered) and would-blocks."""

    short = 0
    blocked = 0

    def send(self, data, flags=0):
        try:
            n = super().send(data, flags)
        except BlockingIOError:
            self.blocked += 1
            raise
        if n < len(data):
            self.short += 1
        return n


def _slow_reader(sock: socket.socket, total: int, result: dict) -> None:
    h = hashlib.sha256()
    got = 0
    reads = 0
    while got < total:
        # ACK at once: with delayed ACKs a tiny send buffer refills only every few ms (kernel, not us)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(16384)  # small reads...
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
        reads += 1
        if reads % 4 == 0:
            time.sleep(0.001)  # ...and pauses: the sender keeps hitting a full buffer
    result.update(got=got, digest=h.hexdigest(), reads=reads)


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "nonblocking"])
def test_send_all_8mib_tiny_sndbuf_slow_reader(blocking):
    lst, plain, srv = tcp_pair()
    cli = CountingSocket(fileno=plain.detach())
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # kernel minimum-ish: many short writes
    assert cli.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 16384
    cli.setblocking(blocking)
    payload = os.urandom(SIZE)
    result: dict = {}
    reader = threading.Thread(target=_slow_reader, args=(srv, SIZE, result))
    reader.start()
    t0 = time.monotonic()
    assert send_all(cli, payload) == SIZE
    reader.join(30)
    elapsed = time.monotonic() - t0
    print(f"send_all 8 MiB ({'blocking' if blocking else 'non-blocking'}): {elapsed:.2f} s, "
          f"{result['reads']} reads, {cli.short} short writes, {cli.blocked} would-blocks")
    if not blocking:  # a blocking send() sleeps in the kernel until all is copied; non-blocking cannot
        assert cli.short + cli.blocked > 50  # the tiny buffer really forced partial progress
    assert result["got"] == SIZE
    assert result["digest"] == hashlib.sha256(payload).hexdigest()  # nothing lost, nothing reordered
    for s in (cli, srv, lst):
        s.close()


def test_send_all_counts_short_writes_as_progress():
    class Dribble:
        """A fake socket that accepts at most 3 bytes per call and sometimes would block."""

        def __init__(self):
            self.got = bytearray()
            self.calls = 0

        def send(self, data, flags=0):
            self.calls += 1
            if self.calls % 4 == 0:
                raise InterruptedError
            self.got += bytes(data[:3])
            return min(3, len(data))

    fake = Dribble()
    data = bytes(range(200))
    assert send_all(fake, data) == 200
    assert bytes(fake.got) == data


def test_send_all_to_reset_peer_raises_with_errno_name():
    lst, cli, srv = tcp_pair()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    srv.close()  # RST
    time.sleep(0.05)
    with pytest.raises(SockmonError) as info:
        for _ in range(100):
            send_all(cli, b"x" * 65536)
    assert info.value.errno_name in ("EPIPE", "ECONNRESET")
    assert "\n" not in str(info.value)
    cli.close()
    lst.close()


def test_sigpipe_never_kills_with_default_disposition(tmp_path):
    """With SIGPIPE at its default (kill), a write to a closed peer must still only raise EPIPE."""
    code = f"""
import signal, socket, sys, time
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sys.path.insert(0, {os.path.dirname(__file__)!r})
from sockhelp import tcp_pair
from sockmon.core.lab.sockio import send_all
from sockmon.core.errors import SockmonError
lst, cli, srv = tcp_pair()
srv.close()
time.sleep(0.05)
try:
    for _ in range(100):
        send_all(cli, b"x" * 65536)
    print("no error")
except SockmonError as exc:
    print("raised", exc.errno_name)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, (out.returncode, out.stderr)  # -13 would mean SIGPIPE killed it
    assert out.stdout.strip() in ("raised EPIPE", "raised ECONNRESET")


def test_recv_exact_across_many_small_writes():
    lst, cli, srv = tcp_pair()

    def writer():
        for i in range(100):
            cli.sendall(bytes([i]) * 7)
            if i % 10 == 0:
                time.sleep(0.002)

    t = threading.Thread(target=writer)
    t.start()
    got = recv_exact(srv, 700)
    t.join()
    assert got == b"".join(bytes([i]) * 7 for i in range(100))
    for s in (cli, srv, lst):
        s.close()


def test_recv_exact_nonblocking_waits():
    lst, cli, srv = tcp_pair()
    srv.setblocking(False)
    threading.Timer(0.05, lambda: cli.sendall(b"abcdef")).start()
    assert recv_exact(srv, 6, timeout=5) == b"abcdef"
    for s in (cli, srv, lst):
        s.close()


def test_recv_exact_peer_closes_early():
    lst, cli, srv = tcp_pair()
    cli.sendall(b"abc")
    cli.close()
    with pytest.raises(IncompleteRead) as info:
        recv_exact(srv, 10)
    assert info.value.partial == b"abc" and info.value.expected == 10
    srv.close()
    lst.close()


def test_recv_exact_timeout_is_etimedout():
    lst, cli, srv = tcp_pair()
    srv.setblocking(False)
    with pytest.raises(SockmonError) as info:
        recv_exact(srv, 1, timeout=0.1)
    assert info.value.errno_name == "ETIMEDOUT"
    for s in (cli, srv, lst):
        s.close()
