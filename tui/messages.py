"""Textual messages that cross widget boundaries, named as facts (something that happened).

The collector thread and the engines never touch widgets: they hand records to the UI thread, which
posts one of these. Lab-pane authors may append message classes here (additively).
"""

from __future__ import annotations

from typing import Any

from sockmon.core.lab.events import Event
from sockmon.core.records import Snapshot, Socket, Transition
from textual.message import Message


class SnapshotReady(Message):
    """A collection finished: ``update`` is the collector's frozen Update (snapshot, diff, summary...)."""

    def __init__(self, update: Any) -> None:
        super().__init__()
        self.update = update

    @property
    def snapshot(self) -> Snapshot | None:
        return getattr(self.update, "snapshot", None)


UpdateReady = SnapshotReady  # same fact, the collector's own word for it


class CollectionFailed(Message):
    """A collection raised; ``error`` is one line for the user."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class TransitionsSeen(Message):
    """Kernel state transitions arrived (tracepoint or inferred from snapshot diffs)."""

    def __init__(self, transitions: list[Transition]) -> None:
        super().__init__()
        self.transitions = transitions


class SocketSelected(Message):
    """The cursor of a socket list moved to ``socket`` (None when the list is empty)."""

    def __init__(self, socket: Socket | None, origin: str = "", by_user: bool = False) -> None:
        super().__init__()
        self.socket = socket
        self.origin = origin
        self.by_user = by_user  # the user moved the cursor (key/click), not a refresh


class SocketActivated(Message):
    """The user pressed Enter (or double-clicked) on ``socket``: open its detail."""

    def __init__(self, socket: Socket, origin: str = "") -> None:
        super().__init__()
        self.socket = socket
        self.origin = origin


class EngineEvent(Message):
    """A lifecycle engine (built-in client or server) reported ``event``; ``origin`` names the engine."""

    def __init__(self, event: Event, origin: str) -> None:
        super().__init__()
        self.event = event
        self.origin = origin
