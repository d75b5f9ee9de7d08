"""VirtualTable: keyed rows, sort, filter, cursor, row marks, and only visible rows drawn."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest
from sockmon.tui.widgets.virtual_table import Column, VirtualTable
from textual.app import App, ComposeResult


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_table(clock=None, **kw) -> VirtualTable:
    cols = [
        Column("name", "Name", 10, get=lambda r: r["name"]),
        Column("n", "N", 5, get=lambda r: r["n"], justify="right"),
        Column("opt", "Opt", 5, get=lambda r: r.get("opt")),
    ]
    return VirtualTable(cols, key_fn=lambda r: r["name"], clock=clock or time.monotonic, id="t", **kw)


class TableApp(App):
    def __init__(self, table: VirtualTable) -> None:
        super().__init__()
        self.table = table
        self.moved: list = []
        self.activated: list = []

    def compose(self) -> ComposeResult:
        yield self.table

    def on_virtual_table_cursor_moved(self, msg: VirtualTable.CursorMoved) -> None:
        self.moved.append(msg.key)

    def on_virtual_table_row_activated(self, msg: VirtualTable.RowActivated) -> None:
        self.activated.append(msg.key)


def sync(fn):
    """Run an async test body on its own loop (no pytest-asyncio needed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def rows(*specs):
    return [{"name": name, "n": n} for name, n in specs]


@sync
async def test_sort_filter_and_cursor_follows_key():
    table = make_table()
    app = TableApp(table)
    async with app.run_test(size=(40, 10)) as pilot:
        table.set_rows(rows(("b", 2), ("a", 3), ("c", 1)))
        assert table.visible_keys == ["b", "a", "c"]  # arrival order until a sort is chosen
        table.sort_by("n")
        assert table.visible_keys == ["c", "b", "a"]
        table.sort_by("n")  # same column again: reversed
        assert table.visible_keys == ["a", "b", "c"]
        assert table.sort_reverse
        table.sort_by("name", reverse=False)
        assert table.visible_keys == ["a", "b", "c"]
        table.focus()
        await pilot.press("home", "down")  # cursor on "b"
        assert table.cursor_key == "b"
        table.sort_by("n", reverse=True)  # a, b, c -> "b" still under the cursor
        assert table.cursor_key == "b"
        table.set_filter(lambda r: r["n"] >= 2)
        assert table.visible_keys == ["a", "b"]
        assert table.total_count == 3 and table.row_count == 2
        table.set_filter(lambda r: r["name"] == "c")
        assert table.cursor_key == "c"  # cursor key filtered out: stays at an existing row
        table.set_filter(None)
        assert table.row_count == 3
        await pilot.press("enter")
        await pilot.pause()
        assert app.activated == ["c"]


@sync
async def test_none_and_mixed_values_sort_last_without_error():
    table = make_table()
    async with TableApp(table).run_test(size=(40, 10)):
        table.set_rows([{"name": "x", "n": 1, "opt": None}, {"name": "y", "n": 2, "opt": 5},
                        {"name": "z", "n": 3, "opt": "text"}])
        table.sort_by("opt", reverse=False)
        assert table.visible_keys == ["y", "z", "x"]


@sync
async def test_marks_new_rows_then_vanished_rows_fade_then_leave():
    clock = FakeClock()
    table = make_table(clock, new_mark_seconds=3.0, fade_seconds=2.0)
    async with TableApp(table).run_test(size=(40, 10)):
        table.set_rows(rows(("a", 1), ("b", 2)))
        assert not table.is_new("a")  # the first load marks nothing
        clock.t += 1
        table.set_rows(rows(("a", 1), ("c", 3)))
        assert table.is_new("c")
        assert table.is_vanishing("b")
        assert table.visible_keys == ["a", "c", "b"]  # b fades, still shown
        assert table.total_count == 2
        clock.t += 2.5  # b faded long enough; c still new
        table._tick()
        assert table.visible_keys == ["a", "c"]
        assert table.is_new("c")
        clock.t += 1
        table._tick()
        assert not table.is_new("c")


@sync
async def test_vanished_row_that_returns_is_live_again():
    clock = FakeClock()
    table = make_table(clock)
    async with TableApp(table).run_test(size=(40, 10)):
        table.set_rows(rows(("a", 1), ("b", 2)))
        table.set_rows(rows(("a", 1)))
        assert table.is_vanishing("b")
        table.set_rows(rows(("a", 1), ("b", 5)))
        assert not table.is_vanishing("b")
        assert table.get_row("b")["n"] == 5
        assert table.visible_keys.count("b") == 1


@sync
async def test_click_header_sorts_and_click_row_moves_cursor():
    table = make_table()
    app = TableApp(table)
    async with app.run_test(size=(40, 10)) as pilot:
        table.set_rows(rows(("b", 2), ("a", 3), ("c", 1)))
        await pilot.click(VirtualTable, offset=(12, 0))  # header, column "N"
        assert table.sort_column == "n"
        assert table.visible_keys == ["c", "b", "a"]
        await pilot.click(VirtualTable, offset=(2, 3))  # third row
        assert table.cursor_key == "a"
        await pilot.click(VirtualTable, offset=(2, 3), times=2)
        await pilot.pause()
        assert app.activated == ["a"]


@sync
async def test_keyboard_sort_cycles_columns():
    table = make_table()
    async with TableApp(table).run_test(size=(40, 10)) as pilot:
        table.set_rows(rows(("b", 2), ("a", 3)))
        table.focus()
        await pilot.press("s")
        assert table.sort_column == "name"
        await pilot.press("s")
        assert table.sort_column == "n"
        await pilot.press("S")
        assert table.sort_reverse


@sync
async def test_only_visible_rows_are_formatted_and_big_refresh_is_fast():
    formatted = []

    def fmt(r):
        formatted.append(r)
        return str(r)

    cols = [Column("v", "V", 8, get=lambda r: r, fmt=fmt, justify="right")]
    table = VirtualTable(cols, key_fn=lambda r: r)
    async with TableApp(table).run_test(size=(30, 12)) as pilot:
        data = list(range(60_000))
        t0 = time.perf_counter()
        table.set_rows(data)
        table.sort_by("v", reverse=True)
        elapsed = time.perf_counter() - t0
        await pilot.pause()
        assert table.row_count == 60_000
        assert len(formatted) <= 12 * 3  # a screen or so, never 60k
        assert elapsed < 1.0  # generous for CI; the bench reports real numbers
        table.focus()
        await pilot.press("end")
        assert table.cursor_key == 0
        assert int(table.scroll_y) > 59_000


@pytest.mark.parametrize("n", [0, 1])
@sync
async def test_empty_and_single_row_cursor(n):
    table = make_table()
    app = TableApp(table)
    async with app.run_test(size=(40, 10)) as pilot:
        table.set_rows(rows(("a", 1))[:n])
        table.focus()
        await pilot.press("down", "up", "end", "home", "enter")
        await pilot.pause()
        assert table.cursor_key == ("a" if n else None)
        assert app.activated == (["a"] if n else [])


@sync
async def test_a_refresh_repaints_only_the_lines_whose_content_changed():
    """A rebuild whose visible rows draw the same as before repaints nothing; one changed row on screen
    repaints its line alone; a change off screen repaints nothing; anything that moves lines (a sort,
    a new row above) repaints the table."""
    table = make_table(fade_seconds=0, new_mark_seconds=0)
    app = TableApp(table)
    async with app.run_test(size=(40, 12)) as pilot:
        data = [{"name": f"r{i:04d}", "n": i} for i in range(500)]
        table.set_rows(data)
        await pilot.pause()
        calls: list = []
        orig_refresh, orig_lines = table.refresh, table.refresh_lines
        table.refresh = lambda *a, **k: (calls.append(("all", a)), orig_refresh(*a, **k))[1]
        table.refresh_lines = lambda y, n=1: (calls.append(("line", y)), orig_lines(y, n))[1]
        table.set_rows([dict(r) for r in data])  # new row objects, same content
        assert calls == []
        changed = [dict(r) for r in data]
        changed[3]["n"] = 9999  # on screen: the 4th row (line 4 under the header)
        changed[400]["n"] = -1  # far off screen
        table.set_rows(changed)
        assert [c for c in calls if c[0] == "line"] == [("line", 4)] and ("all", ()) not in calls
        await pilot.pause()
        assert "9999" in "".join(s.text for s in table.render_line(4))
        calls.clear()
        table.set_rows([{"name": "a0000", "n": 0}, *changed])  # a row above: every line moves
        assert ("all", ()) in calls
        calls.clear()
        table.sort_by("n", reverse=True)
        assert ("all", ()) in calls
