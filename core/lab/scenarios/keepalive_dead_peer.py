"""keepalive-dead-peer: a connection between two private namespaces (a veth pair); the client turns keepalive
on with idle 1 s, interval 1 s, 3 probes; then the peer falls silent (its replies are blackholed). The
table shows the client's keepalive timer with its probe count going up; after idle + intvl × cnt = 4 s
the kernel gives up and the blocked recv() fails with ETIMEDOUT — measured."""

from __future__ import annotations

import errno
import select
import socket
import time

from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, errno_name, run_ip

IDLE, INTVL, CNT = 1, 1, 3
EXPECTED_S = IDLE + INTVL * CNT
TOLERANCE_S = 1.5


def run(ctx: ScenarioContext):
    if not ctx.can_make_namespaces():
        yield ctx.step("lab", "this scenario needs root (it runs in two network namespaces): skipped",
                       checks=[ctx.check("root", False, "root", "not root", "syscall")])
        return
    ns_a, ns_b = ctx.netns(), ctx.netns()
    la, a_addr, lb, b_addr = ctx.veth(ns_a, ns_b, "10.213.1")
    lst = ctx.listener(b_addr, netns=ns_b)
    port = lst.getsockname()[1]
    ctx.watch_port(port, netns=ns_a)  # the client's side: its probes leave there
    client = ctx.tcp_socket(netns=ns_a)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, IDLE)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, INTVL)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, CNT)
    ka = tuple(client.getsockopt(socket.IPPROTO_TCP, o) for o in
               (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT))
    client.connect((b_addr, port))
    server = ctx.accept(lst)
    c = (a_addr, client.getsockname()[1], b_addr, port)
    s = (b_addr, port, a_addr, c[1])
    chk, _ = ctx.check_row(f"client is ESTABLISHED in {ns_a}", c, "ESTABLISHED", netns=ns_a)
    yield ctx.step("client", f"in {ns_a}: SO_KEEPALIVE on, TCP_KEEPIDLE/INTVL/CNT → the kernel reads back "
                   f"{ka[0]}/{ka[1]}/{ka[2]}; connect({b_addr}:{port}) across the veth pair ({la} ↔ {lb}); "
                   f"server in {ns_b}: accept()", sockets=[c, s],
                   checks=[chk, ctx.check("keepalive idle/intvl/cnt read back", ka == (IDLE, INTVL, CNT),
                                          f"{IDLE}/{INTVL}/{CNT}", "/".join(map(str, ka)), "syscall")],
                   observed={"port": port, "keepalive": list(ka), "netns": [ns_a, ns_b]})

    run_ip("-n", ns_b, "route", "add", "blackhole", f"{a_addr}/32")
    t0 = time.monotonic()  # the last segment the client received was the handshake's, just before this
    route = " ".join(run_ip("-n", ns_b, "route", "show", "type", "blackhole").split())
    yield ctx.step("lab", f"the peer falls silent: in {ns_b}, ip route add blackhole {a_addr}/32",
                   why="a dead peer (crashed host, cut cable) sends nothing: no FIN, no RST; only keepalive "
                   "probes can notice", sockets=[c],
                   checks=[ctx.check(f"{ns_b} routes {a_addr} to a blackhole", f"blackhole {a_addr}" in route,
                                     f"blackhole {a_addr}", route, "routes")])

    client.setblocking(False)
    probes: list[int] = []
    error = None
    while time.monotonic() - t0 < EXPECTED_S + 3 * TOLERANCE_S:
        r, _, _ = select.select([client], [], [], 0.05)
        if r:
            try:
                client.recv(1)
            except OSError as exc:
                error = exc
            break
        row = ctx.row(c, netns=ns_a)
        if row is not None and row.timer is not None and row.timer.name == "keepalive":
            if not probes or probes[-1] != row.timer.retrans:
                probes.append(row.timer.retrans)
        ctx.sleep(0)
    waited = time.monotonic() - t0
    seen = errno_name(error) if error is not None else "no error"
    checks = [ctx.check("the keepalive timer's probe count went up in the table", len(probes) >= 2
                        and probes == sorted(probes) and probes[-1] >= CNT - 1, f"0 → … → {CNT - 1} or {CNT}",
                        " → ".join(map(str, probes)) or "no keepalive timer seen", "table"),
              ctx.check("recv() fails with ETIMEDOUT", error is not None and error.errno == errno.ETIMEDOUT,
                        "ETIMEDOUT", seen, "syscall"),
              ctx.check(f"detected after idle + intvl × cnt = {EXPECTED_S} s", abs(waited - EXPECTED_S) <= TOLERANCE_S,
                        f"{EXPECTED_S} ± {TOLERANCE_S} s", f"{waited:.2f} s", "clock")]
    if ctx.tracing:
        checks.append(ctx.check_path("client went ESTABLISHED → CLOSE", c, ["ESTABLISHED", "CLOSE"]))
    checks.append(ctx.check_gone(f"no client socket left in {ns_a}", c, netns=ns_a))
    yield ctx.step("kernel", f"probes sent every {INTVL} s after {IDLE} s idle, none answered (table: probes "
                   f"{' → '.join(map(str, probes)) or '?'}); after {waited:.2f} s the kernel gives up: recv() → {seen}",
                   why="the kernel declares the peer dead after cnt unanswered probes: idle + intvl × cnt after "
                   "the last segment received", sockets=[c], checks=checks,
                   observed={"detected_s": round(waited, 3), "expected_s": EXPECTED_S, "probes_seen": probes,
                             "error": seen})
    del server


SCENARIO = Scenario(name="keepalive-dead-peer", summary="keepalive 1/1/3 to a peer in a namespace that falls silent: "
                    "probes counted up in the table, ETIMEDOUT after idle + intvl × cnt, measured", run=run)
