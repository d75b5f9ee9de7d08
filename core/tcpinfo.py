"""`struct tcp_info` (linux/tcp.h) decoded into a frozen record.

One decoder serves both sources: getsockopt(TCP_INFO) on our own sockets and the INET_DIAG_INFO
attribute of a sock_diag dump. Older kernels send a shorter struct; missing fields read as 0.
Window scales are 4-bit bitfields sharing one byte: on little-endian GCC ``snd_wscale`` is the low
nibble, ``rcv_wscale`` the high one (``ss -i`` prints ``wscale:snd,rcv``).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, fields

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


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """Times are microseconds (rtt, rttvar, rto, ato, min_rtt, rcv_rtt) or milliseconds (last_*)."""

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
        return {f.name: getattr(self, f.name) for f in fields(self)}


def decode_tcp_info(buf: bytes | bytearray | memoryview) -> TcpInfo:
    """Decode a (possibly short) struct tcp_info. A longer struct from a newer kernel is cut."""
    if len(buf) < TCP_INFO_SIZE:
        buf = bytes(buf) + _ZEROS[len(buf):]
    v = _FMT.unpack_from(buf)
    wscale = v[6]
    # v[8:32] = rto .. total_retrans (24 u32)
    (rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, _fackets, last_data_sent, _last_ack_sent,
     last_data_recv, last_ack_recv, pmtu, rcv_ssthresh, rtt, rttvar, snd_ssthresh, snd_cwnd, advmss,
     reordering, rcv_rtt, rcv_space, total_retrans) = v[8:32]
    pacing_rate, _max_pacing, bytes_acked, bytes_received = v[32:36]
    segs_out, segs_in, notsent_bytes, min_rtt, data_segs_in, data_segs_out = v[36:42]
    delivery_rate, busy_time, _rwnd_limited, _sndbuf_limited = v[42:46]
    delivered, _delivered_ce = v[46:48]
    bytes_sent, bytes_retrans = v[48:50]
    snd_wnd, rcv_wnd = v[53], v[54]
    return TcpInfo(
        v[0], v[1], v[2], v[3], v[4], v[5], wscale & 0x0F, wscale >> 4,
        rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, last_data_sent, last_data_recv,
        last_ack_recv, pmtu, rcv_ssthresh, rtt, rttvar, snd_ssthresh, snd_cwnd, advmss, reordering,
        rcv_rtt, rcv_space, total_retrans, pacing_rate, bytes_acked, bytes_received, segs_out, segs_in,
        notsent_bytes, min_rtt, data_segs_in, data_segs_out, delivery_rate, busy_time, delivered,
        bytes_sent, bytes_retrans, snd_wnd, rcv_wnd,
    )


def read_tcp_info(sock: socket.socket) -> TcpInfo:
    """The kernel's current tcp_info for one of our sockets (getsockopt TCP_INFO)."""
    return decode_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE))
