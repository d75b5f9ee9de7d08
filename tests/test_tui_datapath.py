"""One data path: the collector's typed Update reaches the panes as one message; row marks come from the
core's diff, counts from the Summary; other panes ask the table's KeyedRows."""

from __future__ import annotations

import socket

from sockmon.core import states as S
from sockmon.core.records import Snapshot, Socket
from sockmon.core.table.summary import Summary
from sockmon.tui.app import SockmonApp, make_update
from sockmon.tui.messages import SnapshotReady
from sockmon.tui.widgets.rows import KeyedRows
from test_tui_fixtures import T0, sync

V4 = socket.AF_INET


def sock(state, sport, cookie, dport=8080) -> Socket:
    return Socket(V4, state, "127.0.0.1", sport, "127.0.0.1", dport, 0, 0, None, 0, cookie, cookie)


def snap(socks, ts) -> Snapshot:
    return Snapshot(tuple(socks), ts, 0.0, "netlink")


def test_snapshot_ready_newest_wins():
    a, b = (SnapshotReady(make_update(snap([], T0 + i))) for i in range(2))
    assert a.can_replace(b), "a queued SnapshotReady gives way to the next one"


@sync
async def test_row_marks_come_from_the_core_diff_and_counts_from_the_summary():
    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(120, 40)) as pilot:
        first = snap([sock(S.ESTABLISHED, 40001, 1), sock(S.ESTABLISHED, 40002, 2), sock(S.CLOSE, 8081, 3, 0)],
                     T0)
        app.apply_update(make_update(first))
        await pilot.pause()
        table = app.connections.table
        assert not table.rows.added and not table.rows.gone, "the first load marks nothing"
        # 40002 leaves, 40003 arrives, the bound socket 8081 starts listening (a change: CLOSE → LISTEN)
        second = snap([sock(S.ESTABLISHED, 40001, 1), sock(S.ESTABLISHED, 40003, 4), sock(S.LISTEN, 8081, 3, 0)],
                      T0 + 1)
        update = make_update(second, prev=first)
        assert update.diff.changed and update.base_taken_at == first.taken_at
        app.clock = lambda: T0 + 1
        app.apply_update(update)
        await pilot.pause()
        assert table.rows.is_new(4) and table.rows.is_vanishing(2) and not table.rows.is_new(1)
        assert table.rows.is_vanishing(3), "the socket now listening left Connections..."
        assert app.listening.table.rows.is_new(3), "...and entered Listening: the diff's change says so"
        # counts are the Summary's (the core counted them once), not recounted per pane
        summary = Summary(total=3, by_state={"ESTABLISHED": 2, "LISTEN": 1}, listen_overflows=None,
                          listen_drops=None, keepalive_time=None, keepalive_intvl=None, keepalive_probes=None)
        app.apply_update(make_update(second, summary=summary, prev=second))
        await pilot.pause()
        assert app.status.info.counts == {S.ESTABLISHED: 2, S.LISTEN: 1} and app.status.info.total == 3
        # other panes ask the table's rows model: the same socket's newest record
        assert app.fresh_record(sock(S.ESTABLISHED, 40003, 4)) is second.sockets[1]


@sync
async def test_a_skipped_update_falls_back_to_comparing_keys():
    """The newest wins: when an update was skipped, its diff is not against what is on screen."""
    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(120, 40)) as pilot:
        a = snap([sock(S.ESTABLISHED, 40001, 1)], T0)
        b = snap([sock(S.ESTABLISHED, 40001, 1), sock(S.ESTABLISHED, 40002, 2)], T0 + 1)
        c = snap([sock(S.ESTABLISHED, 40002, 2), sock(S.ESTABLISHED, 40003, 3)], T0 + 2)
        app.apply_update(make_update(a))
        app.clock = lambda: T0 + 2
        app.apply_update(make_update(c, prev=b))  # b never reached the screen
        await pilot.pause()
        rows = app.connections.table.rows
        assert rows.is_new(2) and rows.is_new(3) and rows.is_vanishing(1)


def test_keyed_rows_marks_are_capped():
    rows = KeyedRows(lambda r: r, new_mark_seconds=60, fade_seconds=60, max_marks=100)
    rows.set_rows([], now=0.0)
    for i in range(10):
        rows.set_rows(range(i * 1000, (i + 1) * 1000), now=float(i))
        assert len(rows.added) <= 100 and len(rows.gone) <= 100
    assert rows.is_new(9999) and not rows.is_new(0)
