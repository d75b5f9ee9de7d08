"""Benchmark: reading the TCP socket table at N ≈ 2k, 20k, 60k sockets (not a test).

Runs inside a private network namespace (so only the benchmark's sockets are counted; removed at
the end), opens N loopback sockets over helper processes (bench/connpool.py), then times in the same
run: `ss -tan`, `ss -tanoi`, `ss -tanp`, psutil.net_connections('tcp') and sockmon's take_snapshot
with tcp_info and timers (without owners, with a cold OwnerCache, with a warm one). Every sockmon
run reads every socket's fields and timer; "+ decode every tcp_info" also decodes each socket's
whole tcp_info (`Socket.tcp_info`: what `ls --json` does; the monitor reads only rtt/cwnd/retrans).
Each path runs in its own fresh process; the time is the minimum of R runs, RSS the peak of that
process.

    sudo python3 bench/bench_snapshot.py [--sizes 2000,20000,60000] [--runs 5] [--compare REV]

``--compare REV`` also runs the sockmon paths with the core of git revision REV (exported to a
temporary directory, as bench/bench_collect.py does) in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import export_tree, print_banner, reexec_in_private_netns, time_process  # noqa: E402


# --------------------------------------------------------------------------------- workers
def _force(snap, decode: bool) -> int:
    """Touch every record: every socket's fields and timer, and with ``decode`` its whole tcp_info
    (`Socket.tcp_info` decodes the kernel's bytes on access; in older trees it was built eagerly)."""
    total = 0
    for s in snap.sockets:
        total += s.sport + s.dport + s.recv_q + s.send_q + s.inode + len(s.src) + len(s.dst)
        if s.timer is not None:
            total += s.timer.expires_ms
        if decode:
            info = s.tcp_info
            if info is not None:
                total += info.rtt + info.snd_cwnd + info.rcv_wscale + info.snd_wscale + info.rcv_wnd
    return total


def worker(variant: str, runs: int) -> dict:
    times, cpus = [], []
    count = 0
    if variant.startswith("sockmon"):
        from sockmon.core.table import snapshot as snapshot_mod
        from sockmon.core.table.owners import OwnerCache
        from sockmon.core.table.snapshot import take_snapshot

        if variant == "sockmon-serial":
            snapshot_mod.OVERLAPPED_RECV = False
        warm = OwnerCache()
        decode = variant == "sockmon-decode"
        if variant == "sockmon-warm":
            take_snapshot(owners=warm)  # warm-up, not timed
        for _ in range(runs):
            owners = {"sockmon": None, "sockmon-decode": None, "sockmon-serial": None, "sockmon-cold": OwnerCache(),
                      "sockmon-warm": warm}[variant]
            t0 = time.perf_counter()
            c0 = time.process_time()
            snap = take_snapshot(with_info=True, owners=owners)
            _force(snap, decode)
            if owners is not None:
                sum(p.pid for p in snap.owners.values())
            cpus.append(time.process_time() - c0)
            times.append(time.perf_counter() - t0)
            count = len(snap.sockets)
            owned = len(snap.owners)
            del snap
        return {"times": times, "cpus": cpus, "count": count, "owned": owned,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    if variant == "psutil":
        import psutil

        for _ in range(runs):
            t0 = time.perf_counter()
            c0 = time.process_time()
            conns = psutil.net_connections("tcp")
            cpus.append(time.process_time() - c0)
            times.append(time.perf_counter() - t0)
            count = len(conns)
            del conns
        return {"times": times, "cpus": cpus, "count": count,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    raise SystemExit(f"unknown variant {variant}")


def run_ss(args: list[str], runs: int) -> dict:
    times, cpus = [], []
    out_path = f"/tmp/.sockmon-bench-ss-{os.getpid()}"
    for _ in range(runs):
        wall, cpu = time_process(["ss", *args], out_path, check=False)
        times.append(wall)
        cpus.append(cpu)
    with open(out_path) as fh:
        lines = sum(1 for line in fh if line[:1] not in ("\t", " ")) - 1
    # peak RSS of ss itself, measured by /usr/bin/time (a wait4 from Python would count the fork)
    peak = 0
    try:
        r = subprocess.run(["/usr/bin/time", "-f", "%M", "ss", *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, check=True)
        peak = int(r.stderr.strip().splitlines()[-1])
    except (OSError, ValueError, subprocess.CalledProcessError):
        pass
    os.unlink(out_path)
    return {"times": times, "cpus": cpus, "count": lines, "maxrss_kb": peak}


def run_worker(variant: str, runs: int, tree: str | None = None) -> dict:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.path.join(tree, "pkg")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", variant, str(runs)],
                         capture_output=True, text=True, check=True, env=env, cwd="/")
    return json.loads(out.stdout)


# --------------------------------------------------------------------------------- driver
def bench_size(n: int, runs: int, compare: tuple[str, str] | None = None) -> list[tuple]:
    from connpool import ConnPool

    rows = []
    with ConnPool(n) as pool:
        time.sleep(0.2)
        res = {
            "ss -tan": run_ss(["-tan"], runs),
            "ss -tanoi": run_ss(["-tanoi"], runs),
            "ss -tanp": run_ss(["-tanp"], runs),
            "psutil.net_connections": run_worker("psutil", runs),
        }
        if compare is not None:
            rev, tree = compare
            res[f"[{rev}] sockmon snapshot+tcp_info"] = run_worker("sockmon", runs, tree)
            res[f"[{rev}]   + owners, warm cache"] = run_worker("sockmon-warm", runs, tree)
        res.update({
            "sockmon snapshot+tcp_info": run_worker("sockmon", runs),
            "  + decode every tcp_info": run_worker("sockmon-decode", runs),
            "  (serial receive, no helper thread)": run_worker("sockmon-serial", runs),
            "  + owners, cold cache": run_worker("sockmon-cold", runs),
            "  + owners, warm cache": run_worker("sockmon-warm", runs),
        })
        del pool
    base = min(res["ss -tanoi"]["times"])
    cbase = min(res["ss -tanoi"]["cpus"])
    for name, r in res.items():
        best = min(r["times"])
        cpu = min(r["cpus"])
        rows.append((n, name, r["count"], best * 1000, best / base, cpu * 1000, cpu / cbase, r["maxrss_kb"] / 1024,
                     r.get("owned")))
    p_cost = min(res["ss -tanp"]["times"]) - min(res["ss -tan"]["times"])
    warm_cost = min(res["  + owners, warm cache"]["times"]) - min(res["sockmon snapshot+tcp_info"]["times"])
    cold_cost = min(res["  + owners, cold cache"]["times"]) - min(res["sockmon snapshot+tcp_info"]["times"])
    rows.append((n, "owners warm: added time ÷ what -p adds to ss", None, warm_cost * 1000, warm_cost / p_cost,
                 None, None, None, None))
    rows.append((n, "owners cold: added time ÷ what -p adds to ss", None, cold_cost * 1000, cold_cost / p_cost,
                 None, None, None, None))
    rows.append((n, "what -p adds to ss (ss -tanp − ss -tan)", None, p_cost * 1000, None, None, None, None, None))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,20000,60000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--compare", metavar="REV", help="also time the sockmon paths with the core of this git revision")
    ap.add_argument("--worker", nargs=2, metavar=("VARIANT", "RUNS"))
    ap.add_argument("--no-netns", action="store_true", help="run in the current namespace")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return 0
    rc = None if args.no_netns else reexec_in_private_netns("smbench", "SOCKMON_BENCH_NS", sys.argv[1:])
    if rc is not None:
        return rc
    print_banner("sockmon snapshot benchmark", f"min of {args.runs} runs, each path in a fresh process",
                 ["N sockets", "path", "rows", "wall ms", "× ss -tanoi", "CPU ms", "CPU × ss -tanoi", "peak RSS MB"])

    def f(x, fmt):
        return "" if x is None else format(x, fmt)

    compare = None
    if args.compare:

        compare = (args.compare, export_tree(args.compare))
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            for size, name, count, ms, ratio, cpu, cratio, rss, owned in bench_size(n, args.runs, compare):
                extra = f" ({owned} owned)" if owned else ""
                print(f"| {size} | {name} | {f(count, 'd')}{extra} | {ms:.1f} | {f(ratio, '.2f')} | "
                      f"{f(cpu, '.1f')} | {f(cratio, '.2f')} | {f(rss, '.0f')} |", flush=True)
    finally:
        if compare is not None:
            import shutil

            shutil.rmtree(compare[1], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
