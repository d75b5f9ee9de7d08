"""time-wait: handshake, data, graceful close. The active closer ends in TIME_WAIT with its timer counting
down; the passive side goes CLOSE_WAIT → LAST_ACK → gone."""

from __future__ import annotations

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext

TIMER_GAP_S = 0.3  # between the two reads of the TIME_WAIT timer


def run(ctx: ScenarioContext):
    pair = ctx.loopback_pair()
    port, client, server, c, s = pair.port, pair.client, pair.server, pair.c, pair.s
    chk_c, _ = ctx.check_row("client is ESTABLISHED", c, "ESTABLISHED")
    chk_s, _ = ctx.check_row("server's accepted socket is ESTABLISHED", s, "ESTABLISHED")
    yield ctx.step("client", f"connect(127.0.0.1:{port}) → SYN, SYN-ACK, ACK; server: accept() returns the "
                   "connection", why="the three-way handshake completes in the kernel before accept()",
                   sockets=[c, s], checks=[chk_c, chk_s])

    client.sendall(b"hello")
    got = server.recv(64)
    server.sendall(got)
    back = client.recv(64)
    yield ctx.step("client", f"send(b'hello') → server recv() {len(got)} bytes, echoes them; client recv() "
                   f"{len(back)} bytes", sockets=[c, s],
                   checks=[ctx.check("the echo came back", back == b"hello", "b'hello'", repr(back), "syscall")])

    client.close()
    ctx.release(client)
    chk_fw, _ = ctx.check_row("client (active closer) waits in FIN_WAIT2", c, "FIN_WAIT2")
    chk_cw, _ = ctx.check_row("server (passive side) is CLOSE_WAIT", s, "CLOSE_WAIT")
    chk_cp = ctx.check_path("client went ESTABLISHED → FIN_WAIT1 → FIN_WAIT2", c,
                            ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"],
                            steady=["ESTABLISHED", "FIN_WAIT2"])
    yield ctx.step("client", "close() → kernel sends FIN; the server's kernel ACKs it: client now FIN_WAIT2, "
                   "server CLOSE_WAIT", why="a FIN only says 'I will send no more'; the server may still send",
                   sockets=[c, s], checks=[chk_cp, chk_fw, chk_cw])

    eof = server.recv(64)
    server.close()
    ctx.release(server)
    chk_eof = ctx.check("server's recv() returns EOF (b'')", eof == b"", "b''", repr(eof), "syscall")
    chk_tw, tw1 = ctx.check_row("client ends in TIME_WAIT", c, "TIME_WAIT")
    chk_sp = ctx.check_path("server went CLOSE_WAIT → LAST_ACK → CLOSE", s,
                            ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSE"],
                            steady=["ESTABLISHED", "CLOSE_WAIT"])
    chk_gone = ctx.check_gone("server's socket is gone from the table", s)
    yield ctx.step("server", "recv() → b'' (EOF); close() → kernel sends FIN: server LAST_ACK, the client ACKs "
                   "it → server gone; client TIME_WAIT",
                   why="the side that closes first keeps TIME_WAIT (2 × MSL, 60 s on Linux) so late segments "
                   "of this connection cannot be taken for a new one", sockets=[c, s],
                   checks=[chk_eof, chk_sp, chk_gone, chk_tw])

    first = tw1.timer.expires_ms if tw1 is not None and tw1.timer is not None else None
    ctx.sleep(TIMER_GAP_S)
    tw2 = ctx.row(c)
    second = tw2.timer.expires_ms if tw2 is not None and tw2.timer is not None else None
    counting = first is not None and second is not None and 0 < second < first <= 60_000
    yield ctx.step("kernel", f"TIME_WAIT timer read from the table twice, {TIMER_GAP_S} s apart: "
                   f"{first} ms, then {second} ms", why="the kernel frees the TIME_WAIT socket when it expires",
                   sockets=[c],
                   checks=[ctx.check("the TIME_WAIT timer counts down", counting,
                                     "second read < first read ≤ 60000 ms", f"{first} ms → {second} ms", "table")],
                   observed={"time_wait_timer_ms": [first, second], "port": port})


SCENARIO = Scenario(name="time-wait", summary="graceful close: the active closer ends in TIME_WAIT (timer counting "
                    "down), the passive side goes CLOSE_WAIT → LAST_ACK → gone", run=run)
