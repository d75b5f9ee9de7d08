"""Throughput from the kernel's own byte counters, and totals per process (like nethogs). No I/O.

`RateTracker.update(snapshot) -> Rates` (`sockmon.core.series`): for every socket with tcp_info, the
change of ``bytes_received`` (receive) and ``bytes_acked`` (send) since the previous snapshot, divided
by the time between the two snapshots' ``taken_at``. Keyed by the kernel's cookie (netlink is the only
source with tcp_info; a socket without a cookie or tcp_info has no rate). A socket seen for the first
time has no rate yet (None, shown blank — not 0); one whose counters went backwards is a new socket
under a reused key: no rate, and its counters are the baseline from now on. What the tracker keeps
between ticks is the counters of the latest snapshot's sockets only (one dict, replaced each tick):
sockets gone from the table are dropped at once, so it is bounded by the table.

Speed (60k sockets every second): the per-socket work is C — the counters are 16-byte slices of each
socket's tcp_info bytes taken with ``map``, a dict built with ``zip``, the sockets whose counters did
not change found with ``map(ne, ...)`` and skipped by ``compress``; Python code runs only for the
sockets whose counters moved (bench/bench_collect.py: the ``rates`` phase).

`process_totals(snapshot, rates)`: connections grouped by owning process (every socket but listeners):
count, count per state, summed receive and send rates; sockets with no known owner (TIME_WAIT, another
user's without root) are one group with pid 0, so the groups add up to the whole table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import compress, repeat
from operator import attrgetter, getitem, ne

from msgspec import Struct
from sockmon.core.records import SOCKET_COOKIE, Snapshot, Socket
from sockmon.core.series import COUNTERS, ZERO, Rates, unpack_counters
from sockmon.core.states import LISTEN, state_name

_INFO = attrgetter("tcp_info_bytes")


_NO_RATE = object()  # _rate: no rate (a first reading, or counters that went back: another socket)


def _rate(now: bytes, before: bytes | None, then: float | None, taken_at: float):
    """One socket's (rx_bps, tx_bps) from its counter bytes read at ``then`` and at ``taken_at``: None when
    they did not move (a rate of 0), `_NO_RATE` when there is none (no earlier reading, no time between
    them, or counters that went back: another socket under the same cookie)."""
    if before is None or then is None or taken_at <= then:
        return _NO_RATE
    if now == before:
        return None
    acked, received = unpack_counters(now)
    acked0, received0 = unpack_counters(before)
    if acked < acked0 or received < received0:
        return _NO_RATE
    seconds = taken_at - then
    return ((received - received0) / seconds, (acked - acked0) / seconds)


class RateTracker:
    """One per stream of snapshots of one namespace (the collector's, or `ls --rates`' two dumps)."""

    def __init__(self) -> None:
        self._counters: dict[int, bytes] = {}  # cookie → counter bytes, of the latest snapshot only
        self._taken_at: float | None = None
        self._at: dict[int, float] = {}  # update_some: cookie → when its counters were read (else _taken_at)

    def __len__(self) -> int:
        return len(self._counters)

    def reset(self) -> None:
        self._counters = {}
        self._taken_at = None
        self._at = {}

    def update(self, snapshot: Snapshot) -> Rates:
        socks = snapshot.sockets
        infos = list(map(_INFO, socks))
        keys = list(map(SOCKET_COOKIE, socks))
        if None in infos or 0 in keys:  # TIME_WAIT / request sockets, or no cookies (procfs): no rate
            keep = [b is not None and k != 0 for k, b in zip(keys, infos, strict=True)]
            infos = list(compress(infos, keep))
            keys = list(compress(keys, keep))
        counters = list(map(getitem, infos, repeat(COUNTERS)))
        cur = dict(zip(keys, counters, strict=True))
        prev, prev_at = self._counters, self._taken_at
        self._counters, self._taken_at = cur, snapshot.taken_at
        if self._at:  # readings of the event ticks since the previous whole table: per-socket times
            return self._update_mixed(snapshot.taken_at, keys, counters, prev, prev_at, cur)
        if prev_at is None or snapshot.taken_at <= prev_at:
            # the first snapshot (or not a later one: no time between them): only the baseline
            return Rates(snapshot.taken_at, None, cur)
        seconds = snapshot.taken_at - prev_at
        moving: dict[int, tuple[float, float]] = {}
        fresh: list[int] = []
        befores = list(map(prev.get, keys))
        # only the sockets whose 16 counter bytes differ from the previous tick's (or that are new)
        for key, now, before in compress(zip(keys, counters, befores, strict=True), map(ne, counters, befores)):
            rate = _rate(now, before, prev_at, snapshot.taken_at)
            if rate is _NO_RATE:
                fresh.append(key)
            elif rate is not None:
                moving[key] = rate
        return Rates(snapshot.taken_at, seconds, cur, moving, frozenset(fresh))


    def update_some(self, taken_at: float, sockets: Iterable[Socket], removed: Iterable[Socket] = ()) -> Rates:
        """The event-driven table's ticks (core/table/evtable.py): only ``sockets`` were read afresh at
        ``taken_at`` (the rows on screen, the ones that changed); each one's rate is over the time since
        its own previous reading, which may be older than the previous tick. The rates answer for these
        sockets alone: every other socket's numbers are not fresh, so it has no rate (blank, never a
        stale 0). ``removed``: sockets that left the table (their counters are dropped: bounded by it)."""
        counters, at = self._counters, self._at
        for s in removed:
            if s.cookie:
                counters.pop(s.cookie, None)
                at.pop(s.cookie, None)
        base = self._taken_at
        cur: dict[int, bytes] = {}
        moving: dict[int, tuple[float, float]] = {}
        fresh: list[int] = []
        for s in sockets:
            info, key = s.tcp_info_bytes, s.cookie
            if info is None or not key:
                continue
            now = info[COUNTERS]
            cur[key] = now
            before = counters.get(key)
            then = at.get(key, base)
            counters[key] = now
            at[key] = taken_at
            rate = _rate(now, before, then, taken_at)
            if rate is _NO_RATE:
                fresh.append(key)
            elif rate is not None:
                moving[key] = rate
        seconds = None if base is None else max(taken_at - base, 1e-9)
        return Rates(taken_at, seconds, cur, moving, frozenset(fresh))


    def _update_mixed(self, taken_at, keys, counters, prev, prev_at, cur) -> Rates:
        """A whole table after event ticks: each socket's rate over the time since its own last reading."""
        at, self._at = self._at, {}
        moving: dict[int, tuple[float, float]] = {}
        fresh: list[int] = []
        for key, now in zip(keys, counters, strict=True):
            rate = _rate(now, prev.get(key), at.get(key, prev_at), taken_at)
            if rate is _NO_RATE:
                fresh.append(key)
            elif rate is not None:
                moving[key] = rate
        seconds = None if prev_at is None else max(taken_at - prev_at, 1e-9)
        return Rates(taken_at, seconds, cur, moving, frozenset(fresh))


