"""`Collector`: a daemon thread producing one `Update` per interval for the UI (or any consumer).

Each tick: `take_snapshot` (owners from one long-lived `OwnerCache`), `diff` against the previous
snapshot, transitions from the tracepoint when available (else the diff's inferred ones), `summarize`,
the rates of every socket from its tcp_info byte counters (`RateTracker`, core/table/rates.py) and, while
someone shows them (``want_processes(True)``: the TUI's process view), the totals per process.
One thread does every collection, so two never overlap; `refresh_now()` just wakes it. With the
tracepoint the thread also drains the kernel buffer every ≤ 100 ms between ticks so nothing is lost
at high connection rates. Errors of a tick are delivered as ``Update.error`` (a failed tracepoint read
between ticks in the next ``Update.note``); the thread lives on. An exception raised by the consumer
(``on_update``) is never swallowed: it goes to ``on_error`` (which may stop the collector, as
``sockmon watch`` does on a closed pipe), or is logged when there is none.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType

import msgspec
from sockmon.core.netns import ALL_NETNS, NetnsIdents, all_netns
from sockmon.core.records import SOCKET_ENDPOINTS, Snapshot, Transition
from sockmon.core.series import Rates
from sockmon.core.states import SYN_SENT
from sockmon.core.table.diff import (
    SnapshotDiff,
    advance_since,
    advance_since_changes,
    diff,
    diff_changes,
    socket_keys,
)
from sockmon.core.table.evtable import EventTable, TooManyChanges
from sockmon.core.table.owners import OwnerCache
from sockmon.core.table.rates import ProcessTotal, RateTracker, process_totals
from sockmon.core.table.snapshot import TCP_ONLY, normalize_protocols, take_snapshot, take_snapshot_all
from sockmon.core.table.summary import Summary, summarize, summarize_changes

log = logging.getLogger(__name__)

DRAIN_EVERY = 0.1  # seconds between tracepoint drains (docs/kernel-facts.md §3)
DRAIN_BATCHES = 64  # tracepoint batches (≤ 256 KiB of text each) read per drain at most
MAX_PENDING = 200_000  # transitions buffered while paused / between ticks
# event-driven table (the default where it can run; off: Collector(event_table=False) or SOCKMON_EVENT_TABLE=0): full dumps within
# FULL_DUMP_BUDGET of one core (a dump tick that took c seconds of CPU — dump, owners, diff, rates — is
# followed by the next after c / budget), at least every MAX_FULL_PERIOD seconds, and at once on a
# resync (lost events, a namespace switch); every tick while need_full_table() says why
FULL_DUMP_BUDGET = 0.01
MAX_FULL_PERIOD = 60.0
# without the event-driven table (not root, no tracepoint, another namespace's view) every tick is a full
# dump; with Collector(dump_budget=B) — the TUI's collector: DUMP_TICK_BUDGET — ticks are spaced so they
# stay within B of one core: a tick that took c seconds of CPU is followed by the next after
# max(interval, c / B), at most MAX_DUMP_GAP (Collector.tick_gap)
DUMP_TICK_BUDGET = 0.25
MAX_DUMP_GAP = 10.0


@dataclass(frozen=True, slots=True)
class Update:
    snapshot: Snapshot | None
    diff: SnapshotDiff | None
    transitions: tuple[Transition, ...]
    summary: Summary | None
    duration_ms: float  # time the collection took
    overruns: int  # tracepoint events lost by the kernel since the collector started (0 if inferred)
    transition_source: str  # "tracepoint" or "inferred"
    error: str | None = None  # one line when this tick failed (snapshot etc. are then None)
    note: str = ""  # e.g. why the tracepoint is not used, or the snapshot's fallback note
    dropped_transitions: int = 0  # transitions discarded because MAX_PENDING was exceeded
    base_taken_at: float | None = None  # taken_at of the snapshot ``diff`` is from (None: no diff)
    rates: Rates | None = None  # rx / tx rate of each socket since the previous tick (None: no tcp_info)
    processes: tuple[ProcessTotal, ...] | None = None  # per-process totals, while wanted (want_processes)
    table: str = "dump"  # "dump": this tick's snapshot is a full dump; "events": the event-driven table


class Collector:
    def __init__(self, *, interval: float = 1.0, netns: str | int | None = None,
                 on_update: Callable[[Update], None], use_tracepoint: bool | None = None,
                 port: int | None = None, with_info: bool = True, with_owners: bool = True,
                 start: bool = True, on_error: Callable[[BaseException], None] | None = None,
                 protocols: Iterable[str] | None = None, event_table: bool | None = None,
                 dump_budget: float | None = None) -> None:
        if not 0 < interval <= 3600:
            raise ValueError(f"interval must be in (0, 3600] seconds, got {interval}")
        self._interval = float(interval)
        self._protocols = normalize_protocols(protocols)
        self.netns = netns
        self.port = port
        self.with_info = with_info
        self._on_update = on_update
        self._on_error = on_error
        self._drain_error: str | None = None
        self._owners = OwnerCache() if with_owners else None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._paused = False
        self._force = False
        self._lock = threading.Lock()
        self._prev: Snapshot | None = None
        self._since: dict = {}
        self._pending: list[Transition] = []
        self._dropped = 0
        self._tracer = None
        self._overruns_seen = 0  # the tracer's overrun count at the previous tick
        self.tracer_note = ""
        self._use_tracepoint = use_tracepoint
        self._idents = NetnsIdents()  # ALL_NETNS: an unnamed namespace keeps its pid:N while it lives
        self._switch_to: tuple[str | int | None] | None = None  # set_netns: applied by the next collection
        self.transition_source = "inferred"
        self._setup_tracer(netns)
        if event_table is None:  # the default wherever it can run (root, tracepoint, our own namespace)
            event_table = os.environ.get("SOCKMON_EVENT_TABLE", "1").strip() not in ("0", "no", "off", "false")
        self._evt = EventTable(with_info=with_info) if event_table else None
        self._visible: tuple = ()  # set_visible: rows on screen, refreshed each event tick
        self._ev_changes: tuple | None = None  # this event tick's (changes, fresh sockets) for _collect
        self._summary: Summary | None = None  # the previous tick's (summarize_changes starts from it)
        self._full_reason: str | None = None  # need_full_table: why every tick is a full dump now
        self._dump_budget = dump_budget  # None: every tick at the interval, whatever a full dump costs
        self._dump_gap = 0.0  # seconds between full-dump ticks when over the budget (0: the interval)
        self._hold = False  # hold_full_dumps: only resyncs dump in full
        self._full_next = 0.0  # monotonic time of the next full dump (event-driven table)
        self.full_dumps = 0  # full dumps done (any mode)
        self._rates = RateTracker()  # the counters of the latest snapshot only: bounded by the table
        self._processes = False
        self._thread = threading.Thread(target=self._run, name="sockmon-collector", daemon=True)
        if start:
            self._thread.start()

    # -- control (any thread) -------------------------------------------------------------------
    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    @property
    def interval(self) -> float:
        return self._interval

    def set_interval(self, seconds: float) -> None:
        if not 0 < seconds <= 3600:
            raise ValueError(f"interval must be in (0, 3600] seconds, got {seconds}")
        self._interval = float(seconds)
        self._wake.set()

    @property
    def protocols(self) -> frozenset[str]:
        return self._protocols

    def set_protocols(self, protocols: Iterable[str]) -> None:
        """Which socket types the next ticks dump ("tcp", "udp", "unix"): UDP and UNIX cost a dump
        each, so they are collected only while a view asks for them. Takes effect at the next tick."""
        self._protocols = normalize_protocols(protocols)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def set_netns(self, netns: str | int | None) -> None:
        """Show another namespace from the next collection on (None: our own, ALL_NETNS: every one).
        Any thread; never blocks. The switch is a resync: the first snapshot of the new view is a new
        base (``Update.diff`` None, no transitions inferred across the switch) and transitions the
        tracepoint delivered for the old view are dropped."""
        with self._lock:
            self._switch_to = (netns,)
        self.refresh_now()

    def want_processes(self, wanted: bool = True) -> None:
        """Compute the totals per process at each tick (``Update.processes``) while ``wanted``."""
        self._processes = bool(wanted)

    @property
    def processes_wanted(self) -> bool:
        return self._processes

    def refresh_now(self) -> None:
        self._force = True
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and remove the tracefs instance. Idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._tracer is not None:
            self._tracer.close()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _setup_tracer(self, netns: str | int | None) -> None:
        """The tracepoint reports every namespace's transitions and names none: it suits the views of
        our own namespace (as ever) and of every namespace (the collector names each transition's
        namespace from the snapshots, `_name_netns`); a view of one other namespace infers its
        transitions from snapshots instead (the tracepoint would report strangers' sockets there)."""
        want = self._use_tracepoint if self._use_tracepoint is not None else netns in (None, ALL_NETNS)
        if want and self._tracer is None:
            from sockmon.core.table.tracepoint import TransitionTracer, tracing_available

            ok, why = tracing_available()
            if ok:
                try:
                    self._tracer = TransitionTracer(port=self.port)
                    self._overruns_seen = 0
                    # the binary reader is the default; a fall back to the text one says why
                    self.tracer_note = self._tracer.note if self._tracer.source != "binary" else ""
                except OSError as exc:
                    self.tracer_note = f"tracepoint unavailable: {exc}"
            else:
                self.tracer_note = why
        elif not want:
            if self._tracer is not None:
                self._tracer.close()
                self._tracer = None
            self.tracer_note = ("namespace view: transitions inferred from snapshots"
                                if netns is not None and self._use_tracepoint is None else "")
        self.transition_source = "tracepoint" if self._tracer is not None else "inferred"

    def _apply_switch(self) -> None:
        with self._lock:
            switch, self._switch_to = self._switch_to, None
        if switch is None:
            return
        self.netns = switch[0]
        self._prev = None  # a new base: nothing is diffed (or inferred) across the switch
        self._since = {}
        self._pending = []
        self._setup_tracer(self.netns)
        if self._tracer is not None:  # what the kernel buffered before the switch belongs to the old view
            for _ in self._tracer.batches():
                pass

    # -- the thread -----------------------------------------------------------------------------
    def _drain(self) -> None:
        if self._tracer is None or self._tracer.closed:
            return
        # bounded batches, and at most DRAIN_BATCHES per call so ticks go on under a sustained flood
        for n, got in enumerate(self._tracer.batches(), 1):
            room = MAX_PENDING - len(self._pending)
            if len(got) > room:
                self._dropped += len(got) - max(room, 0)
                got = got[:max(room, 0)]
            self._pending.extend(got)
            if n >= DRAIN_BATCHES:
                break

    def _run(self) -> None:
        last: float | None = None  # when the previous collection finished
        while not self._stop.is_set():
            now = time.monotonic()
            gap = max(self._interval, self._dump_gap)  # interval read each time: set_interval applies
            due = last is None or now >= last + gap
            if (due and not self._paused) or self._force:
                self._force = False
                self.collect_once()
                last = time.monotonic()
            try:
                self._drain()
            except Exception as exc:  # noqa: BLE001 - the thread lives on; the next Update's note says it
                self._drain_error = f"tracepoint read failed: {type(exc).__name__}: {exc}"
            wait = (last + max(self._interval, self._dump_gap)) - time.monotonic() if last is not None else 0.0
            if self._paused:
                wait = 3600.0
            if self._tracer is not None:
                wait = min(wait, DRAIN_EVERY)
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()

    def collect_once(self) -> Update:
        """One collection, delivered to on_update and returned (the thread calls this each tick)."""
        t0 = time.perf_counter()
        if self._switch_to is not None:
            self._apply_switch()
        source = self.transition_source
        update = self._collect(t0, source)
        try:
            self._on_update(update)
        except Exception as exc:  # noqa: BLE001 - handed on, never swallowed; collection goes on
            try:
                if self._on_error is None:
                    raise
                self._on_error(exc)
            except Exception:  # noqa: BLE001 - no handler, or the handler failed: log it, collection goes on
                log.error("sockmon collector: on_update raised %s: %s", type(exc).__name__, exc, exc_info=exc)
        return update

    def _collect(self, t0: float, source: str) -> Update:
        cpu0 = time.thread_time()
        try:
            # TCP always (diff, summary, transitions are about it); UDP / UNIX only when asked
            protocols = self._protocols | {"tcp"}
            evmode = self._event_mode()
            snap, table = self._event_snapshot(protocols) if evmode else (None, "dump")
            if snap is None:
                if self.netns == ALL_NETNS:
                    snap = take_snapshot_all(refs=self._idents.stable(all_netns()), port=self.port,
                                             with_info=self.with_info, owners=self._owners, protocols=protocols)
                else:
                    snap = take_snapshot(netns=self.netns, port=self.port, with_info=self.with_info,
                                         owners=self._owners, protocols=protocols)
                self.full_dumps += 1
            prev = self._prev
            fresh = None
            if table == "events":  # what changed is known: no work for the rows that did not
                changes, fresh = self._ev_changes
                self._ev_changes = None
                d = diff_changes(changes, snap.taken_at, self._since)
                self._since = advance_since_changes(self._since, d, snap.taken_at)
            else:
                d = diff(self._prev, snap, self._since) if self._prev is not None else None
                if d is not None:
                    self._since = advance_since(self._since, d, snap)
                else:
                    self._since = dict.fromkeys(socket_keys(snap.sockets), snap.taken_at)
            base = self._prev.taken_at if self._prev is not None else None
            self._prev = snap  # our reference to the old snapshot ends with the diff
            lost_note = ""
            if self._tracer is not None:
                if not evmode:  # the event table drained right before its lookups
                    self._drain()
                transitions = tuple(self._pending)
                self._pending = []
                if snap.netns == ALL_NETNS and transitions:
                    transitions = _name_netns(transitions, snap, prev)
                overruns = self._tracer.overruns
                if overruns > self._overruns_seen:  # lost events: this tick's full dump is the resync
                    lost_note = (f"tracepoint lost {overruns - self._overruns_seen} events (kernel buffer "
                                 f"overrun): states resynced from the full dump")
                    self._overruns_seen = overruns
            else:
                transitions = d.transitions if d is not None else ()
                overruns = 0
            if fresh is not None and self._summary is not None:
                summary = summarize_changes(self._summary, d, snap)
            else:
                summary = summarize(snap)
            self._summary = summary
            if not self.with_info:
                rates = None
            elif fresh is not None:  # only the rows read afresh have a rate (the others' numbers are old)
                rates = self._rates.update_some(snap.taken_at, fresh, d.removed)
            else:
                rates = self._rates.update(snap)
            processes = process_totals(snap, rates) if self._processes else None
            drain_error, self._drain_error = self._drain_error, None
            notes = "; ".join(n for n in (snap.note, self.tracer_note, drain_error, lost_note) if n)
            dropped, self._dropped = self._dropped, 0
            update = Update(snap, d, transitions, summary, (time.perf_counter() - t0) * 1000.0, overruns, source,
                            None, notes, dropped, base_taken_at=base, rates=rates, processes=processes,
                            table=table)
            took = time.thread_time() - cpu0
            if evmode and table == "dump" and not self._hold:  # the next full dump within the budget
                self._full_next = time.monotonic() + min(MAX_FULL_PERIOD, max(self._interval,
                                                                              took / FULL_DUMP_BUDGET))
            # every tick a full dump: the ticks spaced within their budget (none with the event table)
            budget = self._dump_budget
            self._dump_gap = 0.0 if evmode or not budget else min(MAX_DUMP_GAP, took / budget)
        except Exception as exc:  # noqa: BLE001 - the thread must survive; the UI shows the line
            update = Update(None, None, (), None, (time.perf_counter() - t0) * 1000.0, 0, source,
                            f"{type(exc).__name__}: {exc}", self.tracer_note)
        return update

    # -- the event-driven table (core/table/evtable.py) -------------------------------------------
    @property
    def event_table(self) -> bool:
        """True while the ticks keep the TCP table from the tracepoint's events (asked for, the
        tracepoint in use, our own namespace); False: every tick is a full dump."""
        return self._event_mode()

    def _event_mode(self) -> bool:
        return (self._evt is not None and self._tracer is not None and not self._tracer.closed
                and self.netns is None and self.port is None)

    @property
    def tick_gap(self) -> float:
        """Seconds between ticks now: the interval, or more when every tick is a full dump that costs
        more than DUMP_TICK_BUDGET of a core at that interval (a big table without the event table)."""
        return max(self._interval, self._dump_gap)

    def need_full_table(self, reason: str | None) -> None:
        """Every tick a full dump while ``reason`` is set (None: back to the event-driven table): for
        what needs every row's numbers fresh — a sort on queues, timers, rates or tcp_info, the totals
        per process. Any thread; takes effect at the next tick."""
        self._full_reason = reason

    @property
    def full_table_reason(self) -> str | None:
        """What need_full_table() was last told (None: nothing)."""
        return self._full_reason

    @property
    def full_dump_reason(self) -> str | None:
        """Why every tick of the event-driven table is a full dump now (for the status bar), or None."""
        if not self._event_mode():
            return None
        return self._full_reason or ("process view" if self._processes else None)

    def hold_full_dumps(self) -> None:
        """No full dump by the cadence from now on (resync triggers still do one): for the
        consistency check and tests, which want every tick event-driven."""
        self._hold = True
        self._full_next = float("inf")

    def check_consistency(self, keep: Callable | None = None) -> list[str]:
        """The event-driven table against a fresh full dump (`evtable.consistency`): the differences,
        one line each. A difference may be a socket that changed between the two reads, so the check
        is made twice, one event tick apart, and only differences seen both times are returned. Call
        it from the thread that ticks (a collector made with ``start=False``)."""
        from sockmon.core.table.evtable import consistency

        if not self._event_mode():
            raise RuntimeError("no event-driven table here (root, the tracepoint and our own namespace needed)")
        first = consistency(self._evt.sockets(), take_snapshot(with_info=False).sockets, keep)
        if not first:
            return []
        self._drain()
        self._evt.apply(self._pending)
        second = consistency(self._evt.sockets(), take_snapshot(with_info=False).sockets, keep)
        return [line for line in second if line in set(first)]

    def set_visible(self, keys: Iterable[tuple]) -> None:
        """The rows on screen — (family, src, sport, dst, dport) each, at most `evtable.MAX_VISIBLE`
        used: with the event-driven table their numbers are looked up afresh every tick (the other
        rows keep those of the last full dump or lookup). Any thread."""
        self._visible = tuple(keys)

    def table_sockets(self) -> tuple:
        """The event-driven table's TCP sockets as they are now (for `consistency`)."""
        return self._evt.sockets() if self._evt is not None else ()

    def _event_snapshot(self, protocols: frozenset[str]) -> tuple[Snapshot, str]:
        """This tick's snapshot and how it was made: "events" (the event-driven table after this
        tick's transitions) or "dump" (a full dump, due by the cadence or a resync, that the table is
        reset from)."""
        evt = self._evt
        self._drain()
        now = time.monotonic()
        resync = (self._prev is None or now >= self._full_next or self._dropped or self._full_reason is not None
                  or self._processes
                  or self._tracer.overruns > self._overruns_seen or self._drain_error is not None
                  or self._prev.netns is not None or self._prev.protocols != protocols)
        if not resync:
            try:
                evt.apply(self._pending)
            except TooManyChanges:
                resync = True
            else:
                visible = self._visible
                if visible:
                    evt.refresh(visible, evt.touched)
        if resync:
            t0 = time.monotonic()
            snap = take_snapshot(netns=None, port=self.port, with_info=self.with_info, owners=self._owners,
                                 protocols=protocols)
            took = time.monotonic() - t0
            evt.reset(snap.sockets, snap.taken_at)
            # provisional (the tick's whole CPU time sets it in _collect)
            self._full_next = (float("inf") if self._hold else
                               time.monotonic() + min(MAX_FULL_PERIOD, max(self._interval, took / FULL_DUMP_BUDGET)))
            self.full_dumps += 1
            return snap, "dump"
        taken_at = time.monotonic()
        wall = time.time()
        sockets = evt.sockets()
        changes, fresh = evt.take_changes()
        self._ev_changes = (changes, fresh)
        udp = unix = ()
        note = ""
        if protocols != TCP_ONLY:
            extra = take_snapshot(netns=None, port=self.port, with_info=False, owners=None,
                                  protocols=protocols - {"tcp"})
            udp, unix, note = extra.udp, extra.unix, extra.note
        kw = {}
        if self._owners is not None and (udp or unix):
            kw["owners"] = MappingProxyType(self._owners.resolve_sockets([*sockets, *udp, *unix]))
        elif self._owners is not None:
            # the owners of the previous tick, less the sockets that left, plus those of the new ones
            owners = dict(self._prev.owners)
            gone = [old for old, new in changes if old is not None and old.inode
                    and (new is None or new.inode != old.inode)]
            for old in gone:
                owners.pop(old.inode, None)
            born = [new for old, new in changes if new is not None and new.inode
                    and (old is None or old.inode != new.inode or old.inode not in owners)]
            owners.update(self._owners.resolve_more(born, forget=gone))
            kw["owners"] = MappingProxyType(owners)
        return Snapshot(sockets=sockets, taken_at=taken_at, wall_time=wall, source="netlink", netns=None,
                        note=note, udp=tuple(udp), unix=tuple(unix), protocols=protocols,
                        read_at=MappingProxyType(evt.read_at()), read_base=evt.read_base, **kw), "events"


_AMBIGUOUS = object()


def _name_netns(transitions: tuple[Transition, ...], snap: Snapshot, prev: Snapshot | None) -> tuple[Transition, ...]:
    """The tracepoint's transitions with ``netns`` set where the snapshots tell: the namespace of the
    socket with that family and 4-tuple in this snapshot, else in the previous one (a socket that
    closed meanwhile). Left None when no socket or more than one namespace has that 4-tuple (a
    connection born and gone between two snapshots, or the same loopback 4-tuple in two namespaces)."""
    wanted = {(t.family, t.src, t.sport, t.dst, t.dport) for t in transitions}
    found: dict[tuple, object] = {}
    for snapshot in (snap, prev):
        if snapshot is None or snapshot.netns != ALL_NETNS:
            continue
        here: dict[tuple, object] = {}
        socks = snapshot.sockets
        for key, s in zip(map(SOCKET_ENDPOINTS, socks), socks, strict=True):
            if key in wanted:
                seen = here.get(key)
                here[key] = s.netns if seen is None or seen == s.netns else _AMBIGUOUS
        for key, ns in here.items():
            found.setdefault(key, ns)
        wanted -= here.keys()
        if not wanted:
            break
    if not found:
        return transitions
    # connect() enters SYN_SENT before the kernel picks the source port (sport 0): such a transition
    # takes the namespace of the next SYN_SENT → … of the same family, source, peer in this batch
    connecting: dict[tuple, object] = {}
    for t in transitions:
        if t.old == SYN_SENT and t.sport:
            ns = found.get((t.family, t.src, t.sport, t.dst, t.dport))
            key = (t.family, t.src, t.dst, t.dport)
            seen = connecting.get(key)
            connecting[key] = ns if seen is None or seen == ns else _AMBIGUOUS
    replace = msgspec.structs.replace
    out = []
    for t in transitions:
        if t.sport == 0 and t.new == SYN_SENT:
            ns = connecting.get((t.family, t.src, t.dst, t.dport))
        else:
            ns = found.get((t.family, t.src, t.sport, t.dst, t.dport))
        out.append(replace(t, netns=ns) if isinstance(ns, str) else t)
    return tuple(out)
