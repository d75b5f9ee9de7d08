"""A keyed table on Textual's Line API: only the visible rows are ever formatted.

DataTable measures and stores every cell of every row (≈2.4 s for 10k rows, docs/kernel-facts.md §5).
Here a refresh is: build ``key -> row`` (one dict), row marks (from the caller's diff, or the key
sets), filter, sort —
all plain Python over references — and ``render_line`` formats just the rows on screen.

Rows are any objects; ``key_fn(row)`` gives their identity across refreshes. The cursor follows its
row's key through re-sorts and refreshes. Rows that appear are marked for ``new_mark_seconds``; rows
that disappear stay ``fade_seconds`` (dim, struck through) before they leave. The rows, marks, filter,
sort and view live in a public model, ``table.rows`` (`KeyedRows`, tui/widgets/rows.py): ask it, not
this widget's internals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from sockmon.core.text import inert
from sockmon.tui.fmt import fit_span
from sockmon.tui.theme import HIGHLIGHT_STYLE, NEW_ROW_STYLE, VANISHING_STYLE
from sockmon.tui.widgets.columns import CellValue, Column, ColumnChoice, Layout, layout_columns
from sockmon.tui.widgets.rows import KeyedRows
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["CellValue", "Column", "ColumnChoice", "VirtualTable"]
FROZEN_DIVIDER = "│"  # drawn after the key columns while the table is scrolled sideways


class VirtualTable(ScrollView, can_focus=True):
    """Keyed, sortable, filterable table drawing only visible rows."""

    DEFAULT_CSS = """
    VirtualTable {
        height: 1fr;
        background: $surface;
        scrollbar-size-vertical: 1;
    }
    VirtualTable > .virtual-table--header {
        text-style: bold;
        background: $panel;
        color: $text;
    }
    VirtualTable > .virtual-table--cursor {
        background: $accent 60%;
        text-style: bold;
    }
    VirtualTable:blur > .virtual-table--cursor {
        background: $accent 25%;
        text-style: none;
    }
    """
    COMPONENT_CLASSES = {"virtual-table--header", "virtual-table--cursor"}

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "cursor_home", "First row", show=False),
        Binding("end", "cursor_end", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        Binding("enter", "activate", "Detail", show=True),
        Binding("s", "sort_next", "Sort", show=True),
        Binding("S", "sort_reverse", "Reverse", show=False),
        Binding("less_than_sign", "sort_prev", "Sort by previous column", show=False),
        Binding("greater_than_sign", "sort_next", "Sort by next column", show=False),
    ]

    cursor_index: reactive[int] = reactive(0, always_update=True, repaint=False)

    class CursorMoved(Message):
        """The cursor now rests on ``row`` (None: the table is empty)."""

        def __init__(self, table: VirtualTable, key: Hashable | None, row: Any | None, by_user: bool = False) -> None:
            super().__init__()
            self.table = table
            self.key = key
            self.row = row
            self.by_user = by_user  # a key or click moved it (not a refresh, filter or sort)

        @property
        def control(self) -> VirtualTable:
            return self.table

    class RowActivated(Message):
        """Enter or double click on ``row``."""

        def __init__(self, table: VirtualTable, key: Hashable, row: Any) -> None:
            super().__init__()
            self.table = table
            self.key = key
            self.row = row

        @property
        def control(self) -> VirtualTable:
            return self.table

    class SortChanged(Message):
        def __init__(self, table: VirtualTable, column: str, reverse: bool) -> None:
            super().__init__()
            self.table = table
            self.column = column
            self.reverse = reverse

        @property
        def control(self) -> VirtualTable:
            return self.table

    def __init__(
        self,
        columns: list[Column],
        *,
        key_fn: Callable[[Any], Hashable],
        sort_column: str | None = None,
        sort_reverse: bool = False,
        new_mark_seconds: float = 3.0,
        fade_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        empty_text: str = "no rows",
        name: str | None = None,
        id: str | None = None,  # noqa: A002 - Textual's own parameter name
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.all_columns = list(columns)  # every column the table has, as declared
        self._col_index = {c.key: i for i, c in enumerate(self.all_columns)}
        self.choice = ColumnChoice()  # the user's order / hidden columns (the column chooser)
        self.col_layout: Layout = layout_columns(self.all_columns, self.choice, 10_000)
        self.rows = KeyedRows(key_fn, new_mark_seconds=new_mark_seconds, fade_seconds=fade_seconds)
        self.sort_column = sort_column
        self.sort_reverse = sort_reverse
        self.clock = clock
        self.empty_text = empty_text
        self._cursor_key: Hashable | None = None
        self._mark_timer = None
        self._styles: dict[str, Style] = {}
        self._laid_out_for = -1  # the width the layout was computed for
        self.highlight: Callable[[Any], bool] | None = None  # rows it accepts are drawn highlighted
        self._painted: tuple | None = None  # _repaint: what the last rebuild left on screen, line by line

    # ------------------------------------------------------------------ the model's parts
    @property
    def key_fn(self) -> Callable[[Any], Hashable]:
        return self.rows.key_fn

    @property
    def _rows(self) -> dict[Hashable, Any]:
        return self.rows.rows

    @property
    def _added(self) -> dict[Hashable, float]:
        return self.rows.added

    @property
    def _gone(self) -> dict[Hashable, tuple[Any, float]]:
        return self.rows.gone

    @property
    def _view(self) -> list[Hashable]:
        return self.rows.view

    @property
    def _filter(self) -> Callable[[Any], bool] | None:
        return self.rows.filter

    # ------------------------------------------------------------------ data
    @property
    def row_count(self) -> int:
        """Rows shown (after the filter, including fading ones)."""
        return len(self._view)

    @property
    def total_count(self) -> int:
        """Live rows (before the filter, without fading ones)."""
        return len(self._rows)

    @property
    def filtered(self) -> bool:
        return self._filter is not None

    @property
    def live_row_count(self) -> int:
        """Rows shown that are still live (fading ones left out)."""
        gone = self._gone
        return len(self._view) if not gone else sum(1 for k in self._view if k not in gone)

    @property
    def visible_keys(self) -> list[Hashable]:
        return list(self._view)

    def visible_rows(self) -> list[Any]:
        """Every row the filter lets through, in display order (on screen or reached by scrolling)."""
        return [self.get_row(k) for k in self._view]

    def on_screen_rows(self) -> list[Any]:
        """The rows drawn now: those in the viewport below the header (none when the table is not on
        screen). What the event-driven collector refreshes each tick (tui/app.py ``_tell_visible``)."""
        if not self.region.area:
            return []
        top = self.scroll_offset.y
        height = max(0, self.scrollable_content_region.height - 1)  # the header takes the first line
        get = self.rows.get_row
        return [get(k) for k in self._view[top: top + height]]

    def get_row(self, key: Hashable) -> Any | None:
        return self.rows.get_row(key)

    def is_new(self, key: Hashable) -> bool:
        return self.rows.is_new(key)

    def is_vanishing(self, key: Hashable) -> bool:
        return self.rows.is_vanishing(key)

    @property
    def cursor_key(self) -> Hashable | None:
        return self._cursor_key

    @property
    def cursor_row(self) -> Any | None:
        return None if self._cursor_key is None else self.get_row(self._cursor_key)

    def set_rows(self, rows: Iterable[Any], now: float | None = None, *, added: Iterable[Any] | None = None,
                 removed: Iterable[Any] | None = None) -> None:
        """Replace the table's content. ``added`` / ``removed``: the rows that appeared / left, when the
        caller knows (the core's snapshot diff); else the key sets are compared."""
        self.rows.set_rows(rows, self.clock() if now is None else now, added=added, removed=removed)
        self._rebuild()

    def set_key_fn(self, key_fn: Callable[[Any], Hashable]) -> None:
        """Change how rows are identified (e.g. socket cookie vs 4-tuple); marks are reset, not invented."""
        if self.rows.set_key_fn(key_fn):
            self._cursor_key = None
            self._rebuild()

    def set_filter(self, predicate: Callable[[Any], bool] | None) -> None:
        self.rows.filter = predicate
        self._rebuild()

    def sort_by(self, column: str | None, reverse: bool | None = None) -> None:
        """Sort on ``column``; the same column again flips the order unless ``reverse`` is given."""
        if column is not None and column not in self._col_index:
            raise KeyError(f"no column {column!r}")
        if reverse is None:
            reverse = (not self.sort_reverse) if column == self.sort_column else False
        self.sort_column = column
        self.sort_reverse = reverse
        self._rebuild()
        if column is not None:
            self.post_message(self.SortChanged(self, column, reverse))

    def column_label(self, key: str) -> str:
        """The header of column ``key`` (the key itself when there is no such column)."""
        index = self._col_index.get(key)
        return self.all_columns[index].label if index is not None else key

    def move_cursor_to_key(self, key: Hashable, by_user: bool = True) -> bool:
        try:
            index = self._view.index(key)
        except ValueError:
            return False
        self._set_cursor(index, by_user=by_user)
        return True

    # ------------------------------------------------------------------ columns
    @property
    def columns(self) -> list[Column]:
        """The columns drawn, in display order, with their laid-out widths: those on screen first, then
        those reached by scrolling sideways (hidden ones left out)."""
        return list(self.col_layout.columns)

    @property
    def _total_width(self) -> int:
        return self.col_layout.total_width

    @property
    def frozen_width(self) -> int:
        return self.col_layout.frozen_width

    @property
    def on_screen_keys(self) -> list[str]:
        return [c.key for c in self.col_layout.columns[: self.col_layout.on_screen]]

    @property
    def off_screen_keys(self) -> list[str]:
        return [c.key for c in self.col_layout.off_screen]

    def layout_width(self) -> int:
        """Cells a row may use: the widget's width less the vertical scrollbar (always reserved, so the
        layout does not jump when rows start to need one)."""
        return max(0, self.size.width - int(self.styles.scrollbar_size_vertical or 0))

    def set_choice(self, choice: ColumnChoice) -> None:
        """The user's column order / visibility (kept across refreshes: rows never touch it)."""
        self.choice = choice
        self._relayout(force=True)
        self.scroll_to(x=0, animate=False, immediate=True)  # the columns moved: start from the left again

    def preview(self, choice: ColumnChoice) -> Layout:
        """The layout ``choice`` would give at the current width (the column chooser shows it)."""
        return layout_columns(self.all_columns, choice, self.layout_width() or 10_000)

    def _relayout(self, force: bool = False) -> None:
        width = self.layout_width()
        if not width or (width == self._laid_out_for and not force):
            return
        self._laid_out_for = width
        self.col_layout = layout_columns(self.all_columns, self.choice, width)
        self.virtual_size = Size(self._total_width, len(self._view) + 1)
        self.scroll_to(x=min(self.scroll_x, max(0, self._total_width - width)), animate=False, immediate=True)
        self.refresh()

    def set_columns(self, columns: list[Column]) -> None:
        """Declare these columns (e.g. with or without a Netns column); the user's choice still orders
        them; a sort on a column that left is dropped."""
        self.all_columns = list(columns)
        self._col_index = {c.key: i for i, c in enumerate(self.all_columns)}
        if self.sort_column is not None and self.sort_column not in self._col_index:
            self.sort_column = None
        self.col_layout = layout_columns(self.all_columns, self.choice, self.layout_width() or 10_000)
        self._relayout(force=True)
        self._rebuild()

    @property
    def needs_horizontal_scroll(self) -> bool:
        return self._total_width > self.scrollable_content_region.width

    # --------------------------------------------------------------- internals
    def _expire_marks(self, now: float) -> bool:
        return self.rows.expire(now)

    def _rebuild(self) -> None:
        rows = self.rows
        if self.sort_column is not None:
            col = self.all_columns[self._col_index[self.sort_column]]
            rows.sort_get, rows.sort_comparable = col.get, col.comparable
        else:
            rows.sort_get = None
        rows.sort_reverse = self.sort_reverse
        rows.rebuild()
        # The cursor follows its key; if the key left, stay at the same index.
        index = self.cursor_index
        if self._cursor_key is not None:
            try:
                index = self._view.index(self._cursor_key)
            except ValueError:
                pass
        self.virtual_size = Size(self._total_width, len(self._view) + 1)
        self._set_cursor(index, force_message=True, repaint=False)
        self._repaint()

    def _screen_lines(self) -> tuple:
        """What the rows in the viewport show: per line its key, cell values, cell styles and marks (what
        `_row_strip` draws from), plus what moves every line (scroll, size, columns, sort)."""
        top = self.scroll_offset.y
        height = max(0, self.scrollable_content_region.height - 1)
        cols = self.columns
        gone, added, highlight, cursor = self._gone, self._added, self.highlight, self.cursor_index
        lines = []
        for i in range(top, min(top + height, len(self._view))):
            key = self._view[i]
            row = self.get_row(key)
            cells = tuple(c.fmt(row) if c.fmt is not None else c.get(row) for c in cols)
            styles = tuple(c.style(row) for c in cols if c.style is not None)
            lines.append((key, cells, styles, key in gone, key in added, i == cursor,
                          highlight is not None and bool(highlight(row))))
        frame = (self.scroll_offset, self.size, self.sort_column, self.sort_reverse,
                 tuple((c.key, c.width) for c in cols), len(self._view) if len(self._view) < top + height else -1)
        return frame, lines

    def _repaint(self) -> None:
        """Repaint after a rebuild: only the lines whose content changed when nothing moved them (a
        refresh of the event-driven table re-reads the rows on screen and most draw the same again);
        a repaint of the whole table costs about as much as the refresh itself."""
        if not self.region.area:
            self._painted = None
            self.refresh()
            return
        try:
            now = self._screen_lines()
        except Exception:  # noqa: BLE001 - a formatter's bug shows when drawn; here: repaint everything
            now = None
        before, self._painted = self._painted, now
        if now is None or before is None or before[0] != now[0] or len(before[1]) != len(now[1]):
            self.refresh()
            return
        top = self.scroll_offset.y
        for i, (a, b) in enumerate(zip(before[1], now[1], strict=True)):
            if a != b:
                self.refresh_lines(top + i + 1)  # virtual lines: the header is line 0

    def _set_cursor(self, index: int, force_message: bool = False, by_user: bool = False,
                    repaint: bool = True) -> None:
        n = len(self._view)
        index = max(0, min(index, n - 1)) if n else 0
        key = self._view[index] if n else None
        moved = key != self._cursor_key
        self._cursor_key = key
        self.cursor_index = index
        self._scroll_cursor_into_view()
        if repaint:
            self._painted = None  # repainted whole: the next rebuild compares with nothing
            self.refresh()
        if moved:
            self.post_message(self.CursorMoved(self, key, self.get_row(key) if key is not None else None, by_user))

    def _scroll_cursor_into_view(self) -> None:
        body = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_y)
        index = self.cursor_index
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + body:
            self.scroll_to(y=index - body + 1, animate=False, immediate=True)

    def _tick(self) -> None:
        if self._expire_marks(self.clock()):
            self._rebuild()

    def on_mount(self) -> None:
        super().on_mount()
        self._mark_timer = self.set_interval(0.5, self._tick)

    def on_resize(self) -> None:
        self._relayout()
        self._scroll_cursor_into_view()

    # --------------------------------------------------------------- drawing
    def _cell(self, text: CellValue, width: int, justify: str, style: Style,
              overflow: str = "end") -> list[Segment]:
        # Cells hold outside text (process names, users): whatever a formatter forgot, no control
        # character reaches the terminal (Segments are written as they are; inert() is one scan).
        if isinstance(text, Text):
            plain = text.plain
            if inert(plain) is not plain:
                text = Text(inert(plain), style=text.style)
                plain = text.plain
            if len(plain) > width:
                head, tail = fit_span(plain, width, overflow)
                text = text[:head] + Text("…") + (text[len(plain) - tail:] if tail else Text(""))
            text = text.copy()
            pad = width - text.cell_len
            if pad > 0:
                if justify == "right":
                    text = Text(" " * pad) + text
                else:
                    text.append(" " * pad)
            return [Segment(s.text, style + s.style if s.style else style)
                    for s in text.render(self.app.console)]
        text = inert(text)
        if len(text) > width:
            head, tail = fit_span(text, width, overflow)
            text = text[:head] + "…" + (text[len(text) - tail:] if tail else "")
        text = text.rjust(width) if justify == "right" else text.ljust(width)
        return [Segment(text, style)]

    def _header_strip(self) -> Strip:
        base = self._styles["header"]
        segs: list[Segment] = []
        for col in self.columns:
            label = col.label
            if col.key == self.sort_column:  # the arrow always shows: cut the label for it, not the arrow
                label = f"{label[: max(0, col.width - 1)]}{'▼' if self.sort_reverse else '▲'}"
            segs.extend(self._cell(label, col.width, col.justify, base))
            segs.append(Segment(" ", base))
        return Strip(segs)

    def _row_strip(self, index: int) -> Strip:
        key = self._view[index]
        row = self.get_row(key)
        style = self._styles["base"]
        if key in self._gone:
            style = style + VANISHING_STYLE
        elif key in self._added:
            style = style + NEW_ROW_STYLE
        if self.highlight is not None and self.highlight(row):
            style = style + HIGHLIGHT_STYLE
        if index == self.cursor_index:
            style = style + self._styles["cursor"]
        segs: list[Segment] = []
        for col in self.columns:
            value = col.fmt(row) if col.fmt is not None else col.get(row)
            if value is None:
                value = ""
            elif not isinstance(value, (str, Text)):
                value = str(value)
            cell_style = style
            if col.style is not None:
                extra = col.style(row)
                if extra is not None:
                    cell_style = style + extra
                    if index == self.cursor_index:
                        cell_style = cell_style + self._styles["cursor"]
            segs.extend(self._cell(value, col.width, col.justify, cell_style, col.overflow))
            segs.append(Segment(" ", style))
        return Strip(segs)

    def render_lines(self, crop):  # type: ignore[override]
        # Resolve component styles once per frame, not once per line.
        base = self.rich_style
        self._styles = {
            "base": base,
            "header": base + self.get_component_rich_style("virtual-table--header"),
            "cursor": self.get_component_rich_style("virtual-table--cursor"),
        }
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        full = self.scrollable_content_region.width
        # draw no further than the layout's width: the cell kept for the vertical scrollbar stays blank
        # rather than showing the first letter of a column that is off screen
        width = min(full, self.layout_width()) if self._total_width > self.layout_width() else full
        scroll_x, scroll_y = self.scroll_offset
        base = self._styles.get("base") or self.rich_style
        if y == 0:
            strip = self._header_strip()
        else:
            index = scroll_y + y - 1
            if 0 <= index < len(self._view):
                strip = self._row_strip(index)
            elif index == 0 and not self._view:
                strip = Strip([Segment(f" {self.empty_text}", base + Style(dim=True, italic=True))])
            else:
                return Strip.blank(width, base)
        frozen = self.col_layout.frozen_width
        if frozen and scroll_x and frozen < width:
            # the key columns stay put; the rest scrolls under them, after a divider
            left = strip.crop_extend(0, frozen - 1, base)
            divider = Strip([Segment(FROZEN_DIVIDER, base + Style(dim=True))])
            right = strip.crop_extend(frozen + scroll_x, scroll_x + width, base)
            return Strip.join([left, divider, right]).extend_cell_length(full, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base).extend_cell_length(full, base)

    # --------------------------------------------------------------- input
    def _boundaries(self) -> list[int]:
        """scroll_x values that put a scrolling column right after the key columns."""
        out, left = [], 0
        for col in self.col_layout.columns[self.col_layout.frozen:]:
            out.append(left)
            left += col.width + 1
        return out

    def action_scroll_right(self) -> None:
        """One column to the right (not one cell: a 40-column table is a few presses, not 40)."""
        limit = max(0, self._total_width - self.scrollable_content_region.width)
        x = int(self.scroll_x)
        nxt = next((b for b in self._boundaries() if b > x), limit)
        self.scroll_to(x=min(nxt, limit), animate=False, immediate=True)

    def action_scroll_left(self) -> None:
        x = int(self.scroll_x)
        prev = [b for b in self._boundaries() if b < x]
        self.scroll_to(x=prev[-1] if prev else 0, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self._set_cursor(self.cursor_index - 1, by_user=True)

    def action_cursor_down(self) -> None:
        self._set_cursor(self.cursor_index + 1, by_user=True)

    def action_page_up(self) -> None:
        self._set_cursor(self.cursor_index - max(1, self.scrollable_content_region.height - 2), by_user=True)

    def action_page_down(self) -> None:
        self._set_cursor(self.cursor_index + max(1, self.scrollable_content_region.height - 2), by_user=True)

    def action_cursor_home(self) -> None:
        self._set_cursor(0, by_user=True)

    def action_cursor_end(self) -> None:
        self._set_cursor(len(self._view) - 1, by_user=True)

    def action_activate(self) -> None:
        key = self._cursor_key
        if key is not None:
            self.post_message(self.RowActivated(self, key, self.get_row(key)))

    def _sort_step(self, step: int) -> None:
        keys = [c.key for c in self.columns]
        if self.sort_column in keys:
            nxt = keys[(keys.index(self.sort_column) + step) % len(keys)]
        else:
            nxt = keys[0]
        self.sort_by(nxt, reverse=False)

    def action_sort_next(self) -> None:
        self._sort_step(1)

    def action_sort_prev(self) -> None:
        self._sort_step(-1)

    def action_sort_reverse(self) -> None:
        if self.sort_column is None:
            self.sort_by(self.col_layout.columns[0].key, reverse=True)
        else:
            self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def column_at(self, x: int) -> Column | None:
        """The column under content x (the frozen key columns do not scroll)."""
        if x >= self.col_layout.frozen_width:
            x += int(self.scroll_x)
        left = 0
        for col in self.columns:
            if left <= x < left + col.width + 1:
                return col
            left += col.width + 1
        return None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            col = self.column_at(offset.x)
            if col is not None:
                self.sort_by(col.key)
            return
        index = int(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self._view):
            self._set_cursor(index, by_user=True)
            if event.chain >= 2:
                self.action_activate()
