"""Immutable records of the kernel's socket table: what a snapshot holds and what a diff yields.

Everything here is immutable; the collector builds them off the UI thread and the UI only reads.
`Timer`, `Socket` and `Transition` (built by the tens of thousands per snapshot / per second) are
NamedTuples that also speak the dataclass protocol (`dataclasses.fields/replace/asdict` work, see
`sockmon.core.tcpinfo.dataclass_compatible`); `Process` and `Snapshot` are frozen dataclasses.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from sockmon.core.states import TIMER_NAMES, state_name
from sockmon.core.tcpinfo import TcpInfo, dataclass_compatible

FAMILY_NAMES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}


@dataclass_compatible
class Timer(NamedTuple):
    kind: int  # sockmon.core.states.TIMER_*
    expires_ms: int
    retrans: int

    @property
    def name(self) -> str:
        return TIMER_NAMES.get(self.kind, f"timer{self.kind}")


@dataclass(frozen=True, slots=True)
class Process:
    pid: int
    name: str
    user: str  # user name, or the uid as text when it has no name / access is denied
    cmdline: tuple[str, ...] = ()


@dataclass_compatible
class Socket(NamedTuple):
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
    tcp_info: TcpInfo | None = None
    cong: str | None = None

    @property
    def key(self) -> int | tuple[int, str, int, str, int, int]:
        """Key of this socket across snapshots (``since`` maps, tables): the kernel's cookie when it
        has one (netlink: unique per socket object, an int hashes fast), else (family, src, sport,
        dst, dport, 0) (/proc/net/tcp has no cookies). Identity in `sockmon.core.table.diff` is
        (family, src, sport, dst, dport, cookie): a cookie back with another 4-tuple is another socket.
        """
        return self[11] or (self[0], self[2], self[3], self[4], self[5], 0)

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    @property
    def state_name(self) -> str:
        return state_name(self.state)

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, str(self.family))


_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Snapshot:
    sockets: tuple[Socket, ...]
    taken_at: float  # time.monotonic() when the dump started
    wall_time: float  # time.time() at the same moment
    source: str  # "netlink" or "procfs" (fallback, says why in `note`)
    netns: str | None = None  # None = the caller's own namespace
    owners: Mapping[int, Process] = field(default_factory=lambda: _EMPTY)  # inode -> owning process
    note: str = ""

    def owner(self, sock: Socket) -> Process | None:
        return self.owners.get(sock.inode) if sock.inode else None


@dataclass_compatible
class Transition(NamedTuple):
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

    @property
    def old_name(self) -> str:
        return state_name(self.old)

    @property
    def new_name(self) -> str:
        return state_name(self.new)

    def as_json(self) -> dict:
        return {
            "ts": round(self.ts, 6), "family": FAMILY_NAMES.get(self.family, str(self.family)),
            "src": self.src, "sport": self.sport, "dst": self.dst, "dport": self.dport,
            "old": self.old_name, "new": self.new_name, "source": self.source,
            "dwell_ms": None if self.dwell_ms is None else round(self.dwell_ms, 3),
        }
