"""`EventTable`: the TCP socket table of our own namespace kept current from the tracepoint's
transitions between full dumps (docs/kernel-facts.md: the tracepoint reports every TCP state change,
births and deaths included, host-wide).

Each tick `apply` takes the drained transitions: a 4-tuple touched by one (a birth, a state change, a
FIN_WAIT2 / CLOSING → CLOSE — the TIME_WAIT mini-socket takes over and that is never reported as a
state) is looked up with one exact sock_diag request (`diag.get_exact`, 64 per datagram): the answer is
the socket's full record (cookie, inode, tcp_info) as it is now, no answer removes it (closed, or it
lives in another namespace: the lookup runs in ours, which is how host-wide events are attributed).
The listeners are read whole every tick with one LISTEN-only dump (the kernel walks only the listening
hash): births and deaths, and their accept queues, which move with no event of their own (a connection
queued, an accept()); SO_REUSEPORT listeners share a 4-tuple and are rows by cookie. A TIME_WAIT row leaves
when its timer runs out (no event marks that). `reset` takes a full dump's sockets; CLOSE-state
(bound, unconnected) sockets are kept from the last full dump as they were (no event reports bind()).

`consistency` compares a table with a full dump: the debug check of ``sockmon ls --check-consistency``
and of the tests.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from operator import not_

from sockmon.core.records import SOCKET_ENDPOINTS, SOCKET_STATE, Socket, Transition
from sockmon.core.states import CLOSE, LISTEN, TIME_WAIT, state_name
from sockmon.core.table import diag, netlink

TW_SLACK_MS = 2000  # a TIME_WAIT row this close to its end may be gone from one side and not the other
MAX_VISIBLE = 500  # rows whose numbers are refreshed each tick (the rows on screen; `refresh`)
MAX_FETCH = 4000  # exact lookups per tick at most; more touched sockets than that → a full dump instead
_FAMILIES = (socket.AF_INET, socket.AF_INET6)
Key = tuple  # (family, src, sport, dst, dport)
_PLAIN = frozenset(range(1, 13)) - {LISTEN, CLOSE, TIME_WAIT}  # states whose rows `reset` keys in C


class TooManyChanges(Exception):
    """More sockets touched in one tick than MAX_FETCH: the caller does a full dump instead."""


class EventTable:
    def __init__(self, *, with_info: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.with_info = with_info
        self._clock = clock
        self._conns: dict[Key, Socket] = {}  # every TCP socket but listeners and CLOSE-state ones
        self._listen: dict[int, list[Socket]] = {}  # local port → its listeners
        self._unbound: list[Socket] = []  # CLOSE-state sockets of the last full dump
        self._tw_until: dict[Key, float] = {}  # TIME_WAIT rows → when their timer ends
        self.fetched = 0  # exact lookups done (all ticks)
        self.touched: Iterable[Key] = ()  # the 4-tuples looked up by the last `apply`
        # what changed since the last `take_changes` (or `reset`): row → [socket before, socket now]
        # (None: absent), the first "before" kept; bounded by the table plus the rows that left it
        # since the last take (the collector takes them every tick)
        self._changes: dict[tuple, list] = {}
        self._fresh: dict[int, Socket] = {}  # cookie → a socket whose numbers were read since the last take
        # cookie → when its numbers were read (monotonic), for the sockets read since the last `reset`
        # (the others at ``read_base``, that full dump's time): bounded by the table (a socket leaving
        # it is dropped), emptied by `reset`
        self._read_at: dict[int, float] = {}
        self.read_base: float | None = None
        self._now = 0.0  # the clock at the current apply / refresh (when _note's sockets were read)

    def __len__(self) -> int:
        return len(self._conns) + sum(map(len, self._listen.values())) + len(self._unbound)

    def reset(self, sockets: Iterable[Socket], taken_at: float) -> None:
        listen: dict[int, list[Socket]] = {}
        unbound: list[Socket] = []
        tw: dict[Key, float] = {}
        socks = sockets if isinstance(sockets, (list, tuple)) else list(sockets)
        # the connections in C (one zip over the table); Python only for listeners, CLOSE and TIME_WAIT
        states = list(map(SOCKET_STATE, socks))
        plain = list(map(_PLAIN.__contains__, states))
        rows = list(compress(socks, plain))
        conns: dict[Key, Socket] = dict(zip(map(SOCKET_ENDPOINTS, rows), rows, strict=True))
        for s in compress(socks, map(not_, plain)):
            st = s.state
            if st == LISTEN:
                listen.setdefault(s.sport, []).append(s)
            elif st == CLOSE:
                unbound.append(s)
            else:
                key = SOCKET_ENDPOINTS(s)
                conns[key] = s
                if st == TIME_WAIT and s.timer is not None:
                    tw[key] = taken_at + s.timer.expires_ms / 1000.0
        self._conns, self._listen, self._unbound, self._tw_until = conns, listen, unbound, tw
        self._changes = {}
        self._fresh = {}
        self._read_at = {}
        self.read_base = taken_at

    def read_at(self) -> dict[int, float]:
        """A copy of cookie → when its numbers were read, for the sockets read since the last full dump
        (`Snapshot.read_at`; the others were read at ``read_base``)."""
        return dict(self._read_at)

    def _note(self, key: tuple, old: Socket | None, new: Socket | None) -> None:
        seen = self._changes.get(key)
        if seen is None:
            if old is not new:
                self._changes[key] = [old, new]
        else:
            seen[1] = new
        if new is not None and new.cookie:
            self._fresh[new.cookie] = new
            self._read_at[new.cookie] = self._now
        if old is not None and old.cookie and (new is None or new.cookie != old.cookie):
            self._read_at.pop(old.cookie, None)

    def take_changes(self) -> tuple[list[tuple[Socket | None, Socket | None]], list[Socket]]:
        """What changed since the previous call (or `reset`): (before, now) per row whose socket was
        replaced, added (before None) or removed (now None) — rows that ended as they began are left
        out — and the sockets whose numbers were read meanwhile (looked up or refreshed), as they are
        now. The collector's diff, summary and rates of an event tick come from these alone."""
        changes = [(old, new) for old, new in self._changes.values() if old is not new]
        fresh = list(self._fresh.values())
        self._changes = {}
        self._fresh = {}
        return changes, fresh

    def sockets(self) -> tuple[Socket, ...]:
        out: list[Socket] = []
        for ls in self._listen.values():
            out += ls
        out += self._conns.values()
        out += self._unbound
        return tuple(out)

    def apply(self, transitions: Sequence[Transition]) -> int:
        """Bring the table up to date with these transitions; returns the exact lookups made.
        Raises TooManyChanges (table unchanged) when more than MAX_FETCH sockets were touched."""
        touched: dict[Key, None] = {}
        for t in transitions:
            if t.new == LISTEN or t.old == LISTEN:  # the listeners are dumped whole below
                continue
            if t.sport == 0:  # connect() before the source port is picked: the next transition names it
                continue
            touched[(t.family, t.src, t.sport, t.dst, t.dport)] = None
        if len(touched) > MAX_FETCH:
            raise TooManyChanges(len(touched))
        now = self._now = self._clock()
        if self._tw_until:
            for key in [k for k, until in self._tw_until.items() if until <= now]:
                del self._tw_until[key]
                s = self._conns.get(key)
                if s is not None and s.state == TIME_WAIT:
                    del self._conns[key]
                    self._note(key, s, None)
        nl = netlink.open_socket(netlink.NETLINK_SOCK_DIAG)
        try:
            # every listener, every tick: a LISTEN-only dump walks only the listening hash (cheap), and
            # a listener's accept queue moves with no event of its own (a connection queued, accept())
            self._listen_all(nl)
            if touched:
                found, _missing = diag.get_exact(nl, touched, with_info=self.with_info)
            else:
                found = []
        finally:
            nl.close()
        conns = self._conns
        before = {key: conns.pop(key, None) for key in touched}
        for key in touched:
            self._tw_until.pop(key, None)
        for s in found:
            key = SOCKET_ENDPOINTS(s)
            if key not in touched or s.state in (LISTEN, CLOSE):
                continue  # a lookup that fell through to a listener: the connection is gone
            conns[key] = s
            if s.state == TIME_WAIT and s.timer is not None:
                self._tw_until[key] = now + s.timer.expires_ms / 1000.0
        for key, old in before.items():
            self._note(key, old, conns.get(key))
        self.fetched += len(touched)
        self.touched = touched.keys()
        return len(touched)


    def refresh(self, keys: Iterable[Key], skip: Iterable[Key] = ()) -> int:
        """Fresh numbers (queues, timers, tcp_info) for these rows — the ones on screen — by exact
        lookups (at most MAX_VISIBLE; listeners are read whole by every `apply`); a row whose lookup
        finds nothing is gone. ``skip``: rows already looked up this tick. Returns the lookups made."""
        skip = set(skip)
        self._now = self._clock()
        conns: list[Key] = []
        for key in keys:
            if len(conns) >= MAX_VISIBLE:
                break
            if key in skip:
                continue
            if key in self._conns:
                conns.append(key)
        if not conns:
            return 0
        nl = netlink.open_socket(netlink.NETLINK_SOCK_DIAG)
        try:
            found, _missing = diag.get_exact(nl, conns, with_info=self.with_info)
        finally:
            nl.close()
        before = {key: self._conns.pop(key, None) for key in conns}
        for s in found:
            key = SOCKET_ENDPOINTS(s)
            if key in before and s.state not in (LISTEN, CLOSE):
                self._conns[key] = s
        for key, old in before.items():
            self._note(key, old, self._conns.get(key))
        return len(conns)

    def _listen_all(self, nl) -> None:
        """Every listener afresh (one LISTEN-only dump per family), births and deaths included."""
        got: list[Socket] = []
        for family in _FAMILIES:
            try:
                diag.dump_tcp(nl, family, states=1 << LISTEN, with_info=self.with_info, out=got)
            except OSError:
                if family == socket.AF_INET6:
                    continue
                raise
        old = {s.cookie: s for ls in self._listen.values() for s in ls}
        listen: dict[int, list[Socket]] = {}
        for s in got:
            if s.state == LISTEN:
                listen.setdefault(s.sport, []).append(s)
        self._listen = listen
        for ls in listen.values():  # listeners are rows by cookie (SO_REUSEPORT ones share their 4-tuple)
            for s in ls:
                self._note(("listen", s.cookie), old.pop(s.cookie, None), s)
        for cookie, s in old.items():
            self._note(("listen", cookie), s, None)


