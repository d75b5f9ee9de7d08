"""Read one socket's options off the UI thread: ours through a dup of our fd, another process's through
pidfd_getfd (root). One read runs at a time; a request made meanwhile replaces any older waiting one
(newest wins), so a slow read (a process with many fds) never piles up threads or blocks the UI."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from sockmon.core.errors import SockmonError
from sockmon.core.records import Process, Socket
from sockmon.core.states import LISTEN

Reader = Callable[[Socket, "Process | None"], tuple[object, str]]


def read_socket_options(sock: Socket, owner: Process | None, fd_hints: dict | None = None):
    """(SocketOptions | None, how it was read or why not). Blocking (/proc, syscalls): never on the UI thread.

    ``fd_hints``: (pid, inode) → fd number, kept by the caller so a re-read costs one readlink."""
    from sockmon.core.lab.foreign import read_options_of, why_no_options

    why = why_no_options(sock, owner)
    if why is not None:
        return None, why
    key = (owner.pid, sock.inode)
    try:
        opts, fd = read_options_of(owner.pid, sock.inode, (fd_hints or {}).get(key))
    except SockmonError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, str(SockmonError.from_os_error(exc, f"pidfd_getfd(pid {owner.pid})"))
    if fd_hints is not None:
        if len(fd_hints) > 64:  # bounded: only the few sockets someone selected lately
            fd_hints.clear()
        fd_hints[key] = fd
    own = owner.pid == os.getpid()
    return opts, ("read with getsockopt from our own fd (a dup of it)" if own
                  else f"read via pidfd_getfd from pid {owner.pid} (root)")


class OptionsReader:
    """Single-flight background reads; ``deliver(sock, result, note, seq)`` runs on the UI thread."""

    def __init__(self, app, deliver: Callable[[Socket, object, str, int], None],
                 reader: Reader | None = None) -> None:
        self.app = app
        self.deliver = deliver
        self.reader = reader
        self.fd_hints: dict = {}
        self.seq = 0  # of the newest request
        self._lock = threading.Lock()
        self._busy = False
        self._waiting: tuple | None = None
        self.reads = 0  # reads done (tests)

    def request(self, sock: Socket | None, owner: Process | None) -> int:
        """Read ``sock``'s options (not a listener's: those apply to its accepted connections)."""
        if sock is None or sock.state == LISTEN:
            return self.seq
        return self.request_any(sock, owner)

    def request_any(self, sock: Socket, owner: Process | None) -> int:
        with self._lock:
            self.seq += 1
            job = (sock, owner, self.seq)
            if self._busy:
                self._waiting = job
                return self.seq
            self._busy = True
        threading.Thread(target=self._run, args=(job,), name="sockmon-options-read", daemon=True).start()
        return self.seq

    def _run(self, job: tuple) -> None:
        while job is not None:
            sock, owner, seq = job
            try:
                reader = self.reader
                result, note = (reader(sock, owner) if reader is not None
                                else read_socket_options(sock, owner, self.fd_hints))
            except Exception as exc:  # noqa: BLE001 - shown, never fatal
                result, note = None, f"could not read options: {exc}"
            self.reads += 1
            try:
                self.app.call_from_thread(self.deliver, sock, result, note, seq)
            except Exception:  # noqa: BLE001 - the app is shutting down
                pass
            with self._lock:
                job, self._waiting = self._waiting, None
                if job is None:
                    self._busy = False
