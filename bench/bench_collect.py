"""Benchmark: the phases of one `Collector.collect_once` at N sockets (not a test).

Runs in a private network namespace (as root; removed at the end), opens N loopback sockets over
helper processes (bench/connpool.py), times `ss -tanoi` in the same run, then in a fresh process per
code tree runs the real ``Collector.collect_once`` (tcp_info, warm OwnerCache, inferred transitions)
R times after two warm-up ticks, timing each phase through thin wrappers around the functions the
collector calls: snapshot (the dump, owners excluded), owners (``OwnerCache.resolve``), diff,
advance (``advance_since``), summary (``summarize``), rates (``RateTracker.update``: each socket's
receive / send rate from its tcp_info byte counters; a tree without it shows 0), GC (time the cyclic collector ran during the
tick and in the collections its garbage triggers right after it, via ``gc.callbacks``) and the
total. ``rest`` = total − snapshot: what the collector adds. The previous update is held by the
benchmark (like a UI) during the tick and dropped after it: ``free prev`` is the time that takes
(freeing a 60k snapshot), ``total+free+gc`` adds it and the GC work that ran right after the tick.

``closed`` is the closed-connection model (`ClosedHistory.feed`, core/table/closed.py) fed each tick,
inside ``total``; with ``--churn K`` the benchmark closes K of its own loopback connections (both ends
closing: 2K closed ends) and opens K new ones before every tick, so each diff has closes to record.

    sudo python3 bench/bench_collect.py [--sizes 20000,60000] [--runs 7] [--churn 1000] [--compare HEAD~1]
    sudo python3 bench/bench_collect.py --cpu 10 --sizes 2000,20000,60000

``--cpu S`` (instead of the phase table): the CPU per second of a running `Collector` (its thread at the
default 1 s refresh, tcp_info and owners on, as the TUI runs it; process CPU over S seconds, after a
warm-up) with every tick a full dump (``dump``) and with the event-driven table (``events``,
core/table/evtable.py: SOCKMON_EVENT_TABLE=1), beside the CPU of ``ss -tanoi`` run once a second
(output to /dev/null) in the same run. The tracepoint is host-wide: other processes' connection
churn on the machine costs the event-driven collector lookups (answered ENOENT here) too.

``--compare REV`` also runs the core of git revision REV (exported to a temporary directory) in the
same run, for a before/after table. ``procs`` (not in the total) is what one tick costs more while the
TUI's process view is shown: ``process_totals`` of the tick's snapshot and rates, timed after it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from connpool import export_tree, print_banner, reexec_in_private_netns  # noqa: E402

PHASES = ("snapshot", "owners", "diff", "advance", "summary", "closed", "rates", "gc", "rest", "total",
          "free prev", "total+free+gc", "procs")



class Churn:
    """K of our own loopback connections closed (FIN from both ends) and K opened before each tick."""

    def __init__(self, k: int) -> None:
        import collections
        import resource
        import socket

        self.k = k
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8 * k + 1024)), hard))
        self.socket = socket
        self.lst = socket.create_server(("127.0.0.1", 0), backlog=max(128, k))
        self.pairs: collections.deque = collections.deque()
        self.closed = 0

    def step(self) -> None:
        for _ in range(min(self.k, len(self.pairs))):
            a, b = self.pairs.popleft()
            a.close()
            b.close()
            self.closed += 2
        for _ in range(self.k):
            c = self.socket.create_connection(self.lst.getsockname())
            s, _ = self.lst.accept()
            self.pairs.append((c, s))


def worker(runs: int) -> dict:
    from sockmon.core.table import collector as cmod
    from sockmon.core.table import owners as omod

    acc: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    cmod.take_snapshot = timed("snapshot+owners", cmod.take_snapshot)
    cmod.diff = timed("diff", cmod.diff)
    cmod.advance_since = timed("advance", cmod.advance_since)
    cmod.summarize = timed("summary", cmod.summarize)
    omod.OwnerCache.resolve = timed("owners", omod.OwnerCache.resolve)
    process_totals = None
    try:  # a tree from before the rates has no RateTracker: its rates phase is 0
        from sockmon.core.table import rates as rmod

        rmod.RateTracker.update = timed("rates", rmod.RateTracker.update)
        process_totals = rmod.process_totals
    except ImportError:
        pass
    gc_t0 = [0.0]
    gen2 = [0]
    bucket = ["gc"]  # "gc": during the tick, "gc_after": triggered by the tick's garbage after it

    def on_gc(phase, info):
        if phase == "start":
            gc_t0[0] = time.perf_counter()
        else:
            acc[bucket[0]] = acc.get(bucket[0], 0.0) + time.perf_counter() - gc_t0[0]
            gen2[0] += info["generation"] == 2

    gc.callbacks.append(on_gc)
    try:
        from sockmon.core.table.closed import ClosedHistory
    except ImportError:  # an older tree (--compare): no model
        ClosedHistory = None  # noqa: N806
    model = ClosedHistory() if ClosedHistory is not None else None
    on_update = timed("closed", model.feed) if model is not None else (lambda u: None)
    churn_k = int(os.environ.get("SOCKMON_BENCH_CHURN", "0"))
    churn = Churn(churn_k) if churn_k else None
    col = cmod.Collector(interval=3600, use_tracepoint=False, on_update=on_update, start=False)
    samples: dict[str, list[float]] = {p: [] for p in PHASES}
    count = 0
    u = None
    for i in range(runs + 2):
        if churn is not None:
            churn.step()
        acc.clear()
        bucket[0] = "gc"
        t0 = time.perf_counter()
        nu = col.collect_once()  # a consumer (the UI) still holds the previous update meanwhile
        total = time.perf_counter() - t0
        bucket[0] = "gc_after"
        t1 = time.perf_counter()
        u = nu  # the consumer drops the previous update: its snapshot is freed here
        free = time.perf_counter() - t1
        del nu
        if u.error:
            raise SystemExit(u.error)
        procs = 0.0
        if process_totals is not None:  # what the process view (g) adds to a tick
            t2 = time.perf_counter()
            process_totals(u.snapshot, u.rates)
            procs = time.perf_counter() - t2
        count = len(u.snapshot.sockets)
        # the tick's garbage is the GC's next work, wherever it runs: allocate a little so the
        # collections it triggers happen now and are counted with this tick
        junk = [[] for _ in range(5000)]
        del junk
        if i < 2:  # warm-up: owner cache, first diff baseline
            continue
        snap = acc.get("snapshot+owners", 0.0) - acc.get("owners", 0.0)
        vals = {"snapshot": snap, "owners": acc.get("owners", 0.0), "diff": acc.get("diff", 0.0),
                "advance": acc.get("advance", 0.0), "summary": acc.get("summary", 0.0),
                "closed": acc.get("closed", 0.0),
                "rates": acc.get("rates", 0.0), "procs": procs,
                "gc": acc.get("gc", 0.0) + acc.get("gc_after", 0.0), "rest": total - snap, "total": total,
                "free prev": free, "total+free+gc": total + free + acc.get("gc_after", 0.0)}
        for p in PHASES:
            samples[p].append(vals[p] * 1000.0)
    col.stop()
    import resource

    return {"count": count, "gen2": gen2[0], "recorded": model.total if model is not None else 0,
            "churned": churn.closed if churn is not None else 0, "min": {p: min(v) for p, v in samples.items()},
            "median": {p: statistics.median(v) for p, v in samples.items()},
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(runs: int, tree: str | None, churn: int = 0) -> dict:
    env = dict(os.environ)
    env["SOCKMON_BENCH_CHURN"] = str(churn)
    if tree is not None:
        env["PYTHONPATH"] = os.path.join(tree, "pkg")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", str(runs)],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def cpu_worker(seconds: float) -> dict:
    """CPU per second of a running Collector (this process: every thread) over ``seconds``."""
    from sockmon.core.table.collector import Collector

    ticks = []
    col = Collector(interval=1.0, on_update=ticks.append)
    time.sleep(2.5)  # warm-up: the first full dump, owners scanned
    n0, c0, t0, d0 = len(ticks), time.process_time(), time.monotonic(), col.full_dumps
    time.sleep(seconds)
    cpu, wall = time.process_time() - c0, time.monotonic() - t0
    got = ticks[n0:]
    out = {"cpu_per_s": cpu / wall, "ticks": len(got), "event_ticks": sum(u.table == "events" for u in got),
           "full_dumps": col.full_dumps - d0, "count": len(got[-1].snapshot.sockets) if got else 0,
           "tick_ms": statistics.median(u.duration_ms for u in got) if got else 0.0,
           "mode": "events" if col.event_table else "dump", "note": got[-1].note if got else ""}
    col.stop()
    return out


def ss_cpu_per_run(runs: int) -> float:
    """CPU seconds (user + system) of one ``ss -tanoi`` (output to /dev/null), the mean of ``runs``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run(["ss", "-tanoi"], stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / runs


def cpu_table(sizes: list[int], seconds: float) -> None:
    from connpool import ConnPool

    print_banner("collector CPU per second at 1 s refresh", f"process CPU over {seconds:.0f} s after a "
                 "2.5 s warm-up; ss -tanoi once a second = the CPU of one run",
                 ["N", "`ss -tanoi` 1/s (% core)", "full dumps (% core)", "× ss", "event-driven (% core)", "× ss",
                  "event ticks / ticks", "full dumps", "median tick ms (dump / events)"])
    for n in sizes:
        with ConnPool(n):
            time.sleep(0.2)
            ss = ss_cpu_per_run(5)
            res = {}
            for mode, env_value in (("dump", "0"), ("events", "1")):
                env = dict(os.environ, SOCKMON_EVENT_TABLE=env_value)
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--cpu-worker", str(seconds)],
                                     capture_output=True, text=True, check=True, env=env)
                res[mode] = json.loads(out.stdout)
            d, e = res["dump"], res["events"]
            print(f"| {n} ({e['count']} rows) | {ss * 100:.1f} | {d['cpu_per_s'] * 100:.1f} | "
                  f"{d['cpu_per_s'] / ss:.2f} | {e['cpu_per_s'] * 100:.1f} | {e['cpu_per_s'] / ss:.2f} | "
                  f"{e['event_ticks']} / {e['ticks']} ({e['mode']}) | {e['full_dumps']} | "
                  f"{d['tick_ms']:.0f} / {e['tick_ms']:.0f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,60000")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--churn", type=int, default=0, metavar="K",
                    help="close K connections and open K before every tick (closes for the closed-connection model)")
    ap.add_argument("--compare", metavar="REV", help="also time the core of this git revision")
    ap.add_argument("--cpu", type=float, metavar="S", default=None,
                    help="CPU per second of a running collector, full dumps vs the event-driven table, over S s")
    ap.add_argument("--worker", type=int, metavar="RUNS", help=argparse.SUPPRESS)
    ap.add_argument("--cpu-worker", type=float, metavar="S", help=argparse.SUPPRESS)
    ap.add_argument("--no-netns", action="store_true", help="run in the current namespace")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return 0
    if args.cpu_worker:
        print(json.dumps(cpu_worker(args.cpu_worker)))
        return 0
    prefix = "evtable" if args.cpu else "smcoll"  # the event-table figures: a namespace named for its branch
    rc = None if args.no_netns else reexec_in_private_netns(prefix, "SOCKMON_BENCH_NS", sys.argv[1:])
    if rc is not None:
        return rc
    if args.cpu:
        cpu_table([int(x) for x in args.sizes.split(",")], args.cpu)
        return 0
    from bench_snapshot import run_ss
    from connpool import ConnPool

    trees: list[tuple[str, str | None]] = []
    if args.compare:
        trees.append((args.compare, export_tree(args.compare)))
    trees.append(("working tree", None))
    print_banner("sockmon collect_once phases", f"{args.runs} ticks after 2 warm-up ticks, one fresh process "
                 "per code tree; ms, min (median)",
                 ["N", "code", *PHASES, "snapshot × ss -tanoi", "total × ss -tanoi", "gen-2 GCs", "peak RSS MB"])
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            with ConnPool(n):
                time.sleep(0.2)
                ss = run_ss(["-tanoi"], args.runs)
                ss_ms = min(ss["times"]) * 1000.0
                ss_cells = " | ".join(f"{ss_ms:.1f} ({statistics.median(ss['times']) * 1000:.1f})"
                                      if p in ("snapshot", "total") else "" for p in PHASES)
                print(f"| {n} | `ss -tanoi` ({ss['count']} rows) | {ss_cells} | 1.00 | 1.00 | | "
                      f"{ss['maxrss_kb'] / 1024:.0f} |", flush=True)
                for label, tree in trees:
                    r = run_worker(args.runs, tree, args.churn)
                    cells = " | ".join(f"{r['min'][p]:.1f} ({r['median'][p]:.1f})" for p in PHASES)
                    print(f"| {n} | {label} ({r['count']} rows) | {cells} | {r['min']['snapshot'] / ss_ms:.2f} | "
                          f"{r['min']['total'] / ss_ms:.2f} | {r['gen2']} | {r['maxrss_mb']:.0f} |", flush=True)
                    if args.churn:
                        print(f"|   | churn: {r['churned']} ends closed by the benchmark, {r['recorded']} "
                              "closed connections recorded |", flush=True)
    finally:
        for _label, tree in trees:
            if tree is not None:
                shutil.rmtree(tree, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
