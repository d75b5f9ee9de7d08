"""sock_diag for TCP: `inet_diag_req_v2` requests and `inet_diag_msg` (+ attributes) → `Socket`.

Layouts from linux/inet_diag.h (DESIGN.md §1). The reader is the hot path of every snapshot, so
`parse_datagram` walks one received buffer in a single loop with one `struct.unpack_from` per
message, cached address / congestion strings and tuple-built records. A message whose lengths do
not add up raises `NetlinkFormatError`; a socket is only ever appended once fully decoded.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

from sockmon.core import netlink
from sockmon.core.netlink import NetlinkFormatError
from sockmon.core.records import Socket, Timer
from sockmon.core.states import ALL_STATES_MASK, NEW_SYN_RECV, SYN_RECV
from sockmon.core.tcpinfo import TCP_INFO_SIZE, decode_tcp_info, decode_tcp_info_from

SOCK_DIAG_BY_FAMILY = 20
SOCK_DESTROY = 21

# inet_diag extensions (attribute types in the reply; request bit = 1 << (type - 1))
INET_DIAG_MEMINFO = 1
INET_DIAG_INFO = 2
INET_DIAG_VEGASINFO = 3
INET_DIAG_CONG = 4
INET_DIAG_TOS = 5
INET_DIAG_TCLASS = 6
INET_DIAG_SKMEMINFO = 7
INET_DIAG_SHUTDOWN = 8

INET_DIAG_REQ_BYTECODE = 1  # request attribute

# bytecode ops (struct inet_diag_bc_op {u8 code; u8 yes; u16 no;})
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_EQ = 11
INET_DIAG_BC_D_EQ = 12
_BC_OP = struct.Struct("=BBH")

# inet_diag_req_v2: family, protocol, ext, pad, states; inet_diag_sockid: sport, dport (be16),
# src[16], dst[16], if, cookie[2]
_REQ = struct.Struct("=BBBBI" "HH16s16sI" "II")
INET_DIAG_NOCOOKIE = 0xFFFFFFFF

# nlmsghdr (16) + inet_diag_msg (72) in one unpack; ports are read little-endian and swapped.
_MSG = struct.Struct("=IHHII" "BBBB" "HH16s16sIQ" "IIIII")
_MSG_LEN = _MSG.size  # 88
INET_DIAG_MSG_SIZE = _MSG_LEN - netlink.NLMSG_HDRLEN  # 72
_NLA = netlink.NLA_HDR
_SWAP16 = [((p & 0xFF) << 8) | (p >> 8) for p in range(65536)]


def states_mask(states: Iterable[int] | None) -> int:
    """idiag_states bitmask; SYN_RECV also asks for request sockets (NEW_SYN_RECV)."""
    if states is None:
        return ALL_STATES_MASK
    mask = 0
    for st in states:
        st = int(st)
        if not 0 < st < 16:
            raise ValueError(f"not a TCP state code: {st}")
        mask |= 1 << st
        if st == SYN_RECV:
            mask |= 1 << NEW_SYN_RECV
    return mask


def port_bytecode(port: int) -> bytes:
    """Filter `sport == port || dport == port` (the layout `ss` uses for an OR of two compares).

    @0 S_EQ (yes → @8 JMP, no → @12 D_EQ), @8 JMP → end (accept), @12 D_EQ (yes → end, no → reject).
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return b"".join((
        _BC_OP.pack(INET_DIAG_BC_S_EQ, 8, 12), _BC_OP.pack(0, 0, port),
        _BC_OP.pack(INET_DIAG_BC_JMP, 4, 12),
        _BC_OP.pack(INET_DIAG_BC_D_EQ, 8, 12), _BC_OP.pack(0, 0, port),
    ))


