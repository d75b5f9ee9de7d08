"""addr-in-use: restart a listener while a TIME_WAIT socket holds its port: bind() without SO_REUSEADDR
fails with EADDRINUSE, with SO_REUSEADDR it succeeds."""

from __future__ import annotations

import errno
import socket

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, errno_name


def _bind(ctx: ScenarioContext, port: int, reuse: bool) -> tuple[socket.socket, OSError | None]:
    sock = ctx.tcp_socket()
    if reuse:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
    except OSError as exc:
        return sock, exc
    return sock, None


def run(ctx: ScenarioContext):
    pair = ctx.loopback_pair(reuseaddr=True)
    lst, port, client, server, c, s = pair.listener, pair.port, pair.client, pair.server, pair.c, pair.s
    chk, _ = ctx.check_row("connection ESTABLISHED", s, "ESTABLISHED")
    yield ctx.step("server", f"listen on 127.0.0.1:{port} (SO_REUSEADDR on, as servers do); client connects",
                   sockets=[c, s], checks=[chk])

    server.close()
    ctx.release(server)
    lst.close()
    ctx.release(lst)
    client.recv(1)  # the server's FIN: EOF
    client.close()
    ctx.release(client)
    chk_tw, _ = ctx.check_row(f"the server side's 4-tuple (port {port}) is TIME_WAIT", s, "TIME_WAIT")
    chk_l = ctx.check("no listener on the port", not any(r.state_name == "LISTEN" and r.sport == port
                                                          for r in ctx.table(port)),
                      "none", "none" if not any(r.state_name == "LISTEN" for r in ctx.table(port)) else "LISTEN",
                      "table")
    yield ctx.step("server", "close() the connection first (→ the server side is the active closer), then the "
                   "listener: the server stops", why="the active closer keeps TIME_WAIT, here on the server's port",
                   sockets=[s], checks=[chk_tw, chk_l])

    first, err = _bind(ctx, port, reuse=False)
    row = ctx.row(s)
    held = row is not None and row.state_name == "TIME_WAIT"
    chk_in_use = ctx.check("bind() without SO_REUSEADDR fails with EADDRINUSE", err is not None
                           and err.errno == errno.EADDRINUSE, "EADDRINUSE",
                           "success" if err is None else errno_name(err), "syscall")
    chk_held = ctx.check("the TIME_WAIT row holds the port at that moment", held, "TIME_WAIT",
                         "no such socket" if row is None else row.state_name, "table")
    first.close()
    ctx.release(first)
    yield ctx.step("server", f"restart: bind(127.0.0.1:{port}) without SO_REUSEADDR → "
                   f"{'success' if err is None else errno_name(err)}",
                   why="a TIME_WAIT socket still owns the local port; without SO_REUSEADDR the kernel refuses to share it",
                   sockets=[s], checks=[chk_in_use, chk_held],
                   observed={"without_reuseaddr": "success" if err is None else errno_name(err), "port": port})

    second, err2 = _bind(ctx, port, reuse=True)
    chk_ok = ctx.check("bind() + listen() with SO_REUSEADDR succeed", err2 is None, "success",
                       "success" if err2 is None else errno_name(err2), "syscall")
    listening = err2 is None and ctx.wait_row(("127.0.0.1", port, "0.0.0.0", 0), "LISTEN", timeout=1) is not None
    chk_listen = ctx.check("the new listener is in the table", listening, "LISTEN",
                           "LISTEN" if listening else "no listener", "table")
    row2 = ctx.row(s)
    chk_still = ctx.check("the TIME_WAIT row is still there beside it", row2 is not None
                          and row2.state_name == "TIME_WAIT", "TIME_WAIT",
                          "no such socket" if row2 is None else row2.state_name, "table")
    yield ctx.step("server", f"restart: setsockopt(SO_REUSEADDR, 1); bind(127.0.0.1:{port}); listen() → "
                   f"{'success' if err2 is None else errno_name(err2)}",
                   why="SO_REUSEADDR lets a listener bind a port whose only other users are TIME_WAIT sockets "
                   "(the old connection's, which also had it)", sockets=[s], checks=[chk_ok, chk_listen, chk_still],
                   observed={"with_reuseaddr": "success" if err2 is None else errno_name(err2)})
    second.close()
    ctx.release(second)


SCENARIO = Scenario(name="addr-in-use", summary="restart a listener while TIME_WAIT holds its port: EADDRINUSE "
                    "without SO_REUSEADDR, success with it", run=run)
