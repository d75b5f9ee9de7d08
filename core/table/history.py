"""Per-socket transition history, keyed by 4-tuple (pure, no I/O, no Textual).

The collector delivers transitions for every socket; the detail screen asks for one socket's life.
Bounded: at most ``max_sockets`` 4-tuples (oldest forgotten first) and ``per_socket`` transitions each.
IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) are folded to IPv4 so both views of a socket meet.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from sockmon.core.records import Transition

FourTuple = tuple[str, int, str, int]


def _host(h: str) -> str:
    return h[7:] if h.startswith("::ffff:") and "." in h else h


def four_tuple_key(src: str, sport: int, dst: str, dport: int) -> FourTuple:
    return (_host(src), int(sport), _host(dst), int(dport))


class TransitionHistory:
    def __init__(self, max_sockets: int = 20_000, per_socket: int = 32) -> None:
        self.max_sockets = max_sockets
        self.per_socket = per_socket
        self._by_tuple: OrderedDict[FourTuple, deque[Transition]] = OrderedDict()
        self.total = 0

    def __len__(self) -> int:
        return len(self._by_tuple)

    def add(self, transitions: Iterable[Transition]) -> int:
        n = 0
        for tr in transitions:
            key = four_tuple_key(tr.src, tr.sport, tr.dst, tr.dport)
            q = self._by_tuple.get(key)
            if q is None:
                q = self._by_tuple[key] = deque(maxlen=self.per_socket)
                if len(self._by_tuple) > self.max_sockets:
                    self._by_tuple.popitem(last=False)
            else:
                self._by_tuple.move_to_end(key)
            q.append(tr)
            n += 1
        self.total += n
        return n

    def get(self, src: str, sport: int, dst: str, dport: int) -> list[Transition]:
        """Transitions of that socket, oldest first (by timestamp)."""
        q = self._by_tuple.get(four_tuple_key(src, sport, dst, dport))
        return sorted(q, key=lambda t: t.ts) if q else []

    def for_socket(self, sock) -> list[Transition]:
        return self.get(sock.src, sock.sport, sock.dst, sock.dport)
