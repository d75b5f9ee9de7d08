"""Benchmark: the terminal UI at N sockets (not a test).

Runs in a private network namespace (as root; removed at the end) so only the benchmark's sockets are
seen, opens N loopback sockets over helper processes (bench/connpool.py), starts the real SockmonApp
headless (Textual's run_test, 200×50) and times, R times each:

- full refresh = collect (snapshot with tcp_info + warm owners + diff + summary, the Collector's own
  ``collect_once``) + apply (VirtualTable keyed diff/filter/sort of every pane) + paint (until the
  app is idle again, screen composed);
- key → repaint: the key's action on the UI thread plus a full frame (layout, compose, ANSI), for cursor
  keys, sorting on other columns, and a filter keystroke (Pilot's own idle detection adds ~100 ms of
  waiting, so actions are called directly);
- peak RSS of the UI process (the helpers that hold the sockets are separate processes).

    sudo python3 bench/bench_tui.py [--sizes 2000,20000,60000] [--runs 5] [--table dump|events]

``--table events``: the collector keeps the event-driven table (core/table/evtable.py); each timed refresh
is an event tick (what changed since the previous one plus exact lookups of the rows on screen, which the
app tells the collector), with full dumps held off (their cadence and cost: bench/bench_cpu.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import print_banner, reexec_in_private_netns  # noqa: E402

TABLE = "dump"  # --table


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def repaint(app) -> None:
    """What a frame costs on the UI thread: pending layout, compose every dirty widget, ANSI out."""
    screen = app.screen
    screen._refresh_layout(app.size)
    update = screen._compositor.render_full_update()
    update.render_segments(app.console)


async def bench_app(n: int, runs: int) -> list[tuple[str, float, float]]:
    from sockmon.core.table.collector import Collector
    from sockmon.tui.app import SockmonApp

    rows: list[tuple[str, float, float]] = []
    if TABLE == "events":  # the event-driven table: each refresh reads only what changed and the rows on screen
        collector = Collector(interval=3600, event_table=True, on_update=lambda u: None, start=False)
        if not collector.event_table:
            raise SystemExit(f"no event-driven table here: {collector.tracer_note}")
    else:
        collector = Collector(interval=3600, use_tracepoint=False, on_update=lambda u: None, start=False)
    app = SockmonApp(collector_factory=None, is_root=os.geteuid() == 0)
    async with app.run_test(size=(200, 50)) as pilot:
        first = collector.collect_once()  # warm the owner cache; first diff baseline
        app.apply_update(first)
        await pilot.pause()
        total = len(first.snapshot.sockets)
        del first  # the app holds what it needs: a third 60k snapshot alive here would inflate RSS
        if TABLE == "events":
            collector.hold_full_dumps()  # every timed refresh an event tick (full dumps: bench_cpu.py)
            app.collector = collector  # the app tells it the rows on screen (set_visible)
            app._tell_visible()
            await pilot.pause()
        full, collect, apply_, paint = [], [], [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            update = collector.collect_once()
            t1 = time.perf_counter()
            app.apply_update(update)
            t2 = time.perf_counter()
            repaint(app)
            t3 = time.perf_counter()
            full.append(t3 - t0)
            collect.append(t1 - t0)
            apply_.append(t2 - t1)
            paint.append(t3 - t2)
            await pilot.pause()
        label = "refresh of the event-driven table" if TABLE == "events" else "full refresh"
        for name, xs in ((f"{label} (collect+diff+apply+paint)", full),
                         ("  collect (Collector.collect_once: snapshot+owners+diff+summary)", collect),
                         ("  apply (all panes: keyed diff, marks, filter, sort)", apply_),
                         ("  paint (layout + compose + ANSI of the whole screen)", paint)):
            rows.append((name, min(xs) * 1000, statistics.median(xs) * 1000))
        rows.append((f"peak RSS after the refreshes: {rss_mb():.0f} MB", float("nan"), float("nan")))

        conns = app.connections
        table = conns.table
        table.focus()
        await pilot.pause()

        def timed(fn) -> list[float]:
            out = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                repaint(app)
                out.append(time.perf_counter() - t0)
            return out

        cases = [
            ("cursor down", table.action_cursor_down),
            ("page down", table.action_page_down),
            ("end", table.action_cursor_end),
            ("sort by next column (s)", table.action_sort_next),
            ("reverse sort (S)", table.action_sort_reverse),
            ("sort by Timer (None-aware key)", lambda: table.sort_by("timer")),
            ("filter keystroke (port 1…)", lambda: conns.apply_filter("1")),
            ("filter cleared", lambda: conns.apply_filter("")),
            ("sort by RTT (4 bytes of tcp_info per row)", lambda: table.sort_by("rtt")),
        ]
        for label, fn in cases:
            xs = timed(fn)
            rows.append((f"key → repaint: {label}", min(xs) * 1000, statistics.median(xs) * 1000))
            await pilot.pause()
        rows.append((f"sockets in the table: {total}", float("nan"), float("nan")))
    collector.stop()
    return rows


def bench_size(n: int, runs: int) -> list[tuple]:
    from connpool import ConnPool

    with ConnPool(n):
        time.sleep(0.2)
        rows = asyncio.run(bench_app(n, runs))
    return [(n, name, best, med) for name, best, med in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="60000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-netns", action="store_true", help="run in the current namespace")
    ap.add_argument("--table", choices=("dump", "events"), default="dump",
                    help="dump: every refresh a full dump (default); events: the event-driven table "
                         "(root, tracepoint): what changed plus the rows on screen")
    args = ap.parse_args()
    global TABLE
    TABLE = args.table
    rc = None if args.no_netns else reexec_in_private_netns("smtui", "SOCKMON_BENCH_NS", sys.argv[1:])
    if rc is not None:
        return rc
    print_banner("sockmon TUI benchmark", f"{args.runs} runs, headless 200×50",
                 ["N sockets", "measure", "min ms", "median ms"])
    for n in (int(x) for x in args.sizes.split(",")):
        for size, name, best, med in bench_size(n, args.runs):
            if best != best:  # nan: an info row
                print(f"| {size} | {name} | | |", flush=True)
            else:
                print(f"| {size} | {name} | {best:.1f} | {med:.1f} |", flush=True)
        print(f"| {n} | peak RSS of the UI process (MB, cumulative) | {rss_mb():.0f} | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
