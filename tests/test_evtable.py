"""The event-driven table (core/table/evtable.py, Collector(event_table=True)): after churn it equals a
full dump; births and deaths seen only through events appear and leave within one tick; a resync
trigger makes the tick a full dump. Real loopback sockets, real tracepoint, real sock_diag. The
tracepoint is host-wide and other processes make sockets too, so the comparisons keep to the ports of
this test's listeners."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from sockmon.core.states import ESTABLISHED, LISTEN, TIME_WAIT
from sockmon.core.table.collector import Collector
from sockmon.core.table.evtable import consistency
from sockmon.core.table.snapshot import take_snapshot
from sockmon.core.table.tracepoint import tracing_available

OK, WHY = tracing_available()
pytestmark = pytest.mark.skipif(not OK, reason=WHY)


@pytest.fixture
def evcol():
    updates = []
    col = Collector(event_table=True, start=False, with_owners=False, on_update=updates.append)
    assert col.event_table, col.tracer_note
    col.hold_full_dumps()  # no full dump by the cadence during a test: every tick after the first is event-driven
    col.updates = updates
    yield col
    col.stop()


def _tick(col):
    time.sleep(0.15)
    return col.collect_once()


def _listener() -> socket.socket:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    return lst


def _pair(lst):
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    return cli, srv


def _rst(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _ours(ports):
    return lambda s: s.sport in ports or s.dport in ports


def test_after_churn_the_event_table_equals_a_full_dump(evcol):
    first = evcol.collect_once()
    assert first.table == "dump"
    dumps = evcol.full_dumps
    lsts = [_listener() for _ in range(3)]
    ports = {lst.getsockname()[1] for lst in lsts}
    held = []
    for i in range(60):
        lst = lsts[i % 3]
        cli, srv = _pair(lst)
        kind = i % 5
        if kind == 0:
            held += [cli, srv]  # stays ESTABLISHED
        elif kind == 1:
            cli.close()  # client closes first: TIME_WAIT on the client side
            srv.close()
        elif kind == 2:
            srv.close()  # server closes first: TIME_WAIT on the server side
            time.sleep(0.002)
            cli.close()
        elif kind == 3:
            _rst(cli)  # RST: both gone at once
            srv.close()
        else:
            cli.close()  # half closed: CLOSE_WAIT / FIN_WAIT2 held
            held.append(srv)
    gone = lsts.pop()  # a listener's death
    gone.close()
    new = _listener()  # and a birth
    lsts.append(new)
    ports.add(new.getsockname()[1])
    held += list(_pair(new))
    time.sleep(0.2)
    u = _tick(evcol)
    u = _tick(evcol)
    assert u.table == "events" and evcol.full_dumps == dumps
    table = evcol.table_sockets()
    mine = [s for s in table if _ours(ports)(s)]
    assert {s.state for s in mine} >= {LISTEN, ESTABLISHED, TIME_WAIT}
    diffs = consistency(table, take_snapshot(with_info=False).sockets, keep=_ours(ports))
    assert diffs == []
    # the Update's snapshot is the table: the summary counts it
    assert sum(1 for s in u.snapshot.sockets if _ours(ports)(s)) == len(mine)
    for s in held + lsts:
        s.close()


def test_births_and_deaths_seen_only_through_events_within_one_tick(evcol):
    evcol.collect_once()
    dumps = evcol.full_dumps
    lst = _listener()
    port = lst.getsockname()[1]
    u = _tick(evcol)
    assert any(s.state == LISTEN and s.sport == port for s in u.snapshot.sockets)
    cli, srv = _pair(lst)
    cport = cli.getsockname()[1]
    u = _tick(evcol)
    rows = {(s.sport, s.dport): s for s in u.snapshot.sockets if _ours({port})(s)}
    assert rows[(cport, port)].state == ESTABLISHED and rows[(port, cport)].state == ESTABLISHED
    assert rows[(cport, port)].cookie and rows[(cport, port)].inode  # the full record, by the exact lookup
    cli.close()
    srv.close()
    u = _tick(evcol)
    rows = {(s.sport, s.dport): s for s in u.snapshot.sockets if _ours({port})(s)}
    assert rows[(cport, port)].state == TIME_WAIT  # the mini-socket found by the lookup after FIN_WAIT2 → CLOSE
    assert (port, cport) not in rows
    # opened and closed between two ticks: in that tick's transitions, never a row
    c2, s2 = _pair(lst)
    c2port = c2.getsockname()[1]
    _rst(c2)
    s2.close()
    u = _tick(evcol)
    assert any((t.sport, t.dport) == (c2port, port) for t in u.transitions)
    assert not [s for s in u.snapshot.sockets if (s.sport, s.dport) in ((c2port, port), (port, c2port))]
    lst.close()
    u = _tick(evcol)
    assert not any(s.state == LISTEN and s.sport == port for s in u.snapshot.sockets)
    assert evcol.full_dumps == dumps and u.table == "events"


def test_a_resync_trigger_makes_the_tick_a_full_dump(evcol):
    evcol.collect_once()
    assert _tick(evcol).table == "events"
    evcol._dropped = 1  # transitions dropped (MAX_PENDING): the table cannot be trusted
    assert _tick(evcol).table == "dump"
    assert _tick(evcol).table == "events"
    evcol.set_netns(None)  # a namespace switch is a resync
    assert _tick(evcol).table == "dump"


def _sock(sport, dport, state, expires_ms=30_000):
    from sockmon.core.records import Socket, Timer

    timer = Timer(3, expires_ms, 0) if state == TIME_WAIT else None
    return Socket(socket.AF_INET, state, "127.0.0.1", sport, "127.0.0.1", dport, 0, 0, timer, 0, 1, sport)


def test_consistency_names_each_difference():
    table = [_sock(1, 2, ESTABLISHED), _sock(3, 4, ESTABLISHED), _sock(5, 6, ESTABLISHED), _sock(9, 9, 7)]
    full = [_sock(1, 2, ESTABLISHED), _sock(3, 4, 8), _sock(7, 8, ESTABLISHED), _sock(11, 12, TIME_WAIT, 500)]
    assert consistency(table, full) == [
        "state 127.0.0.1:3 127.0.0.1:4 table ESTABLISHED != dump CLOSE_WAIT",
        "stale 127.0.0.1:5 127.0.0.1:6 ESTABLISHED (gone from the full dump)",
        "missing 127.0.0.1:7 127.0.0.1:8 ESTABLISHED (in the full dump only)",
    ]  # CLOSE-state sockets and a TIME_WAIT at its end are no difference
    assert consistency(table, full, keep=lambda s: s.sport == 1) == []


def test_ls_check_consistency_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sockmon", "ls", "--check-consistency", "--for", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 differences from a full dump" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "sockmon", "ls", "--check-consistency", "--netns", "x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "own namespace" in bad.stderr


def test_lost_events_force_a_full_dump_and_are_reported(monkeypatch):
    import functools

    from sockmon.core.table import tracepoint

    monkeypatch.setattr(tracepoint, "TransitionTracer", functools.partial(tracepoint.TransitionTracer, buffer_kb=4))
    updates = []
    col = Collector(event_table=True, start=False, with_owners=False, on_update=updates.append)
    try:
        assert col.event_table
        col.collect_once()
        col.hold_full_dumps()
        lst = _listener()
        port = lst.getsockname()[1]
        held = _pair(lst)
        for _ in range(1500):  # nobody drains the 4 KiB buffer meanwhile: it overruns
            cli, srv = _pair(lst)
            cli.close()
            srv.close()
        u = col.collect_once()
        assert u.table == "dump" and u.overruns > 0 and "lost" in u.note
        assert consistency(col.table_sockets(), take_snapshot(with_info=False).sockets, keep=_ours({port})) == []
        assert _tick(col).table == "events"
    finally:
        col.stop()
        for s in (*held, lst):
            s.close()


def test_the_visible_rows_numbers_are_looked_up_every_tick(evcol):
    evcol.collect_once()
    lst = _listener()
    port = lst.getsockname()[1]
    cli, srv = _pair(lst)
    key = (socket.AF_INET, "127.0.0.1", port, "127.0.0.1", cli.getsockname()[1])
    u = _tick(evcol)
    row = next(s for s in u.snapshot.sockets if (s.family, s.src, s.sport, s.dst, s.dport) == key)
    assert row.recv_q == 0
    cli.sendall(b"x" * 1000)  # no state change: no event; srv's receive queue grows
    time.sleep(0.05)
    u = _tick(evcol)
    row = next(s for s in u.snapshot.sockets if (s.family, s.src, s.sport, s.dst, s.dport) == key)
    assert row.recv_q == 0  # not on screen: the numbers of its last lookup
    evcol.set_visible([key])
    u = _tick(evcol)
    row = next(s for s in u.snapshot.sockets if (s.family, s.src, s.sport, s.dst, s.dport) == key)
    assert row.recv_q == 1000 and u.table == "events"
    for s in (cli, srv, lst):
        s.close()


def test_the_app_tells_the_event_driven_collector_its_visible_rows():
    import sys

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from sockmon.tui.app import SockmonApp
    from test_tui_fixtures import V4, sk, snapshot, summary, sync

    class Stub:
        event_table = True
        told: list = []

        def set_visible(self, keys):
            self.told.append(list(keys))

    @sync
    async def run():
        app = SockmonApp(collector_factory=None, is_root=False)
        async with app.run_test(size=(120, 40)) as pilot:
            stub = Stub()
            app.collector = stub
            snap = snapshot()
            app.inject_snapshot(snap, (), summary())
            await pilot.pause()
            app.inject_snapshot(snap, (), summary())  # laid out now: the tables' rows are on screen
            await pilot.pause()
            told = set(stub.told[-1])
            shown = {(s.family, s.src, s.sport, s.dst, s.dport) for s in app.connections.table.on_screen_rows()}
            assert shown and shown <= told
            # many rows: only those in the viewports (not every row the filter lets through)
            many = [sk(V4, ESTABLISHED, "127.0.0.1", 20000 + i, "127.0.0.1", 80, cookie=i + 1) for i in range(2000)]
            app.inject_snapshot(snapshot(many), (), summary(snapshot(many)))
            await pilot.pause()
            app.inject_snapshot(snapshot(many), (), summary(snapshot(many)))
            await pilot.pause()
            told = stub.told[-1]
            assert 10 < len(told) < 40 * 3, len(told)
            on_screen = app.connections.table.on_screen_rows()
            assert {(s.family, s.src, s.sport, s.dst, s.dport) for s in on_screen} <= set(told)
            assert len(on_screen) <= app.connections.table.size.height
            app.collector = None

    run()


def test_full_dumps_come_at_the_budgeted_cadence(monkeypatch):
    from sockmon.core.table import collector as collector_mod

    monkeypatch.setattr(collector_mod, "FULL_DUMP_BUDGET", 1e-9)  # any dump is over budget: the cap rules
    monkeypatch.setattr(collector_mod, "MAX_FULL_PERIOD", 0.5)
    col = Collector(interval=0.1, event_table=True, start=False, with_owners=False, on_update=lambda u: None)
    try:
        kinds = [col.collect_once().table]
        for _ in range(6):
            time.sleep(0.12)
            kinds.append(col.collect_once().table)
    finally:
        col.stop()
    assert kinds[0] == "dump" and kinds[1] == "events"
    assert "dump" in kinds[3:], kinds  # 0.5 s after the first
    monkeypatch.setattr(collector_mod, "FULL_DUMP_BUDGET", 1.0)  # a budget of a whole core: every tick a dump
    col = Collector(interval=0.1, event_table=True, start=False, with_owners=False, on_update=lambda u: None)
    try:
        col.collect_once()
        time.sleep(0.12)
        assert col.collect_once().table == "dump"
    finally:
        col.stop()


def test_event_ticks_diff_summary_rates_and_owners_equal_the_whole_table_ones():
    """An event tick computes its diff, counts, rates and owners from what changed alone
    (diff_changes, summarize_changes, RateTracker.update_some, OwnerCache.resolve_more): after churn each
    one equals what the whole-table functions give for the same two snapshots."""
    import os

    from sockmon.core.table.diff import diff
    from sockmon.core.table.owners import OwnerCache
    from sockmon.core.table.summary import summarize

    col = Collector(event_table=True, start=False, on_update=lambda u: None)
    assert col.event_table, col.tracer_note
    col.hold_full_dumps()
    lst = _listener()
    port = lst.getsockname()[1]
    held = []
    try:
        prev = col.collect_once()
        assert prev.table == "dump"
        stream = _pair(lst)
        vis = (socket.AF_INET, "127.0.0.1", stream[0].getsockname()[1], "127.0.0.1", port)
        col.set_visible([vis])
        for round_ in range(4):
            for i in range(12):
                cli, srv = _pair(lst)
                if i % 3 == 0:
                    held += [cli, srv]
                elif i % 3 == 1:
                    cli.close()
                    srv.close()
                else:
                    _rst(srv)
                    cli.close()
            if held and round_ % 2:
                held.pop(0).close()  # one end of a held connection: CLOSE_WAIT on the other
            stream[0].sendall(b"y" * 50_000)
            stream[1].recv(1 << 20)
            u = _tick(col)
            assert u.table == "events"
            whole = diff(prev.snapshot, u.snapshot)

            def ids(socks):
                return {(s.key, s.state) for s in socks}

            assert ids(u.diff.added) == ids(whole.added)
            assert ids(u.diff.removed) == ids(whole.removed)
            assert {(o.key, n.key, n.state) for o, n in u.diff.changed} == \
                   {(o.key, n.key, n.state) for o, n in whole.changed}
            counted = summarize(u.snapshot, read_system=False)
            assert dict(u.summary.by_state) == dict(counted.by_state)
            assert dict(u.summary.families) == dict(counted.families) and u.summary.total == counted.total
            mine = [s for s in u.snapshot.sockets if _ours({port})(s) and s.inode]
            fresh = OwnerCache().resolve_sockets(mine)
            assert {s.inode: u.snapshot.owners.get(s.inode) for s in mine} == {s.inode: fresh.get(s.inode) for s in mine}
            assert all(p.pid == os.getpid() for p in fresh.values()) and len(fresh) == len(mine)
            rows = {(s.family, s.src, s.sport, s.dst, s.dport): s for s in u.snapshot.sockets}
            if round_:  # the visible row is read every tick: it has a rate; rows off screen have none
                assert u.rates.get(rows[vis]) is not None and u.rates.rx(rows[vis]) >= 0
                assert u.rates.tx(rows[vis]) > 0
                quiet = [s for s in u.snapshot.sockets if s.state == ESTABLISHED and _ours({port})(s)
                         and (s.family, s.src, s.sport, s.dst, s.dport) != vis
                         and all(s is not n for n in u.diff.added)]
                assert quiet and all(u.rates.get(s) is None for s in quiet)  # old numbers: no rate, not 0
                # and the snapshot says when each was read: the visible row this tick, the quiet ones earlier
                snap = u.snapshot
                assert snap.taken_at - 0.2 <= snap.read_time(rows[vis]) <= snap.taken_at
                assert all(snap.read_time(s) <= snap.taken_at - 0.1 for s in quiet)
            prev = u
    finally:
        col.stop()
        for s in (*held, *stream, lst):
            s.close()


def test_a_sort_on_live_numbers_or_the_process_view_makes_every_tick_a_full_dump(evcol):
    evcol.collect_once()
    assert _tick(evcol).table == "events"
    evcol.need_full_table("sort by RTT")
    assert _tick(evcol).table == "dump" and _tick(evcol).table == "dump"
    evcol.need_full_table(None)
    assert _tick(evcol).table == "events"
    evcol.want_processes(True)
    assert _tick(evcol).table == "dump"
    evcol.want_processes(False)
    assert _tick(evcol).table == "events"


def test_the_app_asks_for_full_dumps_while_a_list_is_sorted_on_live_numbers():
    import sys

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from sockmon.tui.app import SockmonApp
    from test_tui_fixtures import snapshot, summary, sync

    class Stub:
        event_table = True
        full_table_reason = None
        refreshed = 0

        def set_visible(self, keys):
            pass

        def need_full_table(self, reason):
            self.full_table_reason = reason

        def refresh_now(self):
            self.refreshed += 1

    @sync
    async def run():
        app = SockmonApp(collector_factory=None, is_root=False)
        async with app.run_test(size=(160, 40)) as pilot:
            stub = Stub()
            app.collector = stub
            app.inject_snapshot(snapshot(), (), summary())
            await pilot.pause()
            table = app.connections.table
            table.sort_by("rtt")
            await pilot.pause()
            assert stub.full_table_reason == "sorted by RTT ms" and stub.refreshed == 1
            table.sort_by("local")
            await pilot.pause()
            assert stub.full_table_reason is None
            app.collector = None

    run()


def test_every_listener_and_its_accept_queue_are_fresh_every_event_tick(evcol):
    """A listener's accept queue moves with no event of its own (a connection queued, an accept()): the
    event ticks read every listener afresh, on screen or not."""
    evcol.collect_once()
    lst = _listener()
    port = lst.getsockname()[1]

    def row(u):
        return next(s for s in u.snapshot.sockets if s.state == LISTEN and s.sport == port)

    assert row(_tick(evcol)).recv_q == 0
    c1 = socket.create_connection(lst.getsockname())
    c2 = socket.create_connection(lst.getsockname())
    u = _tick(evcol)
    assert u.table == "events" and row(u).recv_q == 2  # two queued, none accepted
    a, _ = lst.accept()  # no state change anywhere: only the queue moves
    u = _tick(evcol)
    assert u.table == "events" and row(u).recv_q == 1
    for s in (a, c1, c2, lst):
        s.close()


def test_what_the_event_ticks_keep_stays_bounded_by_the_table_under_churn():
    """The per-tick change log, the read times, the rates' reading times and the owner maps the event
    ticks feed: emptied each tick or bounded by the table while connections come and go."""
    col = Collector(event_table=True, start=False, on_update=lambda u: None)
    assert col.event_table, col.tracer_note
    col.hold_full_dumps()
    lst = _listener()
    port = lst.getsockname()[1]
    held = []
    try:
        col.collect_once()
        for _round in range(15):
            for _ in range(40):
                cli, srv = _pair(lst)
                held.append((cli, srv))
            while len(held) > 60:  # the oldest go: RST, so no TIME_WAIT piles up
                cli, srv = held.pop(0)
                _rst(cli)
                srv.close()
            col.set_visible([(socket.AF_INET, "127.0.0.1", c.getsockname()[1], "127.0.0.1", port) for c, _ in held])
            u = _tick(col)
            assert u.table == "events"
            evt = col._evt
            n = len(evt)
            assert not evt._changes and not evt._fresh  # taken by the tick
            assert len(evt._read_at) <= n
            assert len(col._rates._at) <= n and len(col._rates._counters) <= n
            assert len(col._owners._inode_pid) <= n
        mine = [s for s in u.snapshot.sockets if _ours({port})(s) and s.state == ESTABLISHED]
        assert len(mine) == 2 * len(held)
    finally:
        col.stop()
        for c, s in held:
            c.close()
            s.close()
        lst.close()
