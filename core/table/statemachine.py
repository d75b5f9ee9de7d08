"""TCP's state machine as data, and a live model of it fed by the collector (no Textual).

`STATES` are RFC 9293's states (figure 5) plus Linux's NEW_SYN_RECV (the request socket that sits in a
listener's SYN queue). `EDGES` are every edge of the RFC's diagram and every edge this kernel reports
through ``sock:inet_sock_set_state``, each with what causes it and how Linux reports it
(docs/kernel-facts.md, "The state diagram"):

- ``REPORTED``: seen under the tracer on this kernel (tests/test_statemachine.py drives them);
- ``IN_CODE``: the kernel calls tcp_set_state for it, but loopback traffic did not reproduce it here
  (simultaneous open / close, TCP Fast Open children, timeouts in a state);
- ``NEVER``: an RFC edge Linux never reports, with why (``note``) and what it reports instead.

`StateDiagram` turns each collector `Update` into what the Diagram pane draws: sockets per state now
(the snapshot's, under a filter when one is set), each edge's transitions per second over the last
``window`` seconds (``window`` one-second buckets per edge, at most 12 × 12 edges), its cumulative count,
and the path of one followed 4-tuple (the edges it took, oldest first, at most ``MAX_PATH``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter

import msgspec
from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.core.states import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    NEW_SYN_RECV,
    STATE_CODES,
    STATE_NAMES,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
)
from sockmon.core.table.history import FourTuple, four_tuple_key

REPORTED = "reported"
IN_CODE = "in code"
NEVER = "never"

# RFC 9293's names, for the diagram's boxes (the kernel's names are what every list shows)
RFC_NAMES = {
    CLOSE: "CLOSED", LISTEN: "LISTEN", SYN_SENT: "SYN-SENT", SYN_RECV: "SYN-RECEIVED",
    ESTABLISHED: "ESTABLISHED", FIN_WAIT1: "FIN-WAIT-1", FIN_WAIT2: "FIN-WAIT-2", CLOSING: "CLOSING",
    TIME_WAIT: "TIME-WAIT", CLOSE_WAIT: "CLOSE-WAIT", LAST_ACK: "LAST-ACK", NEW_SYN_RECV: "NEW_SYN_RECV",
}
STATES: tuple[int, ...] = (CLOSE, LISTEN, SYN_SENT, SYN_RECV, NEW_SYN_RECV, ESTABLISHED, FIN_WAIT1,
                           FIN_WAIT2, CLOSING, TIME_WAIT, CLOSE_WAIT, LAST_ACK)
STATE_NOTES = {
    NEW_SYN_RECV: "Linux's request socket: a SYN answered with SYN,ACK, waiting in the listener's SYN queue "
                  "for the handshake's ACK (ss shows it as SYN-RECV); no full socket yet",
    TIME_WAIT: "a timewait mini-socket (no owner, inode 0, timer 'timewait') takes over from the full socket",
}


@dataclass(frozen=True)
class Edge:
    old: int
    new: int
    cause: str  # the call or segment that causes it, RFC style: "event / action"
    short: str  # the same for narrow places
    rfc: bool  # drawn in RFC 9293's figure 5
    linux: str  # REPORTED, IN_CODE or NEVER
    note: str = ""  # why Linux never reports it / what it reports instead

    @property
    def key(self) -> tuple[int, int]:
        return (self.old, self.new)


_E = Edge
EDGES: tuple[Edge, ...] = (
    _E(CLOSE, LISTEN, "passive OPEN: listen()", "listen()", True, REPORTED),
    _E(CLOSE, SYN_SENT, "active OPEN: connect() / snd SYN", "connect()/SYN", True, REPORTED,
       "reported with local port 0: the port is chosen after it"),
    _E(LISTEN, NEW_SYN_RECV, "rcv SYN / snd SYN,ACK (request socket)", "rcv SYN/SYN,ACK", False, NEVER,
       "a request socket is created in NEW_SYN_RECV directly: no state change of a socket"),
    _E(NEW_SYN_RECV, SYN_RECV, "rcv ACK: the child socket is created", "rcv ACK", False, NEVER,
       "the child is born from the listener and reported as LISTEN -> SYN_RECV"),
    _E(LISTEN, SYN_RECV, "rcv SYN / snd SYN,ACK (Linux: when the ACK creates the child)", "rcv SYN..ACK",
       True, REPORTED, "reported only when the handshake's ACK arrives, followed at once by SYN_RECV -> "
       "ESTABLISHED"),
    _E(LISTEN, SYN_SENT, "SEND / snd SYN", "send", True, NEVER,
       "Linux cannot send on a listener (connect() on one fails)"),
    _E(LISTEN, CLOSE, "close()", "close()", True, REPORTED),
    _E(SYN_SENT, SYN_RECV, "rcv SYN (simultaneous open) / snd SYN,ACK", "rcv SYN", True, IN_CODE),
    _E(SYN_SENT, ESTABLISHED, "rcv SYN,ACK / snd ACK", "rcv SYN,ACK", True, REPORTED),
    _E(SYN_SENT, CLOSE, "close() / rcv RST (refused) / connect timeout", "RST/timeout", True, REPORTED),
    _E(SYN_RECV, ESTABLISHED, "rcv ACK of SYN", "rcv ACK", True, REPORTED),
    _E(SYN_RECV, FIN_WAIT1, "close() / snd FIN", "close()/FIN", True, IN_CODE,
       "only a TCP Fast Open child can be closed before the handshake ends"),
    _E(SYN_RECV, LISTEN, "rcv RST", "rcv RST", True, NEVER,
       "the listener never leaves LISTEN: the request socket is dropped"),
    _E(SYN_RECV, CLOSE, "rcv RST / timeout (Fast Open child)", "RST/timeout", False, IN_CODE),
    _E(ESTABLISHED, FIN_WAIT1, "close() or shutdown(WR) / snd FIN", "close()/FIN", True, REPORTED),
    _E(ESTABLISHED, CLOSE_WAIT, "rcv FIN / snd ACK", "rcv FIN", True, REPORTED),
    _E(ESTABLISHED, CLOSE, "RST sent or received / timeout / abort (linger 0, unread data at close)",
       "RST/timeout/abort", False, REPORTED),
    _E(FIN_WAIT1, FIN_WAIT2, "rcv ACK of FIN", "rcv ACK", True, REPORTED),
    _E(FIN_WAIT1, CLOSING, "rcv FIN / snd ACK (simultaneous close)", "rcv FIN", True, IN_CODE),
    _E(FIN_WAIT1, TIME_WAIT, "rcv FIN,ACK / snd ACK", "rcv FIN,ACK", True, NEVER,
       "the ACK is processed first (FIN_WAIT1 -> FIN_WAIT2), then the FIN (FIN_WAIT2 -> CLOSE)"),
    _E(FIN_WAIT1, CLOSE, "rcv RST / FIN retransmission timeout", "RST/timeout", False, IN_CODE),
    _E(FIN_WAIT2, TIME_WAIT, "rcv FIN / snd ACK", "rcv FIN", True, NEVER,
       "reported as FIN_WAIT2 -> CLOSE: the timewait mini-socket takes over (the table shows it)"),
    _E(FIN_WAIT2, CLOSE, "rcv FIN (TIME_WAIT takes over) / tcp_fin_timeout / RST", "FIN->TIME_WAIT", False,
       REPORTED),
    _E(CLOSING, TIME_WAIT, "rcv ACK of FIN", "rcv ACK", True, NEVER,
       "reported as CLOSING -> CLOSE: the timewait mini-socket takes over"),
    _E(CLOSING, CLOSE, "rcv ACK of FIN (TIME_WAIT takes over) / RST", "ACK->TIME_WAIT", False, IN_CODE),
    _E(TIME_WAIT, CLOSE, "2MSL timeout (60 s on Linux)", "2MSL (60 s)", True, NEVER,
       "the timewait mini-socket is no full socket: its end is no state change"),
    _E(CLOSE_WAIT, LAST_ACK, "close() / snd FIN", "close()/FIN", True, REPORTED),
    _E(CLOSE_WAIT, CLOSE, "RST / abort (linger 0) / never accepted at listener close", "RST/abort", False,
       REPORTED),
    _E(LAST_ACK, CLOSE, "rcv ACK of FIN (or RST / timeout)", "rcv ACK", True, REPORTED),
)
EDGE_BY_KEY: dict[tuple[int, int], Edge] = {e.key: e for e in EDGES}
KNOWN_CODES = frozenset(STATES)
_STATE = attrgetter("state")
MAX_EDGES = len(KNOWN_CODES) * len(KNOWN_CODES)  # 12 × 12: every (old, new) pair of known states
WINDOW = 10  # seconds of the sliding rate window (one bucket a second)
MAX_WINDOW = 60
MAX_PATH = 32  # edges of the followed connection kept


def edge_of(old: int, new: int) -> Edge:
    """The catalogue's edge, or one the catalogue does not know (the kernel reported it anyway)."""
    e = EDGE_BY_KEY.get((old, new))
    if e is None:
        e = Edge(old, new, "not in the diagram", "?", False, REPORTED)
    return e


