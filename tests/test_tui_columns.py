"""Small terminals: which columns show at 80×24 and 200×60, the frozen key columns while scrolling
sideways, the column chooser (order sticks across refreshes and is saved), the status bar's short
forms, Detail's labels never cut, addresses ellipsized in the middle (never the port), and no owner or
user for TIME_WAIT sockets."""

from __future__ import annotations

import io
import json

import msgspec
import pytest
from rich.console import Console
from sockmon.core import states as S
from sockmon.core.tcpinfo import TcpInfo
from sockmon.tui import fmt
from sockmon.tui.app import SockmonApp
from sockmon.tui.screens.columns import ColumnChooser
from sockmon.tui.screens.detail import DetailScreen, owner_section, socket_section, tcp_info_section
from sockmon.tui.table.connections import ConnectionsPane
from sockmon.tui.table.keepalive import KeepaliveTimersPane
from sockmon.tui.table.listening import ListeningPane
from sockmon.tui.widgets.columns import ColumnChoice, ColumnPrefs, default_config_path, layout_columns
from sockmon.tui.widgets.status import StatusInfo, status_text
from test_tui_fixtures import HOSTILE_NAME, T0, frozen_clock, hostile_snapshot, summary, sync


def make_app(**kw) -> SockmonApp:
    return SockmonApp(collector_factory=None, is_root=True, clock=frozen_clock(), **kw)


def screen_lines(app) -> list[str]:
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


async def fed(pilot, snap=None):
    pilot.app.inject_snapshot(snap or hostile_snapshot(), (), summary(), duration_ms=12.0,
                              transition_source="tracepoint")
    await pilot.pause()


# ----------------------------------------------------------------------------------------- layout
def keys(layout, on_screen=True):
    cols = layout.columns[: layout.on_screen] if on_screen else layout.off_screen
    return [c.key for c in cols]


@pytest.mark.parametrize(("pane", "at80"), [
    (ConnectionsPane, ["state", "local", "peer", "owner"]),
    (KeepaliveTimersPane, ["state", "local", "peer", "owner"]),
    (ListeningPane, ["local", "queue", "owner", "family"]),
])
def test_80_columns_show_the_owner_and_200_show_everything(pane, at80):
    cols = pane(id="x").shown_columns()
    narrow = layout_columns(cols, None, 77)  # 80 columns less the pane's border and the scrollbar
    assert keys(narrow) == at80
    assert narrow.total_width > 77 and sum(c.width + 1 for c in narrow.columns[: narrow.on_screen]) <= 77
    wide = layout_columns(cols, None, 197)
    assert wide.on_screen == len(cols) and not wide.off_screen
    assert [c.width for c in wide.columns if c.key == "local"][0] > 21  # room to spare: addresses grow


def test_key_columns_and_the_next_two_stay_at_any_width_and_shrink():
    cols = ConnectionsPane(id="x").shown_columns()
    tiny = layout_columns(cols, None, 60)
    assert keys(tiny) == ["state", "local", "peer", "owner"]
    assert sum(c.width + 1 for c in tiny.columns[:4]) <= 60
    assert all(c.width >= (c.min_width or c.width) for c in tiny.columns)


def test_order_is_the_priority_and_new_columns_take_their_default_place():
    cols = ConnectionsPane(id="x").shown_columns()
    # an older saved choice without "rtt", "cwnd", "family": they come back where they belong
    choice = ColumnChoice(("timer", "state", "peer", "local", "owner", "recv_q", "send_q", "retrans", "user"),
                          frozenset({"user"}))
    lay = layout_columns(cols, choice, 77)
    order = [c.key for c in lay.columns]
    assert order[:2] == ["state", "local"]  # the frozen key columns always first
    # columns the choice does not name follow their default predecessor (rtt, cwnd after timer)
    assert order[:5] == ["state", "local", "timer", "rtt", "cwnd"]
    assert keys(lay)[:3] == ["state", "local", "timer"]  # moved up: on screen at 80 columns
    assert "user" not in order and lay.hidden == ("user",)
    assert order[-1] == "family"
    # a frozen column cannot be hidden
    assert "state" in [c.key for c in layout_columns(cols, ColumnChoice((), frozenset({"state"})), 77).columns]


