"""The built-in server pane (lab). Placeholder while the full pane is being built."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static


class ServerPane(Vertical):
    """The built-in server pane."""

    def compose(self) -> ComposeResult:
        yield Static("built-in server: coming up")
