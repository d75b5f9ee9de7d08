"""Column chooser (``C`` in a socket list): reorder, show and hide the list's columns.

Top to bottom is left to right, and the order is also which columns stay on screen when the terminal is
narrow: the first ones that fit are shown, the rest are reached with ←/→ (the key columns, State and
Local, never scroll away and cannot be hidden or moved). Every change applies at once to the list
behind; the app keeps the result for the session (and saves it, see tui/widgets/columns.py).
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from sockmon.tui.widgets.columns import ColumnChoice, resolve_order
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = "↑↓ select · Space show/hide · Shift+↑↓ or K/J move · r defaults · Enter/Esc done"


class ColumnChooser(ModalScreen[ColumnChoice]):
    DEFAULT_CSS = """
    ColumnChooser { align: center middle; }
    ColumnChooser > Vertical { width: 64; max-width: 100%; height: auto; max-height: 100%;
                               border: thick $accent; background: $surface; padding: 0 1; }
    ColumnChooser #columns-list { height: auto; }
    ColumnChooser #columns-about { height: auto; min-height: 2; color: $text; }
    ColumnChooser #columns-help { height: auto; color: $text-muted; }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("space,x", "toggle", "Show/hide", show=True),
        Binding("shift+up,K", "move(-1)", "Move up", show=True),
        Binding("shift+down,J", "move(1)", "Move down", show=True),
        Binding("r", "defaults", "Defaults", show=True),
        Binding("enter,escape,q,C", "done", "Done", show=True),
    ]

    def __init__(self, table, title: str = "Columns") -> None:
        super().__init__()
        self.table = table
        self.title_text = title
        self.columns = {c.key: c for c in table.all_columns}
        self.order = resolve_order(table.all_columns, table.choice)
        self.hidden = set(table.choice.hidden)
        self.cursor = next((i for i, k in enumerate(self.order) if not self.columns[k].frozen), 0)

    @property
    def choice(self) -> ColumnChoice:
        return ColumnChoice(tuple(self.order), frozenset(self.hidden))

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="columns-list")
            yield Static(id="columns-about")
            yield Static(HELP, id="columns-help", markup=False)

    def on_mount(self) -> None:
        self.query_one(Vertical).border_title = self.title_text
        self._draw()

    def rendered_lines(self) -> list[str]:
        """The list as plain text lines (tests read it)."""
        layout = self.table.preview(self.choice)
        on = {c.key for c in layout.columns[: layout.on_screen]}
        lines = []
        for i, key in enumerate(self.order):
            col = self.columns[key]
            mark = "■" if col.frozen else ("☐" if key in self.hidden else "☑")
            where = ("key column, stays put" if col.frozen else "hidden" if key in self.hidden
                     else "on screen" if key in on else "→ scroll sideways")
            lines.append(f"{'›' if i == self.cursor else ' '} {mark} {col.label:<24} {where}")
        return lines

    def _draw(self) -> None:
        layout = self.table.preview(self.choice)
        on = {c.key for c in layout.columns[: layout.on_screen]}
        t = Table.grid(padding=(0, 1))
        t.add_column(no_wrap=True)
        t.add_column(no_wrap=True, min_width=24)
        t.add_column(no_wrap=True)
        for i, key in enumerate(self.order):
            col = self.columns[key]
            selected = i == self.cursor
            if col.frozen:
                mark, where, style = "■", Text("key column, stays put", style="#56b6c2"), ""
            elif key in self.hidden:
                mark, where, style = "☐", Text("hidden", style="dim"), "dim"
            elif key in on:
                mark, where, style = "☑", Text("on screen", style="#4ec94e"), ""
            else:
                mark, where, style = "☑", Text("→ scroll sideways", style="#e5c07b"), ""
            row_style = "reverse" if selected else ""
            t.add_row(Text(f"{'›' if selected else ' '} {mark}", style=row_style),
                      Text(col.label, style=f"{style} {row_style}".strip()), where)
        self.query_one("#columns-list", Static).update(t)
        col = self.columns[self.order[self.cursor]]
        about = Text(f"{col.label}: ", style="bold")
        about.append(col.help or "—")
        self.query_one("#columns-about", Static).update(about)

    def _apply(self) -> None:
        self.table.set_choice(self.choice)
        self._draw()

    def action_cursor(self, step: int) -> None:
        self.cursor = max(0, min(len(self.order) - 1, self.cursor + step))
        self._draw()

    def action_toggle(self) -> None:
        key = self.order[self.cursor]
        if self.columns[key].frozen:
            self.notify("the key columns stay (they are what the rows are)", severity="warning")
            return
        self.hidden.symmetric_difference_update({key})
        self._apply()

    def action_move(self, step: int) -> None:
        i, j = self.cursor, self.cursor + step
        if not 0 <= j < len(self.order):
            return
        if self.columns[self.order[i]].frozen or self.columns[self.order[j]].frozen:
            return  # the key columns stay first
        self.order[i], self.order[j] = self.order[j], self.order[i]
        self.cursor = j
        self._apply()

    def action_defaults(self) -> None:
        self.order = resolve_order(self.table.all_columns, None)
        self.hidden = set()
        self._apply()

    def action_done(self) -> None:
        self.dismiss(self.choice)
