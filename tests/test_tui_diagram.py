"""The Diagram pane (tab 8, D): SVG snapshots at 200×60 (the full diagram) and 80×24 (the compact form) from
deterministic fixture data, and the followed connection's path lighting up through the app's update path."""

from __future__ import annotations

import socket

import msgspec
from sockmon.core import states as S
from sockmon.core.records import Transition
from sockmon.tui.app import SockmonApp
from sockmon.tui.diagram.canvas import NEWEST_STYLE, PATH_STYLE, ROUTES, STUBS
from sockmon.tui.diagram.pane import DiagramPane, DiagramView
from test_tui_fixtures import T0, frozen_clock, snapshot, sockets, summary, sync, transitions

V4 = socket.AF_INET
LO = "127.0.0.1"
HOSTILE = "\x1b]0;pwned\x07[bold red]x"


def make_app() -> SockmonApp:
    return SockmonApp(collector_factory=None, is_root=True, clock=frozen_clock())


def life(t0: float, cport: int, sport: int = 8080, *, reset: bool = False) -> list[Transition]:
    """One loopback connection as this kernel reports it (docs/kernel-facts.md), both sides."""
    def t(dt, src, sp, dst, dp, old, new):
        return Transition(t0 + dt, V4, src, sp, dst, dp, old, new, "tracepoint")
    out = [t(0.0, LO, 0, LO, sport, S.CLOSE, S.SYN_SENT),
           t(0.001, LO, cport, LO, sport, S.SYN_SENT, S.ESTABLISHED),
           t(0.001, LO, sport, LO, cport, S.LISTEN, S.SYN_RECV),
           t(0.001, LO, sport, LO, cport, S.SYN_RECV, S.ESTABLISHED)]
    if reset:
        return out + [t(0.2, LO, cport, LO, sport, S.ESTABLISHED, S.CLOSE),
                      t(0.2, LO, sport, LO, cport, S.ESTABLISHED, S.CLOSE)]
    return out + [t(0.2, LO, cport, LO, sport, S.ESTABLISHED, S.FIN_WAIT1),
                  t(0.2, LO, sport, LO, cport, S.ESTABLISHED, S.CLOSE_WAIT),
                  t(0.2, LO, cport, LO, sport, S.FIN_WAIT1, S.FIN_WAIT2),
                  t(0.3, LO, sport, LO, cport, S.CLOSE_WAIT, S.LAST_ACK),
                  t(0.3, LO, cport, LO, sport, S.FIN_WAIT2, S.CLOSE),
                  t(0.3, LO, sport, LO, cport, S.LAST_ACK, S.CLOSE)]


def churn() -> list[Transition]:
    out = []
    for i in range(24):  # 24 connections over the last 6 s, every sixth reset
        out += life(T0 - 6.0 + i * 0.25, 52000 + i, reset=i % 6 == 5)
    return out


async def feed(pilot) -> None:
    app = pilot.app
    app.inject_snapshot(snapshot(taken_at=T0 - 6.0), (), summary(), transition_source="tracepoint")
    follow = next(s for s in sockets() if s.sport == 51006)  # the FIN_WAIT2 client
    app.lab.follow_socket(follow)
    app.inject_snapshot(snapshot(), [*churn(), *transitions()], summary(), duration_ms=12.0,
                        transition_source="tracepoint")
    await pilot.press("D")
    await pilot.pause()


def test_diagram_200x60(snap_compare):
    assert snap_compare(make_app(), terminal_size=(200, 60), run_before=feed)


def test_diagram_compact_80x24(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=feed)


def _label_style(view: DiagramView, key) -> object:
    """The style of an edge's label as drawn (line 0 is the header)."""
    route = ROUTES.get(key)
    x, y = route[1] if route is not None else STUBS[key]
    line = view.render().split("\n")[y + 1]
    styles = [sp.style for sp in line.spans if sp.start <= x < sp.end]
    return styles[-1] if styles else None


