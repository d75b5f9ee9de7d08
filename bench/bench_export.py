"""Benchmark: what `sockmon export` costs per collection at N sockets, beside `ss -tanoi` (not a test).

Runs in a private network namespace (as root; removed at the end) holding N loopback sockets over helper
processes (bench/connpool.py). Times `ss -tanoi` (wall and CPU of the whole process) in the same run, then
starts the real `sockmon export --interval I` process (tracepoint transitions, and again with
``--inferred``: snapshot diffs) and, after two warm-up rounds, for W seconds:

- CPU per collection: the exporter's utime+stime (/proc/PID/stat) over the window divided by the rounds
  it finished meanwhile (each new ``sockmon_collect_timestamp_seconds`` seen by a scrape 4 times per
  interval); tracepoint drains between rounds (every transition of the host: the tracepoint sees all
  namespaces) and the scrapes of this benchmark included;
- wall per collection: ``sockmon_collect_duration_seconds`` after each round (min / median);
- scrape: wall time of ``GET /metrics`` (median; the exporter serves the newest collection, so this is what
  a Prometheus scrape waits — collecting on scrape would make it wait the collection's wall instead);
- RSS of the exporter at the end of the window and its peak (VmRSS / VmHWM).

    sudo python3 bench/bench_export.py [--sizes 20000,60000] [--interval 1] [--window 10]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from connpool import print_banner, reexec_in_private_netns  # noqa: E402

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_mb(pid: int) -> tuple[float, float]:
    vals = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def scrape(port: int) -> tuple[str, float]:
    t0 = time.perf_counter()
    with _NO_PROXY.open(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        body = resp.read().decode()
    return body, time.perf_counter() - t0


def measure_export(extra: list[str], interval: float, window: float) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "sockmon", "export", "--listen", "127.0.0.1:0", "--interval",
                             str(interval), *extra], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        port = None
        for line in proc.stderr:
            m = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise SystemExit("sockmon export did not start")
        time.sleep(2 * interval + 0.5)  # two warm-up rounds (owner cache, first diff)
        body, _ = scrape(port)
        ts0, cpu0 = metric(body, "sockmon_collect_timestamp_seconds"), cpu_seconds(proc.pid)
        walls, scrapes = [], []
        last_ts = ts0
        end = time.monotonic() + window
        while time.monotonic() < end:
            time.sleep(interval / 4)
            body, took = scrape(port)
            scrapes.append(took)
            ts = metric(body, "sockmon_collect_timestamp_seconds")
            if ts != last_ts:
                walls.append(metric(body, "sockmon_collect_duration_seconds"))
                last_ts = ts
        body, _ = scrape(port)
        ts1, cpu1 = metric(body, "sockmon_collect_timestamp_seconds"), cpu_seconds(proc.pid)
        # rounds finished between the two CPU readings: every new timestamp seen (polled 4x per interval)
        rounds = max(1, len(walls) + (ts1 != last_ts))
        rss, hwm = rss_mb(proc.pid)
        count = sum(float(v) for v in re.findall(r'^sockmon_tcp_sockets\{state="[a-z_0-9]+"\} (\S+)$', body, re.M))
        source = re.search(r'transitions="(\w+)"', body).group(1)
        return {"cpu": (cpu1 - cpu0) / rounds, "rounds": rounds, "wall_min": min(walls), "wall_med":
                statistics.median(walls), "scrape_med": statistics.median(scrapes), "rss": rss, "hwm": hwm,
                "count": int(count), "source": source}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="60000")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=7, help="ss runs")
    ap.add_argument("--no-netns", action="store_true", help="run in the current namespace")
    args = ap.parse_args()
    rc = None if args.no_netns else reexec_in_private_netns("promb", "SOCKMON_BENCH_NS", sys.argv[1:])
    if rc is not None:
        return rc
    from bench_snapshot import run_ss
    from connpool import ConnPool

    print_banner("sockmon export: cost per collection", f"--interval {args.interval:g}, {args.window:g} s window "
                 "after 2 warm-up rounds; ss: min (median) of runs",
                 ["N", "what", "rows", "CPU s / collection", "wall s / collection min (median)",
                  "scrape ms (median)", "RSS MB (peak)", "CPU × ss", "wall × ss"])
    for n in (int(x) for x in args.sizes.split(",")):
        with ConnPool(n):
            time.sleep(0.2)
            ss = run_ss(["-tanoi"], args.runs)
            ss_wall, ss_cpu = min(ss["times"]), min(ss["cpus"])
            print(f"| {n} | `ss -tanoi` | {ss['count']} | {ss_cpu:.3f} | {ss_wall:.3f} "
                  f"({statistics.median(ss['times']):.3f}) | | {ss['maxrss_kb'] / 1024:.0f} | 1.00 | 1.00 |", flush=True)
            for label, extra in (("export", []), ("export --inferred", ["--inferred"])):
                r = measure_export(extra, args.interval, args.window)
                print(f"| {n} | `sockmon {label}` ({r['source']}, {r['rounds']} rounds) | {r['count']} | "
                      f"{r['cpu']:.3f} | {r['wall_min']:.3f} ({r['wall_med']:.3f}) | {r['scrape_med'] * 1000:.1f} | "
                      f"{r['rss']:.0f} ({r['hwm']:.0f}) | {r['cpu'] / ss_cpu:.2f} | {r['wall_min'] / ss_wall:.2f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
