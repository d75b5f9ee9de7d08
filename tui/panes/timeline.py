"""The connection timeline pane (lab). Placeholder while the full pane is being built."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static


class TimelinePane(Vertical):
    """The connection timeline pane."""

    def compose(self) -> ComposeResult:
        yield Static("connection timeline: coming up")

    def show_socket(self, sock) -> None:  # noqa: D401 - interface for the app
        pass

    def add_transitions(self, transitions) -> None:
        pass

    def add_events(self, events) -> None:
        pass
