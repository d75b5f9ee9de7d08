"""Benchmark: memory of the TUI and of `sockmon watch --json` under steady connection churn (not a test).

As root. Makes a private network namespace (only ``lo`` up; removed at the end) and runs in it a churn
generator that opens and closes RATE loopback connections a second (connect, accept, close both ends with
linger 0, so the table size stays steady, as a busy host's does). While it runs:

- the real TUI, ``ip netns exec NS python -m sockmon`` (so it uses the tracepoint, like a TUI on a busy
  host), in a pseudo-terminal of 160×48 (the screen is read and
  thrown away), and
- ``python -m sockmon watch --json`` writing to /dev/null (the tracepoint is host-wide: it sees the churn),

have their RSS read from /proc every SAMPLE seconds. At the end ``q`` is typed into the TUI and the time to
its exit is measured. Printed: RSS at 30 s and at the end, growth after the first 30 s, peak, the quit time,
and beside them ``ss -tan`` in the same namespace (its RSS, for scale) and the connections made.

    sudo python3 bench/bench_soak.py [--rate 1500] [--duration 600] [--sample 5]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time


def churn_main(rate: float, duration: float) -> None:
    """Inside the namespace: RATE connections a second for DURATION seconds; print how many were made."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    addr = lst.getsockname()
    zero = struct.pack("ii", 1, 0)
    made = 0
    t0 = time.monotonic()
    batch = max(1, int(rate / 50))  # 50 batches a second
    while (now := time.monotonic()) - t0 < duration:
        due = int((now - t0) * rate)
        while made < due:
            pairs = []
            for _ in range(min(batch, due - made)):
                c = socket.socket()
                c.connect(addr)
                s, _ = lst.accept()
                pairs.append((c, s))
            for c, s in pairs:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)
                c.close()
                s.close()
            made += len(pairs)
        time.sleep(0.02)
    print(made, flush=True)


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_tui(ns: str) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.execvp("ip", ["ip", "netns", "exec", ns, sys.executable, "-m", "sockmon"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    return pid, fd


def drain(fd: int, seconds: float) -> bytes:
    """Read the TUI's output for ``seconds`` (a terminal that is not read would block it)."""
    out = b""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if r:
            try:
                out = (out + os.read(fd, 65536))[-65536:]
            except OSError:
                break
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1500)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--sample", type=float, default=5)
    ap.add_argument("--churn-child", nargs=2, type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.churn_child:
        churn_main(*a.churn_child)
        return 0
    if os.geteuid() != 0:
        print("bench_soak needs root (network namespace, tracepoint)", file=sys.stderr)
        return 2
    ns = f"sockmon-soak-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs: list[subprocess.Popen] = []
    tui_pid = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        tui_pid, tui_fd = start_tui(ns)
        watch = subprocess.Popen([sys.executable, "-m", "sockmon", "watch", "--json"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(watch)
        drain(tui_fd, 3)  # let both start before the churn
        churn = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                                  "--churn-child", str(a.rate), str(a.duration)],
                                 stdout=subprocess.PIPE, text=True)
        procs.append(churn)
        t0 = time.monotonic()
        samples: list[tuple[float, float | None, float | None]] = []
        while churn.poll() is None:
            drain(tui_fd, a.sample)
            samples.append((time.monotonic() - t0, rss_mb(tui_pid), rss_mb(watch.pid)))
            t, r_tui, r_watch = samples[-1]
            print(f"  t={t:6.1f}s  TUI {r_tui or 0:7.1f} MB   watch {r_watch or 0:7.1f} MB", flush=True)
        made = int((churn.stdout.read() or "0").strip() or 0)
        ss = subprocess.run(["/usr/bin/time", "-f", "%M", "ip", "netns", "exec", ns, "ss", "-tan"],
                            capture_output=True, text=True)
        ss_rss = int(ss.stderr.strip().splitlines()[-1]) / 1024 if ss.returncode == 0 else float("nan")
        # quit the TUI with q and time it
        t_q = time.monotonic()
        os.write(tui_fd, b"q")
        deadline = t_q + 30
        status = None
        while time.monotonic() < deadline:
            drain(tui_fd, 0.05)
            done, status = os.waitpid(tui_pid, os.WNOHANG)
            if done:
                break
        quit_s = time.monotonic() - t_q
        if status is None or not os.WIFEXITED(status):
            os.kill(tui_pid, signal.SIGKILL)
            os.waitpid(tui_pid, 0)
        tui_pid = None
        watch.send_signal(signal.SIGTERM)
        werr = watch.communicate(timeout=30)[1]

        def at(t_want: float, col: int) -> float:
            return min(samples, key=lambda s: abs(s[0] - t_want))[col] or float("nan")

        end_t = samples[-1][0]
        print(f"\nchurn: {made} connections in {end_t:.0f} s ({made / max(end_t, 1):.0f}/s), namespace {ns}")
        print("| process | RSS at 30 s MB | RSS at end MB | growth after 30 s | peak MB | quit |")
        print("|---|---|---|---|---|---|")
        for name, col in (("sockmon (TUI)", 1), ("sockmon watch --json", 2)):
            r30, rend = at(30, col), at(end_t, col)
            peak = max(s[col] or 0 for s in samples)
            q = f"{quit_s:.2f} s (`q`)" if col == 1 else f"SIGTERM rc {watch.returncode}"
            print(f"| {name} | {r30:.1f} | {rend:.1f} | {100 * (rend - r30) / r30:+.1f} % | {peak:.1f} | {q} |")
        print(f"| ss -tan (once, same namespace) | | | | {ss_rss:.1f} | |")
        if werr.strip():
            print("watch stderr:", werr.strip().splitlines()[-1])
    finally:
        if tui_pid is not None:
            os.kill(tui_pid, signal.SIGKILL)
            os.waitpid(tui_pid, 0)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
