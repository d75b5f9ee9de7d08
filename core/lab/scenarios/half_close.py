"""half-close: the client shuts down its sending side (shutdown(SHUT_WR) → FIN) and keeps reading; the server
reads EOF, keeps sending N bytes, then closes; the client reads all N bytes, then EOF."""

from __future__ import annotations

import hashlib
import os
import socket

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext

N_BYTES = 200_000  # sent by the server after the client's FIN: more than one socket buffer's worth on lo


def run(ctx: ScenarioContext):
    pair = ctx.loopback_pair()
    port, client, server, c, s = pair.port, pair.client, pair.server, pair.c, pair.s
    chk, _ = ctx.check_row("connection ESTABLISHED", c, "ESTABLISHED")
    yield ctx.step("client", f"connect(127.0.0.1:{port}); server: accept()", sockets=[c, s], checks=[chk])

    client.sendall(b"request")
    client.shutdown(socket.SHUT_WR)
    chk_fw, _ = ctx.check_row("client is FIN_WAIT2 (its sending side is closed, the socket is not)", c, "FIN_WAIT2")
    chk_cw, _ = ctx.check_row("server is CLOSE_WAIT", s, "CLOSE_WAIT")
    yield ctx.step("client", "send(b'request'); shutdown(SHUT_WR) → kernel sends FIN: client FIN_WAIT2, server "
                   "CLOSE_WAIT", why="shutdown(SHUT_WR) closes one direction only; the client can still read",
                   sockets=[c, s], checks=[chk_fw, chk_cw])

    got = b""
    while True:
        chunk = server.recv(4096)
        if not chunk:
            break
        got += chunk
    yield ctx.step("server", f"recv() → {got!r}, then b'' (EOF): the request is complete",
                   why="EOF tells the server the client sent all it will send — the whole point of a half-close",
                   sockets=[s], checks=[ctx.check("server read the request then EOF", got == b"request",
                                                  "b'request' then EOF", repr(got), "syscall")])

    payload = os.urandom(N_BYTES)
    results: dict[str, object] = {}

    def read_all() -> None:  # the client reads while the server sends (the send may not fit the buffers)
        data = bytearray()
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            results["data"] = bytes(data)
        except OSError as exc:
            results["error"] = exc

    reader = ctx.spawn(read_all, "reader")
    server.sendall(payload)
    mid, _ = ctx.check_row("server still CLOSE_WAIT while sending", s, "CLOSE_WAIT", timeout=0)
    server.close()
    ctx.release(server)
    while reader.is_alive():
        reader.join(0.05)
        ctx.sleep(0)
    data = results.get("data", b"")
    same = hashlib.sha256(data).hexdigest() == hashlib.sha256(payload).hexdigest()
    chk_all = ctx.check(f"client read all {N_BYTES} bytes, then EOF", same and len(data) == N_BYTES,
                        f"{N_BYTES} bytes, same SHA-256", f"{len(data)} bytes" + (", same SHA-256" if same else "")
                        + (f", {results['error']}" if "error" in results else ""), "syscall")
    chk_sp = ctx.check_path("server went CLOSE_WAIT → LAST_ACK → CLOSE", s, ["CLOSE_WAIT", "LAST_ACK", "CLOSE"],
                            steady=["CLOSE_WAIT"])
    chk_tw, _ = ctx.check_row("client (the first to send FIN) ends in TIME_WAIT", c, "TIME_WAIT")
    yield ctx.step("server", f"send({N_BYTES} bytes) after EOF, then close() → FIN; client recv() until b'': "
                   f"{len(data)} bytes", why="data flows in the open direction until its own FIN",
                   sockets=[c, s], checks=[mid, chk_all, chk_sp, chk_tw],
                   observed={"bytes_after_shutdown": len(data), "port": port})


SCENARIO = Scenario(name="half-close", summary="client shutdown(SHUT_WR); the server keeps sending after EOF; the "
                    "client reads everything to EOF", run=run)
