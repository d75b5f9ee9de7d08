"""Open N loopback TCP sockets (N/2 connections, both ends held) spread over child processes.

A process can hold at most ~20,000 fds here, so each child holds ≤ PER_CHILD connections (2 fds
each) to its own listener. Used by the benchmarks; also runnable by hand:

    python3 bench/connpool.py 60000    # holds them until Enter / Ctrl-C
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
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


def reexec_in_private_netns(prefix: str, env_var: str, argv: list[str]) -> int | None:
    """Run this script again inside a fresh network namespace with only ``lo`` up; remove it after.

    Returns the child's exit code, or None when nothing was done (not root, or already inside: the
    child finds ``env_var`` set to the namespace's name). ``argv`` are the script's own arguments.
    Only the benchmark's sockets are then seen, and nothing is left behind.
    """
    if os.geteuid() != 0 or os.environ.get(env_var):
        return None
    ns = f"{prefix}{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        env = dict(os.environ, **{env_var: ns})
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(sys.argv[0]), *argv],
                              env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def print_banner(title: str, how: str, header: list[str]) -> None:
    """The first lines of a benchmark's Markdown output: what ran where, then the table header."""
    print(f"# {title} — {os.cpu_count()} CPUs, Linux {os.uname().release}, Python {sys.version.split()[0]}, "
          f"netns {os.environ.get('SOCKMON_BENCH_NS', '(current)')}, {how}")
    print()
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")


def time_process(argv: list[str], out_path: str, env: dict | None = None, check: bool = True) -> tuple[float, float]:
    """Wall and CPU seconds (user+sys, from wait4) of one whole process, stdout to ``out_path``.
    ``check``: a non-zero exit ends the benchmark."""
    with open(out_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL if check else None, env=env, cwd="/")
        _pid, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if check and proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} exited {proc.returncode}")
    return wall, ru.ru_utime + ru.ru_stime


def export_tree(rev: str) -> str:
    """The sockmon core of git revision ``rev`` laid out for PYTHONPATH (``<dir>/pkg/sockmon/core``)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="sockmon-rev-")
    arch = subprocess.run(["git", "-C", root, "archive", rev, "core", "sockmon/__init__.py"],
                          capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
    os.makedirs(os.path.join(tmp, "pkg"))
    shutil.move(os.path.join(tmp, "sockmon"), os.path.join(tmp, "pkg", "sockmon"))
    shutil.move(os.path.join(tmp, "core"), os.path.join(tmp, "pkg", "sockmon", "core"))
    return tmp


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
