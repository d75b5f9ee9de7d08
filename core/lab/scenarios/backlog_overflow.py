"""backlog-overflow: a listener with backlog 1 that never accepts, and more clients than its queue holds.
The accept queue (the listener row's Recv-Q against its Send-Q, the backlog) fills at backlog + 1; the next
SYN is dropped (TcpExt ListenOverflows and ListenDrops rise); that client retries its SYN in SYN_SENT and,
with TCP_SYNCNT 1, gives up with ETIMEDOUT. Runs in a private namespace: its counters count only ours."""

from __future__ import annotations

import select
import socket
import time

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, errno_name

BACKLOG = 1
SYNCNT = 1  # TCP_SYNCNT of the dropped client: a retry after 1 s, ETIMEDOUT 2 s later
GIVE_UP_S = 3.0
TOLERANCE_S = 1.0


def _connect(ctx: ScenarioContext, ns: str, port: int) -> tuple[socket.socket, tuple]:
    sock = ctx.tcp_socket(netns=ns)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, SYNCNT)
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    return sock, ("127.0.0.1", sock.getsockname()[1], "127.0.0.1", port)


def _queue(ctx: ScenarioContext, ns: str, port: int) -> tuple[int, int] | None:
    """(queued, backlog) of the listener row: Recv-Q and Send-Q of a LISTEN socket."""
    for s in ctx.table(port, netns=ns):
        if s.state_name == "LISTEN" and s.sport == port:
            return s.recv_q, s.send_q
    return None


def _wait_queue(ctx: ScenarioContext, ns: str, port: int, queued: int, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        q = _queue(ctx, ns, port)
        if (q is not None and q[0] >= queued) or time.monotonic() >= deadline:
            return q
        ctx.sleep(0.01)


def run(ctx: ScenarioContext):
    if not ctx.can_make_namespaces():
        yield ctx.step("lab", "this scenario needs root (it runs in a private network namespace): skipped",
                       checks=[ctx.check("root", False, "root", "not root", "syscall")])
        return
    ns = ctx.netns()
    lst = ctx.listener(backlog=BACKLOG, netns=ns)
    port = lst.getsockname()[1]
    ctx.watch_port(port, netns=ns)
    before = ctx.counters(netns=ns)
    q = _queue(ctx, ns, port)
    yield ctx.step("server", f"in {ns}: listen(127.0.0.1:{port}, backlog={BACKLOG}) and never accept()",
                   why="the accept queue holds connections the kernel completed and the application has not "
                   "taken yet; Linux lets it reach backlog + 1",
                   checks=[ctx.check("the listener's row shows the backlog (Send-Q)", q is not None and q[1] == BACKLOG,
                                     f"Recv-Q 0, Send-Q {BACKLOG}", "no listener" if q is None else
                                     f"Recv-Q {q[0]}, Send-Q {q[1]}", "table")],
                   observed={"port": port, "backlog": BACKLOG, "netns": ns})

    clients = []
    for i in (1, 2):
        sock, ft = _connect(ctx, ns, port)
        clients.append(ft)
        chk, _ = ctx.check_row(f"client {i} is ESTABLISHED", ft, "ESTABLISHED", netns=ns)
        q = _wait_queue(ctx, ns, port, i)
        yield ctx.step("client", f"client {i}: connect() → the kernel completes the handshake without the "
                       f"server: accept queue {q[0] if q else '?'}/{q[1] if q else '?'}", sockets=[ft],
                       checks=[chk, ctx.check(f"the accept queue holds {i}", q is not None and q[0] == i, i,
                                              "no listener" if q is None else q[0], "table")])

    sock, ft = _connect(ctx, ns, port)
    t0 = time.monotonic()
    chk_syn, row = ctx.check_row("client 3 waits in SYN_SENT", ft, "SYN_SENT", timeout=1.0, netns=ns)
    chk_over, overflows = ctx.check_counter_rose("TcpExt.ListenOverflows rose", "TcpExt.ListenOverflows", before,
                                                 netns=ns)
    chk_drop, drops = ctx.check_counter_rose("TcpExt.ListenDrops rose", "TcpExt.ListenDrops", before, netns=ns)
    q = _queue(ctx, ns, port)
    full = q is not None and q[0] == BACKLOG + 1
    yield ctx.step("client", "client 3: connect() → SYN; the accept queue is full, so the listener drops the SYN "
                   "without an answer", why="a full queue is not a refusal: the SYN is dropped and the client "
                   "retries it, hoping the server accepts meanwhile", sockets=[ft],
                   checks=[ctx.check(f"the accept queue is full ({BACKLOG + 1}/{BACKLOG})", full,
                                     f"Recv-Q {BACKLOG + 1}", "no listener" if q is None else f"Recv-Q {q[0]}",
                                     "table"), chk_syn, chk_over, chk_drop],
                   observed={"queued": None if q is None else q[0]})

    retrans = 0
    writable = False
    while time.monotonic() - t0 < GIVE_UP_S + 3 * TOLERANCE_S:
        _, w, _ = select.select([], [sock], [], 0.1)
        if w:
            writable = True
            break
        r = ctx.row(ft, netns=ns)
        if r is not None and r.timer is not None:
            retrans = max(retrans, r.timer.retrans)
        ctx.sleep(0)
    waited = time.monotonic() - t0
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    after = ctx.counters(netns=ns)
    overflows = after.get("TcpExt.ListenOverflows", 0) - before.get("TcpExt.ListenOverflows", 0)
    drops = after.get("TcpExt.ListenDrops", 0) - before.get("TcpExt.ListenDrops", 0)
    yield ctx.step("client", f"client 3: its SYN retried (timer retrans {retrans}), dropped again; after "
                   f"{waited:.2f} s SO_ERROR → {errno_name(err)}", sockets=[ft],
                   checks=[ctx.check("the SYN was retransmitted", retrans >= 1, "timer retrans ≥ 1", retrans, "table"),
                           ctx.check("client 3 gives up with ETIMEDOUT", writable and err == 110, "ETIMEDOUT",
                                     errno_name(err) if writable else "still waiting", "syscall"),
                           ctx.check(f"after ≈ {GIVE_UP_S:.0f} s (TCP_SYNCNT {SYNCNT})",
                                     abs(waited - GIVE_UP_S) <= TOLERANCE_S,
                                     f"{GIVE_UP_S:.1f} ± {TOLERANCE_S:.1f} s", f"{waited:.2f} s", "clock"),
                           ctx.check("the dropped SYN and its retry were counted (ListenDrops)", drops >= 1 + SYNCNT,
                                     f"≥ {1 + SYNCNT}", drops, "counters")],
                   observed={"listen_overflows": overflows, "listen_drops": drops, "syn_retransmits": retrans,
                             "timeout_s": round(waited, 3)})


SCENARIO = Scenario(name="backlog-overflow", summary="backlog 1, a server that never accepts, more clients than the "
                    "queue: the queue fills, ListenOverflows / ListenDrops rise, the next client's SYN times out",
                    run=run)
