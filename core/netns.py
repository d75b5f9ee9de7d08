"""Network namespaces: run a callable inside a named namespace (/run/netns/NAME) or a pid's.

setns(CLONE_NEWNET) changes the calling *thread* only, and a socket stays in the namespace it was
created in. So `run_in_netns` runs the callable in a short-lived helper thread that enters the
namespace; the caller's thread never changes namespace, even when something fails half-way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from sockmon.core.errors import BadInput, SockmonError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

T = TypeVar("T")
_libc = None


def _setns(fd: int, nstype: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, nstype)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_path(netns: str | int) -> str:
    """Path of a namespace file: NAME → /run/netns/NAME, int / "pid:N" → /proc/N/ns/net, or a path."""
    if isinstance(netns, int):
        return f"/proc/{netns}/ns/net"
    text = str(netns).strip()
    if not text:
        raise BadInput("empty network namespace name")
    if text.startswith("pid:"):
        pid = text[4:]
        if not pid.isdigit():
            raise BadInput(f"bad namespace {text!r}: pid:N needs a number")
        return f"/proc/{int(pid)}/ns/net"
    if text.startswith("/"):
        return text
    if "/" in text or text in (".", ".."):
        raise BadInput(f"bad network namespace name {text!r}")
    return os.path.join(NETNS_RUN_DIR, text)


def open_netns(netns: str | int) -> int:
    """An O_RDONLY fd of the namespace file; BadInput when it does not exist."""
    path = netns_path(netns)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        names = ", ".join(list_netns()) or "none"
        raise BadInput(f"no network namespace {netns!r} ({path} does not exist; named ones: {names})") from None
    except OSError as exc:
        raise SockmonError.from_os_error(exc, f"open network namespace {path}") from None


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except OSError:
        return []


def run_in_netns(netns: str | int | None, fn: Callable[[], T]) -> T:
    """``fn()`` with the calling context in ``netns`` (None: directly, in the caller's namespace)."""
    if netns is None:
        return fn()
    fd = open_netns(netns)
    box: dict[str, object] = {}

    def target() -> None:
        try:
            _setns(fd, CLONE_NEWNET)
        except OSError as exc:
            if exc.errno in (_errno.EPERM, _errno.EACCES):
                box["err"] = SockmonError(f"enter network namespace {netns!r}: {_errno.errorcode[exc.errno]}: "
                                          "needs root (CAP_SYS_ADMIN)", errno=exc.errno)
            else:
                box["err"] = SockmonError.from_os_error(exc, f"enter network namespace {netns!r}")
            return
        try:
            box["ok"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["err"] = exc

    try:
        th = threading.Thread(target=target, name="sockmon-netns", daemon=True)
        th.start()
        th.join()
    finally:
        os.close(fd)
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box["ok"]  # type: ignore[return-value]


def enter_netns_here(netns: str | int) -> None:
    """Move the *calling thread* into ``netns`` for good. Only for a thread that exists to work there
    (an engine thread): every socket it creates afterwards belongs to that namespace."""
    fd = open_netns(netns)
    try:
        _setns(fd, CLONE_NEWNET)
    except OSError as exc:
        if exc.errno in (_errno.EPERM, _errno.EACCES):
            raise SockmonError(f"enter network namespace {netns!r}: {_errno.errorcode[exc.errno]}: "
                               "needs root (CAP_SYS_ADMIN)", errno=exc.errno) from None
        raise SockmonError.from_os_error(exc, f"enter network namespace {netns!r}") from None
    finally:
        os.close(fd)