@pytest.mark.parametrize(("text", "width", "out"), [
    ("127.0.0.1:16379", 15, "127.0.0.1:16379"),
    ("127.0.0.1:16379", 13, "127…0.1:16379"),
    ("192.168.100.200:54321", 16, "192.1….200:54321"),
    ("[2001:db8:85a3::8a2e:370:7334]:443", 21, "[2001:db…70:7334]:443"),
    ("[fe80::1]:22", 8, "[f…1]:22"),
    ("[fe80::1]:22", 6, "…1]:22"),
    ("*", 1, "*"),
])
def test_addresses_are_ellipsized_in_the_middle_never_the_port(text, width, out):
    if len(text) <= width:
        assert out == text
        return
    head, tail = fmt.fit_span(text, width, "endpoint")
    got = text[:head] + "…" + text[len(text) - tail:]
    assert len(got) == width
    port = text[text.rfind(":"):]
    assert got.endswith(port)
    assert got == out


# ----------------------------------------------------------------------------------------- config
def test_prefs_round_trip_and_a_bad_file_is_ignored(tmp_path):
    path = default_config_path({"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/nonexistent"})
    assert path == tmp_path / "sockmon" / "columns.json"
    prefs = ColumnPrefs.load(path)
    assert prefs.error is None and prefs.get("connections") is None
    assert prefs.set("connections", ColumnChoice(("state", "local", "timer"), frozenset({"user"}))) is None
    again = ColumnPrefs.load(path)
    assert again.get("connections") == ColumnChoice(("state", "local", "timer"), frozenset({"user"}))
    assert json.loads(path.read_text())["tables"]["connections"]["hidden"] == ["user"]
    path.write_text("{not json")
    bad = ColumnPrefs.load(path)
    assert bad.error and "columns.json" in bad.error and bad.choices == {}
    path.write_text(json.dumps({"tables": {"connections": {"order": "state"}}}))
    assert "order" in ColumnPrefs.load(path).error
    assert default_config_path({"XDG_CONFIG_HOME": "relative", "HOME": "/h"}).as_posix() == \
        "/h/.config/sockmon/columns.json"


# ----------------------------------------------------------------------------------------- Pilot
@sync
async def test_at_80x24_connections_show_state_local_peer_process_and_scrolling_keeps_the_key():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await fed(pilot)
        table = app.connections.table
        assert table.on_screen_keys == ["state", "local", "peer", "owner"]
        assert "more columns" in str(app.connections.border_subtitle)
        text = "\n".join(screen_lines(app))
        assert "Process" in text and "5151/postgres" in text
        table.focus()
        row = table.cursor_row
        local = fmt.local_of(row)
        before = [ln for ln in screen_lines(app) if local in ln]
        assert before
        for _ in range(3):
            await pilot.press("right")
        await pilot.pause()
        assert table.scroll_x > 0
        lines = screen_lines(app)
        header = next(ln for ln in lines if "State" in ln and "Local" in ln)
        assert header.index("State") < header.index("Local") < header.index("│", header.index("Local"))
        assert "Peer" not in header  # scrolled away, while State and Local stayed
        assert any(col in header for col in ("Timer", "Recv-Q", "Send-Q", "RTT ms"))
        line = next(ln for ln in lines if local in ln)
        assert row.state_name in line and line.index(row.state_name) < line.index(local)
        await pilot.press("left", "left", "left", "left")
        await pilot.pause()
        assert table.scroll_x == 0


@sync
async def test_column_chooser_reorders_and_the_order_sticks_across_refreshes_and_restarts(tmp_path):
    path = tmp_path / "sockmon" / "columns.json"
    app = make_app(columns_file=path)
    async with app.run_test(size=(80, 24)) as pilot:
        await fed(pilot)
        app.connections.table.focus()
        await pilot.press("C")
        chooser = app.screen
        assert isinstance(chooser, ColumnChooser)
        assert chooser.order[chooser.cursor] == "peer"  # the first movable column
        while chooser.order[chooser.cursor] != "timer":
            await pilot.press("down")
        for _ in range(chooser.cursor - 2):
            await pilot.press("K")  # move up: Timer becomes the first column after the key columns
        assert chooser.order[:3] == ["state", "local", "timer"]
        await pilot.press("down", "down", "down")
        hidden_key = chooser.order[chooser.cursor]
        await pilot.press("space")
        assert any("hidden" in ln for ln in chooser.rendered_lines())
        await pilot.press("enter")
        assert not isinstance(app.screen, ColumnChooser)
        table = app.connections.table
        assert table.on_screen_keys == ["state", "local", "timer", "peer"]
        for i in range(3):  # refreshes never touch the columns
            app.inject_snapshot(hostile_snapshot(taken_at=T0 + i + 1), (), summary())
            await pilot.pause()
            assert table.on_screen_keys == ["state", "local", "timer", "peer"]
            assert hidden_key not in [c.key for c in table.columns]
        header = next(ln for ln in screen_lines(app) if "State" in ln and "Local" in ln)
        assert header.index("Local") < header.index("Timer") < header.index("Peer")
    saved = json.loads(path.read_text())["tables"]["connections"]
    assert saved["order"][:3] == ["state", "local", "timer"] and saved["hidden"] == [hidden_key]
    again = make_app(columns_file=path)  # the next session starts with the saved choice
    async with again.run_test(size=(80, 24)) as pilot:
        await fed(pilot)
        assert again.connections.table.on_screen_keys == ["state", "local", "timer", "peer"]


