"""How the headless commands write to stdout: whole lines, thread-safe, never killed by a closed pipe."""

from __future__ import annotations

import os
import select
import sys
import threading

from sockmon.core.text import inert


def write_all(fd: int, data: bytes) -> None:
    """Write every byte, even when a signal interrupts a write blocked on a full pipe.

    (A large ``sys.stdout.write`` blocked on a pipe and interrupted by SIGINT/SIGTERM can lose the
    rest of its data in CPython's buffered layer; a plain os.write loop keeps partial writes exact.)
    """
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[n:]


SENT_SHOWN = 256  # text lines show at most this much of what was sent (received bytes are shown whole)


class EventPrinter:
    """Prints engine events (``Event.line()``, or one JSON object per line: `sockmon.core.jsonout`)
    from any thread.

    Text lines start with the wall-clock time and show received bytes (``<``) with every non-printable
    byte escaped, and the start of what was sent (``>``, SENT_SHOWN bytes of each send; JSON too: the
    received bytes are the output, what was sent is the user's own input). ``raw``: received bytes go to stdout unchanged
    and every event line (text or JSON) to stderr, so ``sockmon connect … --raw > reply.bin`` keeps the
    reply byte for byte."""

    def __init__(self, as_json: bool, *, raw: bool = False) -> None:
        self.as_json = as_json
        self.raw = raw
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        import msgspec  # here, not at import: every command's parser imports this module

        from sockmon.core.jsonout import event_line
        from sockmon.core.lab.events import EventKind

        kind = event.kind
        data = event.data
        shown = event
        if data is not None and kind is EventKind.BYTES_OUT and len(data) > SENT_SHOWN:
            shown = msgspec.structs.replace(event, data=data[:SENT_SHOWN])  # nbytes still counts them all
        if self.as_json:
            line = event_line(shown)
        else:
            if self.raw and kind is EventKind.BYTES_IN:
                shown = msgspec.structs.replace(event, data=None)  # the bytes themselves go to stdout
            # a text line carries peer bytes, addresses and errors: inert (Event.line escapes the bytes)
            line = (inert(shown.line()) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            try:
                if self.raw:
                    if kind is EventKind.BYTES_IN and data:
                        write_all(fileno_of_stdout(), data)
                    write_all(fileno_of_stderr(), line)
                else:
                    write_all(fileno_of_stdout(), line)
            except (BrokenPipeError, ValueError):  # reader went away / stdout closed at exit
                pass
            self.seen(event)

    def seen(self, event) -> None:
        """Hook for subclasses, called under the lock after printing."""

    def ladder(self, packet) -> None:
        """One packet of the ladder (`sockmon.core.lab.ladder.LadderPacket`), from the capture thread:
        ``{"ladder": {...}}`` or one text line (stderr with ``raw``, like the events)."""
        if self.as_json:
            from sockmon.core.jsonout import ladder_line

            self._write_line(ladder_line(packet))
        else:
            from sockmon.core.lab.ladder import packet_line

            self._write_line((packet_line(packet) + "\n").encode())

    def note(self, key: str, value, text: str) -> None:
        """A line about the output itself: ``{key: value}`` in JSON, else ``text`` (made inert)."""
        if self.as_json:
            from sockmon.core.jsonout import keyed_line

            self._write_line(keyed_line(key, value))
        else:
            self._write_line((inert(text) + "\n").encode("utf-8", "backslashreplace"))

    def _write_line(self, line: bytes) -> None:
        with self._lock:
            try:
                write_all(fileno_of_stderr() if self.raw else fileno_of_stdout(), line)
            except (BrokenPipeError, ValueError):
                pass


def fileno_of_stderr() -> int:
    sys.stderr.flush()
    return sys.stderr.fileno()


def fileno_of_stdout() -> int:
    sys.stdout.flush()
    return sys.stdout.fileno()


class Stop:
    """A stop flag that a signal handler or another thread may set: a flag plus a self-pipe to wake the
    waiter. (`threading.Event.set()` in a signal handler can deadlock: the handler runs in the main
    thread, which may be inside `Event.wait()` holding the Event's lock at that moment.)"""

    def __init__(self) -> None:
        self._flag = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)

    def set(self) -> None:
        self._flag = True
        try:
            os.write(self._w, b"x")
        except OSError:  # pipe full (already woken) or closed
            pass

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if not self._flag:
            select.select([self._r], [], [], timeout)
        return self._flag

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)
