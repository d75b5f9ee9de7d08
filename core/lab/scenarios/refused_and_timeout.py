"""refused-and-timeout (loopback half): connect() to a closed port gets RST → ECONNREFUSED; a non-blocking
connect() returns EINPROGRESS at once, and its outcome is read with getsockopt(SO_ERROR) once the socket
turns writable — ECONNREFUSED to the closed port, 0 (connected) to a listener.

The namespace half (a connect timeout to a blackholed destination) is not built yet."""

from __future__ import annotations

import errno
import select
import socket
import time

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, errno_name


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


SCENARIO = Scenario(name="refused-and-timeout", summary="ECONNREFUSED from a closed port; non-blocking connect: "
                    "writability, then SO_ERROR (loopback half)", run=run)
