"""Pilot tests of the whole app against real loopback sockets and the real collector."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from sockmon.core.lab.events import EventKind, make_event
from sockmon.core.states import ESTABLISHED, LISTEN
from sockmon.core.table.collector import Collector, Update
from sockmon.tui.app import SockmonApp
from sockmon.tui.messages import EngineEvent
from sockmon.tui.screens.detail import DetailScreen
from sockmon.tui.screens.help import HelpScreen
from test_tui_fixtures import snapshot, summary, sync, wait_for

pytestmark = pytest.mark.timeout(60)


def fast_collector(**kw):
    # inferred transitions: no tracefs instance per test, same data path otherwise
    return Collector(interval=kw.pop("interval"), use_tracepoint=False, **kw)


def make_app(**kw) -> SockmonApp:
    return SockmonApp(interval=0.2, collector_factory=fast_collector, **kw)


@pytest.fixture
def loopback():
    """A listener with a backlog, one accepted ESTABLISHED pair and one queued (unaccepted) client."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(7)
    port = lst.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    srv, _ = lst.accept()
    queued = socket.create_connection(("127.0.0.1", port))
    yield SimpleNamespace(listener=lst, port=port, client=cli, server=srv, queued=queued)
    for s in (queued, srv, cli, lst):
        s.close()


def screen_text(app) -> str:
    """What the terminal shows, as plain text (from the SVG export)."""
    import html
    import re

    svg = app.export_screenshot()
    return html.unescape(" ".join(re.findall(r"<text[^>]*>(.*?)</text>", svg))).replace("\xa0", " ")


def listening_row(app, port):
    return next((s for s in app.listening.table.visible_rows() if s.sport == port), None)


def conn_rows(app, port):
    return [s for s in app.connections.table.visible_rows() if port in (s.sport, s.dport)]


def own_rows(app, lb):
    """The fixture's own four connection ends, by exact 4-tuple: a TIME_WAIT left by an earlier test may
    share a port number with our listener (ephemeral ports are reused), but never a whole 4-tuple."""
    ends = set()
    for s in (lb.client, lb.server, lb.queued):
        (src, sport), (dst, dport) = s.getsockname()[:2], s.getpeername()[:2]
        ends.add((src, sport, dst, dport))
        ends.add((dst, dport, src, sport))  # the other end, including the unaccepted queued one
    return [s for s in app.connections.table.visible_rows() if tuple(s.four_tuple) in ends]


@sync
async def test_listener_and_established_pair_show_up(loopback):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: listening_row(app, loopback.port) is not None)
        row = listening_row(app, loopback.port)
        assert row.state == LISTEN
        assert row.send_q == 7  # backlog
        assert await wait_for(pilot, lambda: listening_row(app, loopback.port).recv_q == 1)  # queued client
        assert app.listening.owner_of(row).name.startswith("python")
        assert await wait_for(pilot, lambda: len(own_rows(app, loopback)) == 4)
        states = {s.state for s in own_rows(app, loopback)}
        assert states == {ESTABLISHED}
        ours = [s for s in own_rows(app, loopback) if s.sport == loopback.client.getsockname()[1]]
        assert ours and ours[0].tcp_info is not None
        assert app.status.info.total >= 5
        assert app.status.info.counts.get(ESTABLISHED, 0) >= 4


@sync
async def test_filter_as_you_type_and_bad_filter(loopback):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: len(conn_rows(app, loopback.port)) >= 4)
        await pilot.press("slash", *f"port:{loopback.port}")
        table = app.connections.table
        assert table.row_count >= 4
        assert all(loopback.port in (s.sport, s.dport) for s in table.visible_rows())
        # a bad term: clear message, typed text kept, the app still runs
        await pilot.press(*" port:http")
        inp = app.query_one("#connections-filter")
        assert inp.value == f"port:{loopback.port} port:http"
        assert "bad port 'http'" in app.connections.filter_error
        # fix it: the state filter works too
        for _ in range(len(" port:http")):
            await pilot.press("backspace")
        await pilot.press(*" established")
        assert app.connections.filter_error is None
        assert table.row_count >= 4
        await pilot.press(*" -established")  # contradiction: nothing
        assert table.row_count == 0
        await pilot.press("enter")
        assert app.focused is table


