"""Every socket list's filter line speaks the one filter language (core/table/filter.py), typed in the real
app (Pilot): what the table shows (``127.0.0.1:6379``, ``[::1]:5432``), ss's expressions and the shorthand;
bad text says why in one line and keeps the previous filter."""

from __future__ import annotations

from sockmon.core import states as S
from sockmon.tui.app import SockmonApp
from test_tui_fixtures import frozen_clock, snapshot, sockets, summary, sync


def make_app() -> SockmonApp:
    return SockmonApp(collector_factory=None, is_root=True, clock=frozen_clock())


def shown(pane) -> set[int]:
    return {s.cookie for s in pane.table.visible_rows() if s is not None}


def expect(where, pred) -> set[int]:
    return {s.cookie for s in sockets() if where(s) and pred(s)}


def connection(s) -> bool:
    return s.state != S.LISTEN


async def type_filter(pilot, pane, text: str) -> None:
    inp = pilot.app.query_one(f"#{pane.id}-filter")
    inp.value = ""
    await pilot.pause()
    await pilot.press(*text)
    await pilot.pause()


@sync
async def test_connections_filter_takes_what_the_table_shows_and_ss_expressions():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        app.inject_snapshot(snapshot(), (), summary())
        await pilot.pause()
        conns = app.connections
        await pilot.press("slash")
        assert app.focused is app.query_one("#connections-filter")
        cases = [
            ("127.0.0.1:6379", lambda s: ("127.0.0.1", 6379) in ((s.src, s.sport), (s.dst, s.dport))),
            ("[::1]:5432", lambda s: ("::1", 5432) in ((s.src, s.sport), (s.dst, s.dport))),
            ("state:est or 8080", lambda s: s.state == S.ESTABLISHED or 8080 in (s.sport, s.dport)),
            ("est or 8080", lambda s: s.state == S.ESTABLISHED or 8080 in (s.sport, s.dport)),
            ("state established ( dport = :8080 or sport = :8080 )",
             lambda s: s.state == S.ESTABLISHED and 8080 in (s.sport, s.dport)),
            ("sport > :50000 and not dst 127.0.0.0/8", lambda s: s.sport > 50000 and not s.dst.startswith("127.")),
            ("state bucket", lambda s: s.state in (S.TIME_WAIT, S.SYN_RECV)),
            ("proc:nginx -state:est", lambda s: s.inode in (202,) and s.state != S.ESTABLISHED),
        ]
        for text, pred in cases:
            await type_filter(pilot, conns, text)
            assert conns.filter_error is None, (text, conns.filter_error)
            want = expect(connection, pred)
            assert want, text  # each case selects something …
            assert shown(conns) == want, text
            assert want != expect(connection, lambda s: True), text  # … and not everything
        # bad text (pasted at once): one line, the previous filter stays
        before = shown(conns)
        inp = app.query_one("#connections-filter")
        for bad, reason in [("state established dport >", "a port expected after '>'"),
                            ("dst ::1", "brackets"), ("( sport = :22", "never closed")]:
            inp.value = bad
            await pilot.pause()
            assert conns.filter_error is not None and reason in conns.filter_error, (bad, conns.filter_error)
            assert "\n" not in conns.filter_error
            assert shown(conns) == before, bad
        await type_filter(pilot, conns, "")
        assert conns.filter_error is None and shown(conns) == expect(connection, lambda s: True)


@sync
async def test_listening_and_keepalive_lists_filter_too():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        app.inject_snapshot(snapshot(), (), summary())
        await pilot.pause()
        await pilot.press("l", "slash")
        lst = app.listening
        assert app.focused is app.query_one("#listening-filter")
        await pilot.press(*"*:8080")
        await pilot.pause()
        assert shown(lst) == expect(lambda s: s.state == S.LISTEN, lambda s: s.sport == 8080)
        assert len(shown(lst)) == 2  # v4 and v6
        await type_filter(pilot, lst, "sport < :1024 or v6")
        assert shown(lst) == expect(lambda s: s.state == S.LISTEN, lambda s: s.sport < 1024 or s.family == 10)
        assert "showing 2 of 4" in str(lst.info_text())

        await pilot.press("escape", "2")
        await pilot.pause()
        timers = app.keepalive.timers
        every = shown(timers)
        assert len(every) == 2
        await pilot.press("slash")
        await pilot.pause()
        assert app.focused is app.query_one("#ka-timers-filter")
        await pilot.press(*"sport = :22")
        await pilot.pause()
        assert shown(timers) == expect(lambda s: s.timer and s.timer.kind == S.TIMER_KEEPALIVE, lambda s: s.sport == 22)
        assert len(shown(timers)) == 1 and "showing 1 of 2" in str(timers.info_text())
