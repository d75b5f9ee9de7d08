"""The Diagram pane: a filter line and the drawing of the app's `StateDiagram`.

The app owns the model (core/table/statemachine.py), feeds it every update and calls `show()`; the pane
only draws it and applies its own filter line (the filter language of every list, core/table/filter.py).
"""

from __future__ import annotations

from rich.text import Text
from sockmon.core.records import Socket
from sockmon.core.table.statemachine import StateDiagram
from sockmon.tui.diagram.canvas import draw
from sockmon.tui.widgets.filter_line import read_filter_line
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Input, Static


class DiagramView(Widget, can_focus=True):
    DEFAULT_CSS = "DiagramView { height: 1fr; width: 1fr; }"

    def __init__(self, model: StateDiagram, **kw) -> None:
        super().__init__(**kw)
        self.model = model
        self.source = ""

    def render(self) -> Text:
        width = self.size.width
        lines = draw(self.model, width, self.size.height, self.source)
        for line in lines:
            line.truncate(width, overflow="ellipsis")  # one screen line each: never wrapped
        out = Text("\n").join(lines)
        out.no_wrap = True
        return out


class DiagramPane(Vertical):
    DEFAULT_CSS = """
    DiagramPane { height: 1fr; }
    DiagramPane #diagram-filter { height: 1; border: none; padding: 0 1; }
    DiagramPane #diagram-filter-error { height: auto; display: none; }
    DiagramPane #diagram-filter-error.-shown { display: block; }
    """
    BINDINGS = [Binding("slash", "focus_filter", "Filter", show=False)]

    def __init__(self, model: StateDiagram, **kw) -> None:
        super().__init__(**kw)
        self.model = model
        self._owners: dict = {}
        self.filter_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ filter (as in every list): counts and edges of matching sockets",
                    id="diagram-filter")
        yield Static("", id="diagram-filter-error")
        yield DiagramView(self.model, id="diagram-view")

    @property
    def view(self) -> DiagramView:
        return self.query_one(DiagramView)

    def owner_of(self, sock: Socket):
        return self._owners.get(sock.inode) if sock.inode else None

    def show(self, owners=None, source: str = "") -> None:
        """The model changed: redraw (cheap when the tab is hidden: drawing happens on paint)."""
        if owners is not None:
            self._owners = owners
        view = self.view
        view.source = source
        view.refresh()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "diagram-filter":
            return
        event.stop()
        self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.view.focus()

    def apply_filter(self, text: str) -> bool:
        ok, pred, self.filter_error = read_filter_line(text, self.owner_of,
                                                       self.query_one("#diagram-filter-error", Static))
        if ok:
            self.model.set_filter(pred, text.strip())
            self.view.refresh()
        return ok

    def action_focus_filter(self) -> None:
        self.query_one("#diagram-filter", Input).focus()

    def focus_view(self) -> None:
        self.view.focus()
