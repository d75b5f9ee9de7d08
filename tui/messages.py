"""Textual messages that cross widget boundaries, named as facts (something that happened).

The collector thread and the engines never touch widgets: they hand records to the UI thread, which
posts one of these. The lab panes never call each other: they post the facts below and the app routes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sockmon.core.lab.events import Event
from sockmon.core.records import Snapshot, Socket
from textual.message import Message

if TYPE_CHECKING:
    from sockmon.core.table.collector import Update


class SnapshotReady(Message):
    """A collection finished: ``update`` is the collector's `Update` (snapshot, diff, summary...).

    Newest wins: a SnapshotReady still queued is replaced by the next one (``can_replace``). That is safe
    because transitions do not travel in it: the app queues them losslessly (bounded) beside it.
    """

    def __init__(self, update: Update) -> None:
        super().__init__()
        self.update = update

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)

    @property
    def snapshot(self) -> Snapshot | None:
        return self.update.snapshot


class CollectionFailed(Message):
    """A collection raised; ``error`` is one line for the user."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


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
    """A lifecycle engine (built-in client or server) reported ``event``; ``origin`` names the engine;
    ``generation`` which of the Client pane's connects it belongs to (None: not counted)."""

    def __init__(self, event: Event, origin: str, generation: int | None = None) -> None:
        super().__init__()
        self.event = event
        self.origin = origin
        self.generation = generation


class ClientConnecting(Message):
    """The Client pane starts a new connection (``generation`` counts its connects)."""

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class ClientEndpointsKnown(Message):
    """The built-in client's connection has these endpoints (connect returned)."""

    def __init__(self, local, peer) -> None:
        super().__init__()
        self.local = local
        self.peer = peer


class ClientFdClosed(Message):
    """The built-in client's fd is closed; the kernel may still hold the 4-tuple (FIN_WAIT2, TIME_WAIT)."""


class ListenerRow(Message):
    """The app's latest snapshot holds ``socket`` (None: no row) for the built-in server's listener: its
    accept queue (Recv-Q queued / Send-Q backlog) shown in the Server pane. Posted by the app to that pane."""

    def __init__(self, socket: Socket | None) -> None:
        super().__init__()
        self.socket = socket


class ScenarioSockets(Message):
    """A scenario step names these connections (4-tuples as the table shows them): highlight their rows."""

    def __init__(self, four_tuples: tuple[tuple[str, int, str, int], ...]) -> None:
        super().__init__()
        self.four_tuples = four_tuples
