"""The throughput views in the real app (Pilot): the process view's totals and its toggle, the rate
columns' sorting (blanks last), the sparklines of the followed connection in the Timeline and the
collector computing totals per process only while the view is shown."""

from __future__ import annotations

import os
import socket

import pytest
from sockmon.core.table.collector import Collector
from sockmon.tui.app import SockmonApp
from sockmon.tui.lab.timeline import TimelinePane
from test_tui_fixtures import T0, frozen_clock, rated_sockets, snapshot, summary, sync, wait_for

pytestmark = pytest.mark.timeout(60)


def make_app() -> SockmonApp:
    return SockmonApp(collector_factory=None, is_root=True, clock=frozen_clock())


def feed(app, ticks: int = 2) -> None:
    for tick in range(ticks + 1):
        snap = snapshot(rated_sockets(tick), taken_at=T0 - ticks + tick)
        app.inject_snapshot(snap, (), summary(snap))


def cell(table, row, column: str) -> str:
    index = table.visible_keys.index(table.key_fn(row))
    line = "".join(seg.text for seg in table._row_strip(index))
    left = 0
    for col in table.columns:
        if col.key == column:
            return line[left:left + col.width].strip()
        left += col.width + 1
    raise KeyError(column)


@sync
async def test_process_view_totals_per_process_and_toggle():
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        feed(app)
        await pilot.pause()
        assert app.processes.display is False and app.connections.display is True
        await pilot.press("g")
        await pilot.pause()
        assert app.process_view and app.processes.display and not app.connections.display
        assert app.focused is app.processes.table
        table = app.processes.table
        rows = {t.pid: t for t in table.visible_rows()}
        nginx = rows[4242]  # 8080 → 51000 (7/8 of its flow at tick 2), 8080 → 51018 (steady), CLOSE_WAIT (idle)
        assert (nginx.name, nginx.user, nginx.connections) == ("nginx", "www-data", 3)
        assert dict(nginx.states) == {"ESTABLISHED": 2, "CLOSE_WAIT": 1}
        assert cell(table, nginx, "rx") == "75.0 kB/s"  # 40,000 × 7/8 + 40,000
        assert cell(table, nginx, "tx") == "2.34 MB/s"  # 1,250,000 × 7/8 + 1,250,000
        assert cell(table, nginx, "conns") == "3"
        assert rows[5151].rx_bps == pytest.approx(250_000.0)  # postgres: a steady flow
        nobody = rows[0]
        assert cell(table, nobody, "process") == "(no owner)" and nobody.connections == 4
        # busiest first by default (Total/s, descending); blanks never first
        assert [t.pid for t in table.visible_rows()][:2] == [4242, 7001]
        await pilot.press("s")  # next column after Total/s: States
        await pilot.press("g")
        await pilot.pause()
        assert not app.process_view and app.connections.display and app.focused is app.connections.table
        await pilot.press("g")
        await pilot.pause()
        table.move_cursor_to_key(4242)
        await pilot.press("enter")  # nginx's connections
        await pilot.pause()
        assert not app.process_view and app.connections.display
        assert app.query_one("#connections-filter").value == "pid:4242"
        shown = app.connections.table.visible_rows()
        assert len(shown) == 3 and all(app.connections.owner_of(s).pid == 4242 for s in shown)
        app.connections.set_filter_text("")
        await pilot.press("g", "c")  # c goes back to the connections too
        await pilot.pause()
        assert not app.process_view and app.connections.display


@sync
async def test_rate_columns_sort_busiest_first_and_blanks_last_both_ways():
    app = make_app()
    async with app.run_test(size=(160, 40)) as pilot:
        feed(app)
        await pilot.pause()
        table = app.connections.table
        table.sort_by("rx", reverse=True)
        values = [app.connections.rates.rx(s) for s in table.visible_rows()]
        known = [v for v in values if v is not None]
        assert known == sorted(known, reverse=True) and known[0] == pytest.approx(1_250_000 * 7 / 8)
        assert values[len(known):] == [None] * (len(values) - len(known))  # TIME_WAIT etc. at the end
        table.sort_by("rx", reverse=False)
        values = [app.connections.rates.rx(s) for s in table.visible_rows()]
        assert values[:len(known)] == sorted(known) and values[len(known):] == [None] * (len(values) - len(known))


@sync
async def test_timeline_sparklines_of_the_selected_connection():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        feed(app, 0)
        await pilot.pause()
        table = app.connections.table
        table.focus()
        key = next(table.key_fn(s) for s in table.visible_rows() if s.sport == 51000)
        table.move_cursor_to_key(table.visible_keys[-1], by_user=False)
        table.move_cursor_to_key(key)  # the user picks it: the timeline follows it
        await pilot.pause()
        assert not app.lab.model.following_client and app.lab.model.socket.sport == 51000
        for tick in range(1, 13):
            snap = snapshot(rated_sockets(tick), taken_at=T0 + tick)
            app.inject_snapshot(snap, (), summary(snap))
        await pilot.pause()
        timeline = app.query_one(TimelinePane)
        assert len(timeline.model.samples) == 12  # one per refresh since it was picked
        text = timeline.graphs_text(120)
        assert "recv/s" in text and "send/s" in text and "rtt" in text and "cwnd" in text and "retrans" in text
        assert "1.09 MB/s" in text  # the newest receive rate: 1,250,000 × 7/8 at tick 12 (WAVE[4] = 3)
        # another connection: the samples start again
        other = next(table.key_fn(s) for s in table.visible_rows() if s.sport == 5432)
        table.move_cursor_to_key(other)
        await pilot.pause()
        assert len(timeline.model.samples) == 0 and timeline.graphs_text() == ""


@sync
async def test_the_collector_totals_processes_only_while_the_view_is_shown():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    updates = []

    def factory(**kw):
        on_update = kw.pop("on_update")

        def spy(update):
            updates.append(update)
            on_update(update)

        return Collector(use_tracepoint=False, on_update=spy, **kw)

    app = SockmonApp(interval=0.2, collector_factory=factory, is_root=True)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: len(updates) >= 2, what="two ticks")
            assert all(u.processes is None for u in updates) and updates[-1].rates is not None
            await pilot.press("g")
            assert app.collector.processes_wanted
            n = len(updates)
            await wait_for(pilot, lambda: len(updates) > n + 1, what="ticks with the view shown")
            assert updates[-1].processes is not None
            mine = [t for t in updates[-1].processes if t.pid == os.getpid()]
            assert mine and mine[0].connections >= 2  # our two ends
            await pilot.press("g")
            assert not app.collector.processes_wanted
            n = len(updates)
            await wait_for(pilot, lambda: len(updates) > n + 1, what="ticks after")
            assert updates[-1].processes is None
    finally:
        for s in (srv, cli, lst):
            s.close()
