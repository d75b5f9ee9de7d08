"""Collector: updates per tick, transitions from the tracepoint or inferred, control, error survival."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from sockmon.core.table import collector as collector_mod
from sockmon.core.table.collector import Collector, Update
from sockmon.core.table.tracepoint import list_instances, tracing_available

OK, WHY = tracing_available()


class Sink:
    def __init__(self, delay: float = 0.0) -> None:
        self.updates: list[Update] = []
        self.active = 0
        self.max_active = 0
        self.delay = delay
        self.lock = threading.Lock()
        self.event = threading.Event()

    def __call__(self, u: Update) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
            self.updates.append(u)
        self.event.set()

    def wait(self, n: int, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while len(self.updates) < n and time.monotonic() < end:
            time.sleep(0.01)
        assert len(self.updates) >= n, f"only {len(self.updates)} updates"


def _connection(port_list: list) -> int:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    port_list.extend([lst, cli, srv])
    return lst.getsockname()[1]


def test_inferred_mode_updates_and_transitions():
    sink = Sink()
    keep: list = []
    with Collector(interval=0.1, on_update=sink, use_tracepoint=False) as c:
        assert c.transition_source == "inferred"
        sink.wait(1)
        port = _connection(keep)
        keep[1].shutdown(socket.SHUT_WR)
        time.sleep(0.35)
    try:
        ups = sink.updates
        assert all(u.error is None and u.transition_source == "inferred" and u.overruns == 0 for u in ups)
        first = ups[0]
        assert first.diff is None and first.summary.total == len(first.snapshot.sockets)
        seen = {(t.old_name, t.new_name) for u in ups for t in u.transitions if port in (t.sport, t.dport)}
        assert ("CLOSE", "LISTEN") in seen
        assert any(u.snapshot.owners for u in ups)  # owners resolved
        assert all(u.duration_ms > 0 for u in ups)
    finally:
        for s in keep:
            s.close()


@pytest.mark.skipif(not OK, reason=f"tracepoint unavailable: {WHY}")
def test_tracepoint_mode_and_stop_removes_instance():
    sink = Sink()
    c = Collector(interval=0.2, on_update=sink)
    try:
        assert c.transition_source == "tracepoint"
        mine = [n for n in list_instances() if n.startswith(f"sockmon-{os.getpid()}-")]
        assert len(mine) == 1
        sink.wait(1)
        keep: list = []
        port = _connection(keep)
        for s in keep:
            s.close()
        time.sleep(0.5)
    finally:
        c.stop()
    assert not [n for n in list_instances() if n.startswith(f"sockmon-{os.getpid()}-")]
    trans = [t for u in sink.updates for t in u.transitions if port in (t.sport, t.dport)]
    assert {t.source for t in trans} == {"tracepoint"}
    assert len([t for t in trans if t.dport != 0]) >= 8  # both sides' 4 each, besides the listener
    assert all(u.overruns == 0 for u in sink.updates)


def test_pause_resume_interval_refresh_now():
    sink = Sink()
    c = Collector(interval=3600, on_update=sink, use_tracepoint=False)
    try:
        sink.wait(1)  # the first tick is immediate
        c.refresh_now()
        sink.wait(2)
        c.pause()
        assert c.paused
        n = len(sink.updates)
        c.set_interval(0.05)
        time.sleep(0.3)
        assert len(sink.updates) == n  # paused: no collections
        c.resume()
        sink.wait(n + 3)
        with pytest.raises(ValueError):
            c.set_interval(0)
    finally:
        c.stop()
    assert not c._thread.is_alive()


def test_collections_never_overlap():
    sink = Sink(delay=0.05)
    c = Collector(interval=0.01, on_update=sink, use_tracepoint=False)
    try:
        for _ in range(20):
            c.refresh_now()
            time.sleep(0.005)
        sink.wait(4)
    finally:
        c.stop()
    assert sink.max_active == 1


def test_errors_go_to_on_update_and_the_thread_survives(monkeypatch):
    real = collector_mod.take_snapshot
    calls = {"n": 0}

    def flaky(**kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(1, "Operation not permitted")
        return real(**kw)

    monkeypatch.setattr(collector_mod, "take_snapshot", flaky)
    sink = Sink()

    def bad_consumer(u):
        sink(u)
        raise RuntimeError("consumer bug")

    c = Collector(interval=0.05, on_update=bad_consumer, use_tracepoint=False)
    try:
        sink.wait(4)
    finally:
        c.stop()
    errs = [u for u in sink.updates if u.error]
    assert len(errs) == 1 and "Operation not permitted" in errs[0].error and errs[0].snapshot is None
    assert sink.updates[-1].error is None and sink.updates[-1].snapshot is not None


def test_a_tick_leaves_the_gc_alone():
    import gc

    before = gc.get_threshold()
    c = Collector(interval=3600, on_update=lambda u: None, use_tracepoint=False, start=False)
    try:
        assert gc.get_threshold() == before  # no process-wide GC tuning
        for _ in range(3):
            u = c.collect_once()
            assert u.error is None and u.snapshot.sockets
            assert gc.isenabled() and gc.get_freeze_count() == 0 and gc.get_threshold() == before
            assert not [s for s in u.snapshot.sockets if gc.is_tracked(s)]  # what a tick holds costs the GC nothing
        gc.disable()
        try:  # a caller that runs with the GC off keeps it off
            assert c.collect_once().error is None and not gc.isenabled()
        finally:
            gc.enable()
    finally:
        c.stop()
        gc.set_threshold(*before)


def test_a_consumer_exception_reaches_on_error_or_the_log_never_silence(caplog):
    got = []

    def broken(u):
        raise BrokenPipeError(32, "Broken pipe")

    c = Collector(interval=3600, on_update=broken, use_tracepoint=False, with_owners=False, start=False,
                  on_error=got.append)
    try:
        assert c.collect_once().snapshot is not None  # the tick itself is fine and still returned
    finally:
        c.stop()
    assert len(got) == 1 and isinstance(got[0], BrokenPipeError)
    c = Collector(interval=3600, on_update=broken, use_tracepoint=False, with_owners=False, start=False)
    try:
        with caplog.at_level("ERROR", logger="sockmon.core.table.collector"):
            c.collect_once()
    finally:
        c.stop()
    assert any("BrokenPipeError" in r.getMessage() for r in caplog.records)


def test_full_dump_ticks_are_spaced_within_their_cpu_budget(monkeypatch):
    """Without the event-driven table every tick is a full dump: when one costs more CPU than
    its budget of a core at the interval (dump_budget; the TUI's: DUMP_TICK_BUDGET), the next comes later
    (tick_gap), up to MAX_DUMP_GAP."""
    monkeypatch.setattr(collector_mod, "MAX_DUMP_GAP", 0.5)
    sink = Sink()
    col = Collector(interval=0.05, use_tracepoint=False, on_update=sink, event_table=False,
                    dump_budget=1e-9)  # any tick is over this budget: the cap rules
    try:
        sink.wait(1)
        assert col.tick_gap == 0.5
        time.sleep(1.2)
        n = len(sink.updates)
        assert 2 <= n <= 4, n  # at 0.05 s it would be about 25
    finally:
        col.stop()
    for budget in (None, 1e9):  # no budget (the default), or one no tick exceeds: the interval rules
        col = Collector(interval=0.05, use_tracepoint=False, on_update=lambda u: None, start=False,
                        event_table=False, dump_budget=budget)
        try:
            col.collect_once()
            assert col.tick_gap == 0.05
        finally:
            col.stop()


def test_the_status_bar_says_when_refreshes_are_spaced_out_and_the_event_table():
    from sockmon.tui.widgets.status import StatusInfo, status_text

    info = StatusInfo(interval=1.0, gap=2.4, table="events", transition_source="tracepoint", total=3)
    text = status_text(info).plain
    assert "⟳ 1s→2.4s" in text and "tracepoint · event table" in text
    assert "→" not in status_text(StatusInfo(interval=1.0, gap=1.0)).plain
    info.full_reason = "sorted by RTT ms"
    assert "tracepoint · full dumps: sorted by RTT ms" in status_text(info).plain
