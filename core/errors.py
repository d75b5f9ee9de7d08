"""Errors with their errno name, plain meaning and the action a user should take.

One home for errno classification (docs/kernel-facts.md §6): every failure that reaches a user carries
``errno_name``, ``meaning`` and ``action``; ``str(exc)`` is one line.
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrnoInfo:
    name: str
    meaning: str
    action: str


_TABLE: dict[int, tuple[str, str]] = {
    _errno.ECONNREFUSED: ("connection refused: nothing is listening on that port", "retry later or start a listener"),
    _errno.ETIMEDOUT: ("timed out: the peer never answered", "check the address and route, then retry"),
    _errno.EHOSTUNREACH: ("no route to the host", "check the address and routing"),
    _errno.ENETUNREACH: ("network unreachable", "check the interface and routes"),
    _errno.ECONNRESET: ("connection reset by peer (RST received)", "close the socket"),
    _errno.ECONNABORTED: ("connection aborted locally (e.g. killed with SOCK_DESTROY)", "close the socket"),
    _errno.EPIPE: ("broken pipe: write after the peer closed", "stop writing and close"),
    _errno.ENOTCONN: ("socket is not connected", "connect first"),
    _errno.EADDRINUSE: ("address already in use (another socket is bound to it)",
                        "stop the other listener or pick another port; if only TIME_WAIT is left, SO_REUSEADDR "
                        "lets you bind"),
    _errno.EADDRNOTAVAIL: ("address not available on this host", "bind an address this host owns"),
    _errno.EACCES: ("permission denied", "run as root, or use something this user may access"),
    _errno.EPERM: ("operation not permitted", "run as root"),
    _errno.EINTR: ("interrupted by a signal", "retry the call"),
    _errno.EAGAIN: ("would block: not ready yet", "wait for readiness, then retry"),
    _errno.EINPROGRESS: ("connect in progress", "wait until writable, then read SO_ERROR"),
    _errno.EALREADY: ("a connect is already in progress", "wait for it to finish"),
    _errno.EISCONN: ("already connected", "nothing to do"),
    _errno.EINVAL: ("invalid argument", "check the value"),
    _errno.EBADF: ("bad file descriptor: the socket is closed", "open a new socket"),
    _errno.EMFILE: ("too many open files in this process", "close sockets or raise the limit"),
    _errno.ENFILE: ("too many open files on the system", "close sockets"),
    _errno.ENOBUFS: ("no buffer space available", "retry later"),
    _errno.ESRCH: ("no such process", "the process has exited"),
    _errno.ENOENT: ("no such file or directory", "check the name"),
}


# Advice that depends on the call that failed: (errno, first word of the call) → action.
_CALL_ACTIONS: dict[tuple[int, str], str] = {
    (_errno.EACCES, "bind"): "use a port >= 1024 or run as root",
}


def _call_word(doing: str) -> str:
    """ "bind/listen 127.0.0.1:80" / "bind(127.0.0.1:80)" → "bind"."""
    word = doing.strip().split(None, 1)[0] if doing.strip() else ""
    for sep in "/(":
        word = word.split(sep, 1)[0]
    return word.lower()


def errno_info(code: int, doing: str = "") -> ErrnoInfo:
    """Name, meaning and action for an errno value (unknown codes still get a name and meaning).

    ``doing`` names the failed call (e.g. "bind/listen 127.0.0.1:80"): some actions depend on it
    (EACCES means a privileged port for bind, but not for opening a namespace file).
    """
    name = _errno.errorcode.get(code, f"E{code}")
    meaning, action = _TABLE.get(code, (os.strerror(code).lower(), "see the errno name"))
    action = _CALL_ACTIONS.get((code, _call_word(doing)), action) if doing else action
    return ErrnoInfo(name, meaning, action)


class SockmonError(Exception):
    """A failure that reaches the user as one clear line, never a traceback."""

    exit_status = 1

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.info = errno_info(errno) if errno is not None else None

    @property
    def errno_name(self) -> str | None:
        return self.info.name if self.info else None

    @classmethod
    def from_os_error(cls, exc: OSError, doing: str) -> SockmonError:
        """``doing`` names the call, e.g. "connect to 127.0.0.1:9"."""
        if exc.errno is None:
            return cls(f"{doing}: {exc}")
        info = errno_info(exc.errno, doing)
        return cls(f"{doing}: {info.name}: {info.meaning} ({info.action})", errno=exc.errno)


class BadInput(SockmonError):
    """Bad user input (host, port, option value, filter text). Exit status 2 like argparse."""

    exit_status = 2
