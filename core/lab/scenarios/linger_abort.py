"""linger-abort: SO_LINGER {1, 0} then close(): the kernel sends RST instead of FIN (ESTABLISHED → CLOSE, no
FIN_WAIT), the peer's recv() raises ECONNRESET, and no TIME_WAIT is left."""

from __future__ import annotations

import errno
import socket
import struct

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, errno_name


def run(ctx: ScenarioContext):
    pair = ctx.loopback_pair()
    port, client, server, c, s = pair.port, pair.client, pair.server, pair.c, pair.s
    chk, _ = ctx.check_row("client is ESTABLISHED", c, "ESTABLISHED")
    chk_s, _ = ctx.check_row("server's accepted socket is ESTABLISHED", s, "ESTABLISHED")
    yield ctx.step("client", f"connect(127.0.0.1:{port}); server: accept()", sockets=[c, s], checks=[chk, chk_s])

    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    onoff, secs = struct.unpack("ii", client.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
    yield ctx.step("client", f"setsockopt(SO_LINGER, {{1, 0}}) → the kernel reads back {{{onoff}, {secs}}}",
                   why="linger on with a zero timeout turns close() into an abort", sockets=[c],
                   checks=[ctx.check("SO_LINGER is {1, 0}", (onoff, secs) == (1, 0), "{1, 0}",
                                     f"{{{onoff}, {secs}}}", "syscall")])

    before = ctx.counters()
    client.close()
    ctx.release(client)
    chk_path = ctx.check_path("client went ESTABLISHED → CLOSE directly (RST), no FIN_WAIT", c,
                              ["ESTABLISHED", "CLOSE"], exact=True, absent=["FIN_WAIT1", "FIN_WAIT2"],
                              steady=["ESTABLISHED"])
    chk_cnt, delta = ctx.check_counter_rose("the kernel counted an abort (TcpExt.TCPAbortOnData)",
                                            "TcpExt.TCPAbortOnData", before)
    chk_gone = ctx.check_gone("no client socket left (no TIME_WAIT)", c)
    rst = ctx.counters().get("Tcp.OutRsts", 0) - before.get("Tcp.OutRsts", 0)
    yield ctx.step("client", "close() → the kernel sends RST and frees the socket at once",
                   why="an abort skips the FIN handshake: nothing unsent is delivered and no TIME_WAIT protects "
                   "the 4-tuple", sockets=[c, s], checks=[chk_path, chk_cnt, chk_gone],
                   observed={"abort_on_data_delta": delta, "out_rsts_delta": rst, "port": port})

    err = None
    try:
        got = server.recv(64)
    except OSError as exc:
        err = exc
        got = None
    seen = errno_name(err) if err is not None else f"recv returned {got!r}"
    chk_reset = ctx.check("server's recv() raises ECONNRESET", err is not None and err.errno == errno.ECONNRESET,
                          "ECONNRESET", seen, "syscall")
    chk_spath = ctx.check_path("server's socket went ESTABLISHED → CLOSE on the RST", s, ["ESTABLISHED", "CLOSE"],
                               absent=["CLOSE_WAIT"], steady=["ESTABLISHED"])
    chk_tw = ctx.check("no TIME_WAIT on either side",
                       not any(r.state_name == "TIME_WAIT" for r in ctx.table(port)
                               if r.four_tuple in (c, s)), "none", _tw_text(ctx, port, c, s), "table")
    yield ctx.step("server", f"recv() → {seen}", why="the RST tells the peer the connection is gone; its next call "
                   "reports ECONNRESET", sockets=[s], checks=[chk_reset, chk_spath, chk_tw],
                   observed={"peer_error": seen})


def _tw_text(ctx: ScenarioContext, port: int, c, s) -> str:
    rows = [r.state_name for r in ctx.table(port) if r.four_tuple in (c, s)]
    return ", ".join(rows) or "no row"


SCENARIO = Scenario(name="linger-abort", summary="SO_LINGER {1, 0} then close(): RST, ECONNRESET at the peer, no "
                    "TIME_WAIT", run=run)
