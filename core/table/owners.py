"""Which process owns a socket: inode → `Process`, from a /proc/PID/fd scan driven by unknown inodes.

`ss -p` and psutil read every /proc/PID/fd link on every call (≈ 1 s at 60k sockets). `OwnerCache`
remembers inode → pid and reads links only when the table holds an inode it does not know. A fd
count proves nothing (a process can close one socket and open another, even on the same fd number),
so the trigger is the unknown inode itself, and the search goes to where a new socket most likely is:

1. *Phase A, for inodes unknown for the first time*: the "hot" pids (where a new socket was found
   in the last `HOT_SECONDS`, most recent first), then pids that appeared since the previous call,
   then pids whose /proc/PID owner uid equals the socket's uid when that is not root
   (``inet_diag_msg.uid``: the uid that created the socket). It stops once all of them are found.
2. *Phase B, every other pid* (uid matches first, then by pid), for what phase A did not find.
   Fresh inodes get it in the same call when phase A found fewer than half of them (a process we do
   not follow opened sockets) and no such search came up empty in the last `FRESH_FULL_GAP` s (or
   20× that search's own time). Otherwise (phase A found most: churn in a hot pid) the rest get it at
   the next call if they are still in the table: fresh inodes that no process holds were mostly
   sockets closed between the dump and the scan, and are gone by then. An inode that phase B did
   not find either (a kernel socket, a process we may not read, an fd in flight) costs nothing until
   its retry is due: `RETRY_FIRST` s, doubling up to `RETRY_MAX`.

So an owner appears in the call that first sees the socket, or at the latest in the next one.
A socket held by several processes (after fork, or fd passing) is named after the first holder found.
Known inode → pid pairs are trusted while that pid lives with the same start time (checked every call,
so pid reuse never mislabels); when an owning pid exits its inodes become unknown and are searched again.

Bounds: the inode maps hold only inodes of the latest call's table (others are evicted at each call),
the pid maps only pids that own one of them or were hot in the last `HOT_SECONDS`. Name, user and
command line come from psutil; AccessDenied falls back to /proc/PID/comm and the uid, NoSuchProcess
drops the pid. TIME_WAIT and orphaned sockets have inode 0 and no owner.
"""

from __future__ import annotations

import operator
import os
import pwd
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress

import psutil
from sockmon.core.records import Process

_PROC = "/proc"
HOT_SECONDS = 30.0  # a pid where a new socket was found stays first in the search this long
FRESH_FULL_GAP = 2.0  # s between phase-B scans for freshly seen inodes (at least 20× the scan's own time)
RETRY_FIRST = 1.0  # s before an inode that a full search missed is searched again ...
RETRY_MAX = 60.0  # ... doubling up to this
_INODE = operator.attrgetter("inode")
_UID = operator.attrgetter("uid")


@dataclass(slots=True)
class _PidState:
    start: int  # /proc/PID/stat field 22 (clock ticks since boot): identity against pid reuse
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


def _proc_uid(pid: int) -> int | None:
    """Owner of /proc/PID: the effective uid (root for a non-dumpable process)."""
    try:
        return os.stat(f"{_PROC}/{pid}").st_uid
    except OSError:
        return None


def _socket_inodes(pid: int) -> tuple[set[int], int] | None:
    """(socket inodes among the pid's fds, links read), or None when the fd list cannot be read."""
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
    return found, len(names)


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
        except OSError:
            return None
        uid = _proc_uid(pid)
        return None if uid is None else Process(pid, name, _user_name(uid), ())


