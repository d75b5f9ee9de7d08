"""OwnerCache: right owner, incremental rescans, and no crash / mislabel on exit, reuse or denial."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil
import pytest
from sockmon.core.table import owners as owners_mod
from sockmon.core.table.owners import OwnerCache
from sockmon.core.table.snapshot import take_snapshot

CHILD = ("import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',0));s.listen()\n"
         "print(s.getsockname()[1],flush=True);sys.stdin.read()")


def inode_of(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    yield proc, port
    proc.kill()
    proc.wait()


def test_own_and_child_sockets(child):
    proc, port = child
    mine = socket.socket()
    mine.bind(("127.0.0.1", 0))
    mine.listen()
    try:
        cache = OwnerCache()
        snap = take_snapshot(owners=cache)
        by_port = {s.sport: snap.owner(s) for s in snap.sockets if s.state == 10}
        me = by_port[mine.getsockname()[1]]
        assert me.pid == os.getpid() and me.user == psutil.Process().username()
        assert me.name == psutil.Process().name() and me.cmdline == tuple(psutil.Process().cmdline())
        assert by_port[port].pid == proc.pid and "-c" in by_port[port].cmdline
    finally:
        mine.close()


def test_incremental_rescans_only_changed_pids(child):
    cache = OwnerCache()
    s1 = socket.socket()
    try:
        cache.resolve([inode_of(s1)])
        first = cache.last_rescanned
        assert first >= 2  # cold: every readable pid
        assert cache.resolve([inode_of(s1)])[inode_of(s1)].pid == os.getpid()
        assert cache.last_rescanned == 0  # nothing unknown: no scan at all
        s2 = socket.socket()
        try:
            got = cache.resolve([inode_of(s1), inode_of(s2)])
            assert got[inode_of(s2)].pid == os.getpid()
            assert 1 <= cache.last_rescanned < first  # only pids whose fd count changed (us, maybe a few)
        finally:
            s2.close()
    finally:
        s1.close()


def test_exited_owner_is_forgotten(child):
    proc, port = child
    cache = OwnerCache()
    snap = take_snapshot(port=port, owners=cache)
    ino = snap.sockets[0].inode
    assert cache.resolve([ino])[ino].pid == proc.pid
    proc.kill()
    proc.wait()
    assert cache.resolve([ino]) == {}  # pid gone: no stale owner


def test_pid_reuse_is_detected(monkeypatch):
    cache = OwnerCache()
    s = socket.socket()
    try:
        ino = inode_of(s)
        assert cache.resolve([ino])[ino].pid == os.getpid()
        real = owners_mod._start_time
        # the same pid now "belongs" to another process (different start time) with a new fd count
        monkeypatch.setattr(owners_mod, "_start_time", lambda pid: real(pid) + 1 if pid == os.getpid() else real(pid))
        s2 = socket.socket()
        try:
            got = cache.resolve([ino, inode_of(s2)])
            assert got[ino].pid == os.getpid() and got[inode_of(s2)].pid == os.getpid()
            assert cache._pids[os.getpid()].start == real(os.getpid()) + 1  # re-read, not the old entry
        finally:
            s2.close()
    finally:
        s.close()


def test_access_denied_and_no_such_process_never_crash(monkeypatch):
    s = socket.socket()
    try:
        ino = inode_of(s)

        class Denied:
            def __init__(self, pid):
                raise psutil.AccessDenied(pid)

        monkeypatch.setattr(owners_mod.psutil, "Process", Denied)
        got = OwnerCache().resolve([ino])[ino]
        assert got.pid == os.getpid() and got.name == open(f"/proc/{os.getpid()}/comm").read().strip()
        assert got.cmdline == ()

        class Gone:
            def __init__(self, pid):
                raise psutil.NoSuchProcess(pid)

        monkeypatch.setattr(owners_mod.psutil, "Process", Gone)
        assert OwnerCache().resolve([ino]) == {}
    finally:
        s.close()


def test_unreadable_pid_dirs_are_skipped(monkeypatch):
    real = owners_mod._socket_inodes
    monkeypatch.setattr(owners_mod, "_socket_inodes", lambda pid: None if pid != os.getpid() else real(pid))
    s = socket.socket()
    try:
        assert OwnerCache().resolve([inode_of(s), 0, 123456789012])[inode_of(s)].pid == os.getpid()
    finally:
        s.close()


def test_same_inodes_again_gives_a_fresh_equal_answer_until_an_owner_exits(child):
    proc, port = child
    snap = take_snapshot(port=port)
    ino = next(s.inode for s in snap.sockets if s.state == 10)
    mine = socket.socket()
    try:
        wanted = [ino, inode_of(mine), 0]
        cache = OwnerCache()
        first = cache.resolve(wanted)
        assert first[ino].pid == proc.pid and first[inode_of(mine)].pid == os.getpid() and 0 not in first
        first.clear()  # the caller's dict: changing it changes nothing in the cache
        again = cache.resolve(iter(wanted))
        assert again == cache.resolve(wanted) and again[ino].pid == proc.pid and len(again) == 2
        proc.kill()
        proc.wait()
        after = cache.resolve(wanted)  # the owner is gone: its inode is not answered from before
        assert ino not in after and after[inode_of(mine)].pid == os.getpid()
    finally:
        mine.close()
