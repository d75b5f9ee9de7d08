"""Benchmark: kill one connection among N sockets — `sockmon kill --yes FILTER` against `ss -K FILTER` — and
read one foreign socket's options with `sockmon opts` (--inode: through the table and the owner lookup;
--pid/--fd: directly). Each run is a whole process (interpreter start included); not a test.

Runs inside a private network namespace (as root; removed at the end), opens N loopback sockets over
helper processes (bench/connpool.py) plus, for every run, one fresh victim connection held by this
process; each command kills its own victim (checked: the victim's next recv fails with ECONNABORTED).
The table shows the minimum wall and CPU time of R runs and the ratio to `ss -K` from the same run.

    sudo python3 bench/bench_kill.py [--sizes 60000] [--runs 5]
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import ConnPool, print_banner, reexec_in_private_netns, time_process  # noqa: E402


def victim(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    cli = socket.create_connection(listener.getsockname())
    srv, _ = listener.accept()
    return cli, srv


def aborted(sock: socket.socket) -> bool:
    sock.settimeout(2)
    try:
        sock.recv(1)
    except OSError as exc:
        return exc.errno == errno.ECONNABORTED
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="60000")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    code = reexec_in_private_netns("kill-opts-bench", "SOCKMON_BENCH_NS", sys.argv[1:])
    if code is not None:
        return code
    sockmon = [sys.executable, "-m", "sockmon"]
    print_banner("kill one socket / read one socket's options", f"min of {args.runs} runs, whole processes",
                 ["sockets", "command", "wall ms", "CPU ms", "wall vs ss -K"])
    out = os.path.join(tempfile.mkdtemp(prefix="sockmon-bench-kill-"), "out")
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    lport = listener.getsockname()[1]
    for size in (int(s) for s in args.sizes.split(",")):
        with ConnPool(size):
            best: dict[str, tuple[float, float]] = {}

            def run(name: str, argv_of, best: dict = best) -> None:
                cli, srv = victim(listener)
                vport = cli.getsockname()[1]
                wall, cpu = time_process(argv_of(vport, cli), out)
                if name.startswith(("ss", "sockmon kill")):
                    assert aborted(cli), f"{name}: the victim was not killed"
                cli.close()
                srv.close()
                old = best.get(name)
                best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)

            for _ in range(args.runs):
                run("ss -K", lambda v, c: ["ss", "-K", "-tn", "sport", "=", f":{v}", "dport", "=", f":{lport}"])
                run("sockmon kill --yes", lambda v, c: [*sockmon, "kill", "--yes", f"sport:{v}", f"dport:{lport}"])
                run("sockmon opts --inode", lambda v, c: [*sockmon, "opts", "--inode", str(os.fstat(c.fileno()).st_ino)])
                run("sockmon opts --pid --fd", lambda v, c: [*sockmon, "opts", "--pid", str(os.getpid()), "--fd",
                                                             str(c.fileno())])
            ss_wall = best["ss -K"][0]
            for name, (wall, cpu) in best.items():
                print(f"| {size} | `{name}` | {wall * 1000:.0f} | {cpu * 1000:.0f} | {wall / ss_wall:.1f}× |")
    listener.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
