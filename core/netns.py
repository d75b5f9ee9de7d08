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

import msgspec
from sockmon.core.errors import BadInput, SockmonError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
# The view "every namespace" wherever a namespace is asked for (`take_snapshot(netns=ALL_NETNS)`, the
# collector, the TUI's picker). Not a path: `netns_path` refuses it, so it is never taken for a name.
ALL_NETNS = "*"

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
    if text == ALL_NETNS:
        raise BadInput("'*' (every namespace) is a view, not one namespace")
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


class NetnsRef(msgspec.Struct, frozen=True, gc=False):
    """One network namespace the host holds, as `all_netns()` finds it.

    ``ident`` is what every other function here accepts (``NAME``, or ``pid:N`` for an unnamed one) and
    what JSON rows and Prometheus labels carry; ``inode`` is the nsfs inode (``ip netns identify``,
    ``/proc/PID/ns/net -> net:[INODE]``), unique while the namespace lives; ``label`` says who lives
    there for a picker (the name, else the first process's command name — untrusted text, shown inert).
    """

    ident: str
    inode: int
    name: str | None = None
    pid: int | None = None
    label: str = ""
    current: bool = False  # the namespace sockmon itself runs in

    @property
    def target(self) -> str | None:
        """What `run_in_netns` / `take_snapshot(netns=)` want: None for our own namespace, else ``ident``."""
        return None if self.current else self.ident

    @property
    def path(self) -> str:
        """The nsfs file to open: /run/netns/NAME, /proc/PID/ns/net, or our own /proc/self/ns/net."""
        if self.name is not None:
            return os.path.join(NETNS_RUN_DIR, self.name)
        if self.pid is not None:
            return f"/proc/{self.pid}/ns/net"
        return "/proc/self/ns/net"


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            return fh.read().decode("utf-8", "replace").rstrip("\n")
    except OSError:
        return ""


def all_netns(proc: str = "/proc") -> list[NetnsRef]:
    """Every network namespace reachable from here: the named ones (/run/netns) and those of running
    processes, one entry per namespace (by nsfs inode). Ours comes first, then named ones by name, then
    unnamed ones by pid. A namespace no longer reachable (its last process exited) is simply absent."""
    own = _ns_inode(f"{proc}/self/ns/net")
    seen: dict[int, NetnsRef] = {}
    for name in list_netns():
        inode = _ns_inode(os.path.join(NETNS_RUN_DIR, name))
        if inode is not None and inode not in seen:
            seen[inode] = NetnsRef(ident=name, inode=inode, name=name, label=name, current=inode == own)
    try:
        pids = sorted(int(p) for p in os.listdir(proc) if p.isdigit())
    except OSError:
        pids = []
    for pid in pids:
        inode = _ns_inode(f"{proc}/{pid}/ns/net")
        if inode is None:
            continue
        ref = seen.get(inode)
        if ref is None:
            comm = _comm(pid)
            seen[inode] = NetnsRef(ident=f"pid:{pid}", inode=inode, pid=pid,
                                   label=f"{comm} (pid {pid})" if comm else f"pid {pid}", current=inode == own)
        elif ref.pid is None:
            seen[inode] = msgspec.structs.replace(ref, pid=pid)
    if own is not None and own not in seen:
        seen[own] = NetnsRef(ident="pid:self", inode=own, label="sockmon's own", current=True)
    refs = list(seen.values())
    refs.sort(key=lambda r: (not r.current, r.name is None, r.name or "", r.pid or 0))
    return refs



