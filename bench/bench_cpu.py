"""Benchmark: CPU per second of whole sockmon processes at N sockets beside `ss -tanoi` once a second (not a test).

As root. Re-runs itself in a private network namespace (only ``lo`` up; removed at the end) and, for each N
of ``--sizes``, holds N loopback sockets there (N/2 connections, both ends, over helper processes:
bench/connpool.py). The sockmon processes are started inside that namespace, so they see only these
sockets and monitor "their own namespace" (what the event-driven table needs). In one run, per N:

- ``ss -tanoi`` run once a second (output to /dev/null) for S seconds: the CPU (user + system, from
  ``wait4``) of those ss processes divided by the wall seconds. The reference: ratio 1.00.
- the real TUI, ``python -m sockmon`` (the ``sockmon`` console script's ``main``), in a pseudo-terminal of
  200×50 (TERM=xterm-256color; its output is read and thrown away by a thread, so it never blocks on the
  terminal) at the default 1 s refresh: W seconds of warm-up (first full dump, owner cache), then its
  CPU over S seconds from /proc/PID/stat (utime + stime: every thread of the process). Twice: with
  SOCKMON_EVENT_TABLE=0 (every tick a full dump) and SOCKMON_EVENT_TABLE=1 (the event-driven table,
  core/table/evtable.py). Peak RSS is VmHWM from /proc/PID/status. It is ended with ``q`` typed into the
  terminal (SIGTERM by pid if still alive after 15 s; the note says which).
- ``python -m sockmon watch`` (headless transition stream; stdout to a pipe that is read and counted)
  over the same S seconds after a short warm-up, ended with SIGTERM (exit status checked).

``--churn R``: a helper process in the namespace opens and closes R loopback connections a second (FIN,
client first) throughout, so the event-driven table has births and deaths to follow. Their TIME_WAIT
sockets live 60 s, so the churn runs ``--settle`` seconds (default 62) before the first measurement: every
measurement then sees N plus a level number of TIME_WAIT sockets (the notes say how many rows ss saw).

The tracepoint is host-wide: other processes' connection churn on the machine (other work, other
namespaces) costs the tracepoint readers lookups and parsing too — on a shared machine the TUI and
``watch`` figures include that (``watch``'s "transitions written" counts them). At the end the tracefs
instances left are listed (``/sys/kernel/tracing/instances``): a ``sockmon-<pid>-…`` instance of a pid this
benchmark started would be a leak.

Run it with the Python whose ``sockmon`` you mean to measure (the banner prints which tree that is):

    sudo /path/to/venv/bin/python bench/bench_cpu.py [--sizes 2000,20000,60000] [--seconds 30] [--warmup 10]
                                                      [--churn 200]
    sudo python3 bench/bench_cpu.py --rev main ...       # the sockmon of a git revision (exported), any Python
    python3 bench/bench_cpu.py --sizes 200 --seconds 3 --warmup 3     # a quick smoke check (< 1 min)
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from connpool import ConnPool, print_banner, reexec_in_private_netns  # noqa: E402

COLS, ROWS = 200, 50
CLK_TCK = os.sysconf("SC_CLK_TCK")
TRACEFS_INSTANCES = ("/sys/kernel/tracing/instances", "/sys/kernel/debug/tracing/instances")
PIDFILE_ENV = "SOCKMON_BENCH_PIDFILE"  # the inner run writes the sockmon pids it started here
STARTED: set[int] = set()  # the sockmon pids this process started


# ---------------------------------------------------------------- churn helper (a separate process)

def churn_main(rate: float) -> None:
    """RATE connections a second opened and closed (FIN from both ends, client first) until stdin closes."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lst = socket.create_server(("127.0.0.1", 0), backlog=4096)
    addr = lst.getsockname()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    made = 0
    t0 = time.monotonic()
    batch = max(1, int(rate / 50))  # about 50 batches a second
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not stop.is_set():
        due = int((time.monotonic() - t0) * rate)
        while made < due and not stop.is_set():
            pairs = []
            for _ in range(min(batch, due - made)):
                c = socket.create_connection(addr)
                s, _ = lst.accept()
                pairs.append((c, s))
            for c, s in pairs:
                c.close()  # FIN: the client's end goes to TIME_WAIT
                s.close()
            made += len(pairs)
        stop.wait(0.02)
    sys.stdout.write(f"{made}\n")
    sys.stdout.flush()


