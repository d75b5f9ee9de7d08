"""short-writes: 1 MiB sent on a non-blocking socket with a tiny SO_SNDBUF to a slow reader. send() takes
what fits and returns that count: each short write is progress, the loop sends the rest once the socket
is writable again, and the reader gets every byte (SHA-256 equal). A single unchecked send() would have
sent only the first chunk and silently dropped the rest."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import time

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, four_tuple_of

TOTAL = 1 << 20
SNDBUF = 4096  # asked; the kernel doubles it (and has a floor)
RCVBUF = 4096
READ_SIZE = 16384
READ_PAUSE_S = 0.002  # the slow reader
MAX_SAMPLES = 50  # table reads while the writer waits for room


def run(ctx: ScenarioContext):
    lst = ctx.listener()
    port = lst.getsockname()[1]
    ctx.watch_port(port)
    reader = ctx.tcp_socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    reader.connect(("127.0.0.1", port))
    writer = ctx.accept(lst)
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    sndbuf = writer.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    writer.setblocking(False)
    w = four_tuple_of(writer)
    chk, _ = ctx.check_row("connection ESTABLISHED", w, "ESTABLISHED")
    yield ctx.step("server", f"setsockopt(SO_SNDBUF, {SNDBUF}) → the kernel reads back {sndbuf}; the socket is "
                   "non-blocking; the client reads slowly", why="the kernel doubles SO_SNDBUF for its own "
                   "bookkeeping; a small buffer makes every send() short", sockets=[w],
                   checks=[chk, ctx.check("SO_SNDBUF read back", 0 < sndbuf < 64 * 1024, "a small buffer",
                                          sndbuf, "syscall")], observed={"port": port, "sndbuf": sndbuf})

    payload = os.urandom(TOTAL)
    got = bytearray()
    failed: list[BaseException] = []

    def slow_reader() -> None:
        try:
            while True:
                chunk = reader.recv(READ_SIZE)
                if not chunk:
                    return
                got.extend(chunk)
                time.sleep(READ_PAUSE_S)
        except OSError as exc:
            failed.append(exc)

    th = ctx.spawn(slow_reader, "reader")
    view = memoryview(payload)
    sent = 0
    sends: list[int] = []
    max_send_q = 0
    samples = 0
    while sent < TOTAL:
        try:
            n = writer.send(view[sent:])
        except BlockingIOError:  # the send buffer is full: what the kernel holds unsent / unacknowledged
            if samples < MAX_SAMPLES:
                samples += 1
                row = ctx.row(w)
                if row is not None:
                    max_send_q = max(max_send_q, row.send_q)
            select.select([], [writer], [], 0.5)
            ctx.sleep(0)
            continue
        sends.append(n)
        sent += n
    short, left = 0, TOTAL
    for n in sends:  # a write is short when the kernel took less than what was left to send
        short += n < left
        left -= n
    first = sends[0]
    yield ctx.step("server", f"send() loop: {len(sends)} calls, {short} short writes (the first took {first} of "
                   f"{TOTAL} bytes); the rest sent as the socket became writable again",
                   why="send() returns how much the kernel accepted: a short write is progress, not an error",
                   sockets=[w],
                   checks=[ctx.check("the first send() was short", first < TOTAL, f"< {TOTAL}", first, "syscall"),
                           ctx.check("every byte sent in the end", sent == TOTAL, TOTAL, sent, "syscall"),
                           ctx.check("the kernel queued bytes on the writer's row meanwhile", max_send_q > 0,
                                     "Send-Q > 0", f"Send-Q up to {max_send_q}", "table")],
                   observed={"sends": len(sends), "short_writes": short, "first_send": first,
                             "max_send_q": max_send_q, "unchecked_loss": TOTAL - first})

    writer.shutdown(socket.SHUT_WR)
    while th.is_alive():
        th.join(0.05)
        ctx.sleep(0)
    same = hashlib.sha256(bytes(got)).hexdigest() == hashlib.sha256(payload).hexdigest()
    yield ctx.step("client", f"recv() until EOF: {len(got)} bytes, SHA-256 {'equal' if same else 'DIFFERENT'}; a "
                   f"single unchecked send() would have delivered {first} bytes and lost {TOTAL - first}",
                   why="code that ignores send()'s return value loses data exactly when the peer is slow",
                   sockets=[w],
                   checks=[ctx.check("nothing lost (SHA-256 equal)", same and len(got) == TOTAL and not failed,
                                     f"{TOTAL} bytes, same SHA-256",
                                     f"{len(got)} bytes" + (", same SHA-256" if same else "")
                                     + (f", {failed[0]}" if failed else ""), "syscall")],
                   observed={"received": len(got), "sha256_equal": same})


SCENARIO = Scenario(name="short-writes", summary="a large send into a tiny SO_SNDBUF to a slow reader: every short "
                    "write is progress, nothing lost; what one unchecked send() would have lost", run=run)
