"""Benchmark: the filter language (core/table/filter.py) on a 60k-socket snapshot (not a test).

Runs inside a private network namespace (as root; removed at the end), opens N loopback sockets over
helper processes (bench/connpool.py), takes one snapshot with owners, then for each expression measures
(minimum of R runs): parsing the text once, and running the predicate over every socket of the
snapshot — what a TUI list does per refresh — beside the filter of revision ``--old`` (the language
before ss's, for the expressions it understands). Then ``take_snapshot`` with and without the states
the filter pins (what ``sockmon ls state listening`` asks the kernel for), and whole processes:
``sockmon ls --json FILTER`` against ``ss -tanH FILTER``.

    sudo python3 bench/bench_filter.py [--sockets 60000] [--runs 5] [--old b743a12]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import ConnPool, export_tree, print_banner, reexec_in_private_netns, time_process  # noqa: E402


def best(fn, runs: int) -> float:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def load_old(rev: str):
    tree = export_tree(rev)
    path = os.path.join(tree, "pkg", "sockmon", "core", "table", "filter.py")
    spec = importlib.util.spec_from_file_location("old_filter", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # its imports (errors, records, states) resolve to this tree's sockmon.core
    return mod


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=60000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--old", default="b743a12", help="git revision of the filter to compare with")
    args = ap.parse_args()
    rc = reexec_in_private_netns("filter-bench-", "SOCKMON_BENCH_NS", sys.argv[1:])
    if rc is not None:
        return rc
    from sockmon.core.errors import BadInput
    from sockmon.core.states import LISTEN
    from sockmon.core.table.filter import parse
    from sockmon.core.table.owners import OwnerCache
    from sockmon.core.table.snapshot import take_snapshot

    old = load_old(args.old)
    with ConnPool(args.sockets) as pool:
        snap = take_snapshot(owners=OwnerCache())
        n = len(snap.sockets)
        port = pool.ports[0]
        # (text, whether the old filter reads it the same way: the old language had no ss expressions)
        exprs = [
            ("est", True),
            (f"est {port}", True),
            ("proc:python", True),
            (f"127.0.0.1:{port}", False),
            (f"state established ( dport = :{port} or sport = :{port} )", False),
            ("sport > :40000 and dport < :50000", False),
            ("src 127.0.0.0/8", False),
            ("not src [::1] and dst 127.0.0.1", False),
            ("state connected not ( sport = :22 or dport = :22 ) and ( src 127.0.0.0/8 or v6 )", False),
        ]
        print_banner(f"filter predicate over one snapshot of {n} sockets", f"min of {args.runs} runs",
                     ["expression", "parse µs", "predicate ms (all sockets)", "ns / socket", "matched",
                      f"old ({args.old}) ms", "ratio to old"])
        for text, same in exprs:
            parse_s = best(lambda t=text: parse(t), 200)
            pred = parse(text).predicate(snap.owner)
            matched = sum(1 for s in snap.sockets if pred(s))
            run_s = best(lambda p=pred: sum(1 for s in snap.sockets if p(s)), args.runs)
            old_cell, ratio = "(not in the old language)", "—"
            if same:
                try:
                    opred = old.parse_filter(text, snap.owner)
                    old_s = best(lambda p=opred: sum(1 for s in snap.sockets if p(s)), args.runs)
                    old_cell, ratio = f"{old_s * 1e3:.1f}", f"{run_s / old_s:.2f}"
                except BadInput:
                    old_cell = "refused"
            print(f"| `{text}` | {parse_s * 1e6:.0f} | {run_s * 1e3:.1f} | {run_s / n * 1e9:.0f} | {matched} "
                  f"| {old_cell} | {ratio} |")
        print()
        # the states hint: the kernel sends only LISTEN sockets
        t_all = best(lambda: take_snapshot(with_info=True), args.runs)
        t_listen = best(lambda: take_snapshot(states=[LISTEN], with_info=True), args.runs)
        print(f"take_snapshot, every state: {t_all * 1e3:.1f} ms; states=[LISTEN] (`state listening`): "
              f"{t_listen * 1e3:.1f} ms ({t_all / t_listen:.0f}× less)")
        print()
        print("| whole process | wall ms | CPU ms | ratio to ss (wall) |")
        print("|---|---|---|---|")
        tmp = tempfile.mkdtemp(prefix="filter-bench-")
        for words in (["state", "listening"], [f"( dport = :{port} or sport = :{port} )"],
                      ["src 127.0.0.0/8 and sport > :40000"]):
            ss_w, ss_c = min(time_process(["ss", "-tanH", *words], os.path.join(tmp, "ss")) for _ in range(args.runs))
            sm = [time_process([sys.executable, "-m", "sockmon", "ls", "--json", "--", *words],
                               os.path.join(tmp, "sm")) for _ in range(args.runs)]
            sm_w, sm_c = min(sm)
            label = " ".join(words)
            print(f"| `ss -tanH {label}` | {ss_w * 1e3:.0f} | {ss_c * 1e3:.0f} | 1.00 |")
            print(f"| `sockmon ls --json {label}` | {sm_w * 1e3:.0f} | {sm_c * 1e3:.0f} | {sm_w / ss_w:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
