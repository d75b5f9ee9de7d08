"""SVG snapshots of the monitor panes with deterministic injected data (no collector, frozen clock).

Update the baselines with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at them.
"""

from __future__ import annotations

import msgspec
from sockmon.core import states as S
from sockmon.core.lab.options import Keepalive
from sockmon.tui.app import SockmonApp
from test_tui_fixtures import (
    T0,
    frozen_clock,
    rated_sockets,
    snapshot,
    sockets,
    summary,
    transitions,
    wait_for,
)
from textual.widgets import Input


def make_app(is_root: bool = True) -> SockmonApp:
    return SockmonApp(collector_factory=None, is_root=is_root, clock=frozen_clock())


async def feed(pilot) -> None:
    app = pilot.app
    app.inject_snapshot(snapshot(), transitions(), summary(), duration_ms=12.0, transition_source="tracepoint")
    await pilot.pause()


def test_sockets_tab_wide(snap_compare):
    assert snap_compare(make_app(), terminal_size=(160, 40), run_before=feed)


def test_sockets_tab_80x24(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=feed)


def test_non_root_banner(snap_compare):
    assert snap_compare(make_app(is_root=False), terminal_size=(100, 24), run_before=feed)


def test_connections_filtered_and_sorted(snap_compare):
    assert snap_compare(make_app(), terminal_size=(160, 34), run_before=feed,
                        press=["slash", *"established", "enter", "s", "s", "s", "s", "s"])


def test_connections_bad_filter_keeps_text(snap_compare):
    async def run_before(pilot):
        await feed(pilot)
        for box in pilot.app.query(Input):  # the snapshot ends with the filter focused: no blinking cursor
            box.cursor_blink = False

    assert snap_compare(make_app(), terminal_size=(120, 30), run_before=run_before, press=["slash", *"port:http"])


def test_row_marks_new_and_vanishing(snap_compare):
    async def run_before(pilot):
        await feed(pilot)
        socks = [s for s in sockets() if s.sport != 51010]  # one TIME_WAIT leaves
        socks.append(msgspec.structs.replace(socks[4], sport=51020, cookie=99))  # a new connection arrives
        pilot.app.inject_snapshot(snapshot(socks), (), summary(snapshot(socks)), duration_ms=11.0, transition_source="tracepoint")
        pilot.app.connections.table.sort_by("local")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=run_before)


def test_keepalive_pane_with_selection(snap_compare):
    async def run_before(pilot):
        app = pilot.app
        app.keepalive.reader = lambda sock, owner: (Keepalive(True, 60, 10, 3), "read as root via pidfd_getfd (test)")
        await feed(pilot)
        await pilot.press("2")
        await pilot.pause()
        table = app.keepalive.timers.table
        key = next(table.key_fn(s) for s in table.visible_rows() if s.sport == 22)
        table.move_cursor_to_key(key)
        await pilot.pause(0.2)

    assert snap_compare(make_app(), terminal_size=(140, 30), run_before=run_before)


def test_detail_screen(snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await feed(pilot)
        sock = next(s for s in app.snapshot.sockets if s.sport == 51006 and s.state == S.FIN_WAIT2)
        app.open_detail(sock)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(140, 60), run_before=run_before)


def test_help_screen(snap_compare):
    assert snap_compare(make_app(), terminal_size=(110, 44), run_before=feed, press=["question_mark"])


# Small terminals (issue #11): the owner column on screen at 80×24, a hostile process name shown inert.
async def feed_hostile(pilot) -> None:
    from test_tui_fixtures import hostile_snapshot

    pilot.app.inject_snapshot(hostile_snapshot(), transitions(), summary(), duration_ms=12.0,
                              transition_source="tracepoint")
    await pilot.pause()


async def keepalive_hostile(pilot) -> None:
    app = pilot.app
    app.keepalive.reader = lambda sock, owner: (Keepalive(True, 7200, 75, 9), "read as root via pidfd_getfd (test)")
    await feed_hostile(pilot)
    await pilot.press("2")
    await pilot.pause()
    table = app.keepalive.timers.table
    key = next(table.key_fn(s) for s in table.visible_rows() if s.sport == 51002)
    table.move_cursor_to_key(key)
    await pilot.pause(0.2)


def test_monitor_80x24_owner_column(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=feed_hostile)


def test_monitor_200x60_owner_column(snap_compare):
    assert snap_compare(make_app(), terminal_size=(200, 60), run_before=feed_hostile)


def test_keepalive_80x24_owner_column(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=keepalive_hostile)


def test_keepalive_200x60_owner_column(snap_compare):
    assert snap_compare(make_app(), terminal_size=(200, 60), run_before=keepalive_hostile)


def test_connections_80x24_scrolled_sideways_keeps_state_and_local(snap_compare):
    async def run_before(pilot):
        await feed_hostile(pilot)
        pilot.app.connections.table.focus()
        await pilot.press("right", "right", "right")

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_column_chooser_80x24(snap_compare):
    async def run_before(pilot):
        await feed_hostile(pilot)
        pilot.app.connections.table.focus()
        await pilot.press("C", "down", "down", "down", "down", "K")

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_detail_screen_80x24(snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await feed_hostile(pilot)
        sock = next(s for s in app.snapshot.sockets if s.sport == 51002 and s.state == S.ESTABLISHED)
        app.open_detail(sock)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


async def feed_rates(pilot, ticks: int = 2, *, before_last=None) -> None:
    """``ticks`` + 1 one-second refreshes of the fixture table with moving byte counters, the last at T0
    (``before_last(app)`` runs after the first one)."""
    app = pilot.app
    for tick in range(ticks + 1):
        snap = snapshot(rated_sockets(tick), taken_at=T0 - ticks + tick)
        app.inject_snapshot(snap, (), summary(snap), duration_ms=12.0, transition_source="tracepoint")
        if tick == 0 and before_last is not None:
            before_last(app)
    await pilot.pause()


def test_connections_with_rates(snap_compare):
    async def run_before(pilot):
        await feed_rates(pilot)
        pilot.app.connections.table.sort_by("rx", reverse=True)  # busiest first, blanks last
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(160, 34), run_before=run_before)


def test_process_view(snap_compare):
    assert snap_compare(make_app(), terminal_size=(120, 30), run_before=feed_rates, press=["g"])


def test_detail_sparklines(snap_compare):
    """The Detail screen of a connection followed for 24 refreshes: rtt, cwnd, rates, retransmissions."""
    def open_detail(app):
        sock = next(s for s in app.snapshot.sockets if s.sport == 51000)
        app.open_detail(sock)
        app.screen.reader = lambda sock, owner: (None, "not read in this test")

    async def run_before(pilot):
        await feed_rates(pilot, 24, before_last=open_detail)
        await wait_for(pilot, lambda: pilot.app.screen.options_note == "not read in this test", what="the read")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(140, 50), run_before=run_before)
