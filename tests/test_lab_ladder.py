"""The packet ladder of each lab scenario: `sockmon lab NAME --json` prints one ``{"ladder": …}`` line per
packet of the scenario's connections (captured on ``lo``, or inside its namespace) after the steps and
before the result, whose ``observed.packets`` counts them; linger-abort shows the RST and no FIN,
time-wait the handshake, the data and both FINs with exact relative numbers, keepalive-dead-peer the
probes its client sent inside its namespace; without CAP_NET_RAW one line says why the ladder is empty
and the scenario still passes. Sans-IO: the one-port BPF program (run by a small classic-BPF
interpreter) and `PortCapture`'s per-connection numbering and caps."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading

import pytest
from sockmon.core.lab.ladder import (
    ACK,
    FIN,
    PSH,
    SYN,
    ConnPacket,
    PortCapture,
    Segment,
    packet_line,
    port_filter,
)
from sockmon.core.table.tracepoint import tracing_available

ROOT_OK, WHY = tracing_available()
needs_root = pytest.mark.skipif(not ROOT_OK or os.geteuid() != 0, reason=f"needs root and tracefs: {WHY}")
SOCKMON = [sys.executable, "-m", "sockmon"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DROP_NET_RAW = ("--inh-caps=-all", "--bounding-set=-net_raw")


def lab_json(name: str, prefix: tuple[str, ...] = (), timeout: float = 60) -> tuple[list[dict], list[dict], dict]:
    out = subprocess.run([*prefix, *SOCKMON, "lab", name, "--json"], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    result = lines[-1]
    assert result["scenario"] == name and result["ok"] is True, result
    # order: every step, then the ladder, then ladder_end / ladder_unavailable, the result last
    kinds = ["step" if "index" in x else next(iter(x)) for x in lines[:-1]]
    first_ladder = next((i for i, k in enumerate(kinds) if k != "step"), len(kinds))
    assert all(k == "step" for k in kinds[:first_ladder]) and "step" not in kinds[first_ladder:], kinds
    ladder = [x["ladder"] for x in lines if "ladder" in x]
    assert kinds[first_ladder:] == ["ladder"] * len(ladder) + [kinds[-1]], kinds
    assert result["observed"]["packets"] == len(ladder)
    return lines, ladder, result


def rung(p: dict) -> tuple:
    return (p["dir"], tuple(p["flags"]), p["seq"], p["ack"], p["len"])


def pure_ack(r: tuple) -> bool:
    return r[1] == ("ACK",) and r[4] == 0


HANDSHAKE = [("c>s", ("SYN",), 0, None, 0), ("s>c", ("SYN", "ACK"), 0, 1, 0), ("c>s", ("ACK",), 1, 1, 0)]


@needs_root
@pytest.mark.root
def test_linger_abort_ladder_shows_the_rst_and_no_fin():
    lines, ladder, result = lab_json("linger-abort")
    port = result["observed"]["port"]
    assert {p["server"] for p in ladder} == {f"127.0.0.1:{port}"} and len({p["client"] for p in ladder}) == 1
    got = [rung(p) for p in ladder]
    assert got[:3] == HANDSHAKE, got
    assert not any("FIN" in r[1] for r in got), got
    rsts = [r for r in got if "RST" in r[1]]
    assert len(rsts) == 1 and rsts[0][0] == "c>s" and got[-1] == rsts[0], got  # the abort ends the ladder
    assert [p["n"] for p in ladder] == list(range(1, len(ladder) + 1)) and ladder[0]["t_ms"] == 0.0
    assert lines[-2] == {"ladder_end": {"packets": len(ladder), "evicted": 0, "kernel_drops": 0}}


@needs_root
@pytest.mark.root
def test_time_wait_ladder_is_handshake_data_and_both_fins():
    _lines, ladder, result = lab_json("time-wait")
    port = result["observed"]["port"]
    assert {p["server"] for p in ladder} == {f"127.0.0.1:{port}"} and len({p["client"] for p in ladder}) == 1
    got = [rung(p) for p in ladder]
    assert got[:3] == HANDSHAKE, got
    assert [r for r in got[3:] if not pure_ack(r)] == [
        ("c>s", ("PSH", "ACK"), 1, 1, 5),   # b'hello'
        ("s>c", ("PSH", "ACK"), 1, 6, 5),   # the echo
        ("c>s", ("FIN", "ACK"), 6, 6, 0),   # the client's close(): the active closer
        ("s>c", ("FIN", "ACK"), 6, 7, 0),   # the server's close() after EOF
    ], got
    assert got[-1] == ("c>s", ("ACK",), 7, 7, 0), got  # the last ACK: the client is now TIME_WAIT
    for r in got[3:]:
        if pure_ack(r):
            assert (r[0], r[2], r[3]) in {("s>c", 1, 6), ("c>s", 6, 6), ("s>c", 6, 7), ("c>s", 7, 7)}, got
    t = [p["t_ms"] for p in ladder]
    assert t[0] == 0.0 and t == sorted(t)


@needs_root
@pytest.mark.root
def test_keepalive_probes_are_captured_inside_the_namespace():
    _lines, ladder, result = lab_json("keepalive-dead-peer", timeout=90)
    port = result["observed"]["port"]
    # the client's namespace: 10.213.1.1 → 10.213.1.2 over the veth pair (the host's lo never sees it)
    assert {p["server"] for p in ladder} == {f"10.213.1.2:{port}"}, ladder
    assert all(p["client"].startswith("10.213.1.1:") for p in ladder), ladder
    got = [rung(p) for p in ladder]
    assert got[:3] == HANDSHAKE, got
    # keepalive probes: ACKs with no data and seq one below the next byte (0, the handshake's 1 - 1)
    probes = [r for r in got[3:] if r == ("c>s", ("ACK",), 0, 1, 0)]
    assert len(probes) >= 3, got
    assert not any(r[0] == "s>c" for r in got[3:]), got  # the peer's replies are blackholed
    assert got[-1] == ("c>s", ("RST", "ACK"), 1, 1, 0), got  # the kernel gives up: an RST
    gaps = [b["t_ms"] - a["t_ms"] for a, b in zip(ladder[3:], ladder[4:], strict=False)]
    assert all(700 < g < 1600 for g in gaps[:2]), gaps  # TCP_KEEPINTVL 1 s apart


def _drop_net_raw() -> tuple[str, ...]:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to drop CAP_NET_RAW")
    return (setpriv, *DROP_NET_RAW)


@needs_root
@pytest.mark.root
def test_without_net_raw_the_ladder_says_why_and_the_scenario_still_passes():
    drop = _drop_net_raw()
    lines, ladder, result = lab_json("time-wait", prefix=drop)
    assert ladder == [] and result["observed"]["packets"] == 0
    reasons = [x["ladder_unavailable"] for x in lines if "ladder_unavailable" in x]
    assert len(reasons) == 1 and "EPERM" in reasons[0] and "root" in reasons[0]
    assert lines[-2] == {"ladder_unavailable": reasons[0]}
    text = subprocess.run([*drop, *SOCKMON, "lab", "linger-abort"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert text.returncode == 0, text.stderr
    out = text.stdout.splitlines()
    assert out[-2].startswith("packet ladder empty: socket(AF_PACKET) = EPERM") and "linger-abort: ok" in out[-1]


@needs_root
@pytest.mark.root
def test_text_output_prints_the_ladder_between_the_steps_and_the_result():
    out = subprocess.run([*SOCKMON, "lab", "linger-abort"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("packet ladder: "))
    n = int(lines[head].split()[2])
    rows = lines[head + 1:head + 1 + n]
    assert len(rows) == n >= 4 and lines[head + 1 + n].startswith("linger-abort: ok") and f"packets={n}" in lines[-1]
    assert "──SYN seq=0" in rows[0] and "◀──SYN,ACK seq=0 ack=1" in rows[1] and "──RST,ACK" in rows[-1]
    assert not any("FIN" in r for r in rows) and all(line.startswith("[") or line.startswith(" ")
                                                     for line in lines[:head])


# ------------------------------------------------------------------------------------------ sans-IO
def _run_bpf(prog, pkt: bytes, ifindex: int = 2, pkttype: int = 0) -> int:
    """A classic-BPF interpreter for the instructions `port_filter` uses."""
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x28:
            a = struct.unpack_from(">H", pkt, k)[0]
        elif code == 0x30:
            a = pkt[k]
        elif code == 0x48:
            a = struct.unpack_from(">H", pkt, x + k)[0]
        elif code == 0xB1:
            x = (pkt[k] & 0x0F) * 4
        elif code == 0x01:
            x = k
        elif code == 0x20:
            a = {-0x1000 + 8: ifindex, -0x1000 + 4: pkttype}[k - (1 << 32) if k & 0x80000000 else k]
        elif code == 0x05:
            pc += k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x45:
            pc += jt if a & k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {code:#x}")


def _frame(sport: int, dport: int, v6: bool = False) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 5 << 4, SYN, 100, 0, 0)
    if v6:
        ip = struct.pack(">IHBB", 6 << 28, len(tcp), 6, 64) + b"\0" * 32
        return b"\0" * 12 + b"\x86\xdd" + ip + tcp
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, b"\x7f\0\0\1", b"\x7f\0\0\1")
    return b"\0" * 12 + b"\x08\x00" + ip + tcp


@pytest.mark.parametrize("v6", [False, True])
def test_one_port_filter_keeps_either_side_of_the_port_only(v6):
    one = port_filter(5000, None)
    assert _run_bpf(one, _frame(5000, 40000, v6)) == 192
    assert _run_bpf(one, _frame(40001, 5000, v6)) == 192
    assert _run_bpf(one, _frame(40000, 40001, v6)) == 0
    assert _run_bpf(one, _frame(4999, 5001, v6)) == 0
    two = port_filter(5000, 40000)  # the connection filter is unchanged
    assert _run_bpf(two, _frame(5000, 40000, v6)) == 192 and _run_bpf(two, _frame(40000, 5000, v6)) == 192
    assert _run_bpf(two, _frame(5000, 40001, v6)) == 0
    lo = port_filter(5000, None, loopback_ifindex=1)  # on lo only the outgoing copy
    assert _run_bpf(lo, _frame(5000, 1, v6), ifindex=1, pkttype=4) == 192
    assert _run_bpf(lo, _frame(5000, 1, v6), ifindex=1, pkttype=0) == 0
    assert _run_bpf(lo, _frame(5000, 1, v6), ifindex=3, pkttype=0) == 192


def _seg(sport, dport, seq, ack, flags, n=0, src="127.0.0.1", dst="127.0.0.1"):
    return Segment(4, src, dst, sport, dport, seq, ack, flags, 512, n)


def test_port_capture_numbers_each_connection_apart_on_one_time_axis():
    cap = PortCapture(5000, t0=100.0)
    feed = [(_seg(40000, 5000, 1000, 0, SYN), 100.001), (_seg(40001, 5000, 7000, 0, SYN), 100.002),
            (_seg(5000, 40000, 50, 1001, SYN | ACK), 100.003), (_seg(40000, 5000, 1001, 51, PSH | ACK, 5), 100.004),
            (_seg(5000, 40001, 90, 7001, SYN | ACK), 100.005), (_seg(40001, 5000, 7001, 91, FIN | ACK), 100.006),
            (_seg(40002, 6000, 1, 0, SYN), 100.007)]  # not the port: ignored
    got = [cap._feed(s, ts) for s, ts in feed]
    assert got[-1] is None and cap.connections == 2
    rows = [(p.n, p.client, p.dir, p.flags, p.seq, p.ack, p.len, p.t_ms) for p in got[:-1]]
    assert rows == [
        (1, "127.0.0.1:40000", "c>s", ("SYN",), 0, None, 0, 1.0),
        (2, "127.0.0.1:40001", "c>s", ("SYN",), 0, None, 0, 2.0),
        (3, "127.0.0.1:40000", "s>c", ("SYN", "ACK"), 0, 1, 0, 3.0),
        (4, "127.0.0.1:40000", "c>s", ("PSH", "ACK"), 1, 1, 5, 4.0),
        (5, "127.0.0.1:40001", "s>c", ("SYN", "ACK"), 0, 1, 0, 5.0),
        (6, "127.0.0.1:40001", "c>s", ("FIN", "ACK"), 1, 1, 0, 6.0),
    ]
    assert all(isinstance(p, ConnPacket) and p.server == "127.0.0.1:5000" for p in got[:-1])
    assert packet_line(got[0], got[0].client, got[0].server).endswith("──▶ 127.0.0.1:5000")


def test_port_capture_caps_connections_and_packets_under_churn():
    cap = PortCapture(5000, t0=0.0, max_connections=8, max_packets=50)
    for i in range(1000):  # 1,000 connections, 3 packets each
        port = 20000 + i
        for s in (_seg(port, 5000, 1, 0, SYN), _seg(5000, port, 9, 2, SYN | ACK), _seg(port, 5000, 2, 10, ACK)):
            p = cap._feed(s, 1.0 + i / 1000)
            if p is not None:
                cap.log.add(p)
    assert cap.connections == 8 and cap.untracked == 3 * 992
    assert len(cap.packets) == 24 and cap.evicted == 0
    cap2 = PortCapture(5000, t0=0.0, max_packets=50)
    for i in range(1000):
        p = cap2._feed(_seg(30000, 5000, 1 + i, 0, ACK, 1), 1.0)
        cap2.log.add(p)
    assert len(cap2.packets) == 50 and cap2.evicted == 950 and cap2.packets[-1].n == 1000


# ------------------------------------------------------------------------------------------ cleanup
def packet_fds() -> list[int]:
    """This process's AF_PACKET sockets (in any namespace)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=int(fd))
        except OSError:
            continue
        try:
            if s.family == socket.AF_PACKET:
                out.append(int(fd))
        finally:
            s.detach()
    return out


