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
from sockmon.core.states import CLOSE, TIMER_NAMES, state_name
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
    # socket.IPPROTO_TCP or IPPROTO_UDP. UDP sockets never enter `Snapshot.sockets` (TCP only: the
    # diff, summary, transitions) but `Snapshot.udp`; a UDP socket's state is CLOSE (7, shown as
    # ``UNCONN`` like ss) when unconnected, ESTABLISHED when connected.
    protocol: int = int(socket.IPPROTO_TCP)

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
        base = (self.family, self.src, self.sport, self.dst, self.dport, 0)
        if self.protocol != socket.IPPROTO_TCP:  # procfs UDP: never equal to a TCP 4-tuple's key
            return (*base, self.protocol) if self.netns is None else (*base, self.protocol, self.netns)
        return base if self.netns is None else (*base, self.netns)

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    @property
    def state_name(self) -> str:
        if self.protocol != socket.IPPROTO_TCP and self.state == CLOSE:
            return "UNCONN"  # an unconnected UDP socket, named as ss names it
        return state_name(self.state)

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, str(self.family))

    @property
    def protocol_name(self) -> str:
        return PROTOCOL_NAMES.get(self.protocol, str(self.protocol))


PROTOCOL_NAMES = {int(socket.IPPROTO_TCP): "tcp", int(socket.IPPROTO_UDP): "udp"}
# UNIX socket types, named as `ss -x` names them in its Netid column
UNIX_TYPE_NAMES = {socket.SOCK_STREAM: "u_str", socket.SOCK_DGRAM: "u_dgr", socket.SOCK_SEQPACKET: "u_seq"}


class UnixSocket(Struct, frozen=True, gc=False):
    """One AF_UNIX socket (unix_diag, or /proc/net/unix). Its own record: a path and inodes instead of
    addresses and ports. It also answers the few names a socket list reads of every row (``family``,
    ``src``/``sport`` = path/inode, ``dst``/``dport`` = "*"/peer inode, ``timer``, ``tcp_info_bytes``),
    so one table can hold it beside TCP and UDP rows.
    """

    type: int  # socket.SOCK_STREAM / SOCK_DGRAM / SOCK_SEQPACKET
    state: int  # LISTEN, ESTABLISHED (connected), CLOSE (unconnected: shown UNCONN), SYN_SENT (connecting)
    path: str  # "" unnamed; a filesystem path; an abstract name starts with "@" (NUL shown as "@", like ss)
    inode: int
    peer: int  # the peer socket's inode, 0 when none
    recv_q: int  # LISTEN: accept-queue length; else bytes (stream) / datagrams queued to read
    send_q: int  # LISTEN: backlog; else bytes not yet read by the peer
    uid: int  # the creator's uid (UNIX_DIAG_UID, Linux ≥ 5.3; 0 when unknown)
    cookie: int = 0  # the kernel's socket cookie (0 from /proc/net/unix)
    vfs_dev: int = 0  # UNIX_DIAG_VFS: device and inode of the socket file (0 when none)
    vfs_ino: int = 0
    netns: str | None = None  # as Socket.netns: set in an every-namespace snapshot only

    family = int(socket.AF_UNIX)
    protocol = 0
    timer = None
    tcp_info_bytes = None
    tcp_info = None
    rtt = snd_cwnd = retransmits = total_retrans = None
    cong = None
    ifindex = 0
    dst = "*"

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        return (self.src, self.inode, "*", self.peer)

    @property
    def src(self) -> str:
        return self.path or "*"

    @property
    def sport(self) -> int:
        return self.inode

    @property
    def dport(self) -> int:
        return self.peer

    @property
    def key(self) -> int | tuple:
        return self.cookie or (int(socket.AF_UNIX), self.inode)

    @property
    def state_name(self) -> str:
        return "UNCONN" if self.state == CLOSE else state_name(self.state)

    @property
    def type_name(self) -> str:
        return UNIX_TYPE_NAMES.get(self.type, f"u_{self.type}")

    @property
    def protocol_name(self) -> str:
        return "unix"

    @property
    def family_name(self) -> str:
        return "unix"


# Field getters for code that keys, counts or compares many sockets: one C-level call per socket.
# identity across snapshots; netns: the same 4-tuple in two namespaces (no cookies: /proc/net/tcp) is two sockets
SOCKET_IDENTITY = attrgetter("family", "src", "sport", "dst", "dport", "cookie", "netns")
SOCKET_ENDPOINTS = attrgetter("family", "src", "sport", "dst", "dport")
SOCKET_COOKIE = attrgetter("cookie")
SOCKET_STATE = attrgetter("state")
SOCKET_FAMILY = attrgetter("family")
# the identity of a row in a list that may mix TCP, UDP and UNIX sockets (a UDP and a TCP socket with the
# same 4-tuple are two rows; UNIX rows: family AF_UNIX, path, inode, "*", peer inode)
SOCKET_ROW_IDENTITY = attrgetter("protocol", "family", "src", "sport", "dst", "dport", "cookie", "netns")
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
    # only when asked (take_snapshot(protocols=...)): UDP sockets (Socket, protocol IPPROTO_UDP) and
    # UNIX sockets; `sockets` stays TCP only (what diff, summary and transitions are about)
    udp: tuple[Socket, ...] = ()
    unix: tuple[UnixSocket, ...] = ()
    protocols: frozenset[str] = frozenset({"tcp"})  # what this snapshot asked for: "tcp", "udp", "unix"
    # the event-driven table (core/table/evtable.py): a TCP socket's numbers (queues, timer, tcp_info) were
    # read at cookie → monotonic time when in this map, else at ``read_base`` (its last full dump); a dump
    # has neither: everything was read at ``taken_at``
    read_at: Mapping[int, float] = field(default_factory=lambda: _EMPTY)
    read_base: float | None = None

    def owner(self, sock: Socket) -> Process | None:
        return self.owners.get(sock.inode) if sock.inode else None

    def read_time(self, sock: Socket) -> float:
        """When ``sock``'s numbers were read (monotonic): ``taken_at`` for a dump; the event-driven
        table's rows off screen keep those of an earlier reading."""
        if self.read_base is None:
            return self.taken_at
        return self.read_at.get(sock.cookie, self.read_base)


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
