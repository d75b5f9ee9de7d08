"""sock_diag for TCP: `inet_diag_req_v2` requests and `inet_diag_msg` (+ attributes) → `Socket`.

Layouts from linux/inet_diag.h (docs/kernel-facts.md §1). The reader is the hot path of every snapshot, so
`parse_datagram` walks one received buffer in a single loop with one `struct.unpack_from` per
message, cached address / congestion strings, and the tcp_info attribute kept as the kernel's bytes
(`Socket.tcp_info_bytes`, decoded on access). A message whose lengths do not add up raises
`NetlinkFormatError`; a socket is only ever appended once fully decoded.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterable

from msgspec.structs import replace
from sockmon.core.records import Socket, Timer
from sockmon.core.states import ALL_STATES_MASK, NEW_SYN_RECV, SYN_RECV
from sockmon.core.table import netlink
from sockmon.core.table.netlink import NetlinkFormatError
from sockmon.core.tcpinfo import TCP_INFO_KEPT, TCP_INFO_SIZE, tcp_info_bytes

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
_SWAP16 = struct.unpack(">65536H", struct.pack("<65536H", *range(65536)))  # port as read → port (built in C)


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


# raw 16-byte address → text, per family (a dict per family keeps the key a plain bytes object)
_ADDRS: dict[int, dict[bytes, str]] = {int(socket.AF_INET): {}, int(socket.AF_INET6): {}}
_CONG_CACHE: dict[bytes, str] = {}


def _addr(family: int, raw: bytes) -> str:
    cache = _ADDRS.get(family)
    if cache is None:
        raise NetlinkFormatError(f"sock_diag: unexpected address family {family}")
    text = cache.get(raw)
    if text is None:
        if family == socket.AF_INET:
            text = socket.inet_ntop(socket.AF_INET, raw[:4])
        else:
            text = socket.inet_ntop(socket.AF_INET6, raw)
        if len(cache) > 65536:
            cache.clear()
        cache[raw] = text
    return text


def _cong(raw: bytes) -> str:
    name = _CONG_CACHE.get(raw)
    if name is None:
        name = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        if len(_CONG_CACHE) < 256:
            _CONG_CACHE[raw] = name
    return name


# ------------------------------------------------------------------------------------------------
# Fast path. Within one dump, messages of the same length, family and state almost always have the
# same attribute layout (which attributes, their lengths). For each layout seen we compile ONE
# struct covering the whole message — nlmsghdr, inet_diag_msg, every attribute header, the first
# TCP_INFO_KEPT bytes of tcp_info (one bytes object) and the congestion name — and check every attribute header it unpacked against
# the layout. A message whose headers differ takes the strict slow path instead, so the fast path
# never decodes anything the slow path would reject.
_HEAD_FMT = "IHHII" "BBBB" "HH16s16sIQ" "IIIII"  # 20 values, see _MSG
_KEY_LEN = 18  # nlmsg len, type, flags, seq, pid + family, state: the layout lookup key
_MAX_LAYOUTS = 64


class _Layout:
    __slots__ = ("unpack", "iter_unpack", "pairs", "info_at", "cong_at", "length", "family")

    def __init__(self, length: int, seq: int, family: int, attrs: list[tuple[int, int, int]]) -> None:
        """``attrs``: (type, nla_len, bytes consumed incl. padding) in message order."""
        fmt = "=" + _HEAD_FMT
        idx = 20
        # the bytes every message decoded with this layout must have: nlmsg length and type,
        # sequence number, family, and every attribute header (state, flags, values may differ)
        fixed = {0: struct.pack("=IH", length, SOCK_DIAG_BY_FAMILY), 8: struct.pack("=I", seq),
                 16: bytes((family,))}
        self.info_at = -1
        self.cong_at = -1
        self.family = family  # one of the fixed bytes: every message of the layout has it
        pos = _MSG_LEN
        for atype, alen, used in attrs:
            fixed[pos] = _NLA.pack(alen, atype)
            fmt += "4x"
            payload = alen - 4
            pad = used - alen
            if atype == INET_DIAG_INFO and payload < TCP_INFO_SIZE:
                raise ValueError("short tcp_info (older kernel): decoded by the strict path")
            if atype == INET_DIAG_INFO and self.info_at < 0:
                fmt += f"{TCP_INFO_KEPT}s{payload - TCP_INFO_KEPT + pad}x"
                self.info_at = idx
                idx += 1
            elif atype == INET_DIAG_CONG and self.cong_at < 0:
                fmt += f"{payload}s{pad}x"
                self.cong_at = idx
                idx += 1
            else:
                fmt += f"{payload + pad}x"
            pos += used
        st = struct.Struct(fmt)
        if st.size != length or pos != length:
            raise ValueError("layout does not cover the message")
        self.unpack = st.unpack_from
        self.iter_unpack = st.iter_unpack
        self.length = length
        self.pairs = tuple((start + j, raw[j:j + 1]) for start, raw in fixed.items() for j in range(len(raw)))

    def matching(self, data: bytes, off: int, k: int) -> int:
        """How many of the k message-sized slots from ``off`` on carry this layout's fixed bytes.

        One strided slice per checked byte covers all k slots at once (data[p::length]); only when
        that bulk check fails are the slots checked one by one to find the first that differs.
        """
        length = self.length
        end = off + k * length
        for p, b in self.pairs:
            if data[off + p:end:length] != b * k:
                break
        else:
            return k
        n = 0
        while n < k:
            base = off + n * length
            if any(data[base + p:base + p + 1] != b for p, b in self.pairs):
                break
            n += 1
        return n


class DumpParser:
    """Decodes the datagrams of one dump; remembers attribute layouts between datagrams."""

    def __init__(self, seq: int | None) -> None:
        self.seq = seq
        self.layouts: dict[bytes, _Layout] = {}

    def feed(self, data: bytes, out: list[Socket]) -> bool:
        """Decode every message of one datagram into ``out``; True when the dump is complete.

        NLMSG_ERROR → OSError; lengths that do not add up → NetlinkFormatError, and nothing from
        the bad message was appended.
        """
        size = len(data)
        off = 0
        layouts = self.layouts
        append = out.append
        sock = Socket
        timer_of = Timer
        addrs = _ADDRS
        cong_cache = _CONG_CACHE
        swap = _SWAP16
        view = memoryview(data)
        while off < size:
            lay = layouts.get(data[off:off + _KEY_LEN])
            if lay is not None:
                length = lay.length
                n = lay.matching(data, off, (size - off) // length)
                if n:
                    i = lay.info_at
                    c = lay.cong_at
                    family = lay.family
                    cache = addrs[family]
                    rows = lay.iter_unpack(view[off:off + n * length])
                    if i >= 0 and c >= 0:  # the usual layout (tcp_info and congestion): fewer steps
                        for v in rows:
                            s = cache.get(v[11])
                            if s is None:
                                s = _addr(family, v[11])
                            d = cache.get(v[12])
                            if d is None:
                                d = _addr(family, v[12])
                            cong = cong_cache.get(v[c])
                            if cong is None:
                                cong = _cong(v[c])
                            timer = v[7]
                            append(sock(family, v[6], s, swap[v[9]], d, swap[v[10]], v[16], v[17],
                                        timer_of(timer, v[15], v[8]) if timer else None,
                                        v[18], v[19], v[14], v[13], v[i], cong))
                        off += n * length
                        continue
                    for v in rows:
                        s = cache.get(v[11])
                        if s is None:
                            s = _addr(family, v[11])
                        d = cache.get(v[12])
                        if d is None:
                            d = _addr(family, v[12])
                        if c >= 0:
                            cong = cong_cache.get(v[c])
                            if cong is None:
                                cong = _cong(v[c])
                        else:
                            cong = None
                        timer = v[7]
                        append(sock(family, v[6], s, swap[v[9]], d, swap[v[10]], v[16], v[17],
                                    timer_of(timer, v[15], v[8]) if timer else None,
                                    v[18], v[19], v[14], v[13], v[i] if i >= 0 else None, cong))
                    off += n * length
                    continue  # the next message may start another known layout
            done, off = self._slow(data, off, size, out)
            if done:
                return True
        return False

    def _slow(self, data: bytes, off: int, size: int, out: list[Socket]) -> tuple[bool, int]:
        """Strict decode of the message at ``off``; learns its layout. Returns (done, next offset)."""
        if size - off < 16:
            raise NetlinkFormatError(f"netlink: {size - off} trailing bytes, shorter than a message header")
        if size - off >= _MSG_LEN:
            (length, mtype, _flags, mseq, _pid, family, state, timer, retrans, sport, dport, src, dst,
             ifindex, cookie, expires, rqueue, wqueue, uid, inode) = _MSG.unpack_from(data, off)
        else:
            length, mtype, _flags, mseq, _pid = netlink.NLMSG_HDR.unpack_from(data, off)
            if mtype == SOCK_DIAG_BY_FAMILY and length >= 16 and off + length <= size:
                raise NetlinkFormatError(f"sock_diag: message of {length} bytes is shorter than an inet_diag_msg")
        end = off + length
        if length < 16 or end > size:
            raise NetlinkFormatError(f"netlink: message length {length} at offset {off} does not fit "
                                     f"the {size}-byte buffer")
        nxt = off + ((length + 3) & ~3)
        if self.seq is not None and mseq != self.seq:
            return False, nxt
        if mtype != SOCK_DIAG_BY_FAMILY:
            return netlink.check_control(data, mtype, off, end), nxt
        if length < _MSG_LEN:
            raise NetlinkFormatError(f"sock_diag: message length {length} is shorter than an inet_diag_msg")
        info = None
        cong = None
        attrs = []
        a = off + _MSG_LEN
        nla = _NLA.unpack_from
        while a < end:
            if end - a < 4:
                raise NetlinkFormatError("sock_diag: truncated attribute header")
            alen, atype = nla(data, a)
            if alen < 4 or a + alen > end:
                raise NetlinkFormatError(f"sock_diag: attribute length {alen} does not fit its message")
            if atype == INET_DIAG_INFO and info is None:
                info = tcp_info_bytes(data[a + 4:a + alen])
            elif atype == INET_DIAG_CONG and cong is None:
                cong = _cong(data[a + 4:a + alen])
            used = min((alen + 3) & ~3, end - a)
            attrs.append((atype, alen, used))
            a += used
        sock = Socket(family, state, _addr(family, src), _SWAP16[sport], _addr(family, dst), _SWAP16[dport],
                      rqueue, wqueue, Timer(timer, expires, retrans) if timer else None, uid, inode, cookie,
                      ifindex, info, cong)
        out.append(sock)
        if nxt == end and len(self.layouts) < _MAX_LAYOUTS:
            try:
                self.layouts[data[off:off + _KEY_LEN]] = _Layout(length, mseq, family, attrs)
            except (ValueError, struct.error):
                pass
        return False, nxt


def parse_datagram(data: bytes, seq: int | None, out: list[Socket]) -> bool:
    """Decode every message of one received datagram, appending Sockets to ``out``.

    Returns True when the datagram ends the dump (NLMSG_DONE or an ACK). Raises OSError for an
    NLMSG_ERROR and NetlinkFormatError for lengths that do not add up; in that case nothing from
    the bad message was appended. ``seq`` None accepts any sequence number.
    """
    return DumpParser(seq).feed(data, out)


def dump_tcp(sock: socket.socket, family: int, *, states: int = ALL_STATES_MASK, with_info: bool = True,
             port: int | None = None, out: list[Socket] | None = None, overlapped: bool = False,
             protocol: int = socket.IPPROTO_TCP) -> list[Socket]:
    """All TCP sockets of one address family from an open NETLINK_SOCK_DIAG socket.

    ``overlapped``: receive in a helper thread while this one parses (see netlink.dump_overlapped).
    ``protocol`` IPPROTO_UDP asks for UDP sockets instead (use `dump_udp`: it marks them as UDP).
    """
    result: list[Socket] = [] if out is None else out
    req = build_request(family, states=states, with_info=with_info, port=port, protocol=protocol)
    parsers: dict[int, DumpParser] = {}

    def handle(data: bytes, seq: int) -> bool:
        parser = parsers.get(seq)
        if parser is None:
            parser = parsers[seq] = DumpParser(seq)
        return parser.feed(data, result)

    (netlink.dump_overlapped if overlapped else netlink.dump)(sock, SOCK_DIAG_BY_FAMILY, req, handle)
    return result


_UDP = int(socket.IPPROTO_UDP)


def dump_udp(sock: socket.socket, family: int, *, states: int = ALL_STATES_MASK, port: int | None = None,
             out: list[Socket] | None = None) -> list[Socket]:
    """All UDP sockets of one address family (inet_diag with IPPROTO_UDP, like ``ss -u``), each a
    `Socket` with ``protocol`` IPPROTO_UDP: state CLOSE (7) when unconnected, ESTABLISHED when
    connected; recv_q / send_q are the bytes queued (no tcp_info, no congestion algorithm)."""
    got = dump_tcp(sock, family, states=states, with_info=False, port=port, protocol=_UDP)
    marked = [replace(s, protocol=_UDP) for s in got]
    if out is None:
        return marked
    out.extend(marked)
    return out


def exact_request(family: int, src: str, sport: int, dst: str, dport: int, *, with_info: bool = True,
                  cookie: int | None = None) -> bytes:
    """An `inet_diag_req_v2` for one socket by its 4-tuple (and cookie when given): sent with
    NLM_F_REQUEST and no DUMP, the kernel looks the socket up (established hash incl. request and
    TIME_WAIT sockets, then listeners) and answers one `inet_diag_msg`, or ENOENT."""
    ext = ((1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_CONG - 1))) if with_info else 0
    if family == socket.AF_INET:
        raw_s = socket.inet_pton(family, src) + bytes(12)
        raw_d = socket.inet_pton(family, dst) + bytes(12)
    else:
        raw_s = socket.inet_pton(family, src)
        raw_d = socket.inet_pton(family, dst)
    lo, hi = (INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE) if cookie is None else (cookie & 0xFFFFFFFF, cookie >> 32)
    return _REQ.pack(family, socket.IPPROTO_TCP, ext, 0, ALL_STATES_MASK, socket.htons(sport),
                     socket.htons(dport), raw_s, raw_d, 0, lo, hi)


EXACT_BATCH = 64  # requests per sendmsg: their replies fit the socket's receive buffer


def get_exact(sock: socket.socket, keys: Iterable[tuple[int, str, int, str, int]], *,
              with_info: bool = True) -> tuple[list[Socket], list[tuple]]:
    """The sockets with these (family, src, sport, dst, dport) keys, by exact sock_diag requests
    (EXACT_BATCH of them per datagram). Returns (found, missing keys); a key whose socket is gone
    (ENOENT) — or lives in another namespace — is missing."""
    found: list[Socket] = []
    missing: list[tuple] = []
    keys = list(keys)
    for start in range(0, len(keys), EXACT_BATCH):
        part = keys[start:start + EXACT_BATCH]
        seqs: dict[int, tuple] = {}
        msgs = []
        for key in part:
            seq = netlink.next_seq()
            seqs[seq] = key
            msgs.append(netlink.build_message(SOCK_DIAG_BY_FAMILY, netlink.NLM_F_REQUEST,
                                              exact_request(*key, with_info=with_info), seq))
        sock.send(b"".join(msgs))
        while seqs:
            data = sock.recv(netlink.RECV_SIZE)
            for mtype, _flags, seq, off, end in netlink.iter_messages(data):
                key = seqs.pop(seq, None)
                if key is None:
                    continue
                if mtype == netlink.NLMSG_ERROR:
                    err = netlink.error_from(data, off, end)
                    if err is not None and err.errno not in (errno.ENOENT, errno.ENOSPC):
                        raise err
                    missing.append(key)
                else:
                    got: list[Socket] = []
                    DumpParser(seq).feed(bytes(data[off:end]), got)
                    found.extend(got)
                    if not got:
                        missing.append(key)
    return found, missing
