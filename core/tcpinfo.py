"""`struct tcp_info` (linux/tcp.h) decoded into a frozen record.

One decoder serves both sources: getsockopt(TCP_INFO) on our own sockets and the INET_DIAG_INFO
attribute of a sock_diag dump. Older kernels send a shorter struct; missing fields read as 0.
Window scales are 4-bit bitfields sharing one byte: on little-endian GCC ``snd_wscale`` is the low
nibble, ``rcv_wscale`` the high one (``ss -i`` prints ``wscale:snd,rcv``).
"""

from __future__ import annotations

import operator
import socket
import struct
from dataclasses import dataclass
from typing import NamedTuple

# Offsets documented in linux/tcp.h; 248 bytes up to tcpi_total_rto_time.
_FMT = struct.Struct(
    "<"
    "8B"  # state ca_state retransmits probes backoff options wscale(snd:4,rcv:4) app_limited/fastopen
    "24I"  # rto ato snd_mss rcv_mss unacked sacked lost retrans fackets last_data_sent last_ack_sent
    # last_data_recv last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd advmss
    # reordering rcv_rtt rcv_space total_retrans
    "4Q"  # pacing_rate max_pacing_rate bytes_acked bytes_received
    "6I"  # segs_out segs_in notsent_bytes min_rtt data_segs_in data_segs_out
    "4Q"  # delivery_rate busy_time rwnd_limited sndbuf_limited
    "2I"  # delivered delivered_ce
    "2Q"  # bytes_sent bytes_retrans
    "6I"  # dsack_dups reord_seen rcv_ooopack snd_wnd rcv_wnd rehash
    "2HI"  # total_rto total_rto_recoveries total_rto_time
)
TCP_INFO_SIZE = _FMT.size  # 248
_ZEROS = bytes(TCP_INFO_SIZE)


def dataclass_compatible(cls):
    """Give a NamedTuple record the dataclass protocol (``dataclasses.fields/asdict/replace``).

    The socket table builds tens of thousands of records per snapshot; a frozen slotted dataclass
    costs one ``object.__setattr__`` per field (≈ 8 µs for the 46 fields of tcp_info), a tuple
    subclass is built in C in a fraction of that and is just as immutable. This keeps code written
    against the dataclass API working: same field names, order, defaults and keyword constructor.
    """
    ns = {"__annotations__": dict(cls.__annotations__), "__module__": cls.__module__}
    ns.update(cls._field_defaults)
    twin = dataclass(frozen=True)(type(cls.__name__, (), ns))
    cls.__dataclass_fields__ = twin.__dataclass_fields__
    cls.__dataclass_params__ = twin.__dataclass_params__
    return cls


@dataclass_compatible
class TcpInfo(NamedTuple):
    """Times are microseconds (rtt, rttvar, rto, ato, min_rtt, rcv_rtt) or milliseconds (last_*).

    Immutable (a tuple underneath, with the dataclass protocol; see `dataclass_compatible`).
    """

    state: int
    ca_state: int
    retransmits: int
    probes: int
    backoff: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    last_data_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int
    rttvar: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_rtt: int
    rcv_space: int
    total_retrans: int
    pacing_rate: int
    bytes_acked: int
    bytes_received: int
    segs_out: int
    segs_in: int
    notsent_bytes: int
    min_rtt: int
    data_segs_in: int
    data_segs_out: int
    delivery_rate: int
    busy_time: int
    delivered: int
    bytes_sent: int
    bytes_retrans: int
    snd_wnd: int
    rcv_wnd: int

    def as_dict(self) -> dict[str, int]:
        return dict(zip(self._fields, self, strict=True))


# Indices into the unpacked struct of the fields TcpInfo keeps after the two window scales
# (v[8:32] = rto .. total_retrans, then pacing_rate .. rcv_wnd; see the field order of TcpInfo).
_AFTER_WSCALE = operator.itemgetter(
    8, 9, 10, 11, 12, 13, 14, 15, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,  # rto..total_retrans
    32, 34, 35,  # pacing_rate, bytes_acked, bytes_received
    36, 37, 38, 39, 40, 41,  # segs_out segs_in notsent_bytes min_rtt data_segs_in data_segs_out
    42, 43,  # delivery_rate busy_time
    46,  # delivered
    48, 49,  # bytes_sent bytes_retrans
    53, 54,  # snd_wnd rcv_wnd
)
_HEAD = operator.itemgetter(0, 1, 2, 3, 4, 5)

# The same 248 bytes with the fields TcpInfo does not keep skipped ('x'): unpacks to exactly the 45
# values of TcpInfo in order, with the shared wscale byte at index 6 (split by the caller). Used by
# the sock_diag reader inside one larger per-message struct (see sockmon.core.table.diag).
KEEP_FMT = (
    "7Bx"  # state ca_state retransmits probes backoff options wscale | app_limited/fastopen
    "8I4x"  # rto ato snd_mss rcv_mss unacked sacked lost retrans | fackets
    "I4x"  # last_data_sent | last_ack_sent
    "13I"  # last_data_recv last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd advmss
    # reordering rcv_rtt rcv_space total_retrans
    "Q8x2Q"  # pacing_rate | max_pacing_rate | bytes_acked bytes_received
    "6I"  # segs_out segs_in notsent_bytes min_rtt data_segs_in data_segs_out
    "2Q16x"  # delivery_rate busy_time | rwnd_limited sndbuf_limited
    "I4x"  # delivered | delivered_ce
    "2Q12x"  # bytes_sent bytes_retrans | dsack_dups reord_seen rcv_ooopack
    "2I12x"  # snd_wnd rcv_wnd | rehash total_rto total_rto_recoveries total_rto_time
)
KEEP_COUNT = 45
assert struct.calcsize("=" + KEEP_FMT) == TCP_INFO_SIZE
_new_tuple = tuple.__new__
_unpack_from = _FMT.unpack_from


def decode_tcp_info_from(buf: bytes | bytearray | memoryview, offset: int = 0) -> TcpInfo:
    """Decode a full-size struct tcp_info at ``offset`` of ``buf`` (the fast path of the dump reader)."""
    v = _unpack_from(buf, offset)
    w = v[6]
    return _new_tuple(TcpInfo, _HEAD(v) + (w & 0x0F, w >> 4) + _AFTER_WSCALE(v))


def decode_tcp_info(buf: bytes | bytearray | memoryview) -> TcpInfo:
    """Decode a (possibly short) struct tcp_info. A longer struct from a newer kernel is cut."""
    if len(buf) < TCP_INFO_SIZE:
        buf = bytes(buf) + _ZEROS[len(buf):]
    return decode_tcp_info_from(buf)


def read_tcp_info(sock: socket.socket) -> TcpInfo:
    """The kernel's current tcp_info for one of our sockets (getsockopt TCP_INFO)."""
    return decode_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE))