def ladder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "sockmon-ladder" and t.is_alive()]


@needs_root
@pytest.mark.root
def test_captures_are_closed_on_success_failure_exception_and_stop():
    from sockmon.core.lab.scenarios.base import Interrupted, Scenario, four_tuple_of
    from sockmon.core.scenarios.runner import KernelContext, run_scenario

    seen: dict = {}

    def body(ctx):
        ns = ctx.netns()
        lst = ctx.listener()
        port = lst.getsockname()[1]
        ctx.watch_port(port)
        ins = ctx.listener(netns=ns)
        ctx.watch_port(ins.getsockname()[1], netns=ns)  # a capture opened inside the namespace
        cli = ctx.tcp_socket()
        cli.connect(("127.0.0.1", port))
        ctx.accept(lst)
        seen["fds"], seen["threads"] = packet_fds(), ladder_threads()
        yield ctx.step("lab", "connected", sockets=[four_tuple_of(cli)], checks=[
            ctx.check("a check", seen["mode"] != "fail", "ok", seen["mode"], "syscall")])
        if seen["mode"] == "raise":
            raise RuntimeError("a scenario bug")
        if seen["mode"] == "stop":
            ctx.sleep(60)

    before = packet_fds()
    for mode in ("ok", "fail", "raise", "stop"):
        seen.clear()
        seen["mode"] = mode
        ctx = KernelContext(mode)
        if mode == "stop":
            threading.Timer(0.5, ctx.stop).start()
            with pytest.raises(Interrupted):
                run_scenario(Scenario(name=mode, summary="", run=body), context=ctx)
        else:
            result = run_scenario(Scenario(name=mode, summary="", run=body), context=ctx)
            assert result.ok is (mode == "ok"), result
            assert result.observed["packets"] == len(result.ladder) >= 3  # the handshake at least
            assert result.ladder_note is None
        assert len(seen["fds"]) == len(before) + 2 and len(seen["threads"]) >= 2, (mode, seen)
        assert packet_fds() == before, mode
        assert ladder_threads() == [], mode


