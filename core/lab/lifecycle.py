"""The end of a socket's life: shutdown, graceful close, plain close, abort (RST), lingering close.

- ``shutdown(sock, "wr")`` sends FIN but keeps reading (half-close); ``"rd"`` stops reading; ``"rdwr"`` both.
- ``graceful_close``: shutdown(SHUT_WR) → read until the peer's FIN (recv 0) → close. Active closer ends
  in TIME_WAIT.
- ``abort``: SO_LINGER on with 0 seconds, then close → the kernel sends RST; no TIME_WAIT.
- With SO_LINGER on and N > 0 a blocking close() waits up to N s for unsent data to be acknowledged:
  ``close_in_background`` runs it in a daemon thread so the caller's thread never blocks.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab.options import Linger, read_linger, set_linger

HOW = {"rd": socket.SHUT_RD, "wr": socket.SHUT_WR, "rdwr": socket.SHUT_RDWR}
HOW_NAMES = {socket.SHUT_RD: "SHUT_RD", socket.SHUT_WR: "SHUT_WR", socket.SHUT_RDWR: "SHUT_RDWR"}


def parse_how(how: str | int) -> int:
    if isinstance(how, int) and how in HOW_NAMES:
        return how
    key = str(how).strip().lower().removeprefix("shut_")
    if key not in HOW:
        raise BadInput(f"bad shutdown direction {how!r}: one of rd, wr, rdwr")
    return HOW[key]


def shutdown(sock: socket.socket, how: str | int) -> None:
    code = parse_how(how)
    try:
        sock.shutdown(code)
    except OSError as exc:
        raise SockmonError.from_os_error(exc, f"shutdown({HOW_NAMES[code]})") from None


@dataclass(frozen=True, slots=True)
class GracefulResult:
    eof_seen: bool  # the peer's FIN arrived before the timeout
    drained: int  # bytes read (and dropped) while waiting for it
    seconds: float


def graceful_close(sock: socket.socket, timeout: float = 5.0) -> GracefulResult:
    """shutdown(SHUT_WR), read until recv() returns 0 or ``timeout`` passes, then close."""
    start = time.monotonic()
    drained = 0
    eof = False
    try:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise SockmonError.from_os_error(exc, "shutdown(SHUT_WR)") from None
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError as exc:
                raise SockmonError.from_os_error(exc, "recv while draining") from None
            if not chunk:
                eof = True
                break
            drained += len(chunk)
    finally:
        sock.close()
    return GracefulResult(eof, drained, time.monotonic() - start)


def plain_close(sock: socket.socket) -> None:
    """close(): FIN if nothing unread, RST if unread data sits in the receive queue. May block if lingering."""
    sock.close()


def abort(sock: socket.socket) -> None:
    """Linger on with 0 s, then close: RST to the peer (it sees ECONNRESET), no TIME_WAIT here."""
    try:
        set_linger(sock, Linger.ABORT)
    finally:
        sock.close()


def lingers(sock: socket.socket) -> bool:
    """True if close() on this socket may block (SO_LINGER on with N > 0 on a blocking socket)."""
    try:
        lg = read_linger(sock)
    except SockmonError:
        return False
    return lg.enabled and lg.seconds > 0


def timed_close(sock: socket.socket) -> tuple[float, OSError | None]:
    """Blocking close (it waits out SO_LINGER); returns (seconds it took, error or None)."""
    start = time.monotonic()
    err: OSError | None = None
    try:
        sock.setblocking(True)
        sock.close()
    except OSError as exc:
        err = exc
    return time.monotonic() - start, err


def close_in_background(sock: socket.socket,
                        on_done: Callable[[float, BaseException | None], None] | None = None) -> threading.Thread:
    """Close in a daemon thread (it may block up to the linger time); ``on_done(seconds, error)`` afterwards.

    The socket is made blocking first: a lingering close only waits on a blocking socket.
    """

    def work() -> None:
        seconds, err = timed_close(sock)
        if on_done is not None:
            on_done(seconds, err)

    thread = threading.Thread(target=work, name="sockmon-close", daemon=True)
    thread.start()
    return thread
