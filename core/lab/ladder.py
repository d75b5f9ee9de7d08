"""The packet ladder of one TCP connection: its segments captured with an AF_PACKET socket (root),
filtered in the kernel to the connection's two ports, decoded and numbered relative to each side's ISN.

Three layers, each usable alone:

- ``decode_frame(frame) -> Segment | str``: sans-IO. An Ethernet frame (``lo`` has a 14-byte all-zero
  Ethernet header) holding IPv4 or IPv6 and TCP → a `Segment` (addresses, ports, seq, ack, flags, raw
  window, options, payload length from the IP lengths, not from the bytes captured). Anything else
  (truncated, garbage, not TCP) → a one-line reason; it never raises.
- ``Ladder``: sans-IO. Segments of one connection (the client's port and the server's) → `LadderPacket`
  records: direction (``c>s`` / ``s>c``), seq / ack relative to each side's ISN (from its SYN; without
  the SYN, the first number seen), the window scaled by the sender's wscale from the handshake (when
  both SYNs were seen), milliseconds since the first packet, flags as names, options as text. It knows
  when the connection is over: an RST, or both FINs sent and acknowledged.
- ``LadderCapture``: the capture. ``start()`` opens the AF_PACKET socket *in the calling thread's
  network namespace* (call it where the connection lives, e.g. the client engine's ``before_connect``
  hook, which runs in the engine thread before connect() so the SYN is caught), attaches the filter
  (`port_filter`, classic BPF via SO_ATTACH_FILTER) before any packet can queue, and reads in a thread of
  its own, handing each `LadderPacket` to ``on_packet`` from that thread. It keeps at most
  ``max_packets`` (oldest evicted, counted in ``evicted``), a bounded receive buffer (``rcvbuf``; what
  the kernel drops when it is full is read from PACKET_STATISTICS into ``kernel_drops``), and stops by
  itself ``grace`` seconds after the connection is over, or on ``stop()``.

Loopback: every packet passes the packet taps twice on ``lo``, once leaving (PACKET_OUTGOING) and once
arriving (PACKET_HOST); the filter keeps only the outgoing copy on the loopback device (its ifindex),
and every copy on other devices (a veth carries each packet once in each direction). docs/kernel-facts.md.

Without root, ``socket(AF_PACKET)`` fails with EPERM: ``start()`` raises `LadderUnavailable` whose text
is the one line to show in place of the ladder.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

from msgspec import Struct

# ---------------------------------------------------------------------------------------- constants
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_HLEN = 14
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8

SNAPLEN = 192  # bytes of each packet the kernel copies: Ethernet 14 + IP ≤ 60 + TCP ≤ 60 fit; no payload
MAX_PACKETS = 2000  # packets a capture keeps (oldest evicted)
RCVBUF = 4 << 20  # the capture socket's receive buffer (the kernel drops, and counts, beyond it); each
# queued packet is charged its whole buffer (a 64 KiB loopback segment costs ~66 KiB however little is
# copied), so the buffer is forced past net.core.rmem_max (SO_RCVBUFFORCE, root) when it can be
GRACE = 0.2  # seconds the capture keeps reading after the connection is over (a late ACK)

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
FLAG_NAMES = ((FIN, "FIN"), (SYN, "SYN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"), (URG, "URG"),
              (ECE, "ECE"), (CWR, "CWR"))
MOD = 1 << 32


def flag_names(flags: int) -> tuple[str, ...]:
    """TCP flag bits → names in bit order: ``0x12`` → ``("SYN", "ACK")``."""
    return tuple(name for bit, name in FLAG_NAMES if flags & bit)


# ---------------------------------------------------------------------------------------- records
class Segment(Struct, frozen=True, gc=False):
    """One TCP segment as the wire carries it (numbers absolute, window unscaled)."""

    family: int  # 4 or 6
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload_len: int
    mss: int | None = None
    wscale: int | None = None
    sack_perm: bool = False
    ts: tuple[int, int] | None = None  # (TSval, TSecr)
    sack: tuple[tuple[int, int], ...] = ()  # SACK blocks (absolute left, right)
    other_options: tuple[int, ...] = ()  # kinds of options not decoded


class LadderPacket(Struct, frozen=True, gc=False):
    """One rung of the ladder: a segment of the followed connection, numbered for people."""

    n: int  # 1 for the first packet of the capture
    t_ms: float  # milliseconds since the first packet of the capture (kernel receive timestamps)
    dir: str  # "c>s" (client to server) or "s>c"
    flags: tuple[str, ...]  # ("SYN", "ACK")
    seq: int  # relative to the sender's ISN
    ack: int | None  # relative to the receiver's ISN; None without the ACK flag
    win: int  # bytes: the window field << the sender's wscale when known, else the raw field
    wscale: int | None  # the shift applied to ``win``; None: the handshake was not seen (raw field)
    len: int  # payload bytes
    opts: tuple[str, ...] = ()  # options as text: "mss 65495", "sackOK", "ts", "ws 7", "sack 1-5"


# ---------------------------------------------------------------------------------------- decoder
def _options(data: bytes) -> dict | str:
    out: dict = {}
    other: list[int] = []
    sack: list[tuple[int, int]] = []
    i, n = 0, len(data)
    while i < n:
        kind = data[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # NOP
            i += 1
            continue
        if i + 1 >= n:
            return f"TCP option {kind} cut short"
        size = data[i + 1]
        if size < 2 or i + size > n:
            return f"TCP option {kind} has bad length {size}"
        body = data[i + 2:i + size]
        if kind == 2 and size == 4:
            out["mss"] = struct.unpack(">H", body)[0]
        elif kind == 3 and size == 3:
            out["wscale"] = min(body[0], 14)  # RFC 7323: a larger shift is used as 14
        elif kind == 4 and size == 2:
            out["sack_perm"] = True
        elif kind == 8 and size == 10:
            out["ts"] = struct.unpack(">II", body)
        elif kind == 5 and (size - 2) % 8 == 0:
            sack.extend(struct.unpack(">II", body[j:j + 8]) for j in range(0, size - 2, 8))
        else:
            other.append(kind)
        i += size
    if sack:
        out["sack"] = tuple(sack)
    if other:
        out["other_options"] = tuple(other)
    return out


def decode_ip(packet: bytes | memoryview, ethertype: int) -> Segment | str:
    """An IPv4 / IPv6 packet (``ethertype`` says which) holding TCP → `Segment`, else a reason."""
    data = bytes(packet)
    if ethertype == ETH_P_IP:
        if len(data) < 20:
            return f"IPv4 header cut short ({len(data)} bytes)"
        vihl = data[0]
        if vihl >> 4 != 4:
            return f"not IPv4 (version {vihl >> 4})"
        ihl = (vihl & 0x0F) * 4
        if ihl < 20 or len(data) < ihl:
            return f"bad IPv4 header length {ihl}"
        total = struct.unpack_from(">H", data, 2)[0]
        if struct.unpack_from(">H", data, 6)[0] & 0x1FFF:
            return "IPv4 fragment (not the first)"
        if data[9] != 6:
            return f"not TCP (IP protocol {data[9]})"
        if total < ihl:
            return f"bad IPv4 total length {total}"
        src, dst = socket.inet_ntop(socket.AF_INET, data[12:16]), socket.inet_ntop(socket.AF_INET, data[16:20])
        tcp, tcp_total, family = data[ihl:], total - ihl, 4
    elif ethertype == ETH_P_IPV6:
        if len(data) < 40:
            return f"IPv6 header cut short ({len(data)} bytes)"
        if data[0] >> 4 != 6:
            return f"not IPv6 (version {data[0] >> 4})"
        if data[6] != 6:
            return f"not TCP (IPv6 next header {data[6]}; extension headers are not followed)"
        tcp_total = struct.unpack_from(">H", data, 4)[0]
        src = socket.inet_ntop(socket.AF_INET6, data[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, data[24:40])
        tcp, family = data[40:], 6
    else:
        return f"not IP (ethertype 0x{ethertype:04x})"
    if len(tcp) < 20:
        return f"TCP header cut short ({len(tcp)} bytes)"
    sport, dport, seq, ack, off, flags, window = struct.unpack_from(">HHIIBBH", tcp, 0)
    doff = (off >> 4) * 4
    if doff < 20:
        return f"bad TCP data offset {doff}"
    if len(tcp) < doff:
        return f"TCP options cut short ({len(tcp)} of {doff} header bytes)"
    if tcp_total < doff:
        return f"IP length {tcp_total} shorter than the TCP header ({doff})"
    opts = _options(tcp[20:doff])
    if isinstance(opts, str):
        return opts
    return Segment(family, src, dst, sport, dport, seq, ack, flags, window, tcp_total - doff, **opts)


def decode_frame(frame: bytes | memoryview) -> Segment | str:
    """An Ethernet frame (as an AF_PACKET SOCK_RAW socket gives it on ``lo`` or a veth) → `Segment`, or
    a one-line reason it is not a TCP segment we can read. Never raises."""
    try:
        data = bytes(frame)
        if len(data) < ETH_HLEN:
            return f"Ethernet header cut short ({len(data)} bytes)"
        ethertype = struct.unpack_from(">H", data, 12)[0]
        start = ETH_HLEN
        if ethertype == ETH_P_8021Q:  # one VLAN tag
            if len(data) < ETH_HLEN + 4:
                return "VLAN tag cut short"
            ethertype = struct.unpack_from(">H", data, 16)[0]
            start += 4
        return decode_ip(data[start:], ethertype)
    except Exception as exc:  # noqa: BLE001 - hostile input: a reason, never a crash
        return f"undecodable frame: {type(exc).__name__}"


# ---------------------------------------------------------------------------------------- the ladder
def option_texts(seg: Segment, base_other: int | None = None) -> tuple[str, ...]:
    out = []
    if seg.mss is not None:
        out.append(f"mss {seg.mss}")
    if seg.sack_perm:
        out.append("sackOK")
    if seg.ts is not None:
        out.append("ts")
    if seg.wscale is not None:
        out.append(f"ws {seg.wscale}")
    for left, right in seg.sack:
        if base_other is None:
            out.append(f"sack {left}-{right}")
        else:
            out.append(f"sack {(left - base_other) % MOD}-{(right - base_other) % MOD}")
    out.extend(f"opt {k}" for k in seg.other_options)
    return tuple(out)


class Ladder:
    """Segments of one connection → `LadderPacket`s (sans-IO). The connection is named by its two ports
    (the client's ephemeral port and the server's); a segment between other ports gives None."""

    def __init__(self, client_port: int, server_port: int) -> None:
        self.client_port = client_port
        self.server_port = server_port
        self.count = 0
        self._t0: float | None = None
        self._base: dict[str, int] = {}  # side → its ISN (or the first number seen)
        self._ws: dict[str, int | None] = {}  # side → wscale from its SYN (None: SYN without the option)
        self._fin_end: dict[str, int] = {}  # side → relative sequence just after its FIN
        self._acked: dict[str, int] = {}  # side → highest relative ack its peer sent for it
        self.reset_seen = False

    @property
    def finished(self) -> bool:
        """An RST went by, or both FINs were sent and each was acknowledged."""
        if self.reset_seen:
            return True
        return all(side in self._fin_end and self._acked.get(side, -1) >= self._fin_end[side]
                   for side in ("c", "s"))

    def direction(self, seg: Segment) -> str | None:
        if seg.sport == self.client_port and seg.dport == self.server_port:
            return "c>s"
        if seg.sport == self.server_port and seg.dport == self.client_port:
            return "s>c"
        return None

    def _scale(self, side: str) -> int | None:
        if "c" not in self._ws or "s" not in self._ws:
            return None  # a SYN not seen: the shift in force is unknown
        if self._ws["c"] is None or self._ws["s"] is None:
            return 0  # window scaling is on only when both SYNs carry the option (RFC 7323)
        return self._ws[side]

    def feed(self, seg: Segment, ts: float) -> LadderPacket | None:
        """``ts``: the capture time in seconds (any clock, the same for every call)."""
        d = self.direction(seg)
        if d is None:
            return None
        side, other = ("c", "s") if d == "c>s" else ("s", "c")
        if self._t0 is None:
            self._t0 = ts
        syn = bool(seg.flags & SYN)
        if syn:
            self._base[side] = seg.seq  # the ISN (a retransmitted SYN carries the same one)
            self._ws[side] = seg.wscale
        elif side not in self._base:
            self._base[side] = seg.seq
        rel_seq = (seg.seq - self._base[side]) % MOD
        rel_ack = None
        if seg.flags & ACK:
            if other not in self._base:
                self._base[other] = seg.ack
            rel_ack = (seg.ack - self._base[other]) % MOD
            if rel_ack > self._acked.get(other, -1):
                self._acked[other] = rel_ack
        if seg.flags & FIN:
            self._fin_end[side] = rel_seq + seg.payload_len + (1 if syn else 0) + 1
        if seg.flags & RST:
            self.reset_seen = True
        scale = None if syn else self._scale(side)
        win = seg.window << scale if scale else seg.window
        if syn:
            scale = 0  # the window of a SYN is never scaled
        self.count += 1
        return LadderPacket(self.count, round((ts - self._t0) * 1000.0, 3), d, flag_names(seg.flags), rel_seq,
                            rel_ack, win, scale, seg.payload_len, option_texts(seg, self._base.get(other)))


def packet_line(p: LadderPacket, client: str = "client", server: str = "server") -> str:
    """One rung as text: ``  +0.000ms  client ──SYN seq=0 win=65495 [mss 65495,sackOK,ts,ws 7]──▶ server``."""
    parts = [",".join(p.flags) or "(no flags)", f"seq={p.seq}"]
    if p.ack is not None:
        parts.append(f"ack={p.ack}")
    parts.append(f"win={p.win}" if p.wscale is not None else f"win={p.win}(unscaled)")
    if p.len:
        parts.append(f"len={p.len}")
    if p.opts:
        parts.append("[" + ",".join(p.opts) + "]")
    label = " ".join(parts)
    t = f"+{p.t_ms:.3f}ms"
    if p.dir == "c>s":
        return f"{t:>12}  {client} ──{label}──▶ {server}"
    return f"{t:>12}  {client} ◀──{label}── {server}"


# ---------------------------------------------------------------------------------------- BPF
def _ins(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k & 0xFFFFFFFF)


def port_filter(port_a: int, port_b: int | None, loopback_ifindex: int | None = None, snaplen: int = SNAPLEN
                ) -> list[tuple[int, int, int, int]]:
    """The classic BPF program (as ``tcpdump -dd`` prints it) that accepts TCP over IPv4 / IPv6 in
    Ethernet frames between ``port_a`` and ``port_b`` (either way), nothing else; the same instructions
    as ``tcpdump -dd 'tcp and ((src port A and dst port B) or (src port B and dst port A))'`` with the
    IPv4 and IPv6 branches sharing the port checks (X = the IP header length, 40 for IPv6: no extension
    headers). With ``loopback_ifindex``, a packet on that device is kept only as it leaves
    (PACKET_OUTGOING): the loopback device shows every packet twice. ``port_b`` None: every connection
    with ``port_a`` on either side (``tcp port A``; a scenario's listening port, `PortCapture`)."""
    a = port_a & 0xFFFF
    b = 0 if port_b is None else port_b & 0xFFFF
    prog: list = []
    labels: dict[str, int] = {}

    def at(name: str) -> None:
        labels[name] = len(prog)

    def jmp(code: int, k: int, jt: str | None, jf: str | None) -> None:
        prog.append([code, jt, jf, k])  # labels resolved below (None: the next instruction)

    prog.append(_ins(0x28, k=12))                       # ldh [12]            ethertype
    jmp(0x15, ETH_P_IPV6, "v6", None)                   # jeq #0x86dd
    jmp(0x15, ETH_P_IP, None, "drop")                   # jeq #0x800
    prog.append(_ins(0x30, k=23))                       # ldb [23]            IPv4 protocol
    jmp(0x15, 6, None, "drop")                          # jeq #6 (TCP)
    prog.append(_ins(0x28, k=20))                       # ldh [20]            flags + fragment offset
    jmp(0x45, 0x1FFF, "drop", None)                     # jset #0x1fff        not the first fragment
    prog.append(_ins(0xB1, k=14))                       # ldxb 4*([14]&0xf)   X = IPv4 header length
    jmp(0x05, 0, None, None)                            # ja ports (patched below)
    ja_at = len(prog) - 1
    at("v6")
    prog.append(_ins(0x30, k=20))                       # ldb [20]            IPv6 next header
    jmp(0x15, 6, None, "drop")                          # jeq #6 (TCP)
    prog.append(_ins(0x01, k=40))                       # ldx #40             X = IPv6 header length
    at("ports")
    if port_b is None:  # tcp port A: either side
        prog.append(_ins(0x48, k=14))                   # ldh [x + 14]        source port
        jmp(0x15, a, "dev", None)                       # jeq #A
        prog.append(_ins(0x48, k=16))                   # ldh [x + 16]        destination port
        jmp(0x15, a, "dev", "drop")                     # jeq #A
    else:
        prog.append(_ins(0x48, k=14))                   # ldh [x + 14]        source port
        jmp(0x15, a, "dst_b", None)                     # jeq #A
        jmp(0x15, b, "dst_a", "drop")                   # jeq #B
        at("dst_b")
        prog.append(_ins(0x48, k=16))                   # ldh [x + 16]        destination port
        jmp(0x15, b, "dev", "drop")
        at("dst_a")
        prog.append(_ins(0x48, k=16))
        jmp(0x15, a, "dev", "drop")
    at("dev")
    if loopback_ifindex is not None:
        prog.append(_ins(0x20, k=SKF_AD_OFF + SKF_AD_IFINDEX))   # ld ifidx
        jmp(0x15, loopback_ifindex, None, "accept")
        prog.append(_ins(0x20, k=SKF_AD_OFF + SKF_AD_PKTTYPE))   # ld pkttype
        jmp(0x15, PACKET_OUTGOING, "accept", "drop")
    at("accept")
    prog.append(_ins(0x06, k=snaplen))                  # ret #snaplen
    at("drop")
    prog.append(_ins(0x06, k=0))                        # ret #0
    out = []
    for i, ins in enumerate(prog):
        if isinstance(ins, list):
            code, jt, jf, k = ins
            if code == 0x05:  # ja: k is the offset
                out.append(_ins(code, 0, 0, labels["ports"] - i - 1))
                continue
            t = 0 if jt is None else labels[jt] - i - 1
            f = 0 if jf is None else labels[jf] - i - 1
            if not (0 <= t <= 255 and 0 <= f <= 255):
                raise ValueError("BPF jump out of range")
            out.append(_ins(code, t, f, k))
        else:
            out.append(ins)
    assert isinstance(prog[ja_at], list)
    return out


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: ``struct sock_fprog { unsigned short len; struct sock_filter *filter; }``."""
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# ---------------------------------------------------------------------------------------- capture
def _discard_queued(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(1, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return


class LadderUnavailable(Exception):
    """The capture cannot run; ``str()`` is one line saying why (shown in place of the ladder)."""


def unavailable_reason(exc: OSError) -> str:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return ("packet ladder empty: socket(AF_PACKET) = EPERM: capturing packets needs root "
                "(CAP_NET_RAW); run sockmon as root to see the ladder")
    name = errno.errorcode.get(exc.errno or 0, "error")
    return f"packet ladder empty: cannot capture: {name}: {exc.strerror or exc}"


class PacketLog:
    """The packets a capture keeps: at most ``cap``, the oldest evicted first and counted."""

    def __init__(self, cap: int = MAX_PACKETS) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        self._items: deque[LadderPacket] = deque(maxlen=cap)
        self.evicted = 0
        self._lock = threading.Lock()

    def add(self, packet: LadderPacket) -> None:
        with self._lock:
            if len(self._items) == self.cap:
                self.evicted += 1
            self._items.append(packet)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.evicted = 0

    def items(self) -> list[LadderPacket]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


class PacketQueue:
    """Hand-off of packets from a capture thread to a UI thread without a message per packet: ``put``
    says whether the consumer must be woken (the queue was empty), ``drain`` takes everything. Bounded:
    at most ``cap`` wait, the oldest dropped first and counted in ``dropped``."""

    def __init__(self, cap: int = MAX_PACKETS) -> None:
        self.cap = cap
        self._items: deque[LadderPacket] = deque()
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, packet: LadderPacket) -> bool:
        with self._lock:
            wake = not self._items
            if len(self._items) >= self.cap:
                self._items.popleft()
                self.dropped += 1
            self._items.append(packet)
            return wake

    def drain(self) -> list[LadderPacket]:
        with self._lock:
            out = list(self._items)
            self._items.clear()
            return out


class LadderModel:
    """What a view shows of the ladder of the built-in client's newest connection: its packets (at most
    ``cap``, oldest evicted and counted) or the one line saying why there are none. ``epoch`` changes when
    a new connection starts (a view then draws from scratch)."""

    def __init__(self, cap: int = MAX_PACKETS) -> None:
        self.log = PacketLog(cap)
        self.reason: str | None = None
        self.generation: int | None = None
        self.epoch = 0

    def reset(self, generation: int | None = None) -> None:
        self.log.clear()
        self.reason = None
        self.generation = generation
        self.epoch += 1

    def current(self, generation: int | None) -> bool:
        return generation is None or self.generation is None or generation == self.generation

    def add(self, packets, generation: int | None = None) -> int:
        """Add ``packets`` of connect ``generation`` (ignored when it is not the current one)."""
        if not self.current(generation):
            return 0
        n = 0
        for p in packets:
            self.log.add(p)
            n += 1
        return n

    def unavailable(self, reason: str, generation: int | None = None) -> None:
        if self.current(generation):
            self.reason = reason

    @property
    def packets(self) -> list[LadderPacket]:
        return self.log.items()

    @property
    def evicted(self) -> int:
        return self.log.evicted


class LadderCapture:
    """Capture one connection's packets (see the module text). ``client_port`` / ``server_port`` name
    it; ``iface`` limits the capture to one device (default: every device of the namespace)."""

    def __init__(self, client_port: int, server_port: int, *,
                 on_packet: Callable[[LadderPacket], None] | None = None,
                 iface: str | None = None, max_packets: int = MAX_PACKETS, rcvbuf: int = RCVBUF,
                 grace: float = GRACE) -> None:
        self.ladder = Ladder(client_port, server_port)
        self.log = PacketLog(max_packets)
        self.on_packet = on_packet
        self.iface = iface
        self.rcvbuf = rcvbuf
        self.grace = grace
        self.kernel_drops = 0
        self.frames = 0  # frames the kernel's filter let through (read from the socket)
        self.undecoded = 0  # frames the filter let through that did not decode (a reason each)
        self.last_reason: str | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = -1, -1
        self._pipe_lock = threading.Lock()  # stop() never writes to a pipe fd the thread already closed
        self._done = threading.Event()
        self._finished_at: float | None = None

    @property
    def packets(self) -> list[LadderPacket]:
        return self.log.items()

    @property
    def evicted(self) -> int:
        return self.log.evicted

    def start(self) -> None:
        """Open the socket (this thread's network namespace), attach the filter, start reading.
        `LadderUnavailable` (one line) when it cannot."""
        try:
            # every device of the namespace: the protocol given here (Python binds only to a named
            # device); a frame queued before the filter is attached is dropped below (and the ladder
            # checks the ports of every segment anyway)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                 socket.htons(ETH_P_ALL) if self.iface is None else 0)
        except OSError as exc:
            raise LadderUnavailable(unavailable_reason(exc)) from None
        try:
            try:
                lo = socket.if_nametoindex("lo")
            except OSError:
                lo = None
            if self.iface is not None:
                try:
                    socket.if_nametoindex(self.iface)
                except OSError:
                    raise LadderUnavailable(f"packet ladder empty: no interface {self.iface!r} here") from None
            attach_filter(sock, self._program(lo))
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
            except OSError:  # without CAP_NET_ADMIN: at most net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if self.iface is not None:
                sock.bind((self.iface, ETH_P_ALL))  # protocol 0 until here: nothing queued unfiltered
            else:
                _discard_queued(sock)
        except LadderUnavailable:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise LadderUnavailable(unavailable_reason(exc)) from None
        self._sock = sock
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="sockmon-ladder", daemon=True)
        self._thread.start()

    def _program(self, lo: int | None) -> list[tuple[int, int, int, int]]:
        return port_filter(self.ladder.client_port, self.ladder.server_port, lo)

    def _feed(self, seg: Segment, ts: float) -> LadderPacket | None:
        """A decoded segment → the rung to keep (None: not this capture's); sets ``_finished_at``."""
        packet = self.ladder.feed(seg, ts)
        if packet is not None and self.ladder.finished and self._finished_at is None:
            self._finished_at = time.monotonic()
        return packet

    def stop(self) -> None:
        """Stop reading (any thread); packets still queued in the socket are read first."""
        with self._pipe_lock:
            if self._stop_w >= 0:
                try:
                    os.write(self._stop_w, b"x")
                except OSError:
                    pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def wait_done(self, timeout: float | None = None) -> bool:
        """True once the capture ended (the connection over + grace, or ``stop()``)."""
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        cmsg_space = socket.CMSG_SPACE(16)
        try:
            while True:
                timeout = None
                if self._finished_at is not None:
                    timeout = max(0.0, self._finished_at + self.grace - time.monotonic())
                    if timeout == 0.0:
                        break
                ready, _, _ = select.select([sock, self._stop_r], [], [], timeout)
                if sock in ready:
                    self._read_one(sock, cmsg_space)
                    continue
                if self._stop_r in ready:
                    self._drain(sock, cmsg_space)
                    break
        except OSError as exc:
            self.last_reason = f"capture stopped: {exc.strerror or exc}"
        finally:
            self._read_stats(sock)
            sock.close()
            with self._pipe_lock:
                os.close(self._stop_r)
                os.close(self._stop_w)
                self._stop_r = self._stop_w = -1
            self._done.set()

    def _drain(self, sock: socket.socket, cmsg_space: int) -> None:
        while select.select([sock], [], [], 0)[0]:
            self._read_one(sock, cmsg_space)

    def _read_one(self, sock: socket.socket, cmsg_space: int) -> None:
        try:
            data, anc, _flags, _addr = sock.recvmsg(SNAPLEN, cmsg_space, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        ts = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack_from("@qq", payload)
                ts = sec + nsec / 1e9
        if ts is None:
            ts = time.time()
        self.frames += 1
        seg = decode_frame(data)
        if isinstance(seg, str):
            self.undecoded += 1
            self.last_reason = seg
            return
        packet = self._feed(seg, ts)
        if packet is None:
            return
        self.log.add(packet)
        if self.on_packet is not None:
            self.on_packet(packet)

    def _read_stats(self, sock: socket.socket) -> None:
        try:
            raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            _packets, drops = struct.unpack("=II", raw)
            self.kernel_drops += drops
        except OSError:
            pass


class ConnPacket(LadderPacket, frozen=True, gc=False):
    """A rung of a `PortCapture`: a `LadderPacket` that also names its connection (``client`` /
    ``server`` as ``address:port``; the server is the side holding the captured port)."""

    client: str = ""
    server: str = ""


MAX_CONNECTIONS = 64  # connections a PortCapture numbers apart; beyond, packets are counted, not kept


class PortCapture(LadderCapture):
    """Every connection with ``port`` on either side (a lab scenario's listening port): one `Ladder` per
    connection (at most ``max_connections``; packets of further ones are counted in ``untracked``), one
    bounded log of `ConnPacket`s numbered in capture order, ``t_ms`` counted from ``t0`` (seconds, the
    kernel's receive-timestamp clock: ``time.time()``; None: the first packet). It never stops by itself:
    ``stop()`` ends it. ``start()`` opens the socket in the calling thread's namespace (run it in
    `sockmon.core.netns.run_in_netns` for a namespace)."""

    def __init__(self, port: int, *, on_packet: Callable[[LadderPacket], None] | None = None,
                 iface: str | None = None, max_packets: int = MAX_PACKETS, rcvbuf: int = RCVBUF,
                 max_connections: int = MAX_CONNECTIONS, t0: float | None = None) -> None:
        super().__init__(0, port, on_packet=on_packet, iface=iface, max_packets=max_packets, rcvbuf=rcvbuf,
                         grace=0.0)
        self.port = port
        self.max_connections = max_connections
        self.t0 = t0
        self.untracked = 0  # packets of connections beyond max_connections
        self.count = 0
        self._ladders: dict[tuple[str, int, str], Ladder] = {}

    @property
    def connections(self) -> int:
        return len(self._ladders)

    def _program(self, lo: int | None) -> list[tuple[int, int, int, int]]:
        return port_filter(self.port, None, lo)

    def _feed(self, seg: Segment, ts: float) -> LadderPacket | None:
        if seg.dport == self.port:
            client, cport, server = seg.src, seg.sport, seg.dst
        elif seg.sport == self.port:
            client, cport, server = seg.dst, seg.dport, seg.src
        else:
            return None
        key = (client, cport, server)
        ladder = self._ladders.get(key)
        if ladder is None:
            if len(self._ladders) >= self.max_connections:
                self.untracked += 1
                return None
            ladder = self._ladders[key] = Ladder(cport, self.port)
        if self.t0 is None:
            self.t0 = ts
        if ladder._t0 is None:
            ladder._t0 = self.t0  # one time axis for every connection of the capture
        packet = ladder.feed(seg, ts)
        if packet is None:
            return None
        self.count += 1
        host = (lambda a: f"[{a}]") if ":" in client else (lambda a: a)
        return ConnPacket(self.count, packet.t_ms, packet.dir, packet.flags, packet.seq, packet.ack, packet.win,
                          packet.wscale, packet.len, packet.opts, client=f"{host(client)}:{cport}",
                          server=f"{host(server)}:{self.port}")


class LadderHook:
    """The client engine's ``before_connect`` hook that starts a ladder: in the engine thread, bind the
    new socket to an ephemeral port (bind(port 0): the port is known before connect()), then start a
    `LadderCapture` for (that port, the server's port) so the SYN is caught. One capture per connect
    attempt (the previous one is stopped). ``on_packet`` gets each packet from the capture thread;
    ``on_unavailable`` gets the one-line reason when no capture can run (once per attempt)."""

    def __init__(self, on_packet: Callable[[LadderPacket], None] | None = None,
                 on_unavailable: Callable[[str], None] | None = None, *, iface: str | None = None,
                 max_packets: int = MAX_PACKETS, grace: float = GRACE) -> None:
        self.on_packet = on_packet
        self.on_unavailable = on_unavailable
        self.iface = iface
        self.max_packets = max_packets
        self.grace = grace
        self.capture: LadderCapture | None = None
        self.reason: str | None = None

    def __call__(self, sock: socket.socket, family: int, sockaddr: tuple) -> str:
        self.stop()
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        sock.bind((wildcard, 0))
        client_port = sock.getsockname()[1]
        server_port = sockaddr[1]
        capture = LadderCapture(client_port, server_port, on_packet=self.on_packet, iface=self.iface,
                                max_packets=self.max_packets, grace=self.grace)
        bound = f"bind({wildcard} port 0) → port {client_port}"
        try:
            capture.start()
        except LadderUnavailable as exc:
            self.reason = str(exc)
            if self.on_unavailable is not None:
                self.on_unavailable(self.reason)
            return f"{bound}; no packet capture (ladder empty)"
        self.capture = capture
        where = f"device {self.iface}" if self.iface else "every device of this namespace"
        return (f"{bound}; packet capture (AF_PACKET, BPF: tcp ports {client_port} ⇄ {server_port}) "
                f"on {where}, started before connect() so the SYN is caught")

    def stop(self) -> None:
        if self.capture is not None:
            self.capture.stop()

    def wait_done(self, timeout: float) -> bool:
        """Wait for the capture to end by itself (connection over + grace); stop it after ``timeout``."""
        capture = self.capture
        if capture is None:
            return True
        done = capture.wait_done(timeout)
        if not done:
            capture.stop()
        return done


__all__ = ["ConnPacket", "MAX_CONNECTIONS", "PortCapture", "LadderHook", "LadderModel", "PacketQueue", "GRACE", "MAX_PACKETS", "Ladder", "LadderCapture", "LadderPacket", "LadderUnavailable", "PacketLog",
           "Segment", "decode_frame", "decode_ip", "flag_names", "packet_line", "port_filter"]