@sync
async def test_sort_by_key_and_header_click(loopback):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: len(conn_rows(app, loopback.port)) >= 4)
        table = app.connections.table
        table.focus()
        assert table.sort_column == "state"  # the default: kernel state order, ESTABLISHED first
        states = [s.state for s in table.visible_rows()]
        assert states == sorted(states)
        await pilot.press("s")
        assert table.sort_column == "local"
        await pilot.press("s")
        assert table.sort_column == "peer"
        await pilot.press("S")
        assert table.sort_reverse
        # click the Send-Q header: x = sum of widths before it
        # (other tests' listeners come and go on this host, resizing the Listening pane between the
        # moment pilot computes the click position and the click: retry a few times)
        at = [c.key for c in table.columns].index("send_q")
        x = sum(c.width + 1 for c in table.columns[:at]) + 1
        for _ in range(5):
            await pilot.pause()
            await pilot.click(f"#{table.id}", offset=(x, 0))
            if table.sort_column == "send_q":
                break
        assert table.sort_column == "send_q"
        values = [s.send_q for s in table.visible_rows()]
        assert values == sorted(values)


@sync
async def test_enter_opens_detail_with_tcp_info_and_sockaddr(loopback):
    app = make_app()
    # tall enough for every box of Detail: the owner's command line (pytest's, with every test file it
    # was given) can be long, and the sockaddr box comes after it
    async with app.run_test(size=(160, 100)) as pilot:
        assert await wait_for(pilot, lambda: len(conn_rows(app, loopback.port)) >= 4)
        table = app.connections.table
        cport = loopback.client.getsockname()[1]
        key = next(table.key_fn(s) for s in table.visible_rows() if s.sport == cport)
        table.focus()
        assert table.move_cursor_to_key(key)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        assert screen.sock.sport == cport
        assert "sin_port" in screen_text(app)
        assert f"port {cport}" in screen_text(app)
        assert await wait_for(pilot, lambda: screen.sock.tcp_info is not None)
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


@sync
async def test_pause_stops_refresh_and_resume_restarts(loopback):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.updates_applied >= 2)
        await pilot.press("p")
        assert app.paused and app.status.info.paused
        await pilot.pause(0.3)  # a collection in flight may still land
        frozen = app.updates_applied
        extra = socket.socket()
        extra.bind(("127.0.0.1", 0))
        extra.listen(1)
        eport = extra.getsockname()[1]
        try:
            await pilot.pause(1.0)
            assert app.updates_applied == frozen
            assert listening_row(app, eport) is None
            await pilot.press("r")  # one refresh while paused
            assert await wait_for(pilot, lambda: listening_row(app, eport) is not None)
            await pilot.press("p")
            assert not app.paused
            n = app.updates_applied
            assert await wait_for(pilot, lambda: app.updates_applied > n + 1)
        finally:
            extra.close()


@sync
async def test_interval_keys_help_and_palette_commands():
    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.interval == 1.0
        await pilot.press("plus")
        assert app.interval == 2.0
        await pilot.press("minus", "minus")
        assert app.interval == 0.5
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for want in ("Show Listening", "Show Connections", "Show Keepalive", "Show Client", "Show Server",
                     "Show Timeline", "Pause / resume collection", "Refresh now", "Filter the list",
                     "Socket detail", "Sockmon help"):
            assert want in titles
        for key, tab in (("2", "keepalive"), ("3", "client"), ("4", "server"), ("5", "timeline"), ("1", "sockets")):
            app.set_focus(None)
            await pilot.press(key)
            await pilot.pause()
            assert app.query_one("#tabs").active == tab


