"""How the headless commands write to stdout: whole lines, thread-safe, never killed by a closed pipe."""

from __future__ import annotations

import os
import sys
import threading

from sockmon.core.jsonout import event_line
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


class EventPrinter:
    """Prints engine events (``Event.line()``, or one JSON object per line: `sockmon.core.jsonout`)
    from any thread."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        # JSON escapes and stays lossless; a text line carries peer bytes, addresses and errors: inert
        data = event_line(event) if self.as_json else (inert(event.line()) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            try:
                write_all(fileno_of_stdout(), data)
            except (BrokenPipeError, ValueError):  # reader went away / stdout closed at exit
                pass
            self.seen(event)

    def seen(self, event) -> None:
        """Hook for subclasses, called under the lock after printing."""


def fileno_of_stdout() -> int:
    sys.stdout.flush()
    return sys.stdout.fileno()
