"""OwnerCache: right owner, incremental rescans, and no crash / mislabel on exit, reuse or denial."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

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


def test_known_inodes_cost_nothing_and_a_hot_pid_is_searched_first(child):
    cache = OwnerCache()
    s1 = socket.socket()
    try:
        cache.resolve([inode_of(s1)])
        assert cache.last_rescanned >= 2  # cold: pids in order until ours
        assert cache.resolve([inode_of(s1)])[inode_of(s1)].pid == os.getpid()
        assert cache.last_rescanned == 0 and cache.last_links == 0  # nothing unknown: no scan at all
        s2 = socket.socket()
        s3 = socket.socket()
        try:
            got = cache.resolve([inode_of(s1), inode_of(s2)])
            assert got[inode_of(s2)].pid == os.getpid()  # found in the same call (full search)
            got = cache.resolve([inode_of(s1), inode_of(s2), inode_of(s3)])
            assert got[inode_of(s3)].pid == os.getpid()
            assert cache.last_rescanned == 1  # we are "hot" now: searched first, and nothing else
        finally:
            s2.close()
            s3.close()
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


# -- owners that stay right: a socket that replaces a closed one, churn, bounds ---------------------

REUSE_CHILD = r"""
import os, socket, sys
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(64)
port = lst.getsockname()[1]
a = socket.create_connection(("127.0.0.1", port)); a_srv, _ = lst.accept()
print(port, a.fileno(), flush=True)
for line in sys.stdin:  # each line: replace the connection, keeping the fd count and fd numbers
    b = socket.create_connection(("127.0.0.1", port)); b_srv, _ = lst.accept()
    os.dup2(b.fileno(), a.fileno()); os.dup2(b_srv.fileno(), a_srv.fileno())  # closes the old pair
    b.close(); b_srv.close()
    print(len(os.listdir("/proc/self/fd")), flush=True)
"""


def _established(snap, port):
    return {s.inode: s for s in snap.sockets if s.state == 1 and port in (s.sport, s.dport)}


def test_a_socket_replacing_a_closed_one_on_the_same_fd_gets_its_owner():
    """Same fd count, same fd numbers (dup2): a long-lived cache and a long-lived Collector name both."""
    from sockmon.core.table.collector import Collector

    proc = subprocess.Popen([sys.executable, "-c", REUSE_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline().split()[0])
        cache = OwnerCache()
        collector = Collector(interval=1, use_tracepoint=False, with_info=False, on_update=lambda u: None,
                              start=False)
        try:
            for snap in (take_snapshot(port=port, owners=cache), collector.collect_once().snapshot):
                before = _established(snap, port)
                assert len(before) == 2 and {snap.owner(s).pid for s in before.values()} == {proc.pid}
            nfds = None
            for round_ in range(3):
                proc.stdin.write("swap\n")
                proc.stdin.flush()
                count = int(proc.stdout.readline())
                assert nfds is None or count == nfds  # the fd count never changes
                nfds = count
                for snap in (take_snapshot(port=port, owners=cache), collector.collect_once().snapshot):
                    now = _established(snap, port)
                    assert len(now) == 2 and not set(now) & set(before), round_  # new sockets
                    owners = {ino: snap.owner(s) for ino, s in now.items()}
                    assert all(o is not None and o.pid == proc.pid for o in owners.values()), (round_, owners)
                before = now
        finally:
            collector.stop()
    finally:
        proc.kill()
        proc.wait()


CHURN_CHILD = r"""
import os, socket, struct, sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1024)
port = lst.getsockname()[1]
pairs = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port)); s, _ = lst.accept(); pairs.append((c, s))
print(port, flush=True)
zero = struct.pack("ii", 1, 0)
i = 0
while True:  # replace one pair at a steady rate, onto the same fd numbers (fd count constant)
    time.sleep(1 / rate)
    c, s = pairs[i % n]
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)  # RST: no TIME_WAIT pile-up
    nc = socket.create_connection(("127.0.0.1", port)); ns, _ = lst.accept()
    os.dup2(nc.fileno(), c.fileno()); os.dup2(ns.fileno(), s.fileno())
    nc.close(); ns.close()
    i += 1