def build_request(family: int, *, states: int = ALL_STATES_MASK, with_info: bool = True,
                  port: int | None = None, protocol: int = socket.IPPROTO_TCP) -> bytes:
    ext = ((1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_CONG - 1))) if with_info else 0
    req = _REQ.pack(family, protocol, ext, 0, states, 0, 0, bytes(16), bytes(16), 0,
                    INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    if port is not None:
        bc = port_bytecode(port)
        req += _NLA.pack(4 + len(bc), INET_DIAG_REQ_BYTECODE) + bc
    return req


_ADDR_CACHE: dict[tuple[int, bytes], str] = {}
_CONG_CACHE: dict[bytes, str] = {}


def _addr(family: int, raw: bytes) -> str:
    key = (family, raw)
    text = _ADDR_CACHE.get(key)
    if text is None:
        if family == socket.AF_INET:
            text = socket.inet_ntop(socket.AF_INET, raw[:4])
        elif family == socket.AF_INET6:
            text = socket.inet_ntop(socket.AF_INET6, raw)
        else:
            raise NetlinkFormatError(f"sock_diag: unexpected address family {family}")
        if len(_ADDR_CACHE) > 65536:
            _ADDR_CACHE.clear()
        _ADDR_CACHE[key] = text
    return text


def parse_datagram(data: bytes, seq: int | None, out: list[Socket]) -> bool:
    """Decode every message of one received datagram, appending Sockets to ``out``.

    Returns True when the datagram ends the dump (NLMSG_DONE or an ACK). Raises OSError for an
    NLMSG_ERROR and NetlinkFormatError for lengths that do not add up; in that case nothing from
    the bad message was appended. ``seq`` None accepts any sequence number.
    """
    size = len(data)
    off = 0
    unpack = _MSG.unpack_from
    nla = _NLA.unpack_from
    swap = _SWAP16
    addr_cache = _ADDR_CACHE
    addr = _addr
    append = out.append
    new = tuple.__new__
    while off < size:
        if size - off < 16:
            raise NetlinkFormatError(f"netlink: {size - off} trailing bytes, shorter than a message header")
        if size - off >= _MSG_LEN:
            (length, mtype, _flags, mseq, _pid, family, state, timer, retrans, sport, dport, src, dst,
             ifindex, cookie, expires, rqueue, wqueue, uid, inode) = unpack(data, off)
        else:
            length, mtype, _flags, mseq, _pid = netlink.NLMSG_HDR.unpack_from(data, off)
            if mtype == SOCK_DIAG_BY_FAMILY:
                raise NetlinkFormatError(f"sock_diag: message of {size - off} bytes is shorter than "
                                         f"an inet_diag_msg")
        end = off + length
        if length < 16 or end > size:
            raise NetlinkFormatError(f"netlink: message length {length} at offset {off} does not fit "
                                     f"the {size}-byte buffer")
        if seq is not None and mseq != seq:
            off += (length + 3) & ~3
            continue
        if mtype != SOCK_DIAG_BY_FAMILY:
            if netlink.check_control(data, mtype, off, end):
                return True
            off += (length + 3) & ~3
            continue
        if length < _MSG_LEN:
            raise NetlinkFormatError(f"sock_diag: message length {length} is shorter than an inet_diag_msg")
        info = None
        cong = None
        a = off + _MSG_LEN
        while a < end:
            if end - a < 4:
                raise NetlinkFormatError("sock_diag: truncated attribute header")
            alen, atype = nla(data, a)
            if alen < 4 or a + alen > end:
                raise NetlinkFormatError(f"sock_diag: attribute length {alen} does not fit its message")
            if atype == INET_DIAG_INFO:
                if alen - 4 >= TCP_INFO_SIZE:
                    info = decode_tcp_info_from(data, a + 4)
                else:
                    info = decode_tcp_info(data[a + 4:a + alen])
            elif atype == INET_DIAG_CONG:
                raw = data[a + 4:a + alen]
                cong = _CONG_CACHE.get(raw)
                if cong is None:
                    cong = raw.split(b"\0", 1)[0].decode("ascii", "replace")
                    _CONG_CACHE[raw] = cong
            a += (alen + 3) & ~3
        s = addr_cache.get((family, src))
        if s is None:
            s = addr(family, src)
        d = addr_cache.get((family, dst))
        if d is None:
            d = addr(family, dst)
        append(new(Socket, (family, state, s, swap[sport], d, swap[dport], rqueue, wqueue,
                            new(Timer, (timer, expires, retrans)) if timer else None,
                            uid, inode, cookie, ifindex, info, cong)))
        off += (length + 3) & ~3
    return False


def dump_tcp(sock: socket.socket, family: int, *, states: int = ALL_STATES_MASK, with_info: bool = True,
             port: int | None = None, out: list[Socket] | None = None) -> list[Socket]:
    """All TCP sockets of one address family from an open NETLINK_SOCK_DIAG socket."""
    result: list[Socket] = [] if out is None else out
    req = build_request(family, states=states, with_info=with_info, port=port)
    netlink.dump(sock, SOCK_DIAG_BY_FAMILY, req, lambda data, seq: parse_datagram(data, seq, result))
    return result
