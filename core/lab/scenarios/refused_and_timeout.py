"""refused-and-timeout: connect() to a closed port gets RST → ECONNREFUSED; a non-blocking connect()
returns EINPROGRESS at once, and its outcome is read with getsockopt(SO_ERROR) once the socket turns
writable — ECONNREFUSED to the closed port, 0 (connected) to a listener. Then, in two private namespaces
joined by a veth pair whose far side blackholes its replies: the SYN goes out, nothing comes back, the
kernel retransmits it (TCP_SYNCNT = 1: one retry) and gives up with ETIMEDOUT after 1 + 2 s."""

from __future__ import annotations

import errno
import os
import secrets
import select
import socket
import time

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, errno_name, run_ip


def _closed_port(ctx: ScenarioContext) -> tuple[socket.socket, int]:
    """A port nobody listens on, kept that way: bound by our socket (so no one else takes it), never listen()ed."""
    holder = ctx.tcp_socket()
    holder.bind(("127.0.0.1", 0))
    return holder, holder.getsockname()[1]


def _nonblocking_connect(ctx: ScenarioContext, port: int) -> tuple[int, bool, int, float, tuple]:
    """(connect_ex's errno, writable within 3 s, SO_ERROR, ms until writable, the 4-tuple)."""
    sock = ctx.tcp_socket()
    sock.setblocking(False)
    t0 = time.monotonic()
    rc = sock.connect_ex(("127.0.0.1", port))
    ft = (sock.getsockname()[0], sock.getsockname()[1], "127.0.0.1", port)
    _, writable, _ = select.select([], [sock], [], 3.0)
    waited = (time.monotonic() - t0) * 1000.0
    so_error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return rc, bool(writable), so_error, waited, ft


def run(ctx: ScenarioContext):
    holder, port = _closed_port(ctx)
    ctx.watch_port(port)
    rows = [r for r in ctx.table(port) if r.sport == port]
    yield ctx.step("lab", f"bind(127.0.0.1:0) → port {port}, never listen(): a closed port",
                   why="a bound socket that does not listen answers SYNs with RST, like no socket at all",
                   checks=[ctx.check(f"port {port}'s only socket is ours, bound and not listening",
                                     [r.state_name for r in rows] == ["CLOSE"], "CLOSE",
                                     ", ".join(r.state_name for r in rows) or "no row", "table")])

    before = ctx.counters()
    sock = ctx.tcp_socket()
    err = None
    t0 = time.monotonic()
    try:
        sock.connect(("127.0.0.1", port))
    except OSError as exc:
        err = exc
    refused_ms = (time.monotonic() - t0) * 1000.0
    local = sock.getsockname()
    ft = (local[0], local[1], "127.0.0.1", port)
    seen = "connected" if err is None else errno_name(err)
    chk = ctx.check("blocking connect() fails with ECONNREFUSED", err is not None and err.errno == errno.ECONNREFUSED,
                    "ECONNREFUSED", seen, "syscall")
    chk_rst, _ = ctx.check_counter_rose("the kernel answered with a RST (Tcp.OutRsts)", "Tcp.OutRsts", before)
    chk_fail, _ = ctx.check_counter_rose("the kernel counted a failed attempt (Tcp.AttemptFails)",
                                         "Tcp.AttemptFails", before)
    checks = [chk, chk_rst, chk_fail]
    if ctx.tracing:  # connect() enters SYN_SENT before the port is picked: the tracepoint shows sport 0 there
        checks.append(ctx.check_path("client went SYN_SENT → CLOSE", ft, ["SYN_SENT", "CLOSE"]))
    sock.close()
    ctx.release(sock)
    yield ctx.step("client", f"connect(127.0.0.1:{port}) → SYN; the kernel answers RST → {seen} after "
                   f"{refused_ms:.1f} ms", why="RST to a SYN means 'nobody listens here': the failure is immediate",
                   sockets=[ft], checks=checks, observed={"refused_ms": round(refused_ms, 3), "port": port})

    rc, writable, so_error, waited, ft = _nonblocking_connect(ctx, port)
    yield ctx.step("client", f"non-blocking connect(127.0.0.1:{port}) → {errno_name(rc)}; select() → "
                   f"writable after {waited:.1f} ms; getsockopt(SO_ERROR) → {errno_name(so_error)}",
                   why="a non-blocking connect returns at once; writability only means 'finished', SO_ERROR says how",
                   sockets=[ft],
                   checks=[ctx.check("connect_ex() returns EINPROGRESS", rc == errno.EINPROGRESS, "EINPROGRESS",
                                     errno_name(rc), "syscall"),
                           ctx.check("the socket turns writable", writable, "writable", "writable" if writable else "not writable", "syscall"),
                           ctx.check("SO_ERROR is ECONNREFUSED", so_error == errno.ECONNREFUSED, "ECONNREFUSED",
                                     errno_name(so_error), "syscall"),
                           ctx.check_gone("no socket left for the refused connection", ft)],
                   observed={"nonblocking_refused_so_error": errno_name(so_error)})

    holder.close()
    ctx.release(holder)
    lst = ctx.listener()
    lport = lst.getsockname()[1]
    ctx.watch_port(lport)
    rc, writable, so_error, waited, ft = _nonblocking_connect(ctx, lport)
    chk_est, _ = ctx.check_row("the connection is ESTABLISHED", ft, "ESTABLISHED")
    yield ctx.step("client", f"non-blocking connect(127.0.0.1:{lport}) to a listener → {errno_name(rc)};"
                   f" writable after {waited:.1f} ms; SO_ERROR → 0: connected",
                   sockets=[ft],
                   checks=[ctx.check("SO_ERROR is 0", so_error == 0, "0", so_error, "syscall"), chk_est],
                   observed={"nonblocking_connect_ms": round(waited, 3)})


