"""Benchmark: the terminal UI's memory under connection churn (not a test).

Runs in a private network namespace (as root; removed at the end), starts the real SockmonApp headless
(Textual's run_test, 200×50) with its real collector (the tracepoint when available), then a helper
process opens and closes loopback connections at ``--rate`` per second (connect, accept, close both
ends with SO_LINGER 0) for ``--seconds``. Prints the UI process's RSS every ``--every`` seconds, the
growth after the first 30 s, and how long quitting takes.

    sudo python3 bench/bench_churn.py [--rate 1500] [--seconds 120] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import print_banner, reexec_in_private_netns  # noqa: E402

CHURN = r"""
import socket, struct, sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(4096)
addr = lst.getsockname()
linger = struct.pack("ii", 1, 0)
start = time.monotonic()
made = 0
while True:
    now = time.monotonic()
    if now - start >= seconds:
        break
    due = int((now - start) * rate)
    while made < due:
        c = socket.create_connection(addr)
        s, _ = lst.accept()
        for x in (c, s):
            x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            x.close()
        made += 1
    time.sleep(0.002)
print(made)
"""


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def run(rate: float, seconds: float, interval: float, every: float) -> None:
    from sockmon.tui.app import SockmonApp

    app = SockmonApp(interval=interval, is_root=True)
    rows: list[tuple[float, float, int]] = []
    async with app.run_test(size=(200, 50)) as pilot:
        while app.snapshot is None:
            await pilot.pause(0.1)
        source = app.collector.transition_source if app.collector is not None else "?"
        proc = subprocess.Popen([sys.executable, "-c", CHURN, str(rate), str(seconds)], stdout=subprocess.PIPE,
                                text=True)
        t0 = time.monotonic()
        next_sample = 0.0
        while proc.poll() is None:
            t = time.monotonic() - t0
            if t >= next_sample:
                rows.append((t, rss_mb(), app.history.total))
                next_sample += every
            await pilot.pause(0.2)
        made = int(proc.communicate()[0])
        await pilot.pause(2.0)
        rows.append((time.monotonic() - t0, rss_mb(), app.history.total))
        q0 = time.perf_counter()
        await app.action_quit()
    quit_ms = (time.perf_counter() - q0) * 1000.0
    print_banner("sockmon TUI under churn", f"{made} connections in {seconds:g} s ({made / seconds:.0f}/s), "
                 f"interval {interval:g} s, transitions from the {source}", ["t s", "RSS MB", "transitions seen"])
    for t, rss, seen in rows:
        print(f"| {t:.0f} | {rss:.1f} | {seen} |")
    after30 = next((r for r in rows if r[0] >= 30), rows[0])
    end = rows[-1]
    print()
    print(f"RSS growth after the first 30 s: {after30[1]:.1f} → {end[1]:.1f} MB "
          f"({(end[1] / after30[1] - 1) * 100:+.1f} %); quit took {quit_ms:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1500.0, help="connections per second")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--interval", type=float, default=1.0, help="the TUI's refresh interval")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--no-netns", action="store_true", help="run in the current namespace")
    args = ap.parse_args()
    rc = None if args.no_netns else reexec_in_private_netns("smchurn", "SOCKMON_BENCH_NS", sys.argv[1:])
    if rc is not None:
        return rc
    asyncio.run(run(args.rate, args.seconds, args.interval, args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