@sync
async def test_injected_updates_errors_and_engine_events_never_kill_the_app():
    app = SockmonApp(collector_factory=None, is_root=False)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.query_one("#banner")
        app.inject_snapshot(snapshot(), (), summary())
        await pilot.pause()
        assert app.connections.table.total_count == 14
        assert app.listening.table.total_count == 4
        # a failed collection: notification + status, the old data stays
        app.apply_update(Update(None, None, (), None, 1.0, 0, "inferred", "OSError: netlink gone"))
        await pilot.pause()
        assert app.status.info.error == "OSError: netlink gone"
        assert any("netlink gone" in str(n.message) for n in app._notifications)
        assert app.connections.table.total_count == 14
        # garbage update: reported, not raised
        app.apply_update(SimpleNamespace(snapshot=object(), transitions=(), error=None))
        await pilot.pause()
        # engine failure → error notification and the timeline gets the event
        ev = make_event(EventKind.FAILED, "connect(127.0.0.1:9)", conn="client", errno_name="ECONNREFUSED",
                        meaning="connection refused", action="retry later")
        app.post_message(EngineEvent(ev, "client"))
        await pilot.pause()
        assert any("ECONNREFUSED" in str(n.message) for n in app._notifications)
        app.inject_snapshot(snapshot(), (), summary())
        await pilot.pause()
        assert app.status.info.error is None


@sync
async def test_selection_transitions_and_events_reach_the_timeline():
    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(120, 40)) as pilot:
        model = app.lab.model  # the one timeline model, fed by the app (tui/lab/wiring.py)
        shown = []
        follow = app.lab.follow_socket
        app.lab.follow_socket = lambda sock: (shown.append(sock), follow(sock))
        from test_tui_fixtures import transitions

        app.inject_snapshot(snapshot(), transitions(), summary())
        await pilot.pause()
        assert model.sizes()["transitions"] == 4
        assert len(app.history.get("127.0.0.1", 51006, "127.0.0.1", 8080)) == 2
        assert shown == []  # a cursor landing on row 0 after a refresh is not a user's selection
        table = app.connections.table
        table.focus()
        await pilot.press("down")
        await pilot.pause()
        assert shown and shown[-1] is table.cursor_row
        assert model.socket is table.cursor_row and not model.following_client
        ev = make_event(EventKind.INFO, "listening", conn=None)
        app.post_message(EngineEvent(ev, "server"))
        await pilot.pause()
        assert list(model._events) == [ev], "each engine event reaches the model exactly once"


@sync
async def test_keepalive_pane_reads_our_own_socket_from_the_kernel(loopback):
    loopback.client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    loopback.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 61)
    loopback.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 11)
    loopback.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
    cport = loopback.client.getsockname()[1]
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        ka = app.keepalive
        assert await wait_for(pilot, lambda: any(s.sport == cport for s in ka.timers.table.visible_rows()))
        await pilot.press("2")
        table = ka.timers.table
        table.focus()
        row = next(s for s in table.visible_rows() if s.sport == cport)
        table.move_cursor_to_key(table.key_fn(row))
        assert await wait_for(pilot, lambda: ka.keepalive is not None and ka.socket.sport == cport)
        k = ka.keepalive
        assert (k.enabled, k.idle, k.intvl, k.cnt, k.dead_peer_seconds) == (True, 61, 11, 4, 105)
        assert "own fd" in ka.read_note
        text = screen_text(app)
        assert "dead peer after" in text and "105 s" in text


@sync
async def test_newest_snapshot_wins_and_no_transition_is_lost():
    """Updates handed over faster than the UI applies them: only the newest is shown, every transition kept."""
    import threading

    from sockmon.tui.app import make_update
    from test_tui_fixtures import T0, transitions

    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(100, 30)) as pilot:
        trs = transitions()
        updates = [make_update(snapshot(taken_at=T0 + i), [trs[i]], summary()) for i in range(4)]

        def collector_thread():
            for u in updates:
                app._from_collector(u)

        t = threading.Thread(target=collector_thread)
        t.start()
        t.join()
        await pilot.pause()
        assert app.snapshot.taken_at == T0 + 3
        assert app.updates_applied == 1
        assert app.history.total == 4


