"""epoll-level-vs-edge: 90 bytes wait in a socket's receive queue; a handler reads 32 bytes once per
wakeup. Level-triggered epoll wakes it again while data remains (32, 32, 26); edge-triggered wakes it once
(32) and strands 58 bytes — still in the kernel's receive queue (the row's Recv-Q says so). A handler that
drains until EAGAIN gets all 90 in one wakeup either way."""

from __future__ import annotations

import select
import socket

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, four_tuple_of, reverse

TOTAL = 90
CHUNK = 32
QUIET_S = 0.2  # no wakeup for this long: the handler would sleep forever
MAX_WAKEUPS = 16


def _recv_q(ctx: ScenarioContext, ft) -> int | None:
    row = ctx.row(ft)
    return None if row is None else row.recv_q


def _buffered(ctx: ScenarioContext, lst: socket.socket, port: int):
    """A connection whose server side has TOTAL bytes waiting, read from the table."""
    client = ctx.tcp_socket()
    client.connect(("127.0.0.1", port))
    server = ctx.accept(lst)
    client.sendall(bytes(range(TOTAL)))
    s = reverse(four_tuple_of(client))
    for _ in range(300):
        if _recv_q(ctx, s) == TOTAL:
            break
        ctx.sleep(0.01)
    server.setblocking(False)
    return server, s


def _run_handler(ctx: ScenarioContext, sock: socket.socket, edge: bool, drain: bool) -> list[int]:
    """Bytes read per wakeup until epoll stays quiet for QUIET_S."""
    ep = select.epoll()
    try:
        ep.register(sock.fileno(), select.EPOLLIN | (select.EPOLLET if edge else 0))
        per_wakeup: list[int] = []
        while len(per_wakeup) < MAX_WAKEUPS:
            if not ep.poll(QUIET_S):
                break
            n = 0
            while True:
                try:
                    data = sock.recv(CHUNK)
                except BlockingIOError:
                    break
                n += len(data)
                if not drain or not data:
                    break
            per_wakeup.append(n)
            ctx.sleep(0)
        return per_wakeup
    finally:
        ep.close()


def run(ctx: ScenarioContext):
    lst = ctx.listener()
    port = lst.getsockname()[1]
    ctx.watch_port(port)
    variants = [("level", False, False), ("edge", True, False), ("level_drain", False, True),
                ("edge_drain", True, True)]
    expect = {"level": [32, 32, 26], "edge": [32], "level_drain": [90], "edge_drain": [90]}
    for name, edge, drain in variants:
        sock, s = _buffered(ctx, lst, port)
        before = _recv_q(ctx, s)
        reads = _run_handler(ctx, sock, edge, drain)
        left = _recv_q(ctx, s)
        stranded = TOTAL - sum(reads)
        mode = "EPOLLIN | EPOLLET (edge)" if edge else "EPOLLIN (level)"
        handler = "reads until EAGAIN" if drain else f"reads {CHUNK} bytes once"
        key = name.replace("_drain", "") + ("_drain" if drain else "")
        observed: dict[str, object] = {f"{key}_reads": reads}
        if edge:
            observed[f"{key}_stranded"] = stranded
        if name == "level":
            observed["port"] = port
        why = {"level": "level-triggered: epoll_wait reports the fd as long as data is waiting",
               "edge": "edge-triggered: one wakeup per arrival; nothing new arrives, so the rest waits forever",
               "level_drain": "draining per wakeup empties the queue: no further wakeup needed",
               "edge_drain": "with EPOLLET a handler must read until EAGAIN — then nothing is stranded"}[name]
        yield ctx.step("server", f"epoll {mode}, a handler that {handler}: bytes per wakeup {reads}, "
                       f"{stranded} left unread", why=why, sockets=[s],
                       checks=[ctx.check(f"{TOTAL} bytes were buffered before the first wakeup", before == TOTAL,
                                         f"Recv-Q {TOTAL}", f"Recv-Q {before}", "table"),
                               ctx.check("bytes read per wakeup", reads == expect[name], expect[name], reads,
                                         "syscall"),
                               ctx.check("what the kernel still holds unread", left == stranded,
                                         f"Recv-Q {stranded}", f"Recv-Q {left}", "table")],
                       observed=observed)


SCENARIO = Scenario(name="epoll-level-vs-edge", summary="90 bytes buffered, a handler reading 32 per wakeup: "
                    "level-triggered wakes until empty, edge-triggered wakes once and strands 58", run=run)