def state_title(code: int) -> str:
    return RFC_NAMES.get(code) or STATE_NAMES.get(code, str(code))


class _Rate:
    """One edge's counts in ``n`` one-second buckets (slot = second % n; a slot holding an older second
    is reused): fixed size whatever the traffic."""

    __slots__ = ("counts", "secs")

    def __init__(self, n: int) -> None:
        self.counts = [0] * n
        self.secs = [-1] * n

    def add(self, sec: int) -> None:
        i = sec % len(self.counts)
        if self.secs[i] != sec:
            self.secs[i] = sec
            self.counts[i] = 0
        self.counts[i] += 1

    def total(self, now_sec: int) -> int:
        n = len(self.counts)
        return sum(c for c, s in zip(self.counts, self.secs, strict=True) if now_sec - n < s <= now_sec)


Pred = Callable[[Socket], bool]


class StateDiagram:
    """Counts per state, rates and cumulative counts per edge, and the followed connection's path.

    Feed it `update(update, transitions)` once per collector update (the transitions the app handed over,
    or ``update.transitions``). ``set_filter(pred)`` restricts counts and edges to sockets the filter
    language (core/table/filter.py) matches; edges and counts start again from zero then."""

    def __init__(self, *, window: int = WINDOW, max_path: int = MAX_PATH) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW} seconds")
        self.window = window
        self.pred: Pred | None = None
        self.filter_text = ""
        self.counts: dict[int, int] = {}
        self.total = 0
        self.cumulative: dict[tuple[int, int], int] = {}
        self._rates: dict[tuple[int, int], _Rate] = {}
        self.started: float | None = None  # time of the first transition or snapshot fed
        self.now: float | None = None  # newest time fed (snapshot taken_at or transition ts)
        self.transitions_seen = 0  # counted edges since start (or since the filter changed)
        self.unknown = 0  # transitions with a state code outside STATES (not counted on an edge)
        self.followed: FourTuple | None = None
        self.path: deque[Transition] = deque(maxlen=max_path)
        self.current: int | None = None  # the followed connection's state now (table, else its last edge)
        self.version = 0
        self._snapshot: Snapshot | None = None  # the newest snapshot fed (replaced by each)

    # ------------------------------------------------------------------ configuration
    def set_filter(self, pred: Pred | None, text: str = "") -> None:
        self.pred, self.filter_text = pred, text
        self.reset_edges()
        if self._snapshot is not None:
            self._count(self._snapshot)  # the counts of the snapshot on screen, under the new filter

    def reset_edges(self) -> None:
        self.cumulative.clear()
        self._rates.clear()
        self.transitions_seen = 0
        self.unknown = 0
        self.started = self.now
        self.version += 1

    def follow(self, tup: Iterable | None, seed: Iterable[Transition] = ()) -> bool:
        """Follow a 4-tuple (None: nothing); ``seed`` is what is known of its life already (oldest first).
        The same 4-tuple again changes nothing. True when it changed."""
        key = four_tuple_key(*tup) if tup is not None else None
        if key == self.followed:
            return False
        self.followed = key
        self.path.clear()
        self.current = None
        if key is not None:
            for tr in seed:
                if four_tuple_key(tr.src, tr.sport, tr.dst, tr.dport) == key:
                    self._step(tr)
        self.version += 1
        return True

    # ------------------------------------------------------------------ feeding
    def update(self, snapshot: Snapshot | None, transitions: Iterable[Transition] = (), summary=None) -> None:
        """This update's transitions and the snapshot's counts per state. ``summary``: the snapshot's
        `Summary` (core/table/summary.py), whose counts serve when no filter is set instead of counting
        the table a second time."""
        by_tuple = None
        transitions = list(transitions)
        if self.pred is not None and snapshot is not None and transitions:
            by_tuple = {four_tuple_key(s.src, s.sport, s.dst, s.dport): s for s in snapshot.sockets}
        for tr in transitions:
            self._transition(tr, by_tuple)
        if snapshot is not None:
            self._snapshot = snapshot
            self._count(snapshot, summary)
            self._tick(snapshot.taken_at)
        self.version += 1

    def _tick(self, t: float) -> None:
        if self.started is None:
            self.started = t
        if self.now is None or t > self.now:
            self.now = t

    def _count(self, snapshot: Snapshot, summary=None) -> None:
        pred = self.pred
        if pred is None and summary is not None:
            self.counts = {STATE_CODES[name]: n for name, n in summary.by_state.items()}
            self.total = summary.total
        else:
            socks = snapshot.sockets if pred is None else [s for s in snapshot.sockets if pred(s)]
            self.counts, self.total = dict(Counter(map(_STATE, socks))), len(socks)
        if self.followed is not None:
            _, fsport, _, fdport = self.followed
            for s in snapshot.sockets:
                if s.sport == fsport and s.dport == fdport and four_tuple_key(s.src, s.sport, s.dst, s.dport) == self.followed:
                    self.current = s.state  # a timewait socket: TIME_WAIT, though its last edge went to CLOSE
                    break
            else:
                if self.path:
                    self.current = self.path[-1].new

    def matches(self, tr: Transition, by_tuple: dict | None = None) -> bool:
        """Whether the filter keeps a transition: the socket with its 4-tuple (the snapshot's, for its
        owner; else one built from the transition) matches in the state before or after it."""
        pred = self.pred
        if pred is None:
            return True
        sock = by_tuple.get(four_tuple_key(tr.src, tr.sport, tr.dst, tr.dport)) if by_tuple else None
        if sock is None:
            sock = Socket(tr.family, tr.old, tr.src, tr.sport, tr.dst, tr.dport, 0, 0, None, 0, 0,
                          tr.cookie or 0, netns=tr.netns)
        return pred(msgspec.structs.replace(sock, state=tr.old)) or pred(msgspec.structs.replace(sock, state=tr.new))

    def _transition(self, tr: Transition, by_tuple: dict | None) -> None:
        if self.followed is not None and four_tuple_key(tr.src, tr.sport, tr.dst, tr.dport) == self.followed:
            self._step(tr)
        if tr.old not in KNOWN_CODES or tr.new not in KNOWN_CODES:
            self.unknown += 1
            return
        if not self.matches(tr, by_tuple):
            return
        key = (tr.old, tr.new)
        self.cumulative[key] = self.cumulative.get(key, 0) + 1
        rate = self._rates.get(key)
        if rate is None:  # at most 12 × 12 keys: codes outside STATES never get here
            rate = self._rates[key] = _Rate(self.window)
        rate.add(int(tr.ts))
        self.transitions_seen += 1
        self._tick(tr.ts)

    def _step(self, tr: Transition) -> None:
        self.path.append(tr)
        self.current = tr.new

    # ------------------------------------------------------------------ reading
    def count(self, state: int) -> int:
        return self.counts.get(state, 0)

    def rate(self, old: int, new: int) -> float:
        """Transitions per second on an edge over the last ``window`` seconds (less since the start)."""
        r = self._rates.get((old, new))
        if r is None or self.now is None:
            return 0.0
        span = float(self.window)
        if self.started is not None:
            span = min(span, max(1.0, self.now - self.started))
        return r.total(int(self.now)) / span

    def edges_seen(self) -> list[tuple[int, int]]:
        return list(self.cumulative)

    def top_edges(self, n: int) -> list[tuple[Edge, float, int]]:
        """The ``n`` busiest edges seen: (edge, rate, cumulative), by rate, then count."""
        rows = [(edge_of(*k), self.rate(*k), c) for k, c in self.cumulative.items()]
        rows.sort(key=lambda r: (-r[1], -r[2], r[0].old, r[0].new))
        return rows[:n]

    def path_edges(self) -> list[tuple[int, int]]:
        return [(t.old, t.new) for t in self.path]

    def bucket_cells(self) -> int:
        """Rate buckets held now (the bound: MAX_EDGES × window)."""
        return sum(len(r.counts) for r in self._rates.values())
