"""The packet ladder (core/lab/ladder.py): the sans-IO decoder against built and hostile frames, the
ladder's relative numbers, the hand-written BPF filter and the capture on real loopback connections (root),
and `sockmon connect --ladder` as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sockhelp import Events, wait_for
from sockmon.core.jsonout import ladder_line
from sockmon.core.lab.client import ClientEngine
from sockmon.core.lab.events import EventKind
from sockmon.core.lab.ladder import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Ladder,
    LadderCapture,
    LadderHook,
    LadderPacket,
    LadderUnavailable,
    PacketLog,
    Segment,
    attach_filter,
    decode_frame,
    flag_names,
    packet_line,
    port_filter,
)
from sockmon.core.lab.options import Linger
from sockmon.core.lab.server import ServerEngine

ROOT = Path(__file__).resolve().parent.parent
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="AF_PACKET capture needs root")


# ------------------------------------------------------------------------------------------ frames
def tcp_header(sport, dport, seq, ack, flags, window, options=b""):
    options += b"\x00" * (-len(options) % 4)
    doff = (20 + len(options)) // 4
    return struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, 0) + options


def frame4(sport, dport, seq=1000, ack=0, flags=SYN, window=65495, options=b"", payload=b"",
           src="127.0.0.1", dst="127.0.0.2"):
    tcp = tcp_header(sport, dport, seq, ack, flags, window, options) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return bytes(12) + b"\x08\x00" + ip + tcp


def frame6(sport, dport, seq=1000, ack=0, flags=SYN, window=65495, options=b"", payload=b""):
    tcp = tcp_header(sport, dport, seq, ack, flags, window, options) + payload
    ip = struct.pack(">IHBB16s16s", 6 << 28, len(tcp), 6, 64, socket.inet_pton(socket.AF_INET6, "::1"),
                     socket.inet_pton(socket.AF_INET6, "::1"))
    return bytes(12) + b"\x86\xdd" + ip + tcp


SYN_OPTS = b"\x02\x04\xff\xd7" + b"\x04\x02" + b"\x08\x0a" + struct.pack(">II", 5, 0) + b"\x01\x03\x03\x07"


def test_decode_ipv4_syn_with_options():
    seg = decode_frame(frame4(40000, 8080, seq=123, options=SYN_OPTS))
    assert isinstance(seg, Segment)
    assert (seg.family, seg.src, seg.dst, seg.sport, seg.dport) == (4, "127.0.0.1", "127.0.0.2", 40000, 8080)
    assert (seg.seq, seg.flags, seg.window, seg.payload_len) == (123, SYN, 65495, 0)
    assert (seg.mss, seg.sack_perm, seg.ts, seg.wscale) == (65495, True, (5, 0), 7)
    assert flag_names(seg.flags) == ("SYN",)


def test_decode_ipv6_data_payload_length_from_ip_not_capture():
    full = frame6(8080, 40000, seq=9, ack=7, flags=PSH | ACK, window=512, payload=b"hello")
    seg = decode_frame(full[:-5])  # the capture keeps headers only: the length comes from the IP header
    assert isinstance(seg, Segment)
    assert (seg.family, seg.src, seg.payload_len, seg.window) == (6, "::1", 5, 512)
    assert flag_names(seg.flags) == ("PSH", "ACK")


@pytest.mark.parametrize("frame, reason", [
    (b"", "Ethernet header cut short"),
    (bytes(12) + b"\x08\x06" + bytes(28), "not IP (ethertype 0x0806)"),
    (frame4(1, 2)[:30], "IPv4 header cut short"),
    (frame4(1, 2)[:40], "TCP header cut short"),
    (frame4(1, 2, options=b"\x02\x09"), "TCP option 2 has bad length 9"),
    (frame6(1, 2)[:50], "IPv6 header cut short"),
    (frame6(1, 2)[:60], "TCP header cut short"),
    (bytes(12) + b"\x08\x00" + b"\x45" + bytes(8) + b"\x11" + bytes(10) + bytes(8), "not TCP (IP protocol 17)"),
])
def test_bad_frames_give_one_line_reasons(frame, reason):
    out = decode_frame(frame)
    assert isinstance(out, str) and out.startswith(reason) and "\n" not in out


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_garbage_never_raises(data):
    out = decode_frame(data)
    assert isinstance(out, (Segment, str))
    if isinstance(out, str):
        assert "\n" not in out


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from([frame4(1, 2, options=SYN_OPTS, payload=b"abc"), frame6(1, 2, options=SYN_OPTS)]),
       st.integers(0, 120), st.lists(st.tuples(st.integers(0, 119), st.integers(0, 255)), max_size=6))
def test_fuzz_truncated_and_mutated_frames(frame, cut, flips):
    data = bytearray(frame[:cut] if cut < len(frame) else frame)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    out = decode_frame(bytes(data))
    assert isinstance(out, (Segment, str))
    if isinstance(out, Segment):  # whatever decodes feeds the ladder without raising
        Ladder(out.sport, out.dport).feed(out, 0.0)


# ------------------------------------------------------------------------------------------ the ladder
def seg(sport, dport, seq, ack, flags, window=100, n=0, **kw):
    return Segment(4, "127.0.0.1", "127.0.0.1", sport, dport, seq, ack, flags, window, n, **kw)


def test_ladder_relative_numbers_scaled_window_and_finish():
    c, s = 40000, 80
    isn_c, isn_s = 0xFFFFFFF0, 777  # the client's ISN wraps past 2**32
    lad = Ladder(c, s)
    rows = [lad.feed(x, t) for t, x in enumerate([
        seg(c, s, isn_c, 0, SYN, 65495, wscale=7, mss=65495),
        seg(s, c, isn_s, isn_c + 1, SYN | ACK, 65483, wscale=2),
        seg(c, s, (isn_c + 1) % 2**32, isn_s + 1, ACK, 512),
        seg(c, s, (isn_c + 1) % 2**32, isn_s + 1, PSH | ACK, 512, 5),
        seg(s, c, isn_s + 1, (isn_c + 6) % 2**32, FIN | ACK, 1000),
        seg(c, s, (isn_c + 6) % 2**32, isn_s + 2, FIN | ACK, 512),
    ])]
    assert [(r.dir, r.flags, r.seq, r.ack, r.len) for r in rows] == [
        ("c>s", ("SYN",), 0, None, 0), ("s>c", ("SYN", "ACK"), 0, 1, 0), ("c>s", ("ACK",), 1, 1, 0),
        ("c>s", ("PSH", "ACK"), 1, 1, 5), ("s>c", ("FIN", "ACK"), 1, 6, 0), ("c>s", ("FIN", "ACK"), 6, 2, 0)]
    assert rows[0].win == 65495 and rows[2].win == 512 << 7 and rows[4].win == 1000 << 2
    assert [r.t_ms for r in rows] == [0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
    assert not lad.finished  # the client's FIN is not acknowledged yet
    last = lad.feed(seg(s, c, isn_s + 2, (isn_c + 7) % 2**32, ACK), 6)
    assert (last.seq, last.ack) == (2, 7) and lad.finished
    assert lad.feed(seg(1, 2, 0, 0, SYN), 7) is None  # another connection


def test_ladder_without_the_handshake_is_relative_to_the_first_seen_and_unscaled():
    lad = Ladder(5, 6)
    p = lad.feed(seg(5, 6, 1000, 2000, ACK, 300, 10), 1.0)
    assert (p.seq, p.ack, p.win, p.wscale) == (0, 0, 300, None)
    q = lad.feed(seg(6, 5, 2000, 1010, ACK, 300), 1.5)
    assert (q.seq, q.ack, q.t_ms) == (0, 10, 500.0)
    assert "unscaled" in packet_line(p)
    r = lad.feed(seg(6, 5, 2000, 1010, RST | ACK, 0), 2.0)
    assert r.flags == ("RST", "ACK") and lad.finished


def test_packet_line_and_json_shape():
    p = LadderPacket(1, 0.0, "c>s", ("SYN",), 0, None, 65495, 0, 0, ("mss 65495", "sackOK", "ts", "ws 7"))
    assert packet_line(p) == "    +0.000ms  client ──SYN seq=0 win=65495 [mss 65495,sackOK,ts,ws 7]──▶ server"
    back = LadderPacket(2, 0.25, "s>c", ("SYN", "ACK"), 0, 1, 65483, 0, 0)
    assert packet_line(back) == "    +0.250ms  client ◀──SYN,ACK seq=0 ack=1 win=65483── server"
    assert json.loads(ladder_line(back)) == {"ladder": {
        "n": 2, "t_ms": 0.25, "dir": "s>c", "flags": ["SYN", "ACK"], "seq": 0, "ack": 1, "win": 65483,
        "wscale": 0, "len": 0, "opts": []}}


def test_packet_log_churn_through_the_cap():
    log = PacketLog(50)
    for i in range(1, 1001):
        log.add(LadderPacket(i, float(i), "c>s", ("ACK",), i, i, 1, 0, 0))
    items = log.items()
    assert len(items) == 50 and log.evicted == 950
    assert [p.n for p in items] == list(range(951, 1001))


def test_port_filter_matches_tcpdump_instructions():
    """The hand-written program holds tcpdump's own checks (checked with `tcpdump -dd` when installed)."""
    prog = port_filter(1, 2)
    assert prog[0] == (0x28, 0, 0, 12) and prog[-2:] == [(0x06, 0, 0, 192), (0x06, 0, 0, 0)]
    ops = {ins[0] for ins in prog}
    assert {0x30, 0x45, 0xB1, 0x48, 0x15} <= ops
    tcpdump = shutil.which("tcpdump")
    if tcpdump:
        out = subprocess.run([tcpdump, "-i", "lo", "-dd", "tcp and ((src port 1 and dst port 2) or "
                              "(src port 2 and dst port 1))"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            theirs = {tuple(int(x, 0) for x in line.strip(" {},").split(","))
                      for line in out.stdout.splitlines() if line.strip()}
            ours = {ins for ins in prog if ins[0] not in (0x15, 0x45, 0x05, 0x06, 0x01)}  # loads, not jumps
            assert ours <= theirs | {(0x48, 0, 0, 14), (0x48, 0, 0, 16)}


# ------------------------------------------------------------------------------------------ real captures
@pytest.fixture
def echo_server():
    srv = ServerEngine("127.0.0.1", 0, mode="echo").start()
    yield srv
    srv.stop()


def run_client(port, *, abort=False, hook=None):
    ev = Events()
    hook = hook or LadderHook()
    eng = ClientEngine(on_event=ev, before_connect=hook)
    try:
        eng.connect("127.0.0.1", port)
        assert eng.wait_connected(5)
        eng.send(b"hello")
        ev.wait(EventKind.BYTES_IN)
        if abort:
            eng.set_linger(Linger(True, 0)).result(5)
            eng.abort()
        else:
            eng.graceful_close()
        assert eng.wait_closed(10)
    finally:
        eng.stop()
    assert hook.capture is not None, hook.reason
    assert hook.wait_done(3), "the capture did not see the connection end"
    return hook.capture, ev


def rungs(capture):
    return [(p.dir, p.flags, p.seq, p.ack, p.len) for p in capture.packets]


def is_pure_ack(r):
    return r[1] == ("ACK",) and r[4] == 0


@root_only
def test_ladder_of_handshake_echo_and_graceful_close(echo_server):
    cap, ev = run_client(echo_server.address[1])
    got = rungs(cap)
    # the handshake, exactly
    assert got[:3] == [("c>s", ("SYN",), 0, None, 0), ("s>c", ("SYN", "ACK"), 0, 1, 0),
                       ("c>s", ("ACK",), 1, 1, 0)], got
    # everything after it but pure ACKs (the kernel may merge an ACK into data or a FIN), exactly
    assert [r for r in got[3:] if not is_pure_ack(r)] == [
        ("c>s", ("PSH", "ACK"), 1, 1, 5),       # hello
        ("s>c", ("PSH", "ACK"), 1, 6, 5),       # the echo, acknowledging hello
        ("c>s", ("FIN", "ACK"), 6, 6, 0),       # shutdown(SHUT_WR), acknowledging the echo
        ("s>c", ("FIN", "ACK"), 6, 7, 0),       # the server's close, acknowledging our FIN
    ], got
    assert got[-1] == ("c>s", ("ACK",), 7, 7, 0), got  # the last ACK: the server's FIN acknowledged
    for r in got[3:]:  # the pure ACKs in between only acknowledge what was sent (no other numbers)
        if is_pure_ack(r):
            assert (r[0], r[2], r[3]) in {("s>c", 1, 6), ("c>s", 6, 6), ("s>c", 6, 7), ("c>s", 7, 7)}, got
    t = [p.t_ms for p in cap.packets]
    assert t[0] == 0.0 and t == sorted(t)
    syn, synack = cap.packets[0], cap.packets[1]
    assert syn.wscale == 0 and any(o.startswith("mss ") for o in syn.opts) and "sackOK" in synack.opts
    ws = int(next(o for o in syn.opts if o.startswith("ws ")).split()[1]) if any(
        o.startswith("ws ") for o in syn.opts) else 0
    assert cap.packets[2].wscale == ws and cap.packets[2].win % (1 << ws) == 0
    assert cap.frames == len(got) and cap.undecoded == 0 and cap.evicted == 0 and cap.kernel_drops == 0
    assert not cap.running
    assert any("packet capture (AF_PACKET" in e.detail for e in ev.of(EventKind.INFO))


@root_only
def test_linger_zero_abort_shows_the_rst_and_no_fin(echo_server):
    cap, _ev = run_client(echo_server.address[1], abort=True)
    got = rungs(cap)
    assert got[:3] == [("c>s", ("SYN",), 0, None, 0), ("s>c", ("SYN", "ACK"), 0, 1, 0),
                       ("c>s", ("ACK",), 1, 1, 0)], got
    assert not any("FIN" in r[1] for r in got), got
    assert got[-1] == ("c>s", ("RST", "ACK"), 6, 6, 0), got  # after hello (5) and its echo (5)
    assert cap.ladder.finished and cap.ladder.reset_seen


@root_only
def test_filter_drops_other_connections_in_the_kernel(echo_server):
    """Traffic of another connection on lo during the capture never reaches the capture socket."""
    other = ServerEngine("127.0.0.1", 0, mode="echo").start()
    noise = socket.create_connection(other.address, timeout=5)
    try:
        hook = LadderHook()
        ev = Events()
        eng = ClientEngine(on_event=ev, before_connect=hook)
        eng.connect("127.0.0.1", echo_server.address[1])
        assert eng.wait_connected(5)
        for _ in range(20):
            noise.sendall(b"x" * 100)
            noise.recv(100)
        eng.graceful_close()
        assert eng.wait_closed(10)
        eng.stop()
        assert hook.wait_done(3)
        cap = hook.capture
        assert cap.frames == cap.ladder.count >= 6  # every frame read was ours: the filter did the rest
    finally:
        noise.close()
        other.stop()


@root_only
def test_loopback_shows_each_packet_twice_without_the_pkttype_check(echo_server):
    """docs/kernel-facts.md: on lo an ETH_P_ALL socket sees each packet leave (PACKET_OUTGOING) and arrive
    (PACKET_HOST); the ladder's filter keeps the outgoing copy only."""
    cl = socket.socket()
    cl.bind(("127.0.0.1", 0))
    port = cl.getsockname()[1]
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_filter(raw, port_filter(port, echo_server.address[1]))  # no loopback ifindex: no dedup
        raw.bind(("lo", 0x0003))
        cl.connect(echo_server.address)
        time.sleep(0.2)
        kinds = []
        while True:
            try:
                data, addr = raw.recvfrom(256, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            s = decode_frame(data)
            kinds.append((s.sport, s.flags, addr[2]))
        assert [k for k in kinds if k[1] == SYN] == [(port, SYN, 4), (port, SYN, 0)]  # OUTGOING, then HOST
        assert len(kinds) == 6  # SYN, SYN-ACK, ACK: each twice
    finally:
        raw.close()
        cl.close()


@root_only
def test_capture_churn_through_its_cap(echo_server):
    hook = LadderHook(max_packets=20)
    ev = Events()
    eng = ClientEngine(on_event=ev, before_connect=hook)
    try:
        eng.connect("127.0.0.1", echo_server.address[1])
        assert eng.wait_connected(5)
        eng.set_nodelay(True).result(5)
        for i in range(40):
            eng.send(b"y")
            wait_for(lambda i=i: len(ev.of(EventKind.BYTES_IN)) > i, 5)
        eng.graceful_close()
        assert eng.wait_closed(10)
    finally:
        eng.stop()
    assert hook.wait_done(3)
    cap = hook.capture
    total = cap.ladder.count
    assert total >= 80 + 6  # 40 sends and their echoes at least
    kept = cap.packets
    assert len(kept) == 20 and cap.evicted == total - 20
    assert [p.n for p in kept] == list(range(total - 19, total + 1))  # the newest kept
    assert kept[-1].flags == ("ACK",) and cap.ladder.finished


def test_rcvbuf_is_bounded():
    cap = LadderCapture(1, 2)
    assert cap.rcvbuf <= 4 << 20 and cap.log.cap == 2000


# ------------------------------------------------------------------------------------------ headless
def sockmon(*args, timeout=30, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-m", "sockmon", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


@root_only
def test_connect_ladder_json_gives_the_same_ladder(echo_server):
    out = sockmon("connect", f"127.0.0.1:{echo_server.address[1]}", "--send", "hello", "--ladder", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    ladder = [x["ladder"] for x in lines if "ladder" in x]
    got = [(p["dir"], tuple(p["flags"]), p["seq"], p["ack"], p["len"]) for p in ladder]
    assert got[:3] == [("c>s", ("SYN",), 0, None, 0), ("s>c", ("SYN", "ACK"), 0, 1, 0),
                       ("c>s", ("ACK",), 1, 1, 0)], got
    assert [r for r in got[3:] if not is_pure_ack(r)] == [
        ("c>s", ("PSH", "ACK"), 1, 1, 5), ("s>c", ("PSH", "ACK"), 1, 6, 5),
        ("c>s", ("FIN", "ACK"), 6, 6, 0), ("s>c", ("FIN", "ACK"), 6, 7, 0)], got
    assert got[-1] == ("c>s", ("ACK",), 7, 7, 0)
    end = [x["ladder_end"] for x in lines if "ladder_end" in x]
    assert end == [{"packets": len(got), "evicted": 0, "kernel_drops": 0}]
    # interleaved with the events: the SYN is printed after the connect() call event
    kinds = [("ladder" if "ladder" in x else x.get("kind")) for x in lines]
    assert kinds.index("call") < kinds.index("ladder")


@root_only
def test_connect_ladder_text_and_abort(echo_server):
    out = sockmon("connect", f"127.0.0.1:{echo_server.address[1]}", "--send", "hello", "--ladder", "--abort")
    assert "client ──SYN seq=0" in out.stdout and "client ◀──SYN,ACK seq=0 ack=1" in out.stdout
    rungs_text = [line for line in out.stdout.splitlines() if "client ──" in line or "client ◀──" in line]
    assert rungs_text[-1].split("ms  ")[1].startswith("client ──RST,ACK seq=6 ack=6")
    assert not any("FIN" in line for line in rungs_text)
    assert f"ladder: {len(rungs_text)} packets" in out.stdout


def test_without_root_the_ladder_says_why(echo_server):
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to drop to nobody")
    drop = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
    probe = subprocess.run([*drop, sys.executable, "-c", "import msgspec, sockmon.core.lab.client"],
                           capture_output=True, timeout=20, cwd=ROOT)
    if probe.returncode != 0:  # the interpreter's packages are not readable by nobody: root without
        drop = (setpriv, "--inh-caps=-all", "--bounding-set=-net_raw")  # CAP_NET_RAW is refused the same
    out = sockmon("connect", f"127.0.0.1:{echo_server.address[1]}", "--send", "hi", "--ladder", "--json",
                  prefix=drop)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    reasons = [x["ladder_unavailable"] for x in lines if "ladder_unavailable" in x]
    assert len(reasons) == 1 and "EPERM" in reasons[0] and "root" in reasons[0]
    assert not any("ladder" in x for x in lines) and any(x.get("kind") == "bytes_in" for x in lines)
    text = sockmon("connect", f"127.0.0.1:{echo_server.address[1]}", "--send", "hi", "--ladder", prefix=drop)
    assert "packet ladder empty: socket(AF_PACKET) = EPERM" in text.stdout


def test_capture_without_privilege_raises_one_line():
    """In-process: socket(AF_PACKET) refused → LadderUnavailable with the reason (root drops CAP_NET_RAW
    via setpriv in a child)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        if os.geteuid() != 0:
            with pytest.raises(LadderUnavailable, match="EPERM"):
                LadderCapture(1, 2).start()
            return
        pytest.skip("no setpriv")
    code = ("from sockmon.core.lab.ladder import LadderCapture, LadderUnavailable\n"
            "try:\n    LadderCapture(1, 2).start()\nexcept LadderUnavailable as e:\n    print(e)\n")
    out = subprocess.run([setpriv, "--inh-caps=-all", "--bounding-set=-net_raw", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert out.stdout.strip().startswith("packet ladder empty: socket(AF_PACKET) = EPERM"), out.stderr
