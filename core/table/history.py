"""Per-socket transition history, keyed by 4-tuple (pure, no I/O, no Textual).

The collector delivers transitions for every socket; the detail screen asks for one socket's life.
A 4-tuple holds the life of its newest socket: a transition out of CLOSE, LISTEN or NEW_SYN_RECV starts
a new socket on it (ephemeral ports are reused under churn) and forgets the previous one's.
Bounded: at most ``max_sockets`` 4-tuples (least recently changed forgotten first), ``per_socket``
transitions each (oldest dropped), and a 4-tuple with no transition for ``max_age`` seconds (by the
transitions' own clock) is forgotten as newer ones arrive.
IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) are folded to IPv4 so both views of a socket meet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from operator import attrgetter

from sockmon.core.records import Transition
from sockmon.core.states import CLOSE, LISTEN, NEW_SYN_RECV

FourTuple = tuple[str, int, str, int]
_TS = attrgetter("ts")
NEW_LIFE = frozenset((CLOSE, LISTEN, NEW_SYN_RECV))  # a transition out of these: a new socket on the 4-tuple


def _host(h: str) -> str:
    return h[7:] if h.startswith("::ffff:") and "." in h else h


def four_tuple_key(src: str, sport: int, dst: str, dport: int) -> FourTuple:
    return (_host(src), int(sport), _host(dst), int(dport))


class TransitionHistory:
    def __init__(self, max_sockets: int = 20_000, per_socket: int = 16, max_age: float = 300.0) -> None:
        self.max_sockets = max_sockets
        self.per_socket = per_socket
        self.max_age = max_age
        self._by_tuple: OrderedDict[FourTuple, list[Transition]] = OrderedDict()
        self.total = 0

    def __len__(self) -> int:
        return len(self._by_tuple)

    def add(self, transitions: Iterable[Transition]) -> int:
        n = 0
        add = self.add_keyed
        for tr in transitions:
            add(four_tuple_key(tr.src, tr.sport, tr.dst, tr.dport), tr)
            n += 1
        if n:
            self.evict_idle(tr.ts)
        return n

    def add_keyed(self, key: FourTuple, tr: Transition) -> None:
        """Add one transition under its `four_tuple_key` (already computed by the caller); idle 4-tuples
        are forgotten by `evict_idle`, which the caller runs after a batch."""
        by_tuple = self._by_tuple
        q = by_tuple.get(key)
        if q is None:
            q = by_tuple[key] = []
            if len(by_tuple) > self.max_sockets:
                by_tuple.popitem(last=False)
        else:
            by_tuple.move_to_end(key)
            if tr.old in NEW_LIFE and q[-1].ts <= tr.ts:
                q.clear()  # another socket on the same 4-tuple: its own life
        q.append(tr)
        if len(q) > self.per_socket:
            del q[0]
        self.total += 1

    def life(self, key: FourTuple) -> list[Transition]:
        """The transitions kept under ``key`` (a `four_tuple_key`), oldest first."""
        q = self._by_tuple.get(key)
        return sorted(q, key=_TS) if q else []

    def evict_idle(self, now: float) -> None:
        self._evict_old(now)

    def _evict_old(self, now: float) -> None:
        # least recently changed first: stop at the first 4-tuple young enough
        limit = now - self.max_age
        by_tuple = self._by_tuple
        while by_tuple:
            key, q = next(iter(by_tuple.items()))
            if not q or q[-1].ts >= limit:
                break
            del by_tuple[key]

    def get(self, src: str, sport: int, dst: str, dport: int) -> list[Transition]:
        """Transitions of that socket, oldest first (by timestamp)."""
        return self.life(four_tuple_key(src, sport, dst, dport))

    def for_socket(self, sock) -> list[Transition]:
        return self.get(sock.src, sock.sport, sock.dst, sock.dport)
