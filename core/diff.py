"""Pure diff of two snapshots: added / removed / changed sockets and inferred state transitions.

Identity is `Socket.key` = (family, src, sport, dst, dport, cookie). Inferred transitions:
- a socket in both snapshots whose state differs: old → new;
- a socket that vanished while a socket with the same family and 4-tuple appeared (the kernel hands a
  closing connection to a TIME_WAIT mini-socket with a new cookie): old state → new state;
- any other vanished socket: state → CLOSE; any other new socket: CLOSE → state.
Intermediate states between two snapshots are invisible here (that is what the tracepoint is for).
Timestamps are the new snapshot's `taken_at`; dwell_ms is known when the caller passes ``since``
(socket key → monotonic time it was first seen in its current state; see `advance_since`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.core.states import CLOSE

Key = tuple


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    added: tuple[Socket, ...]
    removed: tuple[Socket, ...]
    changed: tuple[tuple[Socket, Socket], ...]  # (old, new): state, queues or timer kind changed
    transitions: tuple[Transition, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def _material(a: Socket, b: Socket) -> bool:
    ta, tb = a.timer, b.timer
    return (a.state != b.state or a.recv_q != b.recv_q or a.send_q != b.send_q
            or (ta.kind if ta else 0) != (tb.kind if tb else 0)
            or (ta.retrans if ta else 0) != (tb.retrans if tb else 0))


def diff(prev: Snapshot, cur: Snapshot, since: Mapping[Key, float] | None = None) -> SnapshotDiff:
    old = {s.key: s for s in prev.sockets}
    new = {s.key: s for s in cur.sockets}
    ts = cur.taken_at
    since = since or {}

    def dwell(key: Key) -> float | None:
        t0 = since.get(key)
        return None if t0 is None else max(0.0, (ts - t0) * 1000.0)

    def tr(sock: Socket, o: int, n: int, key: Key | None, cookie: int | None) -> Transition:
        return Transition(ts, sock.family, sock.src, sock.sport, sock.dst, sock.dport, o, n, "inferred",
                          dwell(key) if key is not None else None, cookie)

    added = [s for k, s in new.items() if k not in old]
    removed = [s for k, s in old.items() if k not in new]
    changed = []
    transitions = []
    for k, s in new.items():
        o = old.get(k)
        if o is not None and _material(o, s):
            changed.append((o, s))
            if o.state != s.state:
                transitions.append(tr(s, o.state, s.state, k, s.cookie))
    by_tuple: dict[tuple, Socket] = {}
    for s in added:
        by_tuple.setdefault((s.family, s.src, s.sport, s.dst, s.dport), s)
    paired: set[int] = set()
    for o in removed:
        n = by_tuple.get((o.family, o.src, o.sport, o.dst, o.dport))
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
    """The ``since`` map for the next diff: keys of ``cur`` → when first seen in their state (pure)."""
    out = {}
    moved = {n.key for o, n in d.changed if o.state != n.state}
    for s in cur.sockets:
        k = s.key
        t0 = since.get(k)
        out[k] = cur.taken_at if (t0 is None or k in moved) else t0
    return out