@sync
async def test_pause_freezes_countdowns_and_the_footer_says_resume():
    now = [1000.25]
    app = SockmonApp(collector_factory=None, is_root=True, clock=lambda: now[0])
    async with app.run_test(size=(120, 40)) as pilot:
        app.inject_snapshot(snapshot(), (), summary())
        await pilot.pause()
        table = app.connections.table
        timer_col = next(c for c in table.columns if c.key == "timer")
        row = next(s for s in table.visible_rows() if s.sport == 22 and s.timer is not None)

        def countdown() -> str:
            return timer_col.fmt(row).plain

        assert countdown() == "keepalive 44.7s r1"
        active = {b.action for _, b, enabled, _ in app.screen.active_bindings.values() if enabled}
        assert "pause" in active and "resume" not in active
        await pilot.press("p")
        assert app.paused
        active = {b.action for _, b, enabled, _ in app.screen.active_bindings.values() if enabled}
        assert "resume" in active and "pause" not in active
        now[0] += 20.0  # time passes while paused: the frozen snapshot's timers do not run
        await pilot.pause()
        assert countdown() == "keepalive 44.7s r1"
        await pilot.press("p")
        assert not app.paused
        assert countdown() == "keepalive 24.7s r1"  # running again, from the real clock


@sync
async def test_palette_lists_every_action_of_every_pane():
    from sockmon.tui.lab.client import ClientPane
    from sockmon.tui.lab.server import ServerPane
    from sockmon.tui.lab.timeline import TimelinePane

    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for pane, name in ((ClientPane, "Client"), (ServerPane, "Server"), (TimelinePane, "Timeline")):
            for b in pane.BINDINGS:
                if b.key != "escape":
                    assert f"{name}: {b.description}" in titles, b
        for want in ("Sort by next column", "Sort by previous column", "Reverse the sort order"):
            assert want in titles
        # a pane command runs the pane's action and shows the pane
        client = app.query_one(ClientPane)
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Client: Connect")
        called = []
        client.action_connect = lambda: called.append("connect")
        await command.callback()
        await pilot.pause()
        assert called == ["connect"] and app.query_one("#tabs").active == "client"


@sync
async def test_keepalive_pane_shows_the_timer_list_row_unless_the_user_picked_a_socket():
    app = SockmonApp(collector_factory=None, is_root=True)
    async with app.run_test(size=(140, 40)) as pilot:
        app.keepalive.reader = lambda sock, owner: (None, "test reader")
        app.inject_snapshot(snapshot(), (), summary())
        await pilot.pause()
        ka = app.keepalive
        await pilot.press("2")
        await pilot.pause()
        assert ka.socket is not None and ka.socket is ka.timers.selected, "the row under the timer list's cursor"
        assert "keepalive timers" in str(app.query_one("#ka-selected").border_title)
        # the user picks a socket in Connections: the Keepalive pane keeps showing that one
        await pilot.press("1")
        await pilot.pause()
        table = app.connections.table
        await pilot.press("down", "down")
        await pilot.pause()
        picked = table.cursor_row
        await pilot.press("2")
        await pilot.pause()
        assert ka.socket.key == picked.key
        assert "Connections" in str(app.query_one("#ka-selected").border_title)
        # a refresh moving the timer list's cursor does not replace the user's pick
        app.inject_snapshot(snapshot(), (), summary())
        await pilot.pause()
        assert ka.socket.key == picked.key


@sync
async def test_narrow_terminal_shows_whole_titles_banner_and_filter_errors():
    from sockmon.tui.app import NON_ROOT_BANNER_SHORT

    app = SockmonApp(collector_factory=None, is_root=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.inject_snapshot(snapshot(), (), summary())
        await pilot.pause()
        text = screen_text(app)
        assert NON_ROOT_BANNER_SHORT in text, "the non-root banner fits one 80-column line"
        assert "Listening [l]" in text and "Connections [c]" in text, "pane titles keep their key"
        await pilot.press("slash", *"state:bogus")
        await pilot.pause()
        assert app.connections.filter_error
        text = screen_text(app)
        assert "big, all)" in text and "previous filter kept" in text, "the whole reason shows (its end), wrapped"
