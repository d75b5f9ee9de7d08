"""Benchmark: does the tracepoint reader keep every transition at 5k / 10k / 20k connections/s? (not a test)

Generator processes each open/close loopback connections on their own listener at a fixed rate
(both sides close: 10 transitions per connection); a reader process runs `TransitionTracer` with
the binary reader (``per_cpu/cpuN/trace_pipe_raw``) or the text one (``trace_pipe``) and drains it
every DRAIN seconds (watch: 0.05, collector: 0.1) in bounded batches (`batches()`, as `sockmon watch`
does), counting transitions on the generators' ports. With ``--stall S`` the reader reads nothing for
its first S seconds, so a backlog piles up in the kernel (a starved reader). Reports captured /
expected, kernel overruns, the reader's CPU (% of one core), its largest batch and its peak RSS.
The tracepoint is host-wide: other loopback traffic on the machine is read (and paid for) too, only
the generators' ports are counted.

    sudo python3 bench/bench_tracepoint.py [--rate 5000,10000,20000] [--reader binary,text] [--seconds 5]
        [--drain 0.1] [--stall 0,3] [--gens 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time


def generator(rate: float, seconds: float) -> None:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
    addr = lst.getsockname()
    print(addr[1], flush=True)
    sys.stdin.readline()  # "go"
    n = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * rate)
        while n < due:
            c = socket.socket()  # not create_connection: no getaddrinfo per connection
            c.connect(addr)
            s, _ = lst.accept()
            c.close()
            s.close()
            n += 1
        time.sleep(0.0005)
    print(json.dumps({"connections": n, "elapsed": time.monotonic() - t0}), flush=True)
    lst.close()


def reader(ports: set[int], drain: float, stall: float, kind: str) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from sockmon.core.table.tracepoint import TransitionTracer

    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    counts = 0
    max_batch = 0
    with TransitionTracer(reader=kind) as tr:
        assert tr.source == kind, tr.note
        print(tr.name, flush=True)
        c0 = time.process_time()
        time.sleep(stall)
        while True:
            for got in tr.batches():
                max_batch = max(max_batch, len(got))
                counts += sum(1 for t in got if t.dport and (t.sport in ports or t.dport in ports))
                if stop:
                    break
            if stop:
                break
            time.sleep(drain)
        for got in tr.batches():
            counts += sum(1 for t in got if t.dport and (t.sport in ports or t.dport in ports))
        cpu = time.process_time() - c0
        print(json.dumps({"captured": counts, "overruns": tr.overruns, "cpu_s": cpu, "max_batch": max_batch,
                          "max_batch_kib": tr.batch_bytes_max / 1024,
                          "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def run(rate: float, seconds: float, drain: float, gens: int, stall: float, kind: str) -> dict:
    me = os.path.abspath(__file__)
    gprocs = [subprocess.Popen([sys.executable, me, "--gen", str(rate / gens), str(seconds)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(gens)]
    ports = {int(p.stdout.readline()) for p in gprocs}
    rproc = subprocess.Popen([sys.executable, me, "--reader-proc", ",".join(map(str, ports)), str(drain), str(stall), kind],
                             stdout=subprocess.PIPE, text=True)
    instance = rproc.stdout.readline().strip()
    time.sleep(0.2)
    t0 = time.monotonic()
    for p in gprocs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.stdout.readline()) for p in gprocs]
    wall = time.monotonic() - t0
    for p in gprocs:
        p.wait()
    time.sleep(max(0.3, 3 * drain, stall - wall + 0.5))
    rproc.send_signal(signal.SIGTERM)
    r = json.loads(rproc.stdout.readline())
    rproc.wait()
    conns = sum(x["connections"] for x in results)
    left = os.path.exists(f"/sys/kernel/tracing/instances/{instance}")
    return {"reader": kind, "drain": drain, "stall": stall, "connections": conns, "rate": conns / wall, "expected": 10 * conns, **r,
            "reader_cpu_pct": 100 * r["cpu_s"] / wall, "instance_left": left}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="5000,10000,20000", help="connections/s (comma list)")
    ap.add_argument("--reader", dest="kinds", default="binary,text", help="binary and/or text (comma list)")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--drain", default="0.1")
    ap.add_argument("--gens", type=int, default=4)
    ap.add_argument("--stall", default="0", help="seconds the reader reads nothing at first (comma list)")
    ap.add_argument("--gen", nargs=2)
    ap.add_argument("--reader-proc", nargs=4)
    a = ap.parse_args()
    if a.gen:
        generator(float(a.gen[0]), float(a.gen[1]))
        return 0
    if a.reader_proc:
        r = a.reader_proc
        reader({int(x) for x in r[0].split(",")}, float(r[1]), float(r[2]), r[3])
        return 0
    print(f"# tracepoint reader benchmark — {os.cpu_count()} CPUs, Linux {os.uname().release}, "
          f"{a.seconds:.0f} s per row, {a.gens} generator processes (the tracepoint is host-wide)")
    print()
    print("| reader | target conn/s | drain every | stall s | connections | achieved conn/s | expected transitions | "
          "captured | lost % | overruns | reader CPU % | largest batch | reader peak RSS MB | instance left |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rate, stall, drain, kind in itertools.product((float(x) for x in a.rate.split(",")),
                                                      [float(x) for x in a.stall.split(",")],
                                                      [float(x) for x in a.drain.split(",")], a.kinds.split(",")):
        r = run(rate, a.seconds, drain, a.gens, stall, kind)
        lost = 100 * (r["expected"] - r["captured"]) / r["expected"] if r["expected"] else 0
        print(f"| {kind} | {rate:.0f} | {drain * 1000:.0f} ms | {stall:g} | {r['connections']} | {r['rate']:.0f} | "
              f"{r['expected']} | {r['captured']} | {lost:.2f} | {r['overruns']} | {r['reader_cpu_pct']:.0f} | "
              f"{r['max_batch']} ({r['max_batch_kib']:.0f} KiB) | {r['maxrss_mb']:.0f} | {r['instance_left']} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