@needs_root
@pytest.mark.root
def test_refused_and_timeout_ladder_shows_the_rst_and_the_syn_retries_inside_the_namespace():
    _lines, ladder, result = lab_json("refused-and-timeout", timeout=90)
    port = result["observed"]["port"]
    refused = [rung(p) for p in ladder if p["server"] == f"127.0.0.1:{port}"]
    # connect() to a closed port on lo: SYN, then the kernel's RST (twice: blocking, then non-blocking)
    assert refused == [("c>s", ("SYN",), 0, None, 0), ("s>c", ("RST", "ACK"), 0, 1, 0)] * 2, refused
    # the blackholed destination, captured in the client's namespace: the SYN and its retry, no answer
    far = [p for p in ladder if p["server"].startswith("10.213.0.2:")]
    assert {p["client"].rpartition(":")[0] for p in far} == {"10.213.0.1"}, far
    rows = [rung(p) for p in far]
    assert len(rows) >= 2 and set(rows) == {("c>s", ("SYN",), 0, None, 0)}, far  # the same SYN, retried
    assert 700 < far[1]["t_ms"] - far[0]["t_ms"] < 1600  # the initial RTO, 1 s
    assert far[-1]["t_ms"] - far[0]["t_ms"] < 3000 + 500  # none after ETIMEDOUT (≈ 3 s)