SYNCNT = 1  # SYN retransmissions before ETIMEDOUT: the first SYN + 1 retry, RTO 1 s then 2 s
TIMEOUT_S = 3.0  # 1 s + 2 s
TOLERANCE_S = 1.0


def _blackhole(ctx: ScenarioContext):
    ns_a, ns_b = ctx.netns(), ctx.netns()
    la, a_addr, lb, b_addr = ctx.veth(ns_a, ns_b, "10.213.0")
    run_ip("-n", ns_b, "route", "add", "blackhole", f"{a_addr}/32")
    route = " ".join(run_ip("-n", ns_b, "route", "show", "type", "blackhole").split())
    yield ctx.step("lab", f"namespaces {ns_a} ({la} {a_addr}) and {ns_b} ({lb} {b_addr}) joined by a veth pair; "
                   f"in {ns_b}: ip route add blackhole {a_addr}/32",
                   why="every reply from the far side (SYN-ACK or RST) is dropped: the client hears nothing",
                   checks=[ctx.check(f"{ns_b}'s kernel routes {a_addr} to a blackhole", f"blackhole {a_addr}" in route,
                                     f"blackhole {a_addr}", route, "routes")],
                   observed={"blackhole_netns": [ns_a, ns_b]})

    port = 40000 + secrets.randbelow(20000)
    ctx.watch_port(port, netns=ns_a)
    sock = ctx.tcp_socket(netns=ns_a)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, SYNCNT)
    sock.setblocking(False)
    t0 = time.monotonic()
    rc = sock.connect_ex((b_addr, port))
    ft = (a_addr, sock.getsockname()[1], b_addr, port)
    retrans = 0
    seen_syn_sent = False
    writable = False
    while time.monotonic() - t0 < TIMEOUT_S + 3 * TOLERANCE_S:
        _, w, _ = select.select([], [sock], [], 0.1)
        if w:
            writable = True
            break
        row = ctx.row(ft, netns=ns_a)  # the kernel's view while it waits: SYN_SENT, its timer retransmitting
        if row is not None and row.state_name == "SYN_SENT":
            seen_syn_sent = True
            if row.timer is not None:
                retrans = max(retrans, row.timer.retrans)
        ctx.sleep(0)
    waited = time.monotonic() - t0
    so_error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    checks = [
        ctx.check("connect_ex() returns EINPROGRESS", rc == errno.EINPROGRESS, "EINPROGRESS", errno_name(rc),
                  "syscall"),
        ctx.check(f"the client waited in SYN_SENT in {ns_a}, the SYN retransmitted", seen_syn_sent and retrans >= 1,
                  "SYN_SENT, timer retrans ≥ 1",
                  f"{'SYN_SENT' if seen_syn_sent else 'never SYN_SENT'}, timer retrans {retrans}", "table"),
        ctx.check("writable at last, SO_ERROR is ETIMEDOUT", writable and so_error == errno.ETIMEDOUT, "ETIMEDOUT",
                  errno_name(so_error) if writable else "not writable", "syscall"),
        ctx.check(f"the kernel gave up after ≈ {TIMEOUT_S:.0f} s (TCP_SYNCNT {SYNCNT})",
                  abs(waited - TIMEOUT_S) <= TOLERANCE_S, f"{TIMEOUT_S:.1f} ± {TOLERANCE_S:.1f} s",
                  f"{waited:.2f} s", "clock"),
    ]
    if ctx.tracing:
        checks.append(ctx.check_path("client went SYN_SENT → CLOSE", ft, ["SYN_SENT", "CLOSE"]))
    checks.append(ctx.check_gone("no socket left in the client's namespace", ft, netns=ns_a))
    yield ctx.step("client", f"in {ns_a}: setsockopt(TCP_SYNCNT, {SYNCNT}); non-blocking connect({b_addr}:{port}) → "
                   f"{errno_name(rc)}; SYN, no answer, SYN again after 1 s, no answer; after {waited:.2f} s writable, "
                   f"SO_ERROR → {errno_name(so_error)}",
                   why="silence is not a refusal: without an RST the kernel can only retry the SYN with a doubling "
                   "timeout (tcp_syn_retries, 6 by default: about 127 s) and then report ETIMEDOUT",
                   sockets=[ft], checks=checks,
                   observed={"syn_timeout_s": round(waited, 3), "syn_retransmits": retrans,
                             "blackhole_so_error": errno_name(so_error)})


def run_all(ctx: ScenarioContext):
    yield from run(ctx)
    if os.geteuid() != 0:
        yield ctx.step("lab", "the connect timeout half needs root (it creates two network namespaces): skipped")
        return
    yield from _blackhole(ctx)


SCENARIO = Scenario(name="refused-and-timeout", summary="ECONNREFUSED from a closed port; connect timeout to a "
                    "blackholed peer in a namespace; non-blocking connect: writability, then SO_ERROR",
                    run=run_all)
