"""Borrow another process's socket: pidfd_open + pidfd_getfd duplicate its fd into ours (root).

The duplicate refers to the same kernel socket, so core/options reads and changes the owner's socket
options through it; closing the duplicate only drops our reference (the owner's socket stays open).
pidfd_getfd needs PTRACE_MODE_ATTACH_REALCREDS over the target: in practice root (CAP_SYS_PTRACE),
and Linux ≥ 5.6.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab.options import OptionChanges, SocketOptions, apply_changes, read_options
from sockmon.core.records import Process, Socket
from sockmon.core.states import TIME_WAIT

# Syscall numbers: 434/438 on every architecture that uses the unified table (x86_64, aarch64, ...).
SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
_ALPHA = platform.machine().startswith("alpha")  # alpha is offset by 110; not supported here

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: int) -> int:
    ret = _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    if ret < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return ret


def pidfd_open(pid: int) -> int:
    if hasattr(os, "pidfd_open"):
        return os.pidfd_open(pid, 0)
    return _syscall(SYS_PIDFD_OPEN, pid, 0)


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """A new fd in this process for ``target_fd`` of the process behind ``pidfd`` (close-on-exec set)."""
    return _syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0)


def find_socket_fd(pid: int, inode: int, hint: int | None = None) -> int:
    """The fd number under /proc/PID/fd that links to ``socket:[INODE]`` (``hint``: try that fd first, so
    a re-read of the same socket costs one readlink instead of a scan of every fd of the process)."""
    want = f"socket:[{inode}]"
    fd_dir = f"/proc/{pid}/fd"
    if hint is not None:
        try:
            if os.readlink(f"{fd_dir}/{hint}") == want:
                return hint
        except OSError:
            pass
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        raise SockmonError(f"no process {pid}", errno=errno.ESRCH) from None
    except PermissionError:
        raise SockmonError(f"cannot list {fd_dir}: only root (or the owner) can see another "
                           "process's file descriptors", errno=errno.EACCES) from None
    for name in names:
        try:
            if os.readlink(f"{fd_dir}/{name}") == want:
                return int(name)
        except OSError:
            continue  # fd closed while we looked
    raise SockmonError(f"process {pid} holds no fd for socket inode {inode}", errno=errno.ENOENT)


def why_no_options(sock: Socket, owner: Process | None) -> str | None:
    """None when ``sock``'s options can be read and changed through its owner, else why not, in one line
    (the Options screen, the Keepalive pane and ``sockmon opts`` say the same)."""
    if sock.state == TIME_WAIT or not sock.inode:
        return "no file descriptor (TIME_WAIT or orphaned): nothing to read options from"
    if owner is None:
        if os.geteuid() == 0:
            return ("no owning process found: held by no process (it may have exited, the socket may be in "
                    "flight between processes, or belong to the kernel)")
        return "owner unknown: another user's process needs root to see and to change"
    return None


def socket_inode_of(pid: int, fd: int) -> int:
    """The socket inode behind fd ``fd`` of process ``pid`` (``/proc/PID/fd/FD -> socket:[INODE]``)."""
    for name, value in (("pid", pid), ("fd", fd)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "pid" else 0):
            raise BadInput(f"bad {name} {value!r}")
    path = f"/proc/{pid}/fd/{fd}"
    try:
        target = os.readlink(path)
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            raise SockmonError(f"no process {pid}", errno=errno.ESRCH) from None
        raise SockmonError(f"process {pid} has no fd {fd}", errno=errno.EBADF) from None
    except PermissionError:
        raise SockmonError(f"cannot read {path}: only root (or the owner) can see another process's file "
                           "descriptors", errno=errno.EACCES) from None
    if not (target.startswith("socket:[") and target.endswith("]") and target[8:-1].isdigit()):
        raise BadInput(f"fd {fd} of pid {pid} is not a socket: it is {target!r}")
    return int(target[8:-1])


def duplicate_socket(pid: int, inode: int, fd_hint: int | None = None) -> socket.socket:
    """A socket object for our own duplicate of process ``pid``'s socket with this inode."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise BadInput(f"bad pid {pid!r}")
    if isinstance(inode, bool) or not isinstance(inode, int) or inode <= 0:
        raise BadInput(f"bad socket inode {inode!r} (TIME_WAIT and orphaned sockets have no owner)")
    if _ALPHA:
        raise SockmonError("pidfd_getfd is not supported on this architecture")
    target = find_socket_fd(pid, inode, fd_hint)
    try:
        pidfd = pidfd_open(pid)
    except OSError as exc:
        raise SockmonError.from_os_error(exc, f"pidfd_open({pid})") from None
    try:
        try:
            fd = pidfd_getfd(pidfd, target)
        except OSError as exc:
            if exc.errno == errno.EPERM:
                raise SockmonError(
                    f"pidfd_getfd(pid {pid}, fd {target}): EPERM: operation not permitted — borrowing another "
                    "process's socket needs ptrace rights over it (run sockmon as root)", errno=errno.EPERM) from None
            if exc.errno == errno.ENOSYS:
                raise SockmonError("pidfd_getfd: ENOSYS: this kernel is older than Linux 5.6",
                                   errno=errno.ENOSYS) from None
            raise SockmonError.from_os_error(exc, f"pidfd_getfd(pid {pid}, fd {target})") from None
    finally:
        os.close(pidfd)
    try:
        return socket.socket(fileno=fd)
    except OSError as exc:
        os.close(fd)
        raise SockmonError.from_os_error(exc, f"fd {target} of pid {pid} is not a usable socket") from None


@contextmanager
def borrowed_socket(pid: int, inode: int, fd_hint: int | None = None) -> Iterator[socket.socket]:
    """A temporary socket object for process ``pid``'s socket with this inode, closed on exit.

    Our own process: a plain ``dup`` of our fd (no privileges needed). Another process: pidfd_getfd
    (root). Either way options read or set through it act on the owner's socket, which stays open.
    """
    if pid == os.getpid():
        sock = socket.socket(fileno=os.dup(find_socket_fd(pid, inode, fd_hint)))
    else:
        sock = duplicate_socket(pid, inode, fd_hint)
    try:
        yield sock
    finally:
        sock.close()


def change_options_of(pid: int, inode: int, changes: OptionChanges, fd_hint: int | None = None) -> SocketOptions:
    """Make ``changes`` on process ``pid``'s socket with this inode (borrowed as `borrowed_socket` does),
    then read every option back from the kernel: what the owner itself now reads with getsockopt."""
    with borrowed_socket(pid, inode, fd_hint) as dup:
        return apply_changes(dup, changes)


def read_options_of(pid: int, inode: int, fd_hint: int | None = None) -> tuple[SocketOptions, int]:
    """Every option of process ``pid``'s socket with this inode, read now from the kernel, and the fd
    number it has in that process (pass it back as ``fd_hint`` for the next read)."""
    fd = find_socket_fd(pid, inode, fd_hint)
    with borrowed_socket(pid, inode, fd) as dup:
        return read_options(dup), fd