class OwnerCache:
    """inode → Process, kept across calls. Thread-safe (one lock); cheap when nothing changed.

    ``clock`` (monotonic seconds) is injectable for tests of the retry schedule.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pids: dict[int, _PidState] = {}  # owning pids of the latest table (+ hot ones)
        self._inode_pid: dict[int, int] = {}  # only inodes of the latest table
        self._hot: dict[int, float] = {}  # pid → when a new socket was last found in it
        self._live_before: set[int] | None = None  # live pids at the previous call
        self._retry: dict[int, tuple[float, float]] = {}  # unknown inode → (next search, backoff)
        self._next_fresh_full = 0.0
        self._changes = 0  # bumped whenever inode → pid or a pid's record changes
        self._memo: tuple[int, list[int], dict[int, Process]] | None = None  # (changes, inodes, answer)
        # counters for tests and bench/bench_owners.py
        self.scans = 0  # pids whose fds were listed, in all
        self.full_scans = 0  # phase-B searches, in all
        self.last_rescanned = 0  # pids listed by the latest call
        self.last_links = 0  # fd links read by the latest call

    # -- helpers (lock held) -----------------------------------------------------------------------
    def _live_pids(self) -> set[int]:
        return {int(n) for n in os.listdir(_PROC) if n.isdigit()}

    def _drop_pids(self, gone: set[int]) -> None:
        for pid in gone:
            self._pids.pop(pid, None)
            self._hot.pop(pid, None)
        if gone:
            self._changes += 1
            self._inode_pid = {i: p for i, p in self._inode_pid.items() if p not in gone}

    def _scan(self, pid: int, remaining: dict[int, int], now: float, mark_hot: bool) -> None:
        got = _socket_inodes(pid)
        self.scans += 1
        self.last_rescanned += 1
        if got is None:
            return
        found, links = got
        self.last_links += links
        hits = found.intersection(remaining)
        if not hits:
            return
        st = self._pids.get(pid)
        if st is None:
            start = _start_time(pid)
            if start is None:  # exited meanwhile
                return
            st = self._pids[pid] = _PidState(start)
        for ino in hits:
            self._inode_pid[ino] = pid
            del remaining[ino]
        self._changes += 1
        if mark_hot:
            self._hot[pid] = now

    def _search(self, unknown: dict[int, int], live: set[int], new_pids: set[int], now: float) -> None:
        """Find the owners of ``unknown`` (inode → socket uid); see the module docstring.

        Only fresh inodes (not seen unknown before) get phase A; inodes already waiting for a retry
        cost nothing until they are due, so a socket nobody can be found holding never makes every
        call scan anything.
        """
        retry = self._retry
        fresh = {i: u for i, u in unknown.items() if i not in retry}
        due = {i for i in unknown if i not in fresh and now >= retry[i][0]}
        if not fresh and not due:
            return
        remaining = dict(unknown)  # any unknown inode a scan happens to find is taken
        mark_hot = self._live_before is not None  # the first (cold) call marks nobody
        scanned: set[int] = set()

        def uid_matches(targets) -> list[int]:
            uids = {unknown[i] for i in targets if unknown[i]}
            return sorted(p for p in live if _proc_uid(p) in uids) if uids else []

        by_uid: list[int] = []
        if fresh:
            by_uid = uid_matches(fresh)
            hot = sorted((p for p in self._hot if p in live), key=self._hot.__getitem__, reverse=True)
            for pid in [*hot, *sorted(new_pids), *by_uid]:
                if fresh.keys().isdisjoint(remaining):
                    break
                if pid not in scanned:
                    scanned.add(pid)
                    self._scan(pid, remaining, now, mark_hot)
        fresh_left = [i for i in fresh if i in remaining]
        targets = {i for i in due if i in remaining}
        # Fresh inodes left over while phase A found most of them: most likely sockets closed since the
        # dump (churn in a hot pid); searched at the next call if still there. Mostly unfound: some
        # process we do not follow opened them, search now (unless such a search just came up empty).
        if fresh_left and 2 * len(fresh_left) > len(fresh) and now >= self._next_fresh_full:
            targets.update(fresh_left)
        covered: set[int] = set()
        if live <= scanned:  # phase A read every pid (the cold call): everything unknown was searched
            covered = set(fresh_left) | targets
        elif targets:
            self.full_scans += 1
            t0 = time.perf_counter()
            covered = set(targets)
            if not by_uid or not fresh:
                by_uid = uid_matches(targets)
            read = 0
            for pid in [*by_uid, *sorted(live - scanned)]:
                if targets.isdisjoint(remaining):
                    break
                if pid not in scanned:
                    scanned.add(pid)
                    read += 1
                    self._scan(pid, remaining, now, mark_hot)
            # a search for fresh inodes that read pids and found none of them: they were most likely
            # closed since the dump (churn); the next such search waits (at least 20x this one's time)
            searched_fresh = covered.intersection(fresh_left)
            if read and searched_fresh and searched_fresh <= remaining.keys():
                self._next_fresh_full = now + max(FRESH_FULL_GAP, 20.0 * (time.perf_counter() - t0))
        for ino in remaining:
            if ino in covered:  # a full search missed it: back off
                delay = retry[ino][1] if ino in retry else RETRY_FIRST
                retry[ino] = (now + delay, min(delay * 2.0, RETRY_MAX))
            elif ino not in retry:  # not searched everywhere yet: the next call does
                retry[ino] = (now, RETRY_FIRST)

    # -- API -------------------------------------------------------------------------------------
    def resolve_sockets(self, sockets: Iterable) -> dict[int, Process]:
        """`resolve` for socket records (uses their ``inode`` and ``uid`` fields)."""
        sockets = sockets if isinstance(sockets, (list, tuple)) else list(sockets)
        return self.resolve(map(_INODE, sockets), map(_UID, sockets))

    def resolve(self, inodes: Iterable[int], uids: Iterable[int] | None = None) -> dict[int, Process]:
        """The owner of each inode that some process holds open (inode 0 / unowned ones are absent).

        ``uids`` (parallel to ``inodes``: each socket's uid from the kernel) narrows where an unknown
        inode is looked for first; without it every pid is a candidate. Per-inode work is C-level
        (``map`` over dict methods); Python code runs per owning pid and per scanned pid, not per
        known socket. When the inodes are the very list of the previous call, all of them had a known
        owner, and no pid went since, the previous answer is returned (as a new dict).
        """
        with self._lock:
            now = self._clock()
            wanted = list(inodes)
            uid_list = [0] * len(wanted) if uids is None else list(uids)
            if len(uid_list) != len(wanted):
                raise ValueError("resolve(): inodes and uids differ in length")
            if 0 in wanted:  # TIME_WAIT / orphans: no fd, no owner
                keep = list(map(bool, wanted))
                wanted = list(compress(wanted, keep))
                uid_list = list(compress(uid_list, keep))
            self.last_rescanned = 0
            self.last_links = 0
            live = self._live_pids()
            before = self._live_before
            new_pids = live if before is None else live - before
            # owning pids that exited, or whose pid now names another process (start time differs)
            gone = {p for p, st in self._pids.items() if p not in live or _start_time(p) != st.start}
            self._drop_pids(gone)
            for pid, when in list(self._hot.items()):
                if pid not in live or now - when > HOT_SECONDS:
                    del self._hot[pid]
            memo = self._memo
            if memo is not None and memo[0] == self._changes and memo[1] == wanted:
                self._live_before = live
                return dict(memo[2])
            inode_pid = self._inode_pid
            pid_of = list(map(inode_pid.get, wanted))
            if None in pid_of:
                unknown = {i: u for i, u, p in zip(wanted, uid_list, pid_of, strict=True) if p is None}
                self._search(unknown, live, new_pids, now)
                pid_of = list(map(inode_pid.get, wanted))
            self._live_before = live
            # bounded by the table: forget inodes (and retry entries) that left it
            known = len(pid_of) - pid_of.count(None)
            if len(inode_pid) > known:
                self._inode_pid = inode_pid = dict(compress(zip(wanted, pid_of, strict=True), pid_of))
            if self._retry:
                missing = set(compress(wanted, (p is None for p in pid_of)))
                self._retry = {i: r for i, r in self._retry.items() if i in missing}
            owning = set(pid_of)
            owning.discard(None)
            for pid in [p for p in self._pids if p not in owning and p not in self._hot]:
                del self._pids[pid]
            proc_of: dict[int, Process] = {}
            pids = self._pids
            lost: set[int] = set()
            for pid in owning:
                st = pids[pid]
                if st.proc is None:
                    st.proc = describe_process(pid)
                    if st.proc is None or _start_time(pid) != st.start:  # exited or reused meanwhile
                        lost.add(pid)
                        continue
                proc_of[pid] = st.proc
            if lost:
                self._drop_pids(lost)
            procs = list(map(proc_of.get, pid_of))
            if all(procs):  # every inode owned (Process records are always true)
                result = dict(zip(wanted, procs, strict=True))
            else:
                result = dict(compress(zip(wanted, procs, strict=True), procs))
            # reusable only when every inode was known: else the next call must look for it again
            self._memo = (self._changes, wanted, result) if all(procs) else None
            return dict(result)

    def resolve_more(self, sockets: Iterable, forget: Iterable = ()) -> dict[int, Process]:
        """The owners of a few sockets more — new ones — without the whole table: the event-driven
        table's ticks (core/table/evtable.py), where the rest keep the owners of the previous tick.
        Unknown inodes are searched as `resolve` does; nothing else is evicted (``forget``: sockets that
        left the table, whose inodes are dropped, so the maps stay bounded by the table). A pid that
        exited is noticed by the next `resolve` of the whole table (a full dump)."""
        with self._lock:
            for s in forget:
                if s.inode:
                    self._inode_pid.pop(s.inode, None)
                    self._retry.pop(s.inode, None)
            self._memo = None
            socks = [s for s in sockets if s.inode]
            if not socks:
                return {}
            now = self._clock()
            unknown = {s.inode: s.uid for s in socks if s.inode not in self._inode_pid}
            if unknown:
                live = self._live_pids()
                before = self._live_before
                self._search(unknown, live, live if before is None else live - before, now)
                self._live_before = live
            out: dict[int, Process] = {}
            inode_pid, pids = self._inode_pid, self._pids
            for s in socks:
                pid = inode_pid.get(s.inode)
                st = pids.get(pid) if pid is not None else None
                if st is None:
                    continue
                if st.proc is None:
                    st.proc = describe_process(pid)
                    if st.proc is None:
                        continue
                out[s.inode] = st.proc
            return out

    def clear(self) -> None:
        with self._lock:
            self._pids.clear()
            self._inode_pid.clear()
            self._hot.clear()
            self._retry.clear()
            self._live_before = None
            self._changes += 1
            self._memo = None