@sync
async def test_status_bar_abbreviates_at_80_and_is_whole_at_200():
    for width, whole in ((80, False), (200, True)):
        app = make_app()
        async with app.run_test(size=(width, 24)) as pilot:
            await fed(pilot)
            line = next(ln for ln in screen_lines(app) if "⟳" in ln)
            assert len(line.rstrip()) <= width
            if whole:
                assert "sockets:" in line and "ESTABLISHED" in line and "tracepoint" in line
            else:
                assert "ESTABLISHED" not in line and "…" not in line
                assert "EST" in line and "TW 2" in line and "LIS 4" in line  # every count still there
    info = StatusInfo(counts={S.ESTABLISHED: 6, S.TIME_WAIT: 2}, total=8, collect_ms=3.0,
                      transition_source="tracepoint")
    assert status_text(info, 200).plain == status_text(info).plain
    assert "ESTAB 6 TIME-WAIT 2" in status_text(info, 60).plain
    assert status_text(info, 20).cell_len <= 20


def _render(renderable, width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    with console.capture() as cap:
        console.print(renderable)
    return cap.get().splitlines()


@sync
async def test_detail_labels_are_never_cut_at_80x24():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await fed(pilot)
        sock = next(s for s in app.snapshot.sockets if s.sport == 51002 and s.state == S.ESTABLISHED)
        app.open_detail(sock)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.narrow
        width = screen.query_one("#detail-tcpinfo").content_region.width
        assert 60 <= width <= 78
        lines = _render(tcp_info_section(sock, 1 if screen.narrow else 2), width)
        for name in TcpInfo.__struct_fields__:
            assert any(ln.split()[:1] == [name] for ln in lines), f"tcp_info label {name} cut"
        w = screen.query_one("#detail-socket").content_region.width
        text = "\n".join(_render(socket_section(sock, 0.0), w))
        for label in ("state", "family", "local", "peer", "recv-q", "send-q", "timer", "uid", "inode",
                      "cookie", "ifindex", "congestion"):
            assert f"{label} " in text
        assert "family     v6" in text
        assert not any("…" in ln for ln in screen_lines(app))


@sync
async def test_time_wait_shows_no_owner_and_no_user_even_after_having_one():
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        await fed(pilot)
        table = app.connections.table
        user = next(c for c in table.all_columns if c.key == "user")
        owner = next(c for c in table.all_columns if c.key == "owner")
        for tw in (s for s in table.visible_rows() if s.state == S.TIME_WAIT):
            assert user.fmt(tw) if user.fmt else user.get(tw) == ""
            assert str(owner.fmt(tw)) == ""
        # the Detail of a socket that had an owner and then lost its fd (closed: FIN_WAIT2, TIME_WAIT)
        sock = next(s for s in app.snapshot.sockets if s.sport == 51000)
        app.open_detail(sock)
        await pilot.pause()
        screen = app.screen
        assert screen.owner is not None
        closed = msgspec.structs.replace(sock, state=S.TIME_WAIT, inode=0, uid=0, timer=None, tcp_info_bytes=None)
        screen.update_socket(closed, None, [], T0)
        assert screen.owner is None
        assert "belong to no process" in str(owner_section(screen.owner, closed))
        text = "\n".join(_render(socket_section(closed, 0.0), 100))
        assert "no user" in text and "(root)" not in text
        assert fmt.socket_user(closed, app.snapshot.owner(sock)) == ""  # even if an owner were passed


@sync
async def test_family_shows_as_v4_v6_like_the_filter():
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        await fed(pilot)
        fam = next(c for c in app.listening.table.columns if c.key == "family")
        assert sorted({fam.fmt(s) for s in app.listening.table.visible_rows()}) == ["v4", "v6"]
        app.connections.apply_filter("v6")
        assert {fmt.family_word(s) for s in app.connections.table.visible_rows()} == {"v6"}


@sync
async def test_hostile_owner_is_inert_in_its_own_cell_at_80_columns():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await fed(pilot)
        await pilot.press("2")
        await pilot.pause()
        text = "\n".join(screen_lines(app))
        assert "\x1b" not in text and "\x07" not in text
        assert "7002/\\x1b]0;pwned" in text
        assert HOSTILE_NAME not in text
