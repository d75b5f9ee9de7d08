"""Pure diff of two snapshots: added / removed / changed sockets and inferred state transitions.

Identity of a socket across snapshots: its family, 4-tuple and kernel cookie — (family, src, sport,
dst, dport, cookie) — as docs/kernel-facts.md §3 says, plus its namespace (`Socket.netns`, set only in
an every-namespace snapshot). `Socket.key` (the key of ``since`` maps) is the cookie
alone when the socket has one (netlink: unique per socket object, host-wide) and that whole tuple otherwise
(/proc/net/tcp has no cookies); a cookie found in both snapshots whose family or 4-tuple differs is
two sockets (the old one removed, the new one added), exactly as with the tuple.

Inferred transitions:
- a socket in both snapshots whose state differs: old → new;
- a socket that vanished while a socket with the same family and 4-tuple appeared (the kernel hands a
  closing connection to a TIME_WAIT mini-socket with a new cookie): old state → new state;
- any other vanished socket: state → CLOSE; any other new socket: CLOSE → state.
Intermediate states between two snapshots are invisible here (that is what the tracepoint is for).
Timestamps are the new snapshot's `taken_at`; dwell_ms is known when the caller passes ``since``
(`Socket.key` → monotonic time it was first seen in its current state; see `advance_since`).

Speed (60k sockets every second): the per-socket work runs in C — dicts built with
``dict(zip(keys, sockets))``, keys and the compared fields taken with the `operator.attrgetter`s
beside `Socket` (`SOCKET_COOKIE`, `SOCKET_IDENTITY`, `SOCKET_COMPARED`), one tuple comparison of
family, state, 4-tuple, queues and timer per socket present in both snapshots. Python code only runs for the sockets that differ there. The index of the newer snapshot
is kept for the next call, where it is the older one (a memo keyed by the identity of the immutable
sockets tuple: results only ever depend on the arguments).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, filterfalse, repeat
from operator import ne

from sockmon.core.records import (
    SOCKET_COMPARED,
    SOCKET_COOKIE,
    SOCKET_ENDPOINTS,
    SOCKET_IDENTITY,
    Snapshot,
    Socket,
    Transition,
)
from sockmon.core.states import CLOSE

Key = int | tuple  # Socket.key: the cookie, or (family, src, sport, dst, dport, 0) without one

_COOKIE = SOCKET_COOKIE
_IDENTITY = SOCKET_IDENTITY  # (family, src, sport, dst, dport, cookie, netns)
_HEAD = SOCKET_COMPARED  # family, state, src, sport, dst, dport, recv_q, send_q, timer


class _Absent:
    """Stands for "no old socket with this key": its _HEAD is never equal to a socket's."""

    family = state = src = sport = dst = dport = recv_q = send_q = timer = object()


