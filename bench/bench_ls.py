"""Benchmark: `sockmon ls --json` against `ss -tanoiep`, each as a whole process (not a test).

Runs inside a private network namespace (as root; removed at the end) so only the benchmark's sockets
are seen, opens N loopback sockets over helper processes (bench/connpool.py), then runs, R times
each and alternating, `ss -tanoiep` (states, queues, timers, tcp_info, uid/inode/cookie, owning
processes) and `python -m sockmon ls --json` (the same facts as JSON lines, owners from a cold cache,
interpreter start included). Output goes to a file; the table shows wall time and CPU time (user +
system of the process and its children, from wait4), the minimum of R runs, the ratio to `ss` from
the same run, the rows and the output size.

    sudo python3 bench/bench_ls.py [--sizes 40000] [--runs 5]

``--tree DIR`` runs sockmon from another checkout's package directory (``DIR/sockmon`` holding
``core/``; put on PYTHONPATH) as an extra row, for before/after figures in one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import print_banner, reexec_in_private_netns, time_process  # noqa: E402


def mount_cgroup2() -> None:
    """Give `ss -e` the cgroup2 mount it looks up for every socket's ``cgroup:`` field.

    ``ip netns exec`` runs us in a private mount namespace with a fresh /sys and no cgroup mounts;
    there `ss -e` fails the lookup (one "Failed to find cgroup2 mount" per socket) and takes twice
    its normal time. Mounted only in that private namespace (gone with it), never on the host.
    """
    if os.environ.get("SOCKMON_BENCH_NS") and not cgroup2_mounted():
        subprocess.run(["mount", "-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"], check=False)


def cgroup2_mounted() -> bool:
    with open("/proc/mounts") as fh:
        return any(line.split()[2:3] == ["cgroup2"] for line in fh)


def count_rows(path: str, ss: bool) -> int:
    with open(path, "rb") as fh:
        if ss:  # ss -i continues a socket's line with an indented one
            return sum(1 for line in fh if line[:1] not in (b"\t", b" ")) - 1
        return sum(1 for _ in fh)


def bench_size(n: int, runs: int, trees: list[tuple[str, str | None]]) -> list[tuple]:
    from connpool import ConnPool

    cases: list[tuple[str, list[str], dict | None]] = [("ss -tanoiep", ["ss", "-tanoiep"], None)]
    for label, tree in trees:
        env = None
        if tree is not None:
            env = dict(os.environ, PYTHONPATH=tree)
        cases.append((f"sockmon ls --json ({label})", [sys.executable, "-m", "sockmon", "ls", "--json"], env))
    res: dict[str, dict] = {name: {"wall": [], "cpu": []} for name, _, _ in cases}
    tmp = tempfile.mkdtemp(prefix="sockmon-bench-ls-")
    try:
        with ConnPool(n):
            time.sleep(0.2)
            for _ in range(runs):  # alternate, so a busy moment of a shared machine hits every case alike
                for name, argv, env in cases:
                    path = os.path.join(tmp, name.split()[0] + str(len(res[name]["wall"])))
                    wall, cpu = time_process(argv, path, env)
                    r = res[name]
                    r["wall"].append(wall)
                    r["cpu"].append(cpu)
                    r["rows"] = count_rows(path, name.startswith("ss"))
                    r["bytes"] = os.path.getsize(path)
                    os.unlink(path)
    finally:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    base = res["ss -tanoiep"]
    bw, bc = min(base["wall"]), min(base["cpu"])
    rows = []
    for name, r in res.items():
        w, c = min(r["wall"]), min(r["cpu"])
        rows.append((n, name, r["rows"], w * 1000, w / bw, c * 1000, c / bc, r["bytes"] / 1e6))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="40000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tree", metavar="DIR", help="also run sockmon from this package directory (PYTHONPATH)")
    ap.add_argument("--no-netns", action="store_true", help="run in the current namespace")
    args = ap.parse_args()
    rc = None if args.no_netns else reexec_in_private_netns("smls", "SOCKMON_BENCH_NS", sys.argv[1:])
    if rc is not None:
        return rc
    mount_cgroup2()
    trees: list[tuple[str, str | None]] = []
    if args.tree:
        trees.append((args.tree, os.path.abspath(args.tree)))
    trees.append(("this tree", None))
    cg = "cgroup2 mounted" if cgroup2_mounted() else "no cgroup2 mount (ss -e slower)"
    print_banner("sockmon ls --json vs ss -tanoiep", f"whole processes, min of {args.runs} runs, alternating, {cg}",
                 ["N sockets", "command", "rows", "wall ms", "wall × ss", "CPU ms", "CPU × ss", "output MB"])
    for n in (int(x) for x in args.sizes.split(",")):
        for size, name, rows, ms, ratio, cpu, cratio, mb in bench_size(n, args.runs, trees):
            print(f"| {size} | {name} | {rows} | {ms:.1f} | {ratio:.2f} | {cpu:.1f} | {cratio:.2f} | {mb:.1f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
