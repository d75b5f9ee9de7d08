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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sockmon.core.records import Snapshot, Transition
from sockmon.core.series import Rates
from sockmon.core.table.diff import SnapshotDiff, advance_since, diff, socket_keys
from sockmon.core.table.owners import OwnerCache
from sockmon.core.table.rates import ProcessTotal, RateTracker, process_totals
from sockmon.core.table.snapshot import take_snapshot
from sockmon.core.table.summary import Summary, summarize

log = logging.getLogger(__name__)

DRAIN_EVERY = 0.1  # seconds between tracepoint drains (docs/kernel-facts.md §3)
DRAIN_BATCHES = 64  # tracepoint batches (≤ 256 KiB of text each) read per drain at most
MAX_PENDING = 200_000  # transitions buffered while paused / between ticks


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


class Collector:
    def __init__(self, *, interval: float = 1.0, netns: str | int | None = None,
                 on_update: Callable[[Update], None], use_tracepoint: bool | None = None,
                 port: int | None = None, with_info: bool = True, with_owners: bool = True,
                 start: bool = True, on_error: Callable[[BaseException], None] | None = None) -> None:
        if not 0 < interval <= 3600:
            raise ValueError(f"interval must be in (0, 3600] seconds, got {interval}")
        self._interval = float(interval)
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
        self.tracer_note = ""
        self._rates = RateTracker()  # the counters of the latest snapshot only: bounded by the table
        self._processes = False
        # The tracepoint sees every namespace; with a netns we would mislabel: use inference there.
        want = use_tracepoint if use_tracepoint is not None else netns is None
        if want:
            from sockmon.core.table.tracepoint import TransitionTracer, tracing_available

            ok, why = tracing_available()
            if ok:
                try:
                    self._tracer = TransitionTracer(port=port)
                except OSError as exc:
                    self.tracer_note = f"tracepoint unavailable: {exc}"
            else:
                self.tracer_note = why
        elif netns is not None and use_tracepoint is None:
            self.tracer_note = "namespace view: transitions inferred from snapshots"
        self.transition_source = "tracepoint" if self._tracer is not None else "inferred"
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

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused

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
            due = last is None or now >= last + self._interval  # interval read each time: set_interval applies
            if (due and not self._paused) or self._force:
                self._force = False
                self.collect_once()
                last = time.monotonic()
            try:
                self._drain()
            except Exception as exc:  # noqa: BLE001 - the thread lives on; the next Update's note says it
                self._drain_error = f"tracepoint read failed: {type(exc).__name__}: {exc}"
            wait = (last + self._interval) - time.monotonic() if last is not None else 0.0
            if self._paused:
                wait = 3600.0
            if self._tracer is not None:
                wait = min(wait, DRAIN_EVERY)
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()

    def collect_once(self) -> Update:
        """One collection, delivered to on_update and returned (the thread calls this each tick)."""
        t0 = time.perf_counter()
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
        try:
            snap = take_snapshot(netns=self.netns, port=self.port, with_info=self.with_info, owners=self._owners)
            d = diff(self._prev, snap, self._since) if self._prev is not None else None
            base = self._prev.taken_at if self._prev is not None else None
            self._prev = snap  # our reference to the old snapshot ends with the diff
            if d is not None:
                self._since = advance_since(self._since, d, snap)
            else:
                self._since = dict.fromkeys(socket_keys(snap.sockets), snap.taken_at)
            if self._tracer is not None:
                self._drain()
                transitions = tuple(self._pending)
                self._pending = []
                overruns = self._tracer.overruns
            else:
                transitions = d.transitions if d is not None else ()
                overruns = 0
            summary = summarize(snap)
            rates = self._rates.update(snap) if self.with_info else None
            processes = process_totals(snap, rates) if self._processes else None
            drain_error, self._drain_error = self._drain_error, None
            notes = "; ".join(n for n in (snap.note, self.tracer_note, drain_error) if n)
            dropped, self._dropped = self._dropped, 0
            update = Update(snap, d, transitions, summary, (time.perf_counter() - t0) * 1000.0, overruns, source,
                            None, notes, dropped, base_taken_at=base, rates=rates, processes=processes)
        except Exception as exc:  # noqa: BLE001 - the thread must survive; the UI shows the line
            update = Update(None, None, (), None, (time.perf_counter() - t0) * 1000.0, 0, source,
                            f"{type(exc).__name__}: {exc}", self.tracer_note)
        return update
