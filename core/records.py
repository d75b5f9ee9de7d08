"""Immutable records of the kernel's socket table: what a snapshot holds and what a diff yields.

Everything here is immutable; the collector builds them off the UI thread and the UI only reads.
`Timer`, `Socket`, `Transition` and `Process` are ``msgspec.Struct(frozen=True, gc=False)``: built in
C from positional or keyword arguments, compared and hashed by value, read by field name only, and
never tracked by the cyclic garbage collector (they hold no containers that could close a cycle:
ints, strings, bytes, a tuple of strings, other such records), so a 60k-socket snapshot costs the
GC nothing. Copy with a change: ``msgspec.structs.replace(sock, state=...)``; all fields as a dict:
``msgspec.structs.asdict``. `Snapshot` (one per tick) is a frozen dataclass.

A `Socket` keeps the kernel's ``struct tcp_info`` as its bytes (`Socket.tcp_info_bytes`: the 236
bytes up to the last field decoded, one object instead of 46 ints) and decodes it on access: `Socket.tcp_info` builds the full
`TcpInfo`; `Socket.rtt`, `snd_cwnd`, `retransmits` and `total_retrans` — what a socket list shows
and sorts on for every row — read their own few bytes only.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType

from msgspec import Struct
from sockmon.core.states import TIMER_NAMES, state_name
from sockmon.core.tcpinfo import (
    OFFSET_RETRANSMITS,
    OFFSET_RTT,
    OFFSET_SND_CWND,
    OFFSET_TOTAL_RETRANS,
    TcpInfo,
    decode_tcp_info_from,
    u8_at,
    u32_at,
)

FAMILY_NAMES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}


class Timer(Struct, frozen=True, gc=False):
    kind: int  # sockmon.core.states.TIMER_*
    expires_ms: int
    retrans: int

    @property
    def name(self) -> str:
        return TIMER_NAMES.get(self.kind, f"timer{self.kind}")


class Process(Struct, frozen=True, gc=False):
    pid: int
    name: str
    user: str  # user name, or the uid as text when it has no name / access is denied
    cmdline: tuple[str, ...] = ()


class Socket(Struct, frozen=True, gc=False):
    family: int  # socket.AF_INET / AF_INET6
    state: int  # sockmon.core.states code
    src: str
    sport: int
    dst: str
    dport: int
    recv_q: int  # LISTEN: current accept-queue length
    send_q: int  # LISTEN: backlog
    timer: Timer | None
    uid: int
    inode: int  # 0 for TIME_WAIT / orphaned sockets: no owner
    cookie: int
    ifindex: int = 0
    # the kernel's struct tcp_info up to the last field TcpInfo decodes: TCP_INFO_KEPT (236) bytes
    # (sockmon.core.tcpinfo.tcp_info_bytes);
    # None for TIME_WAIT and request sockets, /proc/net/tcp, or a dump without it
    tcp_info_bytes: bytes | None = None
    cong: str | None = None
    # the namespace it lives in (`NetnsRef.ident`: a /run/netns name or pid:N) in an every-namespace
    # snapshot (`take_snapshot(netns=ALL_NETNS)`); None in a one-namespace snapshot (diag/procnet never set it)
    netns: str | None = None

    @property
    def tcp_info(self) -> TcpInfo | None:
        """Every tcp_info field, decoded now (a new `TcpInfo` per access: keep it if you read many)."""
        b = self.tcp_info_bytes
        return None if b is None else decode_tcp_info_from(b)

    @property
    def rtt(self) -> int | None:
        """tcp_info.rtt (µs) without decoding the rest; None without tcp_info."""
        b = self.tcp_info_bytes
        return None if b is None else u32_at(b, OFFSET_RTT)[0]

    @property
    def snd_cwnd(self) -> int | None:
        b = self.tcp_info_bytes
        return None if b is None else u32_at(b, OFFSET_SND_CWND)[0]

    @property
    def retransmits(self) -> int | None:
        """tcp_info.retransmits: unanswered retransmissions of the current segment."""
        b = self.tcp_info_bytes
        return None if b is None else u8_at(b, OFFSET_RETRANSMITS)[0]

    @property
    def total_retrans(self) -> int | None:
        b = self.tcp_info_bytes
        return None if b is None else u32_at(b, OFFSET_TOTAL_RETRANS)[0]

    @property
    def key(self) -> int | tuple:
        """Key of this socket across snapshots (``since`` maps, tables): the kernel's cookie when it
        has one (netlink: unique per socket object, an int hashes fast), else (family, src, sport,
        dst, dport, 0) (/proc/net/tcp has no cookies), with ``netns`` appended when it is set (the same
        4-tuple may live in two namespaces; cookies are unique host-wide: tests/test_netns_all.py).
        Identity in `sockmon.core.table.diff` is (family, src, sport, dst, dport, cookie, netns): a
        cookie back with another 4-tuple is another socket.
        """
        if self.cookie:
            return self.cookie
        if self.netns is None:
            return (self.family, self.src, self.sport, self.dst, self.dport, 0)
        return (self.family, self.src, self.sport, self.dst, self.dport, 0, self.netns)

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    @property
    def state_name(self) -> str:
        return state_name(self.state)

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, str(self.family))


# Field getters for code that keys, counts or compares many sockets: one C-level call per socket.
# identity across snapshots; netns: the same 4-tuple in two namespaces (no cookies: /proc/net/tcp) is two sockets
SOCKET_IDENTITY = attrgetter("family", "src", "sport", "dst", "dport", "cookie", "netns")
SOCKET_ENDPOINTS = attrgetter("family", "src", "sport", "dst", "dport")
SOCKET_COOKIE = attrgetter("cookie")
SOCKET_STATE = attrgetter("state")
SOCKET_FAMILY = attrgetter("family")
# what makes a socket "changed" between snapshots (sockmon.core.table.diff): state, queues, timer
SOCKET_COMPARED = attrgetter("family", "state", "src", "sport", "dst", "dport", "recv_q", "send_q", "timer")

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Snapshot:
    sockets: tuple[Socket, ...]
    taken_at: float  # time.monotonic() when the dump started
    wall_time: float  # time.time() at the same moment
    source: str  # "netlink" or "procfs" (fallback, says why in `note`)
    netns: str | None = None  # None = the caller's own namespace; ALL_NETNS ("*") = every namespace
    owners: Mapping[int, Process] = field(default_factory=lambda: _EMPTY)  # inode -> owning process
    note: str = ""
    # ALL_NETNS only: the namespaces dumped (sockmon.core.netns.NetnsRef), each socket's ``netns`` one of their idents
    namespaces: tuple = ()

    def owner(self, sock: Socket) -> Process | None:
        return self.owners.get(sock.inode) if sock.inode else None


class Transition(Struct, frozen=True, gc=False):
    """One TCP state change of one socket."""

    ts: float  # monotonic seconds (tracepoint: kernel timestamp mapped to CLOCK_MONOTONIC)
    family: int
    src: str
    sport: int
    dst: str
    dport: int
    old: int
    new: int
    source: str  # "tracepoint" or "inferred"
    dwell_ms: float | None = None  # time spent in `old`, when known
    cookie: int | None = None
    # the socket's namespace (`Socket.netns`) in an every-namespace view, when known: the tracepoint
    # carries no namespace, so the collector names it from the snapshots (see core/table/collector.py)
    netns: str | None = None

    @property
    def old_name(self) -> str:
        return state_name(self.old)

    @property
    def new_name(self) -> str:
        return state_name(self.new)
