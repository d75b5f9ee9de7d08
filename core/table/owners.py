"""Which process owns a socket: inode → `Process`, from an incrementally cached /proc/PID/fd scan.

`ss -p` and psutil scan every /proc/PID/fd link on every call (≈ 1 s at 60k sockets). `OwnerCache`
remembers inode → pid and, per pid, its start time and fd count. A call only scans when an inode it
does not know appears, and then only the pids that are new or whose fd count changed (on Linux ≥ 6.2
`stat(/proc/PID/fd).st_size` is the number of open fds; older kernels: a directory listing).
A pid that disappeared, or came back with another start time (pid reuse), is forgotten with its
inodes, so a socket is never attributed to the wrong process. Name, user and command line come from
psutil; AccessDenied falls back to /proc/PID/comm and the uid, NoSuchProcess drops the pid.
"""

from __future__ import annotations

import os
import pwd
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress

import psutil
from sockmon.core.records import Process

_PROC = "/proc"


@dataclass(slots=True)
class _PidState:
    start: int  # /proc/PID/stat field 22 (clock ticks since boot): identity against pid reuse
    nfds: int
    inodes: set[int]
    proc: Process | None = None


def _start_time(pid: int) -> int | None:
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def _fd_count(pid: int) -> int | None:
    try:
        size = os.stat(f"{_PROC}/{pid}/fd").st_size
    except OSError:
        return None
    if size:
        return size
    try:  # kernels before 6.2 report 0
        return len(os.listdir(f"{_PROC}/{pid}/fd"))
    except OSError:
        return None


def _socket_inodes(pid: int) -> set[int] | None:
    base = f"{_PROC}/{pid}/fd/"
    try:
        names = os.listdir(base)
    except OSError:
        return None
    found = set()
    readlink = os.readlink
    for name in names:
        try:
            target = readlink(base + name)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe_process(pid: int) -> Process | None:
    """Process record for a pid; None when it is gone. Never raises for permission problems."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            name = p.name()
            try:
                user = p.username()
            except (psutil.AccessDenied, KeyError):
                user = _user_name(p.uids().real)
            try:
                cmdline = tuple(p.cmdline())
            except psutil.AccessDenied:
                cmdline = ()
        return Process(pid, name, user, cmdline)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        try:
            with open(f"{_PROC}/{pid}/comm", encoding="utf-8", errors="replace") as fh:
                name = fh.read().strip()
            uid = os.stat(f"{_PROC}/{pid}").st_uid
        except OSError:
            return None
        return Process(pid, name, _user_name(uid), ())


class OwnerCache:
    """inode → Process, kept across calls. Thread-safe (one lock); cheap when nothing changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pids: dict[int, _PidState] = {}
        self._inode_pid: dict[int, int] = {}
        self.scans = 0  # pids whose fds were listed (for tests / the benchmark)
        self.last_rescanned = 0
        self._changes = 0  # bumped whenever inode → pid or a pid's record changes
        self._memo: tuple[int, list[int], dict[int, Process]] | None = None  # (changes, inodes, answer)

    def _forget(self, pid: int) -> None:
        st = self._pids.pop(pid, None)
        if st is None:
            return
        self._changes += 1
        for ino in st.inodes:
            if self._inode_pid.get(ino) == pid:
                del self._inode_pid[ino]

    def _live_pids(self) -> set[int]:
        return {int(n) for n in os.listdir(_PROC) if n.isdigit()}

    def resolve(self, inodes: Iterable[int]) -> dict[int, Process]:
        """The owner of each inode that some process holds open (inode 0 / unowned ones are absent).

        Per-inode work is C-level (``map`` over dict methods) and Python code runs per owning pid,
        not per socket. When the inodes are the very list of the previous call, all of them had a known
        owner, and no pid went or was rescanned since, the previous answer is returned (as a new dict).
        """
        with self._lock:
            wanted = list(filter(None, inodes))
            live = self._live_pids()
            for pid in [p for p in self._pids if p not in live]:
                self._forget(pid)
            self.last_rescanned = 0
            memo = self._memo
            if memo is not None and memo[0] == self._changes and memo[1] == wanted:
                return dict(memo[2])
            inode_pid = self._inode_pid
            pid_of = list(map(inode_pid.get, wanted))
            if not all(pid_of):  # an inode we do not know (pids are > 0): rescan changed pids
                self._rescan(live)
                pid_of = list(map(inode_pid.get, wanted))
            proc_of: dict[int, Process] = {}
            pids = self._pids
            for pid in dict.fromkeys(pid_of):  # each owning pid once, in order of first use
                if pid is None:
                    continue
                st = pids[pid]
                if st.proc is None:
                    st.proc = describe_process(pid)
                    if st.proc is None or _start_time(pid) != st.start:  # exited or reused meanwhile
                        self._forget(pid)
                        continue
                proc_of[pid] = st.proc
            procs = list(map(proc_of.get, pid_of))
            if all(procs):  # every inode owned (Process records are always true)
                result = dict(zip(wanted, procs, strict=True))
            else:
                result = dict(compress(zip(wanted, procs, strict=True), procs))
            # reusable only when every inode was known: else the next call must look for it again
            self._memo = (self._changes, wanted, result) if all(pid_of) else None
            return dict(result)

    def _rescan(self, live: set[int]) -> None:
        for pid in live:
            n = _fd_count(pid)
            if n is None:
                self._forget(pid)
                continue
            st = self._pids.get(pid)
            if st is not None and st.nfds == n:
                continue
            start = _start_time(pid)
            if start is None:
                self._forget(pid)
                continue
            if st is not None and st.start != start:  # pid reused
                self._forget(pid)
                st = None
            found = _socket_inodes(pid)
            if found is None:  # gone or not ours to read
                self._forget(pid)
                continue
            self.scans += 1
            self.last_rescanned += 1
            self._changes += 1
            if st is None:
                st = self._pids[pid] = _PidState(start, n, set())
            for ino in st.inodes - found:
                if self._inode_pid.get(ino) == pid:
                    del self._inode_pid[ino]
            for ino in found:
                owner = self._inode_pid.get(ino)
                if owner is None or owner not in self._pids or owner == pid:
                    self._inode_pid[ino] = pid
                elif pid < owner:  # shared after fork: the lowest pid (usually the parent) wins
                    self._inode_pid[ino] = pid
            st.inodes = found
            st.nfds = n

    def clear(self) -> None:
        with self._lock:
            self._pids.clear()
            self._inode_pid.clear()
            self._changes += 1
            self._memo = None
