"""Benchmark: the owner lookup of a long-lived sockmon under connection churn, against `ss -p` (not a test).

Runs inside a private network namespace (removed at the end). Opens N loopback sockets over helper
processes (bench/connpool.py) plus one churn process holding C connections that replaces R of them
per second onto the same fd numbers (dup2: its fd count never changes; closes with RST, so no
TIME_WAIT piles up). Then, in the same run, per tick:

- sockmon's owner-refresh cost: `OwnerCache.resolve_sockets` of a long-lived cache on a fresh dump
  (the dump itself not counted), with the pids and fd links it read;
- what `-p` adds to ss: `ss -tanp` minus `ss -tan`, both timed in that tick;
- correctness: every socket that `ss -tanpe` names an owner for and that is also in sockmon's dump
  (matched by inode) must have the same owner pid; the count that differ (or have none) is printed.

First a quiet phase (no churn), then the churn phase.

    sudo python3 bench/bench_owners.py [--sockets 20000] [--churn 2000] [--rate 500] [--ticks 8]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import ConnPool, print_banner, reexec_in_private_netns  # noqa: E402

CHURN = r"""
import os, resource, socket, struct, sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(4096)
port = lst.getsockname()[1]
pairs = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port)); s, _ = lst.accept(); pairs.append((c, s))
print("ready", port, flush=True)
sys.stdin.readline()  # "go"
zero = struct.pack("ii", 1, 0)
i = 0
t0 = time.monotonic()
while True:
    due = int((time.monotonic() - t0) * rate)
    while i < due:
        c, s = pairs[i % n]
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)
        nc = socket.create_connection(("127.0.0.1", port)); ns, _ = lst.accept()
        os.dup2(nc.fileno(), c.fileno()); os.dup2(ns.fileno(), s.fileno())
        nc.close(); ns.close()
        i += 1
    time.sleep(0.002)
"""


def timed_ss(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t0, out


def ss_owner_pids(text: str) -> dict[int, set[int]]:
    got = {}
    for line in text.splitlines():
        ino = re.search(r"\bino:(\d+)", line)
        if ino and int(ino.group(1)) and "users:" in line:
            got[int(ino.group(1))] = {int(p) for p in re.findall(r"pid=(\d+)", line)}
    return got


def tick(cache) -> dict:
    from sockmon.core.table.snapshot import take_snapshot

    snap = take_snapshot(with_info=False)
    t0 = time.perf_counter()
    owners = cache.resolve_sockets(snap.sockets)
    cost = time.perf_counter() - t0
    t_plain, _ = timed_ss(["-tanH"])
    t_p, text = timed_ss(["-tanpeH"])
    ss = ss_owner_pids(text)
    mine = {s.inode: owners.get(s.inode) for s in snap.sockets if s.inode}
    both = set(ss) & set(mine)
    differ = sum(1 for i in both if mine[i] is None or mine[i].pid not in ss[i])
    return {"cost": cost, "pids": cache.last_rescanned, "links": cache.last_links, "ss": t_plain, "ssp": t_p,
            "sockets": len(snap.sockets), "compared": len(both), "differ": differ}


def row(phase: str, ticks: list[dict], rate: float) -> str:
    med = statistics.median
    cost = statistics.mean(t["cost"] for t in ticks) * 1000
    median = med(t["cost"] for t in ticks) * 1000
    worst = max(t["cost"] for t in ticks) * 1000
    p_adds = statistics.mean(t["ssp"] - t["ss"] for t in ticks) * 1000
    return (f"| {phase} | {ticks[0]['sockets']} | {rate:g} | {cost:.1f} | {median:.1f} | {worst:.1f} | "
            f"{med(t['pids'] for t in ticks):.0f} / {med(t['links'] for t in ticks):.0f} | "
            f"{med(t['ss'] for t in ticks) * 1000:.0f} | {med(t['ssp'] for t in ticks) * 1000:.0f} | "
            f"{p_adds:.0f} | {cost / p_adds:.3f} | {sum(t['compared'] for t in ticks)} | "
            f"{sum(t['differ'] for t in ticks)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sockets", type=int, default=20000, help="steady sockets over helper processes")
    ap.add_argument("--churn", type=int, default=2000, help="connections held by the churn process")
    ap.add_argument("--rate", type=float, default=500, help="connections replaced per second")
    ap.add_argument("--ticks", type=int, default=8)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between ticks (like the UI's refresh)")
    ap.add_argument("--no-netns", action="store_true", help="run in the current namespace")
    args = ap.parse_args()
    rc = None if args.no_netns else reexec_in_private_netns("smbown", "SOCKMON_BENCH_NS", sys.argv[1:])
    if rc is not None:
        return rc
    from sockmon.core.table.owners import OwnerCache
    from sockmon.core.table.snapshot import take_snapshot

    print_banner("sockmon owner lookup under churn", f"{args.ticks} ticks (ratio: means), {args.interval} s apart",
                 ["phase", "sockets", "replaced/s", "owner refresh ms (mean)", "median ms", "worst ms",
                  "pids / fd links read", "ss -tan ms", "ss -tanp ms", "-p adds ms", "refresh ÷ -p adds",
                  "compared with ss", "owner differs"])
    with ConnPool(args.sockets):
        churn = subprocess.Popen([sys.executable, "-c", CHURN, str(args.churn), str(args.rate)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if not churn.stdout.readline().startswith("ready"):
                raise SystemExit("churn process failed")
            cache = OwnerCache()
            cache.resolve_sockets(take_snapshot(with_info=False).sockets)  # cold, not counted
            quiet = []
            for _ in range(args.ticks):
                time.sleep(args.interval)
                quiet.append(tick(cache))
            print(row("no churn", quiet, 0), flush=True)
            churn.stdin.write("go\n")
            churn.stdin.flush()
            busy = []
            for _ in range(args.ticks):
                time.sleep(args.interval)
                busy.append(tick(cache))
            print(row("churn", busy, args.rate), flush=True)
        finally:
            churn.kill()  # our own child, by its pid
            churn.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
