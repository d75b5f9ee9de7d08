"""History of closed TCP connections: the last `MAX_CLOSED` connections that ended (pure, no I/O, no Textual).

Fed from the collector's `Update` (`sockmon.core.table.collector`), in two halves that may run on two
threads (the TUI observes snapshots on the collector thread, so no diff is ever skipped, and adds
transitions on the UI thread, where the Detail screen reads the same `TransitionHistory`):

- `observe(update)` — the snapshot side. A socket's counters and owner are taken from the last
  snapshot that held it: the diff's ``removed`` sockets are exactly those (with the previous snapshot's
  owners). An owner vanishes when the process closes its fd (the socket becomes an orphan in
  FIN_WAIT* / LAST_ACK, inode 0): a ``changed`` socket that lost its inode keeps its last owner here.
- `add_transitions(transitions)` — the transition side. The per-4-tuple life of each socket is the
  `TransitionHistory` (`sockmon.core.table.history`, the one the Detail screen reads; no second store).
  A transition into CLOSE (tracepoint, or the diff's inferred ones) — or, inferred, into TIME_WAIT —
  ends a connection: its life gives the path of states, the time spent in each and the birth.

The two halves meet by 4-tuple. The tracepoint's CLOSE arrives in the same tick as the socket's removal
from the snapshot or one tick before it (the snapshot is taken before the tracepoint is drained), so a
close waits for its removal until a snapshot taken after it was observed (`_waiting`); a removal waits
for its close until the transitions of its tick were added (`_departed`).

How a connection ended, from what the kernel shows (docs/kernel-facts.md §3 "Closed connections"):
- ``FIN``: the close went through the FIN states (FIN_WAIT2 / CLOSING / LAST_ACK → CLOSE, or into
  TIME_WAIT).
- ``RST``: a jump to CLOSE from ESTABLISHED, SYN_RECV, CLOSE_WAIT or FIN_WAIT1. The tracepoint shows
  the same ``ESTABLISHED -> CLOSE`` for an RST received, an RST sent (SO_LINGER 0, close with unread
  data) and a retransmission / keepalive / TCP_USER_TIMEOUT timeout (ETIMEDOUT); only the last
  tcp_info seen can hint at a timeout, so:
- ``RST or timeout``: such a jump while the last sample showed unanswered retransmissions or keepalive
  probes (tcp_info retransmits / probes, or the timer's retransmission count).
- ``connect failed``: SYN_SENT → CLOSE (refused: RST, or the SYN timed out).
- ``unknown``: inferred from snapshots, and no FIN state was ever seen (the close fell between two).

Bounded: `MAX_CLOSED` records (oldest evicted first), and the waiting sides `MAX_WAITING` each (oldest
first: a waiting close is recorded without snapshot data, a departure is forgotten), owners of orphans
`MAX_OWNERS` (oldest first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable

from msgspec import Struct
from sockmon.core.records import FAMILY_NAMES, Process, Snapshot, Socket, Transition
from sockmon.core.states import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    NEW_SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
    state_name,
)
from sockmon.core.table.diff import diff as snapshot_diff
from sockmon.core.table.history import TransitionHistory, four_tuple_key
from sockmon.core.tcpinfo import decode_tcp_info_from

MAX_CLOSED = 5_000  # closed connections kept (rustnet keeps as many)
MAX_WAITING = 20_000  # closes waiting for their removal / removals waiting for their close
MAX_OWNERS = 65_536  # last owners of sockets that became orphans

FIN = "FIN"
RST = "RST"
RST_OR_TIMEOUT = "RST or timeout"
CONNECT_FAILED = "connect failed"
UNKNOWN = "unknown"
ENDINGS = (FIN, RST, RST_OR_TIMEOUT, CONNECT_FAILED, UNKNOWN)

_GRACEFUL_LAST = frozenset((FIN_WAIT2, CLOSING, LAST_ACK, TIME_WAIT))  # → CLOSE from these: FIN exchanged
_FIN_STATES = frozenset((FIN_WAIT1, FIN_WAIT2, CLOSING, TIME_WAIT, CLOSE_WAIT, LAST_ACK))
_NOT_CONNECTIONS = frozenset((LISTEN, NEW_SYN_RECV, TIME_WAIT, CLOSE))  # removals that end no connection


class StateTime(Struct, frozen=True, gc=False):
    state: int
    seconds: float | None  # None: entered before sockmon saw this socket

    @property
    def state_name(self) -> str:
        return state_name(self.state)


class ClosedConnection(Struct, frozen=True, gc=False):
    """One connection that ended: both ends, owner, lifetime, bytes each way, how it ended."""

    seq: int  # order of recording (1, 2, ...): the row key
    family: int
    src: str
    sport: int
    dst: str
    dport: int
    state: int  # the last state before it closed (what `parse_filter`'s state terms match)
    ended: str  # one of ENDINGS
    closed_ts: float  # monotonic seconds
    closed_wall: float  # seconds since the epoch
    opened_wall: float | None  # None: the birth was not seen (before sockmon started, or forgotten)
    lifetime_s: float | None  # closed - opened; None when the birth was not seen
    birth_seen: bool
    states: tuple[StateTime, ...]  # the states it went through, in order, and the time in each
    source: str  # "tracepoint" (exact) or "inferred" (from snapshots: times ± the refresh interval)
    owner: Process | None = None  # as last seen (an orphan's from before its fd was closed)
    uid: int = -1  # -1: never seen in a snapshot
    inode: int = 0
    cookie: int = 0
    bytes_received: int | None = None  # tcp_info, as last seen (None: never seen with tcp_info)
    bytes_acked: int | None = None  # tcp_info: counts the connecting side's SYN (+1) too
    bytes_sent: int | None = None  # data bytes sent, each once: tcp_info bytes_sent - bytes_retrans
    total_retrans: int | None = None
    seen_wall: float | None = None  # when the counters above were read (the last snapshot holding it)

    @property
    def key(self) -> int:
        return self.seq

    @property
    def state_name(self) -> str:
        return state_name(self.state)

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, str(self.family))

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)


def ends_connection(tr: Transition, source: str) -> bool:
    """Does this transition end a connection? Into CLOSE from a connection state; inferred from
    snapshots also into TIME_WAIT (the full socket became the kernel's TIME_WAIT mini-socket)."""
    if tr.old in (LISTEN, CLOSE, NEW_SYN_RECV, TIME_WAIT):
        return False
    return tr.new == CLOSE or (source == "inferred" and tr.new == TIME_WAIT)


def how_ended(final: int, new: int, path: Iterable[int], source: str, last: Socket | None) -> str:
    if new == TIME_WAIT or final in _GRACEFUL_LAST:
        return FIN
    if final == SYN_SENT:
        return CONNECT_FAILED
    if source != "tracepoint":
        # between two snapshots anything may have happened: only a FIN state seen says FIN
        return FIN if any(s in _FIN_STATES for s in path) or final in _FIN_STATES else UNKNOWN
    if last is not None and _retransmitting(last):
        return RST_OR_TIMEOUT
    return RST


def _retransmitting(sock: Socket) -> bool:
    b = sock.tcp_info_bytes
    if b is not None:
        info = sock.tcp_info
        if info.retransmits or info.probes:
            return True
    t = sock.timer
    return t is not None and t.retrans > 0


class _Seen(Struct, frozen=True, gc=False):
    """The last sighting of a socket that left the table."""

    sock: Socket
    owner: Process | None
    wall: float  # wall time of the snapshot that last held it
    found_at: float  # taken_at of the snapshot it was missing from


class _Close(Struct, frozen=True, gc=False):
    """A close whose last sighting is not known yet."""

    tr: Transition
    life: tuple[Transition, ...]
    source: str
    offset: float  # wall - monotonic when it was added


class ClosedHistory:
    """The last ``cap`` closed connections, newest last in `records_oldest_first`, newest first in `records`."""

    def __init__(self, history: TransitionHistory | None = None, cap: int = MAX_CLOSED,
                 max_waiting: int = MAX_WAITING, max_owners: int = MAX_OWNERS) -> None:
        self.history = history if history is not None else TransitionHistory()
        self.cap = cap
        self.max_waiting = max_waiting
        self.max_owners = max_owners
        self._records: deque[ClosedConnection] = deque(maxlen=cap)
        self._lock = threading.Lock()
        self._prev: Snapshot | None = None
        self._offset: float | None = None  # wall - monotonic, from the snapshots
        self._departed: OrderedDict[tuple, _Seen] = OrderedDict()
        self._waiting: OrderedDict[tuple, _Close] = OrderedDict()
        self._owners: OrderedDict[object, Process] = OrderedDict()
        self._seq = 0
        self.total = 0  # connections recorded since start (evicted ones included)
        self.version = 0  # changes whenever the records change (views redraw on a change)

    def __len__(self) -> int:
        return len(self._records)

    # ------------------------------------------------------------------ reading
    def records(self) -> list[ClosedConnection]:
        """Newest first (a copy: safe to keep while the model goes on)."""
        with self._lock:
            out = list(self._records)
        out.reverse()
        return out

    def records_oldest_first(self) -> list[ClosedConnection]:
        with self._lock:
            return list(self._records)

    # ------------------------------------------------------------------ feeding
    def feed(self, update) -> None:
        """Both halves of one collector `Update`, in one thread (headless commands, tests)."""
        self.observe(update)
        snap = update.snapshot
        self.add_transitions(update.transitions, source=update.transition_source,
                             upto=snap.taken_at if snap is not None else None)

    def observe(self, update) -> None:
        """The snapshot side of an `Update` (any thread; an update observed already, or older, is ignored)."""
        snap: Snapshot | None = update.snapshot
        if snap is None:
            return
        with self._lock:
            prev = self._prev
            if prev is not None and snap.taken_at <= prev.taken_at:
                return
            self._prev = snap
            self._offset = snap.wall_time - snap.taken_at
            if prev is None:
                return
            d = update.diff if (update.diff is not None and update.base_taken_at == prev.taken_at) else None
            if d is None:
                d = snapshot_diff(prev, snap)  # an update was not observed (tests feeding by hand)
            self._observe_diff(prev, snap, d)

    def _observe_diff(self, prev: Snapshot, snap: Snapshot, d) -> None:
        owners = self._owners
        prev_owner = prev.owners.get
        gone = []
        for o, n in d.changed:
            if n.state == TIME_WAIT and o.state != TIME_WAIT:
                gone.append(o)  # the TIME_WAIT mini-socket took over (same cookie): the full socket is gone
            elif o.inode and not n.inode:  # its fd was closed: remember who had it
                p = prev_owner(o.inode)
                if p is not None:
                    owners[n.key] = p
                    if len(owners) > self.max_owners:
                        owners.popitem(last=False)
        for o in (*d.removed, *gone) if gone else d.removed:
            if o.state in _NOT_CONNECTIONS:
                continue
            p = prev_owner(o.inode) if o.inode else None
            remembered = owners.pop(o.key, None)
            # the wall time its counters were read (earlier than the snapshot for an event-driven
            # table's row off screen: core/records.py Snapshot.read_time)
            seen = _Seen(o, p or remembered, prev.wall_time - (prev.taken_at - prev.read_time(o)), snap.taken_at)
            k = four_tuple_key(o.src, o.sport, o.dst, o.dport)
            waiting = self._waiting.pop(k, None)
            if waiting is not None:
                self._record(waiting, seen)
            else:
                self._departed[k] = seen
                self._departed.move_to_end(k)
                if len(self._departed) > self.max_waiting:
                    self._departed.popitem(last=False)
        # a close before this snapshot was taken found no removal: the socket was never in a snapshot
        taken = snap.taken_at
        while self._waiting:
            k, c = next(iter(self._waiting.items()))
            if c.tr.ts >= taken:
                break
            del self._waiting[k]
            self._record(c, None)

    def add_transitions(self, transitions: Iterable[Transition], *, source: str | None = None,
                        upto: float | None = None) -> int:
        """Add transitions (to the `TransitionHistory` too); returns how many connections they ended.
        ``upto``: the taken_at of the newest snapshot these transitions were collected with (every
        close before it has been delivered, so a removal found by then that found no close is no
        connection's end)."""
        ended = 0
        history = self.history
        with self._lock:
            offset = self._offset
            taken = self._prev.taken_at if self._prev is not None else None
            add, life_of, departed = history.add_keyed, history.life, self._departed
            tr = None
            for tr in transitions:
                k = four_tuple_key(tr.src, tr.sport, tr.dst, tr.dport)
                add(k, tr)
                src = source or tr.source
                if (tr.new != CLOSE and tr.new != TIME_WAIT) or not ends_connection(tr, src):
                    continue
                ended += 1
                c = _Close(tr, tuple(life_of(k)), src, offset if offset is not None else 0.0)
                seen = departed.pop(k, None)
                if seen is not None or src != "tracepoint" or (taken is not None and tr.ts < taken):
                    self._record(c, seen)
                else:
                    self._waiting[k] = c
                    self._waiting.move_to_end(k)
                    if len(self._waiting) > self.max_waiting:
                        self._record(self._waiting.popitem(last=False)[1], None)
            if tr is not None:
                history.evict_idle(tr.ts)
            if upto is not None:
                while departed:
                    k, seen = next(iter(departed.items()))
                    if seen.found_at > upto:
                        break
                    del departed[k]
        return ended

    def flush(self) -> int:
        """Record every close still waiting for its last sighting (end of a recording)."""
        with self._lock:
            n = len(self._waiting)
            while self._waiting:
                self._record(self._waiting.popitem(last=False)[1], None)
            self._departed.clear()
        return n

    # ------------------------------------------------------------------ one record
    def _record(self, c: _Close, seen: _Seen | None) -> None:
        tr = c.tr
        life = c.life
        if not life or life[-1] is not tr:  # (a later socket on the 4-tuple in the same batch: rare)
            life = [t for t in life if t.ts < tr.ts]
            life.append(tr)
        first = life[0]
        # born here: out of CLOSE / LISTEN; or out of SYN_SENT with its dwell known (the tracepoint's
        # CLOSE -> SYN_SENT comes before the local port is chosen: sport 0, another 4-tuple)
        connecting = first.old == SYN_SENT and first.dwell_ms is not None
        birth_seen = first.old in (CLOSE, LISTEN) or connecting
        states: list[StateTime] = []
        if connecting:
            states.append(StateTime(SYN_SENT, first.dwell_ms / 1000.0))
        elif not birth_seen:
            states.append(StateTime(first.old, None if first.dwell_ms is None else first.dwell_ms / 1000.0))
        for a, b in zip(life, life[1:], strict=False):
            states.append(StateTime(a.new, max(0.0, b.ts - a.ts)))
        if tr.new == TIME_WAIT:
            states.append(StateTime(TIME_WAIT, None))
        offset = c.offset
        opened = (first.ts - first.dwell_ms / 1000.0 if connecting else first.ts) if birth_seen else None
        ended = how_ended(tr.old, tr.new, [s.state for s in states], c.source, seen.sock if seen else None)
        self._seq += 1
        head = (self._seq, tr.family, tr.src, tr.sport, tr.dst, tr.dport, tr.old, ended, tr.ts, tr.ts + offset,
                None if opened is None else opened + offset, None if opened is None else max(0.0, tr.ts - opened),
                birth_seen, tuple(states), c.source)
        if seen is None:
            rec = ClosedConnection(*head, None, -1, 0, tr.cookie or 0)
        else:
            sock = seen.sock
            b = sock.tcp_info_bytes
            if b is None:
                rec = ClosedConnection(*head, seen.owner, sock.uid, sock.inode, sock.cookie, seen_wall=seen.wall)
            else:
                info = decode_tcp_info_from(b)
                rec = ClosedConnection(*head, seen.owner, sock.uid, sock.inode, sock.cookie, info.bytes_received,
                                       info.bytes_acked, max(0, info.bytes_sent - info.bytes_retrans),
                                       info.total_retrans, seen.wall)
        self._records.append(rec)
        self.total += 1
        self.version += 1
