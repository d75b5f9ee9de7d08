"""blocking-echo-stall: the textbook blocking echo server (accept, then recv/send until that client
leaves, then the next accept) beside sockmon's selector engine. A first client that connects and stays
idle stalls the second for as long as it stays idle — the second's bytes wait in the kernel (the
listener's accept queue and the connection's Recv-Q say so); the engine answers the second at once."""

from __future__ import annotations

import socket
import time

from sockmon.core.lab.scenarios.base import Interrupted, Scenario, ScenarioContext, four_tuple_of, reverse

IDLE_S = 1.0  # how long the first client stays idle
ENGINE_LIMIT_MS = 50.0
PING = b"ping\n"


def _blocking_server(ctx: ScenarioContext, lst: socket.socket) -> None:
    """One client at a time: the loop every tutorial starts with."""
    try:
        while True:
            conn = ctx.accept(lst)
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                conn.sendall(data)
            conn.close()
            ctx.release(conn)
    except (OSError, Interrupted):  # the context closed the listener: the scenario is over
        return


def _ask(client: socket.socket) -> tuple[bytes, float]:
    t0 = time.monotonic()
    client.sendall(PING)
    got = b""
    while len(got) < len(PING):
        chunk = client.recv(64)
        if not chunk:
            break
        got += chunk
    return got, (time.monotonic() - t0) * 1000.0


def run(ctx: ScenarioContext):
    lst = ctx.listener()
    port = lst.getsockname()[1]
    ctx.watch_port(port)
    ctx.spawn(lambda: _blocking_server(ctx, lst), "blocking-server")
    first = ctx.tcp_socket()
    first.connect(("127.0.0.1", port))
    f = four_tuple_of(first)
    chk_f, _ = ctx.check_row("first client ESTABLISHED (the server is now busy in its recv())", f, "ESTABLISHED")
    yield ctx.step("client", f"first client: connect(127.0.0.1:{port}), then sends nothing for {IDLE_S} s",
                   why="the blocking server accepted it and now sits in recv() on this one connection",
                   sockets=[f], checks=[chk_f], observed={"port": port, "idle_s": IDLE_S})

    second = ctx.tcp_socket(timeout=IDLE_S + 5)
    second.connect(("127.0.0.1", port))
    sc = four_tuple_of(second)
    ss = reverse(sc)
    t0 = time.monotonic()
    second.sendall(PING)
    chk_est, _ = ctx.check_row("second client ESTABLISHED anyway (the kernel did the handshake)", sc, "ESTABLISHED")
    ctx.sleep(0.1)
    row = ctx.row(ss)
    lrow = next((r for r in ctx.table(port) if r.state_name == "LISTEN" and r.sport == port), None)
    yield ctx.step("client", f"second client: connect() → ESTABLISHED, send({PING!r}) → no answer: nobody "
                   "accept()ed it", why="the kernel completes the handshake and queues the bytes; only the "
                   "application can accept() and read them", sockets=[sc, ss],
                   checks=[chk_est,
                           ctx.check("it waits in the listener's accept queue", lrow is not None and lrow.recv_q >= 1,
                                     "Recv-Q ≥ 1", "no listener" if lrow is None else f"Recv-Q {lrow.recv_q}",
                                     "table"),
                           ctx.check("its bytes wait unread in the kernel", row is not None and row.recv_q == len(PING),
                                     f"Recv-Q {len(PING)}", "no such socket" if row is None else f"Recv-Q {row.recv_q}",
                                     "table")])

    ctx.sleep(max(0.0, IDLE_S - (time.monotonic() - t0)))
    first.close()
    ctx.release(first)
    got = b""
    while len(got) < len(PING):
        chunk = second.recv(64)
        if not chunk:
            break
        got += chunk
    blocking_ms = (time.monotonic() - t0) * 1000.0
    yield ctx.step("client", f"first client: close() after {IDLE_S} s idle → the server's recv() returns b'', it "
                   f"accept()s the second and echoes: {got!r} after {blocking_ms:.0f} ms",
                   why="one thread, blocking calls: the server serves exactly one client at a time", sockets=[sc],
                   checks=[ctx.check("the echo came back", got == PING, repr(PING), repr(got), "syscall"),
                           ctx.check(f"the second client waited as long as the first stayed idle ({IDLE_S} s)",
                                     blocking_ms >= IDLE_S * 1000.0 - 5, f"≥ {IDLE_S * 1000:.0f} ms",
                                     f"{blocking_ms:.1f} ms", "clock")],
                   observed={"blocking_wait_ms": round(blocking_ms, 3)})

    from sockmon.core.lab.server import ServerEngine

    engine = ServerEngine("127.0.0.1", 0, mode="echo", numeric=True).start()
    ctx.defer("the echo engine", engine.stop)
    eport = engine.address[1]
    ctx.watch_port(eport)
    idle = ctx.tcp_socket()
    idle.connect(("127.0.0.1", eport))
    i = four_tuple_of(idle)
    other = ctx.tcp_socket()
    other.connect(("127.0.0.1", eport))
    o = four_tuple_of(other)
    got, engine_ms = _ask(other)
    chk_idle, _ = ctx.check_row("the idle first client is still connected", i, "ESTABLISHED")
    yield ctx.step("client", f"sockmon's engine (one thread, a selector) on port {eport}: an idle first client, then "
                   f"a second sends {PING!r} → echoed after {engine_ms:.2f} ms",
                   why="an event loop waits on every socket at once and serves whichever is ready",
                   sockets=[i, o],
                   checks=[chk_idle, ctx.check("the echo came back", got == PING, repr(PING), repr(got), "syscall"),
                           ctx.check(f"answered at once (< {ENGINE_LIMIT_MS:.0f} ms)", engine_ms < ENGINE_LIMIT_MS,
                                     f"< {ENGINE_LIMIT_MS:.0f} ms", f"{engine_ms:.2f} ms", "clock")],
                   observed={"engine_wait_ms": round(engine_ms, 3), "engine_port": eport})


SCENARIO = Scenario(name="blocking-echo-stall", summary="a blocking echo server beside sockmon's engine: an idle first "
                    "client stalls the second on one, not on the other", run=run)