def each_netns(refs: list[NetnsRef], fn: Callable[[NetnsRef], T]) -> tuple[list[tuple[NetnsRef, T]], list[str]]:
    """``fn(ref)`` inside each namespace of ``refs``, in order, from one short-lived helper thread that
    enters them in turn (the caller's thread never changes namespace).

    Returns ``(results, skipped)``: ``(ref, fn(ref))`` for every namespace entered, and one line per
    namespace left out. A namespace that vanished since ``refs`` was made (its last process exited, its
    name was deleted, or the pid now belongs to another namespace: the nsfs inode no longer matches)
    is left out, not an error; so is one whose ``fn`` fails (the line says why). Each namespace is held
    by an open fd from the check until ``fn`` returns, so it cannot vanish half-way through a dump.
    """
    results: list[tuple[NetnsRef, T]] = []
    skipped: list[str] = []
    box: dict[str, BaseException] = {}

    def target() -> None:
        moved = False  # this thread still lives in sockmon's own namespace (no setns needed there)
        try:
            for ref in refs:
                if ref.current and not moved:
                    try:
                        results.append((ref, fn(ref)))
                    except (OSError, SockmonError) as exc:
                        skipped.append(f"{ref.ident}: {exc}")
                    continue
                try:
                    fd = os.open(ref.path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    skipped.append(f"{ref.ident}: gone")
                    continue
                try:
                    if os.fstat(fd).st_ino != ref.inode:
                        skipped.append(f"{ref.ident}: gone (another namespace there now)")
                        continue
                    _setns(fd, CLONE_NEWNET)
                    moved = True
                    try:
                        results.append((ref, fn(ref)))
                    except (OSError, SockmonError) as exc:
                        skipped.append(f"{ref.ident}: {exc}")
                except OSError as exc:  # setns refused
                    skipped.append(f"{ref.ident}: cannot enter: {_errno.errorcode.get(exc.errno, exc.errno)}")
                finally:
                    os.close(fd)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["err"] = exc

    th = threading.Thread(target=target, name="sockmon-netns-all", daemon=True)
    th.start()
    th.join()
    if "err" in box:
        raise box["err"]
    if refs and not results:
        raise SockmonError("no network namespace could be read: " + "; ".join(skipped))
    return results, skipped


class NetnsIdents:
    """Stable idents across collections: an unnamed namespace keeps the ``pid:N`` it was first shown
    with while it lives, even when process N exits and `all_netns` would name it after another pid (a
    socket's ``netns`` changing between two snapshots would look like a different socket to a reader).
    Bounded by the live namespaces: an inode no longer listed is forgotten at the next `stable` call."""

    def __init__(self) -> None:
        self._by_inode: dict[int, str] = {}

    def stable(self, refs: list[NetnsRef]) -> list[NetnsRef]:
        known = self._by_inode
        out = []
        for ref in refs:
            ident = known.get(ref.inode)
            if ref.name is None and ident is not None and ident != ref.ident and ident.startswith("pid:"):
                ref = msgspec.structs.replace(ref, ident=ident)
            out.append(ref)
        self._by_inode = {r.inode: r.ident for r in out}
        return out


_CONTAINER_PATTERNS = (  # a cgroup path component → (runtime, id or name): the common container runtimes
    ("docker-", ".scope", "docker"), ("libpod-", ".scope", "podman"), ("cri-containerd-", ".scope", "containerd"),
    ("crio-", ".scope", "cri-o"), ("lxc.payload.", "", "lxc"), ("machine-", ".scope", "machine"),
)


def container_of(pid: int, proc: str = "/proc") -> str | None:
    """"docker 0123456789ab", "lxc NAME", "machine NAME"… when ``pid``'s cgroup path names a container
    (/proc/PID/cgroup; untrusted text: show it inert), else None."""
    try:
        with open(f"{proc}/{pid}/cgroup", "rb") as fh:
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(":", 2)[-1]
        parts = [p for p in path.split("/") if p]
        for i, part in enumerate(parts):
            for head, tail, runtime in _CONTAINER_PATTERNS:
                if part.startswith(head) and part.endswith(tail) and len(part) > len(head) + len(tail):
                    what = part[len(head):len(part) - len(tail)] if tail else part[len(head):]
                    return f"{runtime} {what if runtime in ('lxc', 'machine') else what[:12]}"  # ids: 12 hex
            if part in ("docker", "lxc") and i + 1 < len(parts):  # cgroup v1 style: /docker/ID, /lxc/NAME
                what = parts[i + 1]
                return f"{part} {what[:12] if part == 'docker' else what}"
    return None
