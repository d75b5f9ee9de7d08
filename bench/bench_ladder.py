"""Benchmark: what the packet ladder's capture costs and keeps (not a test).

1. ``followed``: one loopback connection streams MEGABYTES with TCP_NODELAY in CHUNK-byte sends while a
   `LadderCapture` follows it: packets seen, kept (cap), evicted, dropped by the kernel (full receive
   buffer), and the capture thread's CPU time.
2. ``other``: the same stream on another connection while a capture follows an idle one: how many frames
   reach the capture socket (the BPF filter should let none through) and the stream's throughput with and
   without the capture.

    sudo python3 bench/bench_ladder.py [--megabytes 200] [--chunk 1448]
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

from sockmon.core.lab.ladder import LadderCapture


def stream(megabytes: int, chunk: int, capture_for=None) -> tuple[float, LadderCapture | None, float]:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()

    def sink() -> None:
        conn, _ = lst.accept()
        while conn.recv(1 << 20):
            pass
        conn.close()

    t = threading.Thread(target=sink)
    t.start()
    cl = socket.socket()
    cl.bind(("127.0.0.1", 0))
    cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cap = None
    if capture_for == "self":
        cap = LadderCapture(cl.getsockname()[1], lst.getsockname()[1])
    elif capture_for == "other":
        idle = socket.socket()
        idle.bind(("127.0.0.1", 0))
        cap = LadderCapture(idle.getsockname()[1], lst.getsockname()[1])
    cpu0 = time.thread_time()
    if cap is not None:
        cap.start()
    cl.connect(lst.getsockname())
    data = b"x" * chunk
    total = megabytes << 20
    start = time.perf_counter()
    sent = 0
    while sent < total:
        sent += cl.send(data)
    cl.shutdown(socket.SHUT_WR)
    t.join()
    cl.close()
    elapsed = time.perf_counter() - start
    if cap is not None:
        cap.wait_done(2.0) or cap.stop()
    lst.close()
    return elapsed, cap, time.thread_time() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--megabytes", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=1448)
    a = ap.parse_args()
    base, _, _ = stream(a.megabytes, a.chunk)
    print(f"no capture:            {a.megabytes} MiB in {base:.2f} s ({a.megabytes / base:.0f} MiB/s)")
    el, cap, _ = stream(a.megabytes, a.chunk, "other")
    print(f"capture of another:    {a.megabytes / el:.0f} MiB/s; frames reaching the capture socket: {cap.frames}")
    el, cap, _ = stream(a.megabytes, a.chunk, "self")
    print(f"capture of the stream: {a.megabytes / el:.0f} MiB/s; packets seen {cap.ladder.count}, kept "
          f"{len(cap.packets)} (cap {cap.log.cap}), evicted {cap.evicted}, kernel drops {cap.kernel_drops}, "
          f"finished {cap.ladder.finished}")


if __name__ == "__main__":
    main()