"""


def ss_owners(port: int) -> dict[int, set[int]]:
    """inode → pids that `ss -tanpe` names, for sockets with ``port`` on either side."""
    out = subprocess.run(["ss", "-tanpeH", f"( sport = :{port} or dport = :{port} )"], capture_output=True,
                         text=True, check=True).stdout
    got = {}
    for line in out.splitlines():
        ino = re.search(r"\bino:(\d+)", line)
        if ino and int(ino.group(1)):
            got[int(ino.group(1))] = {int(p) for p in re.findall(r"pid=(\d+)", line)}
    return got


def test_under_churn_every_owner_matches_ss():
    """A child replaces its connections at 50 pairs/s keeping its fd count: each tick, every socket `ss -tanp`
    names has the same owner in a long-lived cache (the old cache lost them after the first swaps)."""
    proc = subprocess.Popen([sys.executable, "-c", CHURN_CHILD, "100", "50"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        cache = OwnerCache()
        compared = wrong = 0
        fresh_seen = set()
        ticks = 0
        end = time.monotonic() + 4
        while ticks < 8 or time.monotonic() < end:
            ticks += 1
            snap = take_snapshot(port=port, owners=cache)
            ss = ss_owners(port)
            mine = {s.inode: snap.owner(s) for s in snap.sockets if s.inode}
            fresh_seen |= set(mine)
            for ino in set(ss) & set(mine):
                compared += 1
                if mine[ino] is None or mine[ino].pid not in ss[ino]:
                    wrong += 1
            time.sleep(0.1)
        assert compared > 300 and len(fresh_seen) > 300  # real churn, really compared
        assert wrong == 0, f"{wrong} of {compared} owners differ from ss -tanp"
        assert len(cache._inode_pid) <= 201 and len(cache._retry) <= 201  # bounded by the table
    finally:
        proc.kill()
        proc.wait()


def test_inodes_nobody_holds_are_retried_with_backoff_not_every_call(monkeypatch):
    now = [1000.0]
    cache = OwnerCache(clock=lambda: now[0])
    s = socket.socket()
    try:
        ghost = 987654321098  # no process holds it (a kernel socket, a process we may not read, ...)
        wanted = [inode_of(s), ghost]
        assert cache.resolve(wanted, [os.getuid(), 0])[inode_of(s)].pid == os.getpid()
        full = cache.full_scans
        for _ in range(5):  # same second: the ghost is not searched again, not even among hot pids
            assert ghost not in cache.resolve(wanted, [os.getuid(), 0])
            assert cache.last_rescanned == 0
        assert cache.full_scans == full
        searched = []
        for _step in range(1, 200):
            now[0] += 0.5
            before = cache.full_scans
            cache.resolve(wanted, [os.getuid(), 0])
            if cache.full_scans > before:
                searched.append(now[0] - 1000.0)
        gaps = [b - a for a, b in zip(searched, searched[1:], strict=False)]
        assert len(searched) >= 4 and gaps == sorted(gaps) and max(gaps) <= owners_mod.RETRY_MAX + 0.5
        assert gaps[-1] > gaps[0]  # backing off
        cache.resolve([inode_of(s)])  # the ghost left the table: forgotten
        assert ghost not in cache._retry and set(cache._inode_pid) == {inode_of(s)}
    finally:
        s.close()


def test_unknown_inode_of_another_uid_searches_that_uids_processes_first(child):
    proc, port = child
    snap = take_snapshot(port=port)
    ino = next(s.inode for s in snap.sockets if s.state == 10)
    cache = OwnerCache()
    cache.resolve([])  # warm: every pid seen, none new
    calls = []
    real = owners_mod._proc_uid
    monkey_uid = 4242

    def fake_uid(pid):
        calls.append(pid)
        return monkey_uid if pid == proc.pid else real(pid)

    owners_mod._proc_uid = fake_uid
    try:
        assert cache.resolve([ino], [monkey_uid])[ino].pid == proc.pid
        assert cache.last_rescanned == 1 and cache.full_scans == 0  # only the uid's process was read
    finally:
        owners_mod._proc_uid = real


def test_time_wait_rows_show_no_user_not_root():
    """The kernel reports uid 0 for a TIME_WAIT socket whoever made it: the User column stays empty."""
    from sockmon.tui import fmt

    script = ("import socket,sys\nl=socket.socket();l.bind(('127.0.0.1',0));l.listen()\n"
              "c=socket.create_connection(l.getsockname());a,_=l.accept();c.close();a.recv(1);a.close()\n"
              "print(l.getsockname()[1])")
    out = subprocess.run(["runuser", "-u", "nobody", "--", "python3", "-c", script], capture_output=True,
                         text=True, check=True, timeout=20)
    port = int(out.stdout)
    snap = take_snapshot(port=port, owners=OwnerCache())
    tw = [s for s in snap.sockets if s.state_name == "TIME_WAIT"]
    assert tw and all(s.inode == 0 and s.uid == 0 for s in tw)  # what the kernel says
    assert [fmt.socket_user(s, snap.owner(s)) for s in tw] == [""] * len(tw)
    live = socket.socket()
    try:
        live.bind(("127.0.0.1", 0))
        live.listen()
        mine = take_snapshot(port=live.getsockname()[1], owners=OwnerCache()).sockets[0]
        assert fmt.socket_user(mine, None) == fmt.user_name(os.getuid())  # other sockets keep their user
    finally:
        live.close()