class Churn:
    """The churn helper process (nothing when rate is 0)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.proc: subprocess.Popen | None = None
        self.made = 0

    def __enter__(self) -> Churn:
        if self.rate > 0:
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--churn-child", str(self.rate)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if self.proc.stdout.readline().strip() != "ready":
                raise SystemExit("churn helper failed to start")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        self.proc.stdin.close()
        try:
            self.made = int((self.proc.stdout.read() or "0").strip() or 0)
            self.proc.wait(10)
        except (subprocess.TimeoutExpired, ValueError):
            self.proc.kill()  # our own child, by its Popen
            self.proc.wait()


# ---------------------------------------------------------------- measuring

def proc_cpu_s(pid: int) -> float:
    """utime + stime (+ waited-for children) of the whole process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def proc_status_mb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ss_rows() -> int:
    out = subprocess.run(["ss", "-tanH"], capture_output=True, check=True).stdout
    return out.count(b"\n")


def ss_cpu_per_s(seconds: float) -> float:
    """``ss -tanoi`` to /dev/null once a second for ``seconds``: CPU seconds (wait4) per wall second."""
    cpu = 0.0
    t0 = time.monotonic()
    runs = max(1, round(seconds))
    for i in range(runs):
        delay = t0 + i - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        proc = subprocess.Popen(["ss", "-tanoi"], stdout=subprocess.DEVNULL)
        _pid, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"ss -tanoi exited {proc.returncode}")
        cpu += ru.ru_utime + ru.ru_stime
    time.sleep(max(0.0, t0 + runs - time.monotonic()))  # the last second's wall time counts too
    return cpu / (time.monotonic() - t0)


class Drain(threading.Thread):
    """Reads an fd until EOF / EIO: counts bytes, remembers the tail and whether ``marks`` were seen."""

    def __init__(self, fd: int, marks: tuple[bytes, ...] = ()) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.nbytes = 0
        self.lines = 0
        self.tail = b""
        self.seen: set[bytes] = set()
        self.marks = marks
        self.start()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                return
            if not chunk:
                return
            self.nbytes += len(chunk)
            self.lines += chunk.count(b"\n")
            self.tail = (self.tail + chunk)[-8192:]
            for m in self.marks:
                if m in self.tail:
                    self.seen.add(m)


def note_pid(pid: int) -> None:
    STARTED.add(pid)
    path = os.environ.get(PIDFILE_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"{pid}\n")


def sockmon_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sockmon", *args]


