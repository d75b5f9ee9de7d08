"""`struct tcp_info` (linux/tcp.h) decoded into a frozen record.

One decoder serves both sources: getsockopt(TCP_INFO) on our own sockets and the INET_DIAG_INFO
attribute of a sock_diag dump. Older kernels send a shorter struct; missing fields read as 0.
Window scales are 4-bit bitfields sharing one byte: on little-endian GCC ``snd_wscale`` is the low
nibble, ``rcv_wscale`` the high one (``ss -i`` prints ``wscale:snd,rcv``).
"""

from __future__ import annotations

import socket
import struct

from msgspec import Struct
from msgspec.structs import astuple

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


class TcpInfo(Struct, frozen=True, gc=False):
    """Times are microseconds (rtt, rttvar, rto, ato, min_rtt, rcv_rtt) or milliseconds (last_*).

    Immutable and never tracked by the cyclic GC (it holds only ints). Built on demand from the
    kernel's bytes (`Socket.tcp_info`, `read_tcp_info`), never kept per socket in a snapshot.
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


# The struct up to rcv_wnd (the last field TcpInfo keeps: 236 of the 248 bytes) with the fields
# TcpInfo does not keep skipped ('x'): unpacks to exactly the 45 values of TcpInfo in order, with the
# shared wscale byte at index 6 (split by the decoder).
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
    "2I"  # snd_wnd rcv_wnd (then rehash total_rto total_rto_recoveries total_rto_time: not kept)
)
_KEEP = struct.Struct("=" + KEEP_FMT)  # host byte order, as the kernel sends it
TCP_INFO_KEPT = _KEEP.size  # 236: the bytes a Socket keeps (Socket.tcp_info_bytes)
_KEPT_ZEROS = bytes(TCP_INFO_KEPT)
_unpack_keep = _KEEP.unpack_from
_WSCALE = tuple((w & 0x0F, w >> 4) for w in range(256))  # the wscale byte → (snd, rcv)

# Byte offsets of the fields a socket list reads for every row (`Socket.rtt` etc. read just these).
OFFSET_RETRANSMITS = 2  # u8
OFFSET_RTT = 68  # u32, µs
OFFSET_SND_CWND = 80  # u32
OFFSET_TOTAL_RETRANS = 100  # u32
u8_at = struct.Struct("=B").unpack_from
u32_at = struct.Struct("=I").unpack_from


def decode_tcp_info_from(buf: bytes | bytearray | memoryview, offset: int = 0) -> TcpInfo:
    """Decode a full-size struct tcp_info at ``offset`` of ``buf``."""
    v = _unpack_keep(buf, offset)
    return TcpInfo(*v[:6], *_WSCALE[v[6]], *v[7:])


def tcp_info_bytes(buf: bytes | bytearray | memoryview) -> bytes:
    """A kernel struct tcp_info as a Socket keeps it: its first TCP_INFO_KEPT bytes, up to the last
    field TcpInfo decodes (the rest of a longer struct is cut), zero-extended when an older kernel
    sends a shorter one (the fields it lacks read as 0)."""
    n = len(buf)
    if n == TCP_INFO_KEPT and type(buf) is bytes:
        return buf
    if n >= TCP_INFO_KEPT:
        return bytes(buf[:TCP_INFO_KEPT])
    return bytes(buf) + _KEPT_ZEROS[n:]


def decode_tcp_info(buf: bytes | bytearray | memoryview) -> TcpInfo:
    """Decode a (possibly short) struct tcp_info. A longer struct from a newer kernel is cut."""
    if len(buf) < TCP_INFO_KEPT:
        buf = tcp_info_bytes(buf)
    return decode_tcp_info_from(buf)


def encode_tcp_info(info: TcpInfo) -> bytes:
    """The TCP_INFO_KEPT bytes of struct tcp_info that decode to ``info`` (fields TcpInfo does not keep
    read 0)."""
    v = astuple(info)
    return _KEEP.pack(*v[:6], v[6] | v[7] << 4, *v[8:])


def read_tcp_info(sock: socket.socket) -> TcpInfo:
    """The kernel's current tcp_info for one of our sockets (getsockopt TCP_INFO)."""
    return decode_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE))