def rates_between(prev: Snapshot, cur: Snapshot) -> Rates:
    """The rates of ``cur``'s sockets since ``prev`` (a fresh tracker: tests, `ls --rates`)."""
    tracker = RateTracker()
    tracker.update(prev)
    return tracker.update(cur)


class ProcessTotal(Struct, frozen=True, gc=False):
    """One process's connections (every socket but listeners): pid 0 = no known owner."""

    pid: int
    name: str  # "" for pid 0
    user: str
    connections: int
    states: tuple[tuple[str, int], ...]  # (state name, count), most first
    rx_bps: float | None  # summed over its connections with a known rate; None when none has one
    tx_bps: float | None
    with_rate: int  # connections whose rate is known (the sums cover these)

    @property
    def total_bps(self) -> float | None:
        if self.rx_bps is None:
            return None
        return self.rx_bps + (self.tx_bps or 0.0)


def process_totals(snapshot: Snapshot, rates: Rates | None,
                   sockets: Iterable[Socket] | None = None) -> tuple[ProcessTotal, ...]:
    """Connections grouped by owning process (``sockets``: those to count, default every non-listener
    of the snapshot), busiest first (receive + send, then connection count)."""
    owners = snapshot.owners
    procs: dict[int, object] = {}
    conns: Counter = Counter()
    states: dict[int, Counter] = {}
    rx: dict[int, float] = {}
    tx: dict[int, float] = {}
    known: Counter = Counter()
    get_rate = rates.get if rates is not None and rates.seconds is not None else None
    socks = sockets if sockets is not None else snapshot.sockets
    for s in socks:
        if s.state == LISTEN:
            continue
        p = owners.get(s.inode) if s.inode else None
        pid = p.pid if p is not None else 0
        if pid not in procs:
            procs[pid] = p
            states[pid] = Counter()
        conns[pid] += 1
        states[pid][s.state] += 1
        if get_rate is not None:
            r = get_rate(s)
            if r is not None:
                known[pid] += 1
                if r is not ZERO:
                    rx[pid] = rx.get(pid, 0.0) + r[0]
                    tx[pid] = tx.get(pid, 0.0) + r[1]
    out = []
    for pid, p in procs.items():
        has = known[pid] > 0
        st = tuple((state_name(code), n) for code, n in states[pid].most_common())
        out.append(ProcessTotal(pid, p.name if p is not None else "", p.user if p is not None else "",
                                conns[pid], st, rx.get(pid, 0.0) if has else None,
                                tx.get(pid, 0.0) if has else None, known[pid]))
    out.sort(key=lambda t: (-(t.total_bps or 0.0), -t.connections, t.pid))
    return tuple(out)