_ABSENT = _Absent()


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    added: tuple[Socket, ...]
    removed: tuple[Socket, ...]
    changed: tuple[tuple[Socket, Socket], ...]  # (old, new): state, queues or timer kind changed
    transitions: tuple[Transition, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def socket_keys(sockets: Sequence[Socket]) -> list[Key]:
    """``[s.key for s in sockets]``, in C when every socket has a cookie (the netlink case)."""
    last = _last_index
    if last is not None and last[0] is sockets and last[1] and last[2] is not None:
        return list(last[2])  # the cookie index of these very sockets: its keys, in their order
    keys = list(map(_COOKIE, sockets))
    if keys and not all(keys):
        return [s.key for s in sockets]
    return keys


# The index built for the newer snapshot of the last diff, kept for the next diff (where that snapshot
# is the older one): (sockets tuple, by_cookie, index). Keyed by the identity of an immutable tuple,
# so it can only ever answer for exactly those sockets; one entry, replaced by every diff.
_last_index: tuple[Sequence[Socket], bool, dict | None] | None = None


def _index(sockets: Sequence[Socket], by_cookie: bool) -> dict | None:
    """Identity → socket (the last of duplicates, like a dict comprehension). By cookie only when
    every socket has a distinct nonzero cookie, else None (the caller then keys by the 6-tuple)."""
    last = _last_index
    if last is not None and last[0] is sockets and last[1] == by_cookie:
        return last[2]
    if by_cookie:
        idx = dict(zip(map(_COOKIE, sockets), sockets, strict=False))
        return idx if len(idx) == len(sockets) and 0 not in idx else None
    return dict(zip(map(_IDENTITY, sockets), sockets, strict=False))


def _material(a: Socket, b: Socket) -> bool:
    ta, tb = a.timer, b.timer
    return (a.state != b.state or a.recv_q != b.recv_q or a.send_q != b.send_q
            or (ta.kind if ta else 0) != (tb.kind if tb else 0)
            or (ta.retrans if ta else 0) != (tb.retrans if tb else 0))


def diff(prev: Snapshot, cur: Snapshot, since: Mapping[Key, float] | None = None) -> SnapshotDiff:
    old = _index(prev.sockets, True)
    new = _index(cur.sockets, True) if old is not None else None
    if new is None:  # no cookies (procfs) or a cookie seen twice in one dump: the full 6-tuple
        old = _index(prev.sockets, False)
        new = _index(cur.sockets, False)
        by_cookie = False
    else:
        by_cookie = True
    global _last_index
    _last_index = (cur.sockets, by_cookie, new)
    ts = cur.taken_at
    since = since or {}

    def dwell(key: Key) -> float | None:
        t0 = since.get(key)
        return None if t0 is None else max(0.0, (ts - t0) * 1000.0)

    def tr(sock: Socket, o: int, n: int, key: Key | None, cookie: int | None) -> Transition:
        return Transition(ts, sock.family, sock.src, sock.sport, sock.dst, sock.dport, o, n, "inferred",
                          dwell(key) if key is not None else None, cookie, sock.netns)

    new_socks = list(new.values())
    olds = list(map(old.get, new, repeat(_ABSENT)))
    # positions (in new's order) whose fields 0-8 differ from the old socket's, or that have none
    differ = compress(range(len(new_socks)), map(ne, map(_HEAD, olds), map(_HEAD, new_socks)))
    added = []
    changed = []
    transitions = []
    rekeyed = []  # old sockets whose cookie came back with another family / 4-tuple
    for i in differ:
        o = olds[i]
        s = new_socks[i]
        if o is _ABSENT:
            added.append(s)
        elif SOCKET_ENDPOINTS(o) != SOCKET_ENDPOINTS(s):
            added.append(s)
            rekeyed.append(o)
        elif _material(o, s):
            changed.append((o, s))
            if o.state != s.state:
                transitions.append(tr(s, o.state, s.state, s.key, s.cookie))
    matched = len(new) - len(added) + len(rekeyed)  # keys of new also in old
    if rekeyed:
        gone = {id(o) for o in rekeyed}
        removed = [o for k, o in old.items() if k not in new or id(o) in gone]
    elif matched == len(old):
        removed = []
    else:
        removed = list(map(old.__getitem__, filterfalse(new.__contains__, old)))
    by_tuple: dict[tuple, Socket] = {}  # the same 4-tuple in another namespace is another connection
    for s in added:
        by_tuple.setdefault((s.family, s.src, s.sport, s.dst, s.dport, s.netns), s)
    paired: set[int] = set()
    for o in removed:
        n = by_tuple.get((o.family, o.src, o.sport, o.dst, o.dport, o.netns))
        if n is not None and id(n) not in paired and n.state != o.state:
            paired.add(id(n))
            transitions.append(tr(n, o.state, n.state, o.key, n.cookie))
        else:
            transitions.append(tr(o, o.state, CLOSE, o.key, o.cookie))
    for s in added:
        if id(s) not in paired:
            transitions.append(tr(s, CLOSE, s.state, None, s.cookie))
    return SnapshotDiff(tuple(added), tuple(removed), tuple(changed), tuple(transitions))


def advance_since(since: Mapping[Key, float], d: SnapshotDiff, cur: Snapshot) -> dict[Key, float]:
    """The ``since`` map for the next diff: `Socket.key` of each socket of ``cur`` → when it was first
    seen in its current state (pure). New sockets and those whose state changed start at
    ``cur.taken_at``; the others keep their time from ``since``."""
    ts = cur.taken_at
    keys = socket_keys(cur.sockets)
    out = dict(zip(keys, map(since.get, keys, repeat(ts)), strict=False))
    for o, n in d.changed:
        if o.state != n.state:
            out[n.key] = ts
    for s in d.added:
        out[s.key] = ts
    return out


def diff_changes(changes: Sequence[tuple[Socket | None, Socket | None]], taken_at: float,
                 since: Mapping[Key, float] | None = None) -> SnapshotDiff:
    """The `diff` of two snapshots from what changed between them, as (before, now) pairs of one row
    each (the event-driven table's `EventTable.take_changes`: before None = added, now None = removed):
    the same added / removed / changed and inferred transitions as `diff` of the whole tables, with no
    work for the rows that did not change. A row whose socket came back with another cookie is two
    sockets (the old one removed, the new one added; a state change between them is one transition)."""
    since = since or {}
    added: list[Socket] = []
    removed: list[Socket] = []
    changed: list[tuple[Socket, Socket]] = []
    transitions: list[Transition] = []

    def tr(sock: Socket, o: int, n: int, key: Key | None) -> Transition:
        t0 = since.get(key) if key is not None else None
        dwell = None if t0 is None else max(0.0, (taken_at - t0) * 1000.0)
        return Transition(taken_at, sock.family, sock.src, sock.sport, sock.dst, sock.dport, o, n, "inferred",
                          dwell, sock.cookie, sock.netns)

    for old, new in changes:
        if old is None:
            if new is not None:
                added.append(new)
                transitions.append(tr(new, CLOSE, new.state, None))
        elif new is None:
            removed.append(old)
            transitions.append(tr(old, old.state, CLOSE, old.key))
        elif old.key != new.key or SOCKET_ENDPOINTS(old) != SOCKET_ENDPOINTS(new):
            removed.append(old)
            added.append(new)
            if old.state != new.state:
                transitions.append(tr(new, old.state, new.state, old.key))
        elif _material(old, new):
            changed.append((old, new))
            if old.state != new.state:
                transitions.append(tr(new, old.state, new.state, new.key))
    return SnapshotDiff(tuple(added), tuple(removed), tuple(changed), tuple(transitions))


def advance_since_changes(since: dict[Key, float], d: SnapshotDiff, taken_at: float) -> dict[Key, float]:
    """`advance_since` from a diff alone (the event-driven table's ticks): ``since`` updated in place —
    removed sockets dropped, added ones and those whose state changed start at ``taken_at`` — and
    returned. Bounded by the table as the whole-table version is."""
    for s in d.removed:
        since.pop(s.key, None)
    for o, n in d.changed:
        if o.state != n.state:
            since[n.key] = taken_at
    for s in d.added:
        since[s.key] = taken_at
    return since
