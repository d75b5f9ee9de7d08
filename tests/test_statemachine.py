"""The state diagram's model (core/table/statemachine.py): the catalogue against the kernel, counts equal to
the socket table's, edge counts equal to the transitions seen, rates, the followed path, and its bounds."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest
from netnshelp import listening_namespaces
from sockmon.core import states as S
from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.core.states import STATE_CODES
from sockmon.core.table.collector import Collector
from sockmon.core.table.filter import parse_filter
from sockmon.core.table.statemachine import (
    EDGE_BY_KEY,
    EDGES,
    IN_CODE,
    MAX_EDGES,
    NEVER,
    REPORTED,
    STATES,
    StateDiagram,
)
from sockmon.core.table.tracepoint import tracing_available

ROOT = os.geteuid() == 0
TRACING, WHY = tracing_available()
needs_tracing = pytest.mark.skipif(not (ROOT and TRACING), reason=f"tracepoint unavailable: {WHY}")
needs_root = pytest.mark.skipif(not ROOT, reason="namespaces need root")
V4 = socket.AF_INET
LO = "127.0.0.1"


def tr(ts, old, new, sport=40000, dport=8080, src=LO, dst=LO) -> Transition:
    return Transition(ts, V4, src, sport, dst, dport, old, new, "tracepoint")


def sock(state, sport=40000, dport=8080, inode=0) -> Socket:
    return Socket(V4, state, LO, sport, LO, dport, 0, 0, None, 0, inode, sport * 100000 + dport)


def snap(socks, t) -> Snapshot:
    return Snapshot(tuple(socks), t, 0.0, "netlink")


# ---------------------------------------------------------------------------------------- catalogue
def test_catalogue_covers_rfc_states_and_every_edge_once():
    assert len(STATES) == 12 and set(STATES) == set(S.STATE_NAMES)
    keys = [e.key for e in EDGES]
    assert len(keys) == len(set(keys))
    # RFC 9293 figure 5's edges are all there (CLOSED→LISTEN … TIME-WAIT→CLOSED)
    rfc = {(S.CLOSE, S.LISTEN), (S.CLOSE, S.SYN_SENT), (S.LISTEN, S.SYN_RECV), (S.LISTEN, S.SYN_SENT),
           (S.LISTEN, S.CLOSE), (S.SYN_SENT, S.SYN_RECV), (S.SYN_SENT, S.ESTABLISHED), (S.SYN_SENT, S.CLOSE),
           (S.SYN_RECV, S.ESTABLISHED), (S.SYN_RECV, S.FIN_WAIT1), (S.SYN_RECV, S.LISTEN),
           (S.ESTABLISHED, S.FIN_WAIT1), (S.ESTABLISHED, S.CLOSE_WAIT), (S.FIN_WAIT1, S.FIN_WAIT2),
           (S.FIN_WAIT1, S.CLOSING), (S.FIN_WAIT1, S.TIME_WAIT), (S.FIN_WAIT2, S.TIME_WAIT),
           (S.CLOSING, S.TIME_WAIT), (S.TIME_WAIT, S.CLOSE), (S.CLOSE_WAIT, S.LAST_ACK), (S.LAST_ACK, S.CLOSE)}
    assert {e.key for e in EDGES if e.rfc} == rfc
    for e in EDGES:
        assert e.linux in (REPORTED, IN_CODE, NEVER) and e.cause and e.short
        if e.linux == NEVER:
            assert e.note, e  # why Linux never reports it
    # what this kernel never reports (docs/kernel-facts.md)
    assert EDGE_BY_KEY[(S.TIME_WAIT, S.CLOSE)].linux == NEVER
    assert EDGE_BY_KEY[(S.FIN_WAIT2, S.TIME_WAIT)].linux == NEVER
    assert EDGE_BY_KEY[(S.LISTEN, S.NEW_SYN_RECV)].linux == NEVER


# ---------------------------------------------------------------------------------------- model
def test_counts_rates_cumulative_and_window():
    m = StateDiagram(window=10)
    trs = [tr(100.0 + i * 0.1, S.ESTABLISHED, S.FIN_WAIT1, sport=40000 + i) for i in range(20)]
    m.update(snap([sock(S.ESTABLISHED), sock(S.LISTEN, 8080, 0)], 102.0), trs)
    assert m.counts == {S.ESTABLISHED: 1, S.LISTEN: 1} and m.total == 2
    assert m.cumulative == {(S.ESTABLISHED, S.FIN_WAIT1): 20}
    assert m.rate(S.ESTABLISHED, S.FIN_WAIT1) == pytest.approx(20 / 2.0)  # 2 s since the first
    m.update(snap([], 125.0))  # 25 s later: outside the window, the count stays
    assert m.rate(S.ESTABLISHED, S.FIN_WAIT1) == 0.0
    assert m.cumulative[(S.ESTABLISHED, S.FIN_WAIT1)] == 20
    assert m.counts == {} and m.total == 0


def test_filter_applies_to_counts_and_transitions_by_four_tuple():
    m = StateDiagram()
    m.update(snap([sock(S.ESTABLISHED, 40000, 8080), sock(S.ESTABLISHED, 40001, 9090)], 10.0))
    m.set_filter(parse_filter("dport = :8080"), "dport = :8080")
    assert m.counts == {S.ESTABLISHED: 1}  # recounted at once from the snapshot on screen
    m.update(snap([sock(S.ESTABLISHED, 40000, 8080)], 11.0),
             [tr(10.5, S.ESTABLISHED, S.FIN_WAIT1, 40000, 8080), tr(10.5, S.ESTABLISHED, S.FIN_WAIT1, 40001, 9090),
              tr(10.6, S.CLOSE, S.SYN_SENT, 0, 8080)])  # sport 0: the dport still matches
    assert m.cumulative == {(S.ESTABLISHED, S.FIN_WAIT1): 1, (S.CLOSE, S.SYN_SENT): 1}
    m.set_filter(parse_filter("state fin-wait-1"), "state fin-wait-1")  # the state after the edge matches
    m.update(snap([], 12.0), [tr(11.5, S.ESTABLISHED, S.FIN_WAIT1), tr(11.6, S.SYN_SENT, S.ESTABLISHED)])
    assert m.cumulative == {(S.ESTABLISHED, S.FIN_WAIT1): 1}


def test_followed_path_lit_edge_by_edge_and_timewait_state_from_the_table():
    m = StateDiagram()
    life = [(S.SYN_SENT, S.ESTABLISHED), (S.ESTABLISHED, S.FIN_WAIT1), (S.FIN_WAIT1, S.FIN_WAIT2),
            (S.FIN_WAIT2, S.CLOSE)]
    m.follow((LO, 40000, LO, 8080), [tr(1.0, *life[0]), tr(1.0, *life[0], sport=40001)])
    assert m.path_edges() == life[:1] and m.current == S.ESTABLISHED
    t = 2.0
    for i, (old, new) in enumerate(life[1:], start=2):
        m.update(snap([], t), [tr(t, old, new), tr(t, S.ESTABLISHED, S.CLOSE_WAIT, sport=8080, dport=40000)])
        assert m.path_edges() == life[:i]
        t += 1
    tw = Socket(V4, S.TIME_WAIT, LO, 40000, LO, 8080, 0, 0, None, 0, 0, 1)
    m.update(snap([tw], t))
    assert m.current == S.TIME_WAIT  # the timewait mini-socket: the table knows, the tracepoint said CLOSE
    assert m.follow((LO, 40000, LO, 8080)) is False  # the same 4-tuple: path kept
    assert m.follow(None) is True and m.path_edges() == [] and m.current is None


def test_churn_keeps_rate_buckets_bounded():
    """Every (old, new) pair of codes 0..15 for thousands of seconds: at most 12 × 12 edges × window buckets,
    unknown codes counted apart, the followed path capped."""
    m = StateDiagram(window=10, max_path=32)
    rnd = random.Random(9)
    m.follow((LO, 40000, LO, 8080))
    t = 1000.0
    total = known = 0
    for _ in range(300):
        batch = []
        for _ in range(200):
            old, new = rnd.randrange(16), rnd.randrange(16)
            batch.append(tr(t, old, new, sport=rnd.choice((40000, rnd.randrange(1, 65535)))))
            known += old in STATES and new in STATES
            t += 0.05
        total += len(batch)
        m.update(snap([], t), batch)
        assert len(m._rates) <= MAX_EDGES and m.bucket_cells() <= MAX_EDGES * m.window
        assert len(m.path) <= 32
    assert sum(m.cumulative.values()) == known and m.unknown == total - known
    assert len(m._rates) == MAX_EDGES and m.bucket_cells() == MAX_EDGES * 10
    # the window only holds the last 10 s: rates sum to at most what 10 s carried
    assert sum(m.rate(*k) for k in m.cumulative) * 10 <= 10 / 0.05 + 1


# ---------------------------------------------------------------------------------------- real kernel
def _drive(port: int, n: int) -> None:
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((LO, port))
    lst.listen(64)
    for _ in range(n):
        c = socket.create_connection((LO, port))
        a, _ = lst.accept()
        c.sendall(b"hello")
        assert a.recv(5) == b"hello"
        c.close()  # the client closes first: FIN_WAIT1 → FIN_WAIT2 → (TIME_WAIT) on its side
        assert a.recv(1) == b""
        a.close()  # CLOSE_WAIT → LAST_ACK → CLOSE on the server's
    lst.close()


@needs_tracing
@pytest.mark.root
def test_real_collector_counts_equal_table_and_edges_equal_transitions():
    """The real Collector (tracepoint) and real loopback connections. The tracepoint is host-wide and names
    no namespace (and the Collector infers transitions in a view of another namespace), so the traffic is
    isolated by a port no one else uses, through the diagram's own filter (``port:P``): its edges then rose
    by exactly N each, while an unfiltered diagram's counts equal each snapshot's Summary.by_state."""
    n = 25
    probe = socket.socket()
    probe.bind((LO, 0))
    port = probe.getsockname()[1]
    probe.close()
    host = StateDiagram()
    mine = StateDiagram()
    mine.set_filter(parse_filter(f"port:{port}"), f"port:{port}")
    seen: list[Transition] = []
    mismatches: list = []
    lock = threading.Lock()

    def on_update(u) -> None:
        with lock:
            if u.snapshot is None:
                return
            host.update(u.snapshot, u.transitions)
            mine.update(u.snapshot, u.transitions)
            seen.extend(t for t in u.transitions if port in (t.sport, t.dport))
            table = {STATE_CODES[k]: v for k, v in u.summary.by_state.items()}
            if host.counts != table or host.total != u.summary.total:
                mismatches.append((host.counts, table))
            mine_table = Counter(s.state for s in u.snapshot.sockets if port in (s.sport, s.dport))
            if mine.counts != dict(mine_table):
                mismatches.append(("filtered", mine.counts, mine_table))

    c = Collector(interval=0.1, on_update=on_update, use_tracepoint=True)
    try:
        time.sleep(0.4)
        _drive(port, n)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                if mine.cumulative.get((S.LAST_ACK, S.CLOSE), 0) >= n and mine.cumulative.get((S.LISTEN, S.CLOSE)):
                    break
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        c.stop()
    assert not mismatches, mismatches[:3]
    assert seen and all(t.source == "tracepoint" for t in seen)
    assert mine.cumulative == dict(Counter((t.old, t.new) for t in seen))
    expect = {(S.CLOSE, S.LISTEN): 1, (S.LISTEN, S.CLOSE): 1}
    for edge in [(S.CLOSE, S.SYN_SENT), (S.SYN_SENT, S.ESTABLISHED), (S.LISTEN, S.SYN_RECV),
                 (S.SYN_RECV, S.ESTABLISHED), (S.ESTABLISHED, S.FIN_WAIT1), (S.ESTABLISHED, S.CLOSE_WAIT),
                 (S.FIN_WAIT1, S.FIN_WAIT2), (S.FIN_WAIT2, S.CLOSE), (S.CLOSE_WAIT, S.LAST_ACK),
                 (S.LAST_ACK, S.CLOSE)]:
        expect[edge] = n
    assert mine.cumulative == expect
    # what Linux never reports never arrives
    assert not any(EDGE_BY_KEY.get(k) is not None and EDGE_BY_KEY[k].linux == NEVER for k in host.cumulative)
    # every edge the kernel reported is in the catalogue
    assert all(k in EDGE_BY_KEY for k in host.cumulative)
    assert mine.rate(S.ESTABLISHED, S.FIN_WAIT1) > 0


def _ss_counts(ns: str) -> Counter:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-tanH"], capture_output=True, text=True,
                         check=True).stdout
    names = {"ESTAB": "ESTABLISHED", "TIME-WAIT": "TIME_WAIT", "LISTEN": "LISTEN", "SYN-SENT": "SYN_SENT",
             "SYN-RECV": "SYN_RECV", "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2",
             "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "CLOSING": "CLOSING", "UNCONN": "CLOSE"}
    return Counter(STATE_CODES[names[line.split()[0]]] for line in out.splitlines() if line.strip())


@needs_root
@pytest.mark.root
def test_counts_in_a_private_namespace_equal_ss():
    with listening_namespaces(1, port=7000, prefix="diagram-") as (ns,):
        for _ in range(3):
            assert ns.ask("connect").startswith("connected")
        assert ns.ask("close") == "closed"  # three TIME_WAIT on the connecting side
        for _ in range(2):
            assert ns.ask("connect").startswith("connected")
        got = []
        c = Collector(interval=3600, netns=ns.name, on_update=got.append, use_tracepoint=False, start=False)
        try:
            u = c.collect_once()
        finally:
            c.stop()
        m = StateDiagram()
        m.update(u.snapshot, u.transitions)
        ss = _ss_counts(ns.name)
        assert m.counts == dict(ss) == {STATE_CODES[k]: v for k, v in u.summary.by_state.items()}
        assert m.counts == {S.LISTEN: 1, S.ESTABLISHED: 4, S.TIME_WAIT: 3}
