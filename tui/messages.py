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


class ProcessActivated(Message):
    """Enter on a row of the process view: show that process's connections (pid 0: no known owner)."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid


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


class LadderPacketsCaptured(Message):
    """The built-in client's packet capture queued packets in ``queue`` (a
    `sockmon.core.lab.ladder.PacketQueue`, drained by whoever handles this) for connect ``generation``.
    Posted from the capture thread once per batch (when the queue was empty), not once per packet."""

    def __init__(self, queue, generation: int | None) -> None:
        super().__init__()
        self.queue = queue
        self.generation = generation


class LadderUnavailableSeen(Message):
    """No packet capture can run for the built-in client's connection (e.g. not root): ``reason``."""

    def __init__(self, reason: str, generation: int | None) -> None:
        super().__init__()
        self.reason = reason
        self.generation = generation


class ListenerRow(Message):
    """The app's latest snapshot holds ``socket`` (None: no row) for the built-in server's listener: its
    accept queue (Recv-Q queued / Send-Q backlog) shown in the Server pane. Posted by the app to that pane."""

    def __init__(self, socket: Socket | None) -> None:
        super().__init__()
        self.socket = socket


class NamesResolved(Message):
    """The host-name resolver thread answered one or more lookups: the lists redraw (names replace
    numbers). Posted at most once until the app handled it (coalesced)."""


class ColumnsRequested(Message):
    """The user asked for the column chooser of ``table`` (a VirtualTable) in the pane ``origin``."""

    def __init__(self, table, origin: str = "") -> None:
        super().__init__()
        self.table = table
        self.origin = origin


class KillRequested(Message):
    """The user pressed ``k`` on ``socket`` in a socket list (None: the list is empty): the app asks for
    confirmation and kills it (SOCK_DESTROY) in ``netns``, the namespace the list shows (None: ours)."""

    def __init__(self, socket: Socket | None, origin: str = "", netns: str | None = None) -> None:
        super().__init__()
        self.socket = socket
        self.origin = origin
        self.netns = netns


class ClosedActivated(Message):
    """The user pressed Enter on a closed connection in the History pane: open its record."""

    def __init__(self, record) -> None:
        super().__init__()
        self.record = record  # sockmon.core.table.closed.ClosedConnection


class ScenarioSockets(Message):
    """A scenario step names these connections (4-tuples as the table shows them): highlight their rows."""

    def __init__(self, four_tuples: tuple[tuple[str, int, str, int], ...]) -> None:
        super().__init__()
        self.four_tuples = four_tuples