@sync
async def test_followed_path_lights_up_edge_by_edge():
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        app.inject_snapshot(snapshot(), (), summary(), transition_source="tracepoint")
        await pilot.press("D")
        await pilot.pause()
        pane = app.query_one(DiagramPane)
        view = pane.view
        assert app.query_one("#tabs").active == "diagram"
        tup = (LO, 53000, LO, 8080)
        client = msgspec.structs.replace(next(s for s in sockets() if s.sport == 51000), sport=53000, cookie=77)
        app.lab.follow_socket(client)
        steps = [(S.SYN_SENT, S.ESTABLISHED), (S.ESTABLISHED, S.FIN_WAIT1), (S.FIN_WAIT1, S.FIN_WAIT2),
                 (S.FIN_WAIT2, S.CLOSE)]
        t = T0 + 1
        lit = []
        for old, new in steps:
            other = Transition(t, V4, LO, 8080, LO, 53000, S.ESTABLISHED, S.CLOSE_WAIT, "tracepoint")
            mine = Transition(t, V4, *tup, old, new, "tracepoint")
            state = new if new != S.CLOSE else S.TIME_WAIT  # the timewait socket takes over in the table
            row = msgspec.structs.replace(client, state=state)
            app.inject_snapshot(snapshot([*sockets(), row], taken_at=t + 0.1), [other, mine], transition_source="tracepoint")
            await pilot.pause()
            lit.append((old, new))
            assert app.diagram.path_edges() == lit
            assert _label_style(view, (old, new)) == NEWEST_STYLE  # the newest edge, reversed
            for earlier in lit[:-1]:
                assert _label_style(view, earlier) == PATH_STYLE  # the path so far stays lit
            assert _label_style(view, (S.ESTABLISHED, S.CLOSE_WAIT)) != PATH_STYLE  # not ours
            assert app.diagram.current == state
            assert "◀ followed" in view.render().plain
            t += 1
        # another connection followed: the path starts again
        app.lab.follow_socket(next(s for s in sockets() if s.sport == 51012 and s.dport == 22))
        app.inject_snapshot(snapshot(taken_at=t), (), transition_source="tracepoint")
        await pilot.pause()
        assert app.diagram.path_edges() == []
        assert _label_style(view, (S.FIN_WAIT2, S.CLOSE)) not in (PATH_STYLE, NEWEST_STYLE)


@sync
async def test_filter_line_counts_and_hostile_text_stays_inert():
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        app.inject_snapshot(snapshot(), transitions(), summary(), transition_source="tracepoint")
        await pilot.press("D")
        await pilot.press("slash")
        await pilot.pause()
        pane = app.query_one(DiagramPane)
        for ch in "dport = :8080":
            await pilot.press(ch if ch != " " else "space")
        await pilot.pause()
        want = {}
        for s in sockets():
            if s.dport == 8080:
                want[s.state] = want.get(s.state, 0) + 1
        assert app.diagram.counts == want and app.diagram.filter_text == "dport = :8080"
        assert app.diagram.cumulative == {}  # edges count again from the filter on
        elsewhere = Transition(T0 + 0.5, V4, LO, 40000, LO, 9999, S.ESTABLISHED, S.FIN_WAIT1, "tracepoint")
        app.inject_snapshot(snapshot(taken_at=T0 + 1), [*transitions(), elsewhere], transition_source="tracepoint")
        await pilot.pause()
        assert app.diagram.cumulative == {(S.CLOSE, S.SYN_SENT): 1, (S.SYN_SENT, S.ESTABLISHED): 1,
                                          (S.ESTABLISHED, S.FIN_WAIT1): 1, (S.FIN_WAIT1, S.FIN_WAIT2): 1}
        pane.apply_filter("dport > " + HOSTILE)  # bad text: one line, the previous filter kept
        assert pane.filter_error and app.diagram.filter_text == "dport = :8080"
        err = pane.query_one("#diagram-filter-error").render()
        assert "\x1b" not in str(err) and "\x07" not in str(err)
        assert "filter dport = :8080" in pane.view.render().plain