def measure_tui(event_table: bool, warmup: float, seconds: float) -> dict:
    """The real TUI in a 200×50 pseudo-terminal: CPU per second over ``seconds`` after ``warmup``."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS),
               SOCKMON_EVENT_TABLE="1" if event_table else "0")
    env.pop(PIDFILE_ENV, None)

    def as_ctty() -> None:  # in the child: the pty becomes its controlling terminal (a new session)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(sockmon_argv(), stdin=slave, stdout=slave, stderr=slave, env=env, cwd="/",
                            start_new_session=True, preexec_fn=as_ctty)
    os.close(slave)
    note_pid(proc.pid)
    drain = Drain(master, marks=(b"trace", b"infer"))
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            raise SystemExit(f"the TUI exited {proc.returncode} during the warm-up: "
                             f"{drain.tail[-2000:].decode(errors='replace')}")
        c0, t0, b0 = proc_cpu_s(proc.pid), time.monotonic(), drain.nbytes
        time.sleep(seconds)
        c1, t1 = proc_cpu_s(proc.pid), time.monotonic()
        hwm = proc_status_mb(proc.pid, "VmHWM")
        out = {"cpu_per_s": (c1 - c0) / (t1 - t0), "hwm_mb": hwm, "bytes": drain.nbytes - b0,
               "source": "trace" if b"trace" in drain.seen else ("infer" if b"infer" in drain.seen else "?")}
        # end it: q through the terminal, SIGTERM by pid if it is still alive
        tq = time.monotonic()
        os.write(master, b"q")
        try:
            rc = proc.wait(15)
            out["end"] = f"`q`: exit {rc} in {time.monotonic() - tq:.1f} s"
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGTERM)
            rc = proc.wait(15)
            out["end"] = f"`q` ignored for 15 s; SIGTERM: exit {rc}"
        return out
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # our own child, by pid
            proc.wait()
        os.close(master)
        drain.join(5)


def measure_watch(warmup: float, seconds: float) -> dict:
    """``sockmon watch`` with stdout to a pipe read by a thread: CPU per second and RSS over ``seconds``."""
    env = dict(os.environ)
    env.pop(PIDFILE_ENV, None)
    env.pop("SOCKMON_EVENT_TABLE", None)
    proc = subprocess.Popen(sockmon_argv("watch"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/")
    note_pid(proc.pid)
    out_drain = Drain(proc.stdout.fileno())
    err_drain = Drain(proc.stderr.fileno())
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            raise SystemExit(f"sockmon watch exited {proc.returncode}: {err_drain.tail.decode(errors='replace')}")
        c0, t0, l0 = proc_cpu_s(proc.pid), time.monotonic(), out_drain.lines
        time.sleep(seconds)
        c1, t1 = proc_cpu_s(proc.pid), time.monotonic()
        out = {"cpu_per_s": (c1 - c0) / (t1 - t0), "rss_mb": proc_status_mb(proc.pid, "VmRSS"),
               "hwm_mb": proc_status_mb(proc.pid, "VmHWM"), "lines": out_drain.lines - l0}
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
        out_drain.join(5)
        err_drain.join(5)
        err = err_drain.tail.decode(errors="replace").strip().splitlines()
        out["end"] = f"SIGTERM: exit {rc}" + (f"; stderr: {err[-1][:120]}" if err else "")
        return out
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # our own child, by pid
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def collector_mode(event_table: bool) -> str:
    """What a Collector made under this SOCKMON_EVENT_TABLE does ("events" / "dump"): a renamed or ignored
    switch shows in the notes instead of two rows that measure the same thing."""
    code = ("from sockmon.core.table.collector import Collector\n"
            "c = Collector(on_update=print, start=False)\n"
            "print('events' if getattr(c, 'event_table', False) else 'dump')\nc.stop()")
    env = dict(os.environ, SOCKMON_EVENT_TABLE="1" if event_table else "0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/")
    return out.stdout.strip() or f"? ({out.stderr.strip().splitlines()[-1:]})"


def run_sizes(sizes: list[int], seconds: float, warmup: float, churn: float, settle: float) -> None:
    where = subprocess.run(sockmon_argv_check(), capture_output=True, text=True, cwd="/").stdout.strip()
    rev = subprocess.run(["git", "-C", where, "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip()
    where += f" (git {rev})" if rev else ""
    if os.environ.get("SOCKMON_BENCH_REV"):
        where = f"git revision {os.environ['SOCKMON_BENCH_REV']} exported to {where}"
    print_banner("whole-process CPU per second at 1 s refresh",
                 f"measuring {where}; per N: ss -tanoi 1/s, then the TUI (200×50 pty, {warmup:g} s warm-up) "
                 f"with full dumps, then event-driven, then `sockmon watch`, each over {seconds:g} s; "
                 f"churn {churn:g} connections/s (FIN)" + (f", {settle:g} s before measuring" if churn else ""),
                 ["N sockets", "what", "CPU s per s (one core = 1.0)", "ratio to ss", "peak RSS MB", "notes"])
    modes = {ev: collector_mode(ev) for ev in (False, True)}
    for n in sizes:
        with ConnPool(n), Churn(churn) as ch:
            time.sleep(settle if churn else 0.5)  # TIME_WAIT sockets live 60 s: let their number level off
            ss = ss_cpu_per_s(seconds)
            rows = ss_rows()
            print(f"| {n} | `ss -tanoi` once a second | {ss:.3f} | 1.00 | | {rows} rows seen by ss |", flush=True)
            for label, ev in (("TUI, every tick a full dump", False), ("TUI, event-driven table", True)):
                r = measure_tui(ev, warmup, seconds)
                print(f"| {n} | {label} | {r['cpu_per_s']:.3f} | {r['cpu_per_s'] / ss:.2f} | {r['hwm_mb']:.0f} | "
                      f"collector: {modes[ev]}; status bar source: {r['source']}; {r['bytes'] / seconds / 1024:.0f} KiB/s to the terminal; "
                      f"{r['end']}; {ss_rows()} rows |", flush=True)
            w = measure_watch(min(warmup, 3.0), seconds)
            print(f"| {n} | `sockmon watch` | {w['cpu_per_s']:.3f} | {w['cpu_per_s'] / ss:.2f} | {w['hwm_mb']:.0f} | "
                  f"RSS {w['rss_mb']:.0f} MB at the end; {w['lines']} transitions written; {w['end']} |",
                  flush=True)
        if churn:
            print(f"|   | churn helper: {ch.made} connections opened and closed |  |  |  |  |", flush=True)


def sockmon_argv_check() -> list[str]:
    return [sys.executable, "-c", "import sockmon.core, os; print(os.path.dirname(os.path.dirname("
            "os.path.abspath(sockmon.core.__file__))))"]


def export_sockmon(rev: str) -> str:
    """The whole sockmon package (cli, core, tui) of git revision ``rev`` laid out for PYTHONPATH."""
    root = os.path.dirname(HERE)
    tmp = tempfile.mkdtemp(prefix="bench_cpu-rev-")
    arch = subprocess.run(["git", "-C", root, "archive", rev, "sockmon", "core", "tui"],
                          capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
    pkg = os.path.join(tmp, "pkg")
    os.makedirs(pkg)
    shutil.move(os.path.join(tmp, "sockmon"), os.path.join(pkg, "sockmon"))
    for sub in ("core", "tui"):
        shutil.move(os.path.join(tmp, sub), os.path.join(pkg, "sockmon", sub))
    return tmp


def list_instances() -> tuple[str | None, list[str]]:
    for path in TRACEFS_INSTANCES:
        try:
            return path, sorted(os.listdir(path))
        except OSError:
            continue
    return None, []


def report_instances(before: list[str], pids: set[int]) -> None:
    path, after = list_instances()
    if path is None:
        print("\ntracefs instances: tracefs not mounted here, nothing to list")
        return
    print(f"\ntracefs instances left after (`ls {path}`): {', '.join(after) or 'none'}")
    leaked = []
    for name in after:
        parts = name.split("-")
        if name.startswith("sockmon-") and len(parts) >= 3 and parts[1].isdigit() and int(parts[1]) in pids:
            leaked.append(name)
    others = [x for x in after if x not in leaked]
    print(f"of those, made by a sockmon process this benchmark started (a leak): {', '.join(leaked) or 'none'}"
          + (f"; others' (there before: {len(set(others) & set(before))}): {', '.join(others)}" if others else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,20000,60000", help="socket counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=30, metavar="S", help="measurement window (default 30)")
    ap.add_argument("--warmup", type=float, default=10, metavar="W", help="TUI warm-up before measuring (default 10)")
    ap.add_argument("--churn", type=float, default=0, metavar="R",
                    help="connections a second opened and closed in the namespace meanwhile (default 0)")
    ap.add_argument("--settle", type=float, default=62, metavar="S",
                    help="with --churn: seconds of churn before measuring, so the TIME_WAIT count is level (default 62)")
    ap.add_argument("--rev", metavar="REV",
                    help="measure the sockmon of this git revision (exported to a temporary directory) instead of "
                    "the one this Python imports")
    ap.add_argument("--no-netns", action="store_true", help="run in the current namespace")
    ap.add_argument("--churn-child", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.churn_child is not None:
        churn_main(args.churn_child)
        return 0
    sizes = [int(x) for x in args.sizes.split(",")]
    if os.environ.get("SOCKMON_BENCH_NS"):  # the measuring run, inside the namespace
        run_sizes(sizes, args.seconds, args.warmup, args.churn, args.settle)
        return 0
    _path, before = list_instances()
    tree = pidfile = None
    try:
        if args.rev:
            tree = export_sockmon(args.rev)
            os.environ["PYTHONPATH"] = os.path.join(tree, "pkg")
            full = subprocess.run(["git", "-C", os.path.dirname(HERE), "rev-parse", "--short", args.rev],
                                  capture_output=True, text=True, check=True).stdout.strip()
            os.environ["SOCKMON_BENCH_REV"] = f"{args.rev} ({full})"
        if args.no_netns or os.geteuid() != 0:  # here, in the current namespace
            run_sizes(sizes, args.seconds, args.warmup, args.churn, args.settle)
            pids = STARTED
            rc = 0
        else:
            fd, pidfile = tempfile.mkstemp(prefix="bench_cpu-pids-")
            os.close(fd)
            os.environ[PIDFILE_ENV] = pidfile
            rc = reexec_in_private_netns("benchcpu-", "SOCKMON_BENCH_NS", sys.argv[1:])
            with open(pidfile) as f:
                pids = {int(x) for x in f.read().split()}
    finally:
        if pidfile is not None:
            os.unlink(pidfile)
        if tree is not None:
            shutil.rmtree(tree, ignore_errors=True)
    report_instances(before, pids)
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
