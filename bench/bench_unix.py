"""Benchmark: `sockmon ls --unix` against `ss -xan` (and `ss -xanp` with owners), whole processes (not a test).

First on the host as it is, then with N extra UNIX sockets (socket pairs held by helper processes, at
most 10,000 fds each; killed at the end). Each command runs R times, alternating; the table shows the
minimum wall and CPU time (user + system, from wait4), the ratio to `ss -xan` of the same run, and the
rows printed. `sockmon ls --unix` includes the interpreter's start and the owner lookup (cold cache);
`--no-owners` is the like-for-like row against `ss -xan`.

    python3 bench/bench_unix.py [--extra 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import print_banner, time_process  # noqa: E402

PER_CHILD = 5_000  # socket pairs (10,000 fds) per helper process


def child(pairs: int, ready_fd: int) -> None:
    held = [socket.socketpair() for _ in range(pairs)]
    os.write(ready_fd, b"x")
    signal.sigwait({signal.SIGTERM})
    del held


def start_helpers(sockets: int) -> list[int]:
    pids = []
    left = sockets // 2
    while left > 0:
        n = min(PER_CHILD, left)
        r, w = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                child(n, w)
            finally:
                os._exit(0)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.close(w)
        os.read(r, 1)
        os.close(r)
        pids.append(pid)
        left -= n
    return pids


def stop_helpers(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        os.waitpid(pid, 0)


def measure(runs: int, label: str) -> None:
    cmds = [
        ("ss -xan", ["ss", "-xan"]),
        ("ss -xanp", ["ss", "-xanp"]),
        ("sockmon ls --unix --no-owners", [sys.executable, "-m", "sockmon", "ls", "--unix", "--no-owners"]),
        ("sockmon ls --unix", [sys.executable, "-m", "sockmon", "ls", "--unix"]),
        ("sockmon ls --unix --json", [sys.executable, "-m", "sockmon", "ls", "--unix", "--json"]),
    ]
    best = {name: (float("inf"), float("inf")) for name, _ in cmds}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        for _ in range(runs):
            for name, argv in cmds:
                wall, cpu = time_process(argv, out)
                b = best[name]
                best[name] = (min(b[0], wall), min(b[1], cpu))
                with open(out, "rb") as fh:
                    rows[name] = fh.read().count(b"\n")
    base = best["ss -xan"][0]
    for name, _ in cmds:
        wall, cpu = best[name]
        print(f"| {label} | {name} | {wall * 1000:.1f} | {cpu * 1000:.1f} | {wall / base:.2f} | {rows[name]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", type=int, default=20_000, help="extra UNIX sockets for the second table part")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print_banner("sockmon ls --unix vs ss -xan", f"min of {args.runs} runs, whole processes",
                 ["sockets", "command", "wall ms", "CPU ms", "wall / ss -xan", "lines"])
    host = sum(1 for _ in open("/proc/net/unix")) - 1
    measure(args.runs, f"host ({host})")
    if args.extra:
        pids = start_helpers(args.extra)
        try:
            time.sleep(0.2)
            measure(args.runs, f"host + {args.extra}")
        finally:
            stop_helpers(pids)


if __name__ == "__main__":
    main()
