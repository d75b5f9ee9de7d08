"""Every namespace at once: `take_snapshot(netns=ALL_NETNS)`, `sockmon ls --all-netns`, the collector's
namespace switch and its tracepoint transitions in the all-namespaces view (root: real namespaces)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from netnshelp import listening_namespaces
from sockmon.core.netns import ALL_NETNS, NetnsIdents, NetnsRef, all_netns, each_netns
from sockmon.core.records import SOCKET_IDENTITY, Snapshot, Socket
from sockmon.core.states import CLOSE, ESTABLISHED, LISTEN
from sockmon.core.table.collector import Collector, Update
from sockmon.core.table.diff import diff
from sockmon.core.table.owners import OwnerCache
from sockmon.core.table.snapshot import take_snapshot, take_snapshot_all
from sockmon.core.table.summary import summarize
from sockmon.core.table.tracepoint import tracing_available

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating namespaces needs root")
SOCKMON = [sys.executable, "-m", "sockmon"]
PORT = 80  # the same 127.0.0.1:80 listener in every test namespace: nothing on the host has it
TRACING, WHY = tracing_available()


def sockmon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SOCKMON, *args], capture_output=True, text=True, timeout=30)


def listeners(rows, names):
    return [r for r in rows if r["sport"] == PORT and r["state"] == "LISTEN" and r.get("netns") in names]


# ---------------------------------------------------------------------------------------- sockmon ls
def test_ls_all_netns_json_lists_a_socket_that_exists_only_in_a_test_namespace():
    with listening_namespaces(2, PORT) as (a, b):
        r = sockmon("ls", "--all-netns", "--json")
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        assert rows and all("netns" in row for row in rows), "every row says its namespace"
        own = [r for r in rows if r["netns"] == all_netns()[0].ident]
        assert own, "our own namespace is in the view too"
        found = listeners(rows, {a.name, b.name})
        # the same 4-tuple in two namespaces: two rows, one per namespace, each with its own owner
        assert sorted(r["netns"] for r in found) == sorted([a.name, b.name])
        assert {(r["src"], r["sport"], r["dst"], r["dport"]) for r in found} == {("127.0.0.1", PORT, "0.0.0.0", 0)}
        assert {r["netns"]: r["pid"] for r in found} == {a.name: a.pid, b.name: b.pid}
        assert len({r["cookie"] for r in found}) == 2, "cookies are unique host-wide"
        # one namespace only: `ls` of our own namespace does not see them, `ls --netns A` sees one, untagged
        plain = [json.loads(line) for line in sockmon("ls", "--json", "--port", str(PORT)).stdout.splitlines()]
        assert not [r for r in plain if r["state"] == "LISTEN" and r["src"] == "127.0.0.1"]
        one = [json.loads(line) for line in sockmon("ls", "--json", "--netns", a.name).stdout.splitlines()]
        assert [r["pid"] for r in one if r["sport"] == PORT] == [a.pid] and "netns" not in one[0]


def test_ls_all_netns_text_table_has_a_netns_column_and_refuses_netns_with_it():
    with listening_namespaces(1, PORT) as (a,):
        r = sockmon("ls", "--all-netns", "--listening")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split()[:2] == ["Netns", "State"]
        mine = [line for line in lines if line.startswith(a.name)]
        assert len(mine) == 1 and "127.0.0.1:80" in mine[0] and f"pid={a.pid}" in mine[0]
    for args in (("ls", "--all-netns", "--netns", "x"), ("--netns", "x", "ls", "--all-netns"),
                 ("--netns", "x", "watch", "--all-netns")):
        r = sockmon(*args)
        assert r.returncode == 2 and ("not allowed with" in r.stderr or "exclude each other" in r.stderr), args


# ---------------------------------------------------------------------------------------- the core
def test_all_snapshot_tags_every_socket_keys_stay_unique_and_summary_counts_every_namespace():
    with listening_namespaces(2, PORT) as (a, b):
        snap = take_snapshot(netns=ALL_NETNS, owners=OwnerCache())
        assert snap.netns == ALL_NETNS and snap.source == "netlink"
        idents = {ref.ident for ref in snap.namespaces}
        assert {a.name, b.name} <= idents
        assert all(s.netns in idents for s in snap.sockets)
        mine = [s for s in snap.sockets if s.sport == PORT and s.netns in (a.name, b.name)]
        assert len(mine) == 2 and mine[0].four_tuple == mine[1].four_tuple
        assert {snap.owner(s).pid for s in mine} == {a.pid, b.pid}, "one OwnerCache serves every namespace"
        keys = [s.key for s in snap.sockets]
        assert len(set(keys)) == len(keys) and len(set(map(SOCKET_IDENTITY, snap.sockets))) == len(keys)
        # a second snapshot of the same sockets: nothing added, removed or inferred
        again = take_snapshot(netns=ALL_NETNS)
        d = diff(snap, again)
        assert not [s for s in (*d.added, *d.removed) if s.sport == PORT]
        assert not [t for t in d.transitions if PORT in (t.sport, t.dport)]
        summary = summarize(snap)
        assert summary.total == len(snap.sockets)
        assert summary.count("LISTEN") == sum(s.state == LISTEN for s in snap.sockets) >= 2
        assert summary.listen_overflows is not None and summary.keepalive_time is not None


def test_without_cookies_the_namespace_keeps_two_equal_4_tuples_apart():
    """/proc/net/tcp has no cookies: the identity tuple carries the namespace, and a socket gone in one
    namespace while the same 4-tuple appears in another is no transition of one socket."""
    def sock(ns: str, state: int) -> Socket:
        return Socket(socket.AF_INET, state, "127.0.0.1", 80, "127.0.0.1", 5000, 0, 0, None, 0, 0, 0, netns=ns)

    a, b = sock("a", ESTABLISHED), sock("b", ESTABLISHED)
    assert a.key != b.key and SOCKET_IDENTITY(a) != SOCKET_IDENTITY(b)
    assert Socket(socket.AF_INET, 1, "127.0.0.1", 80, "127.0.0.1", 5000, 0, 0, None, 0, 0, 0).key == (
        2, "127.0.0.1", 80, "127.0.0.1", 5000, 0), "a one-namespace socket keeps its 6-tuple key"
    prev = Snapshot((a,), 1.0, 1.0, "procfs", netns=ALL_NETNS)
    cur = Snapshot((sock("b", 6),), 2.0, 2.0, "procfs", netns=ALL_NETNS)
    d = diff(prev, cur)
    assert {(t.netns, t.old, t.new) for t in d.transitions} == {("a", ESTABLISHED, CLOSE), ("b", CLOSE, 6)}


def test_a_namespace_that_vanished_is_left_out_not_an_error():
    with listening_namespaces(1, PORT) as (a,):
        child = subprocess.Popen(["unshare", "-n", "sleep", "30"])
        try:
            deadline = time.monotonic() + 5
            while True:
                refs = all_netns()
                gone = next((r for r in refs if r.pid == child.pid), None)
                if gone is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert gone is not None
        finally:
            child.kill()
            child.wait()
        # and a pid that now lives in another namespace than the one listed (pid reuse)
        stale = NetnsRef(ident="pid:stale", inode=1, pid=os.getpid(), label="stale")
        snap = take_snapshot_all(refs=[*refs, stale])
        assert gone.ident in snap.note and "gone" in snap.note and "pid:stale" in snap.note
        assert a.name in {r.ident for r in snap.namespaces}
        assert gone.ident not in {r.ident for r in snap.namespaces}
        assert [s.netns for s in snap.sockets if s.sport == PORT] == [a.name]
    with pytest.raises(Exception, match="no network namespace could be read"):
        each_netns([stale], lambda ref: 1)


def test_unnamed_namespaces_keep_their_ident_while_they_live():
    idents = NetnsIdents()
    first = idents.stable([NetnsRef("pid:10", 5, pid=10), NetnsRef("x", 6, name="x")])
    assert [r.ident for r in first] == ["pid:10", "x"]
    later = idents.stable([NetnsRef("pid:11", 5, pid=11), NetnsRef("x", 6, name="x"), NetnsRef("pid:12", 7, pid=12)])
    assert [r.ident for r in later] == ["pid:10", "x", "pid:12"] and later[0].pid == 11
    assert [r.ident for r in idents.stable([NetnsRef("pid:13", 5, pid=13)])] == ["pid:10"]
    assert idents.stable([]) == [] and [r.ident for r in idents.stable([NetnsRef("pid:13", 5, pid=13)])] == ["pid:13"]


# ---------------------------------------------------------------------------------------- the collector
def _ports(update: Update, names) -> list[tuple[str | None, int]]:
    return sorted((s.netns, s.state) for s in update.snapshot.sockets if s.sport == PORT and (
        s.netns in names or update.snapshot.netns not in (None, ALL_NETNS)))


def test_collector_switches_namespace_at_runtime_as_a_resync():
    got: list[Update] = []
    with listening_namespaces(2, PORT) as (a, b):
        c = Collector(interval=1.0, on_update=got.append, use_tracepoint=False, start=False)
        try:
            first = c.collect_once()
            assert first.snapshot.netns is None and not [s for s in first.snapshot.sockets
                                                         if s.sport == PORT and s.state == LISTEN]
            c.set_netns(a.name)
            u = c.collect_once()
            assert u.snapshot.netns == a.name and u.diff is None and u.transitions == () and u.base_taken_at is None
            assert [(s.state, s.netns) for s in u.snapshot.sockets if s.sport == PORT] == [(LISTEN, None)]
            assert c.collect_once().diff is not None, "after the switch the next tick diffs again"
            c.set_netns(ALL_NETNS)
            u = c.collect_once()
            assert u.snapshot.netns == ALL_NETNS and u.diff is None and u.transitions == ()
            assert _ports(u, {a.name, b.name}) == sorted([(a.name, LISTEN), (b.name, LISTEN)])
            assert u.summary.total == len(u.snapshot.sockets)
            a.ask("connect")
            u = c.collect_once()  # inferred in the all view: tagged with the namespace
            mine = [t for t in u.transitions if PORT in (t.sport, t.dport)]
            assert mine and {t.netns for t in mine} == {a.name}
            c.set_netns(None)
            u = c.collect_once()
            assert u.snapshot.netns is None and u.diff is None and u.transitions == ()
        finally:
            c.stop()


@pytest.mark.skipif(not TRACING, reason=WHY)
def test_tracepoint_transitions_in_the_all_view_name_their_namespace_and_one_namespace_infers():
    with listening_namespaces(2, PORT) as (a, b):
        c = Collector(interval=1.0, netns=ALL_NETNS, on_update=lambda u: None, start=False)
        try:
            assert c.transition_source == "tracepoint"
            c.collect_once()
            sport = int(a.ask("connect").split()[1])
            time.sleep(0.05)
            u = c.collect_once()
            assert u.transition_source == "tracepoint"
            mine = [t for t in u.transitions if (t.sport, t.dport) in ((sport, PORT), (PORT, sport))]
            assert {(t.old, t.new) for t in mine if t.sport == sport} >= {(2, ESTABLISHED)}
            assert {t.netns for t in mine} == {a.name}, "named from the snapshot, never b"
            syn = [t for t in u.transitions if t.sport == 0 and t.dport == PORT and t.new == 2]
            assert syn and {t.netns for t in syn} == {a.name}, "SYN_SENT before the port: named by the next step"
            # one other namespace: the tracepoint (which sees every namespace) is not used there
            c.set_netns(b.name)
            u = c.collect_once()
            assert c.transition_source == u.transition_source == "inferred" and "inferred" in c.tracer_note
            a.ask("close")  # a's transitions are no business of b's view
            u = c.collect_once()
            assert not [t for t in u.transitions if sport in (t.sport, t.dport)]
            c.set_netns(ALL_NETNS)
            assert c.collect_once().transition_source == "tracepoint"
        finally:
            c.stop()


def test_a_hostile_namespace_name_is_inert_in_the_text_table_and_exact_in_json():
    from sockmon.core.jsonout import snapshot_lines

    from sockmon.cli.ls import format_table

    evil = "\x1b[2J\x1b]0;owned\x07ns"
    s = Socket(socket.AF_INET, LISTEN, "127.0.0.1", 80, "0.0.0.0", 0, 0, 8, None, 0, 0, 7, netns=evil)
    snap = Snapshot((s,), 1.0, 1.0, "netlink", netns=ALL_NETNS)
    text = "\n".join(format_table(snap))
    assert "\x1b" not in text and "\x07" not in text and "\\x1b[2J" in text
    row = json.loads(b"".join(snapshot_lines(snap)))
    assert row["netns"] == evil
