"""`sockmon ls --all-netns` vs `ss -tanoi` run once per namespace, whole processes (root).

Makes NS namespaces (``netns-bench-…``) holding SOCKETS loopback sockets in all (connections held by
bench/connpool.py children started with ``ip netns exec``), then times, one run each: sockmon listing
every namespace at once (JSON and text, with owners as always), and ss visiting the same namespaces one
after another (``ss -tanoi`` here, ``ip netns exec NAME ss -tanoi`` for a named one, ``nsenter -t PID -n
ss -tanoi`` for one only a process holds), plus ``ip -all netns exec ss -tanoi`` (named ones only). Both
sides see every namespace on the host at that moment, not only the benchmark's. Everything made is removed.

    python3 bench/bench_netns.py [SOCKETS] [NS]     # default 40000 sockets over 8 namespaces
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from connpool import print_banner, time_process  # noqa: E402


def start_pool(ns: str, sockets: int) -> list[subprocess.Popen]:
    children = []
    left = max(1, sockets // 2)
    while left > 0:
        n = min(left, 8000)
        children.append(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable,
                                          os.path.join(HERE, "connpool.py"), "--child", str(n)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        left -= n
    for proc in children:
        if not proc.stdout.readline().startswith("ready"):
            raise RuntimeError(f"connection child {proc.pid} failed in {ns}")
    return children


def ss_commands() -> list[list[str]]:
    from sockmon.core.netns import all_netns

    cmds = []
    for ref in all_netns():
        if ref.current:
            cmds.append(["ss", "-tanoi"])
        elif ref.name is not None:
            cmds.append(["ip", "netns", "exec", ref.name, "ss", "-tanoi"])
        elif ref.pid is not None:
            cmds.append(["nsenter", "-t", str(ref.pid), "-n", "ss", "-tanoi"])
    return cmds


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (namespaces)", file=sys.stderr)
        return 1
    sockets = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    tag = secrets.token_hex(3)
    names = [f"netns-bench-{tag}-{i}" for i in range(count)]
    children: list[subprocess.Popen] = []
    out = tempfile.mktemp(prefix="sockmon-bench-netns-")
    try:
        for ns in names:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            children += start_pool(ns, sockets // count)
        cmds = ss_commands()
        script = "\n".join(" ".join(c) for c in cmds)
        sockmon = [sys.executable, "-m", "sockmon", "ls", "--all-netns"]
        print_banner(f"ls --all-netns vs ss per namespace: {sockets} benchmark sockets in {count} namespaces, "
                     f"{len(cmds)} namespaces on the host", "one run each, shared machine", ["command", "wall s",
                                                                                            "CPU s", "lines"])
        rows = []
        for label, argv in (
            ("sockmon ls --all-netns --json", [*sockmon, "--json"]),
            ("sockmon ls --all-netns (text)", sockmon),
            ("sockmon ls --all-netns --json --no-owners", [*sockmon, "--json", "--no-owners"]),
            (f"ss -tanoi in each of the {len(cmds)} namespaces (sh loop)", ["sh", "-c", script]),
            ("ss -tanoi + ip -all netns exec ss -tanoi (named only)",
             ["sh", "-c", "ss -tanoi; ip -all netns exec ss -tanoi"]),
        ):
            wall, cpu = time_process(argv, out)
            with open(out, "rb") as fh:
                lines = sum(1 for _ in fh)
            rows.append((label, wall, cpu, lines))
            print(f"| {label} | {wall:.3f} | {cpu:.3f} | {lines} |", flush=True)
        base = rows[3][1]
        print()
        print(f"ratio sockmon --json / ss loop (wall): {rows[0][1] / base:.2f}; "
              f"--no-owners: {rows[2][1] / base:.2f}")
    finally:
        for proc in children:
            proc.kill()
            proc.wait()
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if os.path.exists(out):
            os.unlink(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
