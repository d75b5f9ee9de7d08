"""Open N loopback TCP sockets (N/2 connections, both ends held) spread over child processes.

A process can hold at most ~20,000 fds here, so each child holds ≤ PER_CHILD connections (2 fds
each) to its own listener. Used by the benchmarks; also runnable by hand:

    python3 bench/connpool.py 60000    # holds them until Enter / Ctrl-C
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time

PER_CHILD = 8000  # connections per child: 16,000 fds + the listener


def child_main(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    addr = lst.getsockname()
    held = []
    for _ in range(count):
        c = socket.socket()
        c.connect(addr)
        s, _ = lst.accept()
        held.append((c, s))
    sys.stdout.write(f"ready {os.getpid()} {addr[1]} {len(held)}\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the parent closes our stdin (or kills us)
    # close with RST (linger 0): no TIME_WAIT sockets left to pollute the next measurement
    zero = struct.pack("ii", 1, 0)
    for c, s in held:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)
        c.close()
        s.close()


class ConnPool:
    """Context manager: `ConnPool(sockets=N)` → N/2 established loopback connections in children."""

    def __init__(self, sockets: int, per_child: int = PER_CHILD) -> None:
        self.connections = max(1, sockets // 2)
        self.per_child = per_child
        self.children: list[subprocess.Popen] = []
        self.ports: list[int] = []

    def __enter__(self) -> ConnPool:
        left = self.connections
        try:
            while left > 0:
                n = min(left, self.per_child)
                proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", str(n)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                self.children.append(proc)
                left -= n
            for proc in self.children:
                line = proc.stdout.readline().split()
                if not line or line[0] != "ready":
                    raise RuntimeError(f"connection child {proc.pid} failed")
                self.ports.append(int(line[2]))
        except BaseException:
            self.close()
            raise
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.children]

    def close(self) -> None:
        for proc in self.children:
            try:
                proc.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)  # only our own child, by pid
                proc.wait()
        self.children.clear()

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(int(sys.argv[2]))
    else:
        n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
        with ConnPool(n) as pool:
            print(f"{pool.connections} connections ({2 * pool.connections} sockets) in pids {pool.pids}; Enter to stop")
            try:
                input()
            except (EOFError, KeyboardInterrupt):
                pass