def consistency(table: Iterable[Socket], full: Iterable[Socket],
                keep: Callable[[Socket], bool] | None = None) -> list[str]:
    """The differences between a maintained table and a full dump, one line each: sockets only in
    one of them, or in both with another state (sockets compared by family and 4-tuple; CLOSE-state
    ones left out: no event reports them; so are TIME_WAIT sockets of the dump within TW_SLACK_MS of their
    end: the kernel reaps them late, the table at their timer's end). ``keep`` limits the comparison
    (e.g. to a port range)."""
    ending: set[Key] = set()

    def index(socks: Iterable[Socket], dump: bool) -> dict[Key, set[int]]:
        out: dict[Key, set[int]] = {}
        for s in socks:
            if s.state == CLOSE or (keep is not None and not keep(s)):
                continue
            if dump and s.state == TIME_WAIT and (s.timer is None or s.timer.expires_ms <= TW_SLACK_MS):
                ending.add(SOCKET_ENDPOINTS(s))
                continue
            out.setdefault(SOCKET_ENDPOINTS(s), set()).add(s.state)
        return out

    truth = index(full, True)
    mine = {k: v for k, v in index(table, False).items() if k not in ending}
    lines = []

    def name(key: Key) -> str:
        fam, src, sport, dst, dport = key
        return f"{src}:{sport} {dst}:{dport}" if fam == socket.AF_INET else f"[{src}]:{sport} [{dst}]:{dport}"

    def states(codes: set[int]) -> str:
        return ",".join(sorted(state_name(c) for c in codes))

    for key in sorted(mine.keys() | truth.keys(), key=repr):
        a, b = mine.get(key), truth.get(key)
        if a == b:
            continue
        if a is None:
            lines.append(f"missing {name(key)} {states(b)} (in the full dump only)")
        elif b is None:
            lines.append(f"stale {name(key)} {states(a)} (gone from the full dump)")
        else:
            lines.append(f"state {name(key)} table {states(a)} != dump {states(b)}")
    return lines
