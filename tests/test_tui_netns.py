"""The namespace picker (``N``) against real namespaces and the real collector (Pilot, root)."""

from __future__ import annotations

import os

import pytest
from netnshelp import listening_namespaces
from sockmon.core.netns import ALL_NETNS, NetnsRef
from sockmon.core.states import LISTEN
from sockmon.core.table.collector import Collector
from sockmon.tui.app import SockmonApp
from sockmon.tui.screens.help import help_renderable
from sockmon.tui.screens.netns import ALL_CHOICE, NetnsScreen, choices
from test_tui_app import screen_text
from test_tui_fixtures import sync, wait_for
from textual.widgets import OptionList

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(os.geteuid() != 0, reason="creating namespaces needs root")]
PORT = 80


def fast_collector(**kw):
    return Collector(interval=kw.pop("interval"), use_tracepoint=False, **kw)


def port_rows(pane):
    return [s for s in pane.table.visible_rows() if s is not None and s.sport == PORT and s.state == LISTEN]


def column_keys(pane) -> list[str]:
    return [c.key for c in pane.table.columns]


SLOW = 30.0  # the all view dumps every namespace: on a shared machine another test's 60k sockets may be there


async def pick(pilot, app, label_part: str) -> None:
    """Open the picker with N and choose the line that contains ``label_part`` (as a user would: arrows, Enter)."""
    await pilot.press("N")
    assert await wait_for(pilot, lambda: isinstance(app.screen, NetnsScreen) and app.screen.choices,
                          what="the picker's list")
    screen = app.screen
    options = screen.query_one(OptionList)
    index = next(i for i in range(options.option_count) if label_part in str(options.get_option_at_index(i).prompt))
    await pilot.press("home")
    for _ in range(index):
        await pilot.press("down")
    await pilot.press("enter")
    assert await wait_for(pilot, lambda: not isinstance(app.screen, NetnsScreen), what="the picker to close")


@sync
async def test_picker_switches_to_a_test_namespace_and_all_namespaces_add_a_netns_column():
    with listening_namespaces(2, PORT) as (a, b):
        app = SockmonApp(interval=0.2, collector_factory=fast_collector, is_root=True)
        async with app.run_test(size=(160, 48)) as pilot:
            assert await wait_for(pilot, lambda: app.snapshot is not None, what="the first snapshot")
            assert not port_rows(app.listening), "the test namespaces' listeners are not ours"
            assert "netns" not in column_keys(app.listening) and "netns" not in column_keys(app.connections)

            await pick(pilot, app, a.name)
            assert await wait_for(pilot, lambda: [s.state for s in port_rows(app.listening)] == [LISTEN],
                                  what=f"the listener of {a.name}")
            assert app.snapshot.netns == a.name and app.collector.netns == a.name
            assert "switching" not in str(app.status.render())
            assert app.listening.owner_of(port_rows(app.listening)[0]).pid == a.pid
            assert a.name in screen_text(app) and f"netns {a.name}" in str(app.status.render())
            assert "netns" not in column_keys(app.listening)
            table = app.listening.table
            assert not [s for s in port_rows(app.listening) if table.is_new(table.key_fn(s))], (
                "a namespace switch marks no row as new")

            await pick(pilot, app, "all namespaces")
            assert await wait_for(pilot, lambda: app.snapshot.netns == ALL_NETNS, what="the all view", timeout=SLOW)
            assert "netns" in app.listening.table.on_screen_keys and "netns" in app.connections.table.on_screen_keys
            assert await wait_for(pilot, lambda: sorted(s.netns for s in port_rows(app.listening) if s.netns in (
                a.name, b.name)) == sorted([a.name, b.name]), what="both listeners, one per namespace", timeout=SLOW)
            # they were there before the switch: not marked new (a socket born on the host since may be)
            assert not [s for s in port_rows(app.listening) if table.is_new(table.key_fn(s))]
            text = screen_text(app)
            assert "Netns" in text and "all namespaces" in str(app.status.render())
            a.ask("connect")  # a connection inside a: a Connections row of that namespace
            assert await wait_for(pilot, lambda: {s.netns for s in app.connections.table.visible_rows()
                                                  if PORT in (s.sport, s.dport) and s.netns in (a.name, b.name)}
                                  == {a.name}, what="a's connection", timeout=SLOW)

            await pick(pilot, app, "sockmon's namespace")
            assert await wait_for(pilot, lambda: app.snapshot.netns is None, what="back to our own", timeout=SLOW)
            assert "netns" not in column_keys(app.listening) and not port_rows(app.listening)
            assert app.snapshot.netns is None
            await pilot.press("N")
            assert await wait_for(pilot, lambda: isinstance(app.screen, NetnsScreen) and app.screen.choices)
            await pilot.press("escape")  # Esc keeps the view
            assert await wait_for(pilot, lambda: not isinstance(app.screen, NetnsScreen))
            assert app.view_netns is None
            await app.action_quit()


def test_picker_lines_are_inert_and_label_every_kind_of_namespace():
    refs = [NetnsRef("pid:1", 1, pid=1, label="init (pid 1)", current=True),
            NetnsRef("blue", 2, name="blue", pid=40, label="blue"),
            NetnsRef("pid:77", 3, pid=77, label="\x1b[31mevil\x07 (pid 77)")]
    items = choices(refs, {3: "docker 0123456789ab"})
    assert items[0][0] is ALL_CHOICE
    lines = [line.plain for _, line in items]
    assert "own" in lines[1] and "sockmon's namespace" in lines[1] and items[1][0].target is None
    assert lines[2].startswith("named") and items[2][0].target == "blue"
    assert "\x1b" not in lines[3] and "\x07" not in lines[3] and "\\x1b" in lines[3]
    assert "docker 0123456789ab" in lines[3] and items[3][0].target == "pid:77"


def test_help_says_n_picks_a_namespace_and_the_lab_stays():
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(help_renderable())
    text = console.export_text()
    assert "network namespace" in text and "stay in the namespace --netns gave" in text.replace("\n", " ")
