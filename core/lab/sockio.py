"""Whole-buffer socket I/O: ``send_all`` and ``recv_exact``.

``send_all`` uses MSG_NOSIGNAL (a closed peer gives EPIPE, never SIGPIPE), retries EINTR, counts short
writes as progress and, on a non-blocking socket, waits for writability instead of spinning.
"""

from __future__ import annotations

import errno
import select
import socket
import time

from sockmon.core.errors import SockmonError

MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0x4000)


class IncompleteRead(EOFError):
    """The peer closed before ``n`` bytes arrived; ``partial`` holds what did."""

    def __init__(self, partial: bytes, expected: int) -> None:
        super().__init__(f"peer closed after {len(partial)} of {expected} bytes")
        self.partial = partial
        self.expected = expected


def _wait(sock: socket.socket, writable: bool, deadline: float | None) -> None:
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT if writable else select.POLLIN)
    try:
        ready = poller.poll(None if timeout is None else int(timeout * 1000) + 1)
    except InterruptedError:
        return
    if not ready and deadline is not None and time.monotonic() >= deadline:
        raise SockmonError.from_os_error(TimeoutError(errno.ETIMEDOUT, "timed out"), "waiting for the socket")


def _error(exc: OSError, doing: str) -> SockmonError:
    if exc.errno is None and isinstance(exc, TimeoutError):  # a Python-level socket timeout
        exc = TimeoutError(errno.ETIMEDOUT, "timed out")
    return SockmonError.from_os_error(exc, doing)


def send_all(sock: socket.socket, data: bytes | bytearray | memoryview, *, timeout: float | None = None) -> int:
    """Send every byte of ``data``; returns the count. Raises SockmonError (EPIPE, ECONNRESET, ETIMEDOUT...)."""
    view = memoryview(data).cast("B")
    total = len(view)
    sent = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    while sent < total:
        try:
            n = sock.send(view[sent:], MSG_NOSIGNAL)
        except InterruptedError:
            continue
        except BlockingIOError:
            _wait(sock, True, deadline)
            continue
        except OSError as exc:
            raise _error(exc, f"send (after {sent} of {total} bytes)") from None
        sent += n  # a short write is progress, not an error
    return sent


def recv_exact(sock: socket.socket, n: int, *, timeout: float | None = None) -> bytes:
    """Exactly ``n`` bytes, or IncompleteRead if the peer closes first."""
    buf = bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except InterruptedError:
            continue
        except BlockingIOError:
            _wait(sock, False, deadline)
            continue
        except OSError as exc:
            raise _error(exc, f"recv (after {len(buf)} of {n} bytes)") from None
        if not chunk:
            raise IncompleteRead(bytes(buf), n)
        buf += chunk
    return bytes(buf)
