"""The built-in client pane (lab). Placeholder while the full pane is being built."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static


class ClientPane(Vertical):
    """The built-in client pane."""

    def compose(self) -> ComposeResult:
        yield Static("built-in client: coming up")
