"""close-wait: a server that never closes. CLOSE_WAIT on the server, FIN_WAIT2 on the client — and what
ends each: only the server's close() ends CLOSE_WAIT (→ LAST_ACK); the orphaned client's FIN_WAIT2 ends by
the kernel's tcp_fin_timeout timer (stated from the table, not waited for) or, here, by the server's FIN."""

from __future__ import annotations

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, read_sysctl

HOLD_S = 1.0  # how long the server "forgets" to close


def run(ctx: ScenarioContext):
    pair = ctx.loopback_pair()
    port, client, server, c, s = pair.port, pair.client, pair.server, pair.c, pair.s
    chk, _ = ctx.check_row("connection ESTABLISHED", s, "ESTABLISHED")
    yield ctx.step("client", f"connect(127.0.0.1:{port}); server: accept()", sockets=[c, s], checks=[chk])

    client.close()
    ctx.release(client)
    chk_cw, _ = ctx.check_row("server is CLOSE_WAIT", s, "CLOSE_WAIT")
    chk_fw, fw = ctx.check_row("client is FIN_WAIT2", c, "FIN_WAIT2")
    yield ctx.step("client", "close() → FIN; the server's kernel ACKs it at once: server CLOSE_WAIT, client "
                   "FIN_WAIT2", why="the kernel acknowledges the FIN; only the application can answer with its own",
                   sockets=[c, s], checks=[chk_cw, chk_fw])

    ctx.sleep(HOLD_S)
    still_cw, _ = ctx.check_row(f"server still CLOSE_WAIT after {HOLD_S} s", s, "CLOSE_WAIT", timeout=0)
    fin_timeout = read_sysctl("net/ipv4/tcp_fin_timeout")
    fw_now = ctx.row(c)
    left = fw_now.timer.expires_ms if fw_now is not None and fw_now.timer is not None else None
    timer_ok = fin_timeout is not None and left is not None and 0 < left <= fin_timeout * 1000
    yield ctx.step("server", f"never calls close(): the socket stays CLOSE_WAIT (no timer ends it). The orphaned "
                   f"client's FIN_WAIT2 has a timer: {left} ms left of tcp_fin_timeout = {fin_timeout} s, then the "
                   "kernel frees it without waiting for the server",
                   why="CLOSE_WAIT means 'the peer is done, the application has not closed': a pile of them is "
                   "an application bug (a leaked fd), never a network problem", sockets=[c, s],
                   checks=[still_cw, ctx.check(f"client's FIN_WAIT2 timer ≤ tcp_fin_timeout ({fin_timeout} s)",
                                               timer_ok, f"0 < timer ≤ {None if fin_timeout is None else fin_timeout * 1000} ms",
                                               f"{left} ms", "table")],
                   observed={"fin_timeout_s": fin_timeout, "fin_wait2_timer_ms": left, "port": port})

    server.close()
    ctx.release(server)
    chk_path = ctx.check_path("server went CLOSE_WAIT → LAST_ACK → CLOSE", s, ["CLOSE_WAIT", "LAST_ACK", "CLOSE"],
                              steady=["CLOSE_WAIT"])
    chk_gone = ctx.check_gone("server's socket is gone", s)
    chk_tw, _ = ctx.check_row("client's FIN_WAIT2 became TIME_WAIT", c, "TIME_WAIT")
    yield ctx.step("server", "close() at last → FIN: server LAST_ACK, then the client's ACK frees it; the client "
                   "leaves FIN_WAIT2 for TIME_WAIT", sockets=[c, s], checks=[chk_path, chk_gone, chk_tw])


SCENARIO = Scenario(name="close-wait", summary="a server that never closes: CLOSE_WAIT on the server, FIN_WAIT2 on "
                    "the client, and what ends each", run=run)
