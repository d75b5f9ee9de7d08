"""Events that the lifecycle engines (client, server) report, with monotonic and wall-clock timestamps.

Engines run off the UI thread and hand each Event to an ``on_event`` callback from their own thread;
a UI turns them into messages, the headless CLI prints them (JSON: `sockmon.core.jsonout`).
An Event is a ``msgspec.Struct(frozen=True, gc=False)``: immutable, read by field name, not tracked
by the cyclic GC — so a field must never hold something that refers back to its event (a cycle
through an untracked object is never collected). `sockmon.core.jsonout.event_out` writes every field.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sockmon.core.lab.options import SocketOptions

from msgspec import Struct
from sockmon.core.jsonout import iso_time


class EventKind(StrEnum):
    CALL = "call"  # a socket call was made: detail names it ("connect(127.0.0.1:8080)")
    RETURNED = "returned"  # the call returned successfully
    FAILED = "failed"  # the call failed: errno_name/meaning/action set
    STATE = "state"  # kernel state observed (TCP_INFO or socket table): state set
    BYTES_IN = "bytes_in"  # nbytes received, data holds them
    BYTES_OUT = "bytes_out"  # nbytes sent
    PEER_CLOSED = "peer_closed"  # recv() returned 0: orderly shutdown by the peer
    RESET = "reset"  # ECONNRESET / RST seen
    ERROR = "error"  # any other failure
    OPTION = "option"  # an option changed: detail holds the value read back from the kernel
    ACCEPTED = "accepted"  # server: a client was accepted (conn names it)
    CLOSED = "closed"  # our fd is closed (conn names it)
    INFO = "info"  # anything else worth a timeline line (listening, stopped, mode changed...)


class Event(Struct, frozen=True, gc=False):
    kind: EventKind
    detail: str = ""
    ts: float = 0.0  # time.monotonic(); filled by make_event
    conn: str | None = None  # which connection: "client", or the peer "127.0.0.1:51234" for a server
    state: str | None = None  # for STATE: kernel state name (ESTABLISHED, FIN_WAIT2...)
    nbytes: int | None = None
    data: bytes | None = None
    errno_name: str | None = None
    meaning: str | None = None
    action: str | None = None
    # typed payloads (added last, with defaults): options as read back from the kernel in the engine thread
    # (OPTION events, and RETURNED for a connect/accept), and the connection's endpoints when known
    options: SocketOptions | None = None
    local: tuple[str, int] | None = None
    peer: tuple[str, int] | None = None
    # wall-clock time (time.time(), seconds since the epoch) filled by make_event: lines up with tcpdump and
    # logs; ``ts`` (monotonic) stays the one to order and subtract events by
    wall: float = 0.0

    @property
    def time(self) -> str:
        """The wall-clock time as ISO 8601 UTC with microseconds: ``2026-11-26T14:05:01.123456Z``."""
        return iso_time(self.wall)

    def line(self) -> str:
        """One human-readable line, as the headless CLI prints it: wall-clock time first; received bytes
        (``<``) and sent bytes (``>``) follow as text, every non-printable byte escaped (`core/text.py`)."""
        parts = [self.time, f"{self.kind.value:<11}"]
        if self.conn:
            parts.append(f"[{self.conn}]")
        if self.state:
            parts.append(self.state)
        if self.detail:
            parts.append(self.detail)
        if self.nbytes is not None and self.kind in (EventKind.BYTES_IN, EventKind.BYTES_OUT):
            parts.append(f"{self.nbytes} bytes")
            if self.data is not None:
                from sockmon.core.text import inert_bytes

                arrow = "<" if self.kind is EventKind.BYTES_IN else ">"
                more = f" …(+{self.nbytes - len(self.data)} bytes)" if self.nbytes > len(self.data) else ""
                parts.append(f"{arrow} {inert_bytes(self.data)}{more}")
        if self.errno_name:
            parts.append(f"{self.errno_name}: {self.meaning} ({self.action})")
        return " ".join(parts)


def make_event(kind: EventKind, detail: str = "", **kw) -> Event:
    kw.setdefault("wall", time.time())
    return Event(kind, detail, time.monotonic(), **kw)
