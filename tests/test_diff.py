"""diff(prev, cur) names exactly the transitions that happened between two snapshots."""

from __future__ import annotations

import gc
import socket
import time

from msgspec.structs import replace
from sockmon.core.records import Snapshot, Socket, Timer
from sockmon.core.states import CLOSE, CLOSE_WAIT, ESTABLISHED, FIN_WAIT2, LISTEN, TIME_WAIT
from sockmon.core.table.diff import SnapshotDiff, advance_since, diff
from sockmon.core.table.snapshot import take_snapshot


def _trans(d: SnapshotDiff, cport: int | None = None) -> set:
    """Transitions of our connection (an older TIME_WAIT may share a reused port number)."""
    return {(t.sport, t.dport, t.old_name, t.new_name, t.source) for t in d.transitions
            if cport is None or cport in (t.sport, t.dport)}


def test_diff_of_real_snapshots_names_exactly_the_caused_transitions():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    port = lst.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    srv, _ = lst.accept()
    cport = cli.getsockname()[1]
    try:
        s0 = take_snapshot(port=port)
        s1 = take_snapshot(port=port)
        assert _trans(diff(s0, s1), cport) == set()
        cli.shutdown(socket.SHUT_WR)
        time.sleep(0.02)
        s2 = take_snapshot(port=port)
        d = diff(s1, s2)
        assert _trans(d, cport) == {(cport, port, "ESTABLISHED", "FIN_WAIT2", "inferred"),
                                    (port, cport, "ESTABLISHED", "CLOSE_WAIT", "inferred")}
        # nothing else changed, except possibly an older TIME_WAIT on a reused port number expiring
        assert all(t.old_name == "TIME_WAIT" for t in d.transitions if cport not in (t.sport, t.dport))
        assert len([c for c in d.changed if cport in (c[1].sport, c[1].dport)]) == 2
        srv.close()
        time.sleep(0.02)
        s3 = take_snapshot(port=port)
        d = diff(s2, s3)
        assert _trans(d, cport) == {(cport, port, "FIN_WAIT2", "TIME_WAIT", "inferred"),
                                    (port, cport, "CLOSE_WAIT", "CLOSE", "inferred")}
        assert [s.state for s in d.removed if (s.sport, s.dport) == (port, cport)] == [CLOSE_WAIT]
        assert all(t.ts == s3.taken_at for t in d.transitions)
        assert not [t for t in d.transitions if gc.is_tracked(t)]  # frozen Structs the GC never walks
    finally:
        for s in (lst, cli, srv):
            s.close()


def sock(sport, dport, state, cookie, **kw) -> Socket:
    return replace(Socket(2, state, "127.0.0.1", sport, "127.0.0.1", dport, 0, 0, None, 0, cookie, cookie),
                               **kw)


def snap(t, *socks) -> Snapshot:
    return Snapshot(tuple(socks), t, 1e9 + t, "netlink")


def test_synthetic_added_removed_changed_and_dwell():
    listen = sock(80, 0, LISTEN, 1)
    est = sock(80, 5000, ESTABLISHED, 2)
    gone = sock(80, 5001, ESTABLISHED, 3)
    a = snap(10.0, listen, est, gone)
    new_conn = sock(80, 5002, ESTABLISHED, 4)
    est_cw = replace(est, state=CLOSE_WAIT)
    listen_q = replace(listen, recv_q=1)
    b = snap(12.5, listen_q, est_cw, new_conn)
    since = {listen.key: 1.0, est.key: 9.0, gone.key: 10.0}
    d = diff(a, b, since)
    assert d.added == (new_conn,) and d.removed == (gone,)
    assert set(d.changed) == {(listen, listen_q), (est, est_cw)}
    got = {(t.dport, t.old, t.new): t.dwell_ms for t in d.transitions}
    assert got == {(5000, ESTABLISHED, CLOSE_WAIT): 3500.0, (5001, ESTABLISHED, CLOSE): 2500.0,
                   (5002, CLOSE, ESTABLISHED): None}
    nxt = advance_since(since, d, b)
    assert nxt == {listen.key: 1.0, est.key: 12.5, new_conn.key: 12.5}
    # diff is pure: inputs untouched, same answer twice
    assert diff(a, b, since) == d and since == {listen.key: 1.0, est.key: 9.0, gone.key: 10.0}


def test_timewait_handoff_with_a_new_cookie_is_one_transition():
    fw2 = sock(5000, 80, FIN_WAIT2, 7)
    tw = sock(5000, 80, TIME_WAIT, 8, timer=Timer(3, 60000, 0))
    d = diff(snap(1.0, fw2), snap(2.0, tw))
    assert [(t.old, t.new, t.cookie) for t in d.transitions] == [(FIN_WAIT2, TIME_WAIT, 8)]
    assert d.added == (tw,) and d.removed == (fw2,)


def test_same_state_other_field_changes_are_changed_not_transitions():
    a = sock(80, 5000, ESTABLISHED, 2)
    b = replace(a, send_q=100, timer=Timer(1, 200, 1))
    d = diff(snap(1, a), snap(2, b))
    assert d.changed == ((a, b),) and d.transitions == ()
    c = replace(a, tcp_info_bytes=bytes(248), recv_q=0)  # tcp_info alone changing is no change
    assert diff(snap(1, a), snap(2, c)).empty
    assert CLOSE == 7


# ------------------------------------------------------------------------------------------------
# The fast diff (cookie-indexed, C-level) against the straightforward definition it replaced: the
# same added / removed / changed / transitions (order included) and the same `since` times.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _ident(s: Socket) -> tuple:
    return (s.family, s.src, s.sport, s.dst, s.dport, s.cookie)


def _reference_diff(prev: Snapshot, cur: Snapshot, since: dict) -> SnapshotDiff:
    def material(a, b):
        ta, tb = a.timer, b.timer
        return (a.state != b.state or a.recv_q != b.recv_q or a.send_q != b.send_q
                or (ta.kind if ta else 0) != (tb.kind if tb else 0)
                or (ta.retrans if ta else 0) != (tb.retrans if tb else 0))

    from sockmon.core.records import Transition

    old = {_ident(s): s for s in prev.sockets}
    new = {_ident(s): s for s in cur.sockets}
    ts = cur.taken_at

    def tr(sock, o, n, key, cookie):
        t0 = since.get(key) if key is not None else None
        return Transition(ts, sock.family, sock.src, sock.sport, sock.dst, sock.dport, o, n, "inferred",
                          None if t0 is None else max(0.0, (ts - t0) * 1000.0), cookie)

    added = [s for k, s in new.items() if k not in old]
    removed = [s for k, s in old.items() if k not in new]
    changed, transitions = [], []
    for k, s in new.items():
        o = old.get(k)
        if o is not None and material(o, s):
            changed.append((o, s))
            if o.state != s.state:
                transitions.append(tr(s, o.state, s.state, k, s.cookie))
    by_tuple = {}
    for s in added:
        by_tuple.setdefault((s.family, s.src, s.sport, s.dst, s.dport), s)
    paired = set()
    for o in removed:
        n = by_tuple.get((o.family, o.src, o.sport, o.dst, o.dport))
        if n is not None and id(n) not in paired and n.state != o.state:
            paired.add(id(n))
            transitions.append(tr(n, o.state, n.state, _ident(o), n.cookie))
        else:
            transitions.append(tr(o, o.state, CLOSE, _ident(o), o.cookie))
    for s in added:
        if id(s) not in paired:
            transitions.append(tr(s, CLOSE, s.state, None, s.cookie))
    return SnapshotDiff(tuple(added), tuple(removed), tuple(changed), tuple(transitions))


def _t0(key) -> float:
    return (hash(key) % 1000) / 100.0


_sock_st = st.builds(
    lambda fam, state, sport, dport, rq, cookie, tk, tr: Socket(
        fam, state, "::1" if fam == 10 else "127.0.0.1", sport, "::1" if fam == 10 else "127.0.0.1", dport,
        rq, 0, Timer(tk, 1000 + sport, tr) if tk else None, 0, cookie, cookie),
    st.sampled_from([2, 10]), st.sampled_from([ESTABLISHED, LISTEN, TIME_WAIT, FIN_WAIT2, CLOSE_WAIT]),
    st.integers(1, 4), st.integers(0, 3), st.integers(0, 1), st.integers(0, 6), st.integers(0, 2),
    st.integers(0, 1))


@settings(max_examples=400, deadline=None)
@given(st.lists(_sock_st, max_size=12), st.lists(_sock_st, max_size=12))
def test_fast_diff_equals_the_reference_definition(a, b):
    prev, cur = snap(10.0, *a), snap(20.0, *b)
    ref_since = {_ident(s): _t0(s.key) for s in a}
    since = {s.key: _t0(s.key) for s in a}
    d = diff(prev, cur, since)
    assert d == _reference_diff(prev, cur, ref_since)
    if len({s.key for s in b}) == len(b) and len({_ident(s) for s in b}) == len(b):
        # reference advance_since: 6-tuple keyed; ours keyed by Socket.key
        moved = {_ident(n) for o, n in d.changed if o.state != n.state}
        ref = {_ident(s): (20.0 if (_ident(s) not in ref_since or _ident(s) in moved) else ref_since[_ident(s)])
               for s in b}
        assert advance_since(since, d, cur) == {s.key: ref[_ident(s)] for s in b}


def test_key_is_the_cookie_or_the_six_tuple_and_a_reused_cookie_with_another_tuple_is_two_sockets():
    a = sock(80, 5000, ESTABLISHED, 9)
    assert a.key == 9
    nocookie = replace(a, cookie=0)
    assert nocookie.key == (2, "127.0.0.1", 80, "127.0.0.1", 5000, 0)
    b = replace(a, dport=5001)  # same cookie, other peer: not the same socket
    d = diff(snap(1, a), snap(2, b), {9: 0.5})
    assert d.added == (b,) and d.removed == (a,) and d.changed == ()
    assert advance_since({9: 0.5}, d, snap(2, b)) == {9: 2}


@settings(max_examples=200, deadline=None)
@given(st.lists(_sock_st, max_size=10), st.lists(_sock_st, max_size=10), st.lists(_sock_st, max_size=10))
def test_chained_diffs_reusing_the_last_index_equal_the_reference(a, b, c):
    s1, s2, s3 = snap(1.0, *a), snap(2.0, *b), snap(3.0, *c)
    assert diff(s1, s2) == _reference_diff(s1, s2, {})
    assert diff(s2, s3) == _reference_diff(s2, s3, {})  # s2's index comes from the previous call
    assert diff(s2, s3) == _reference_diff(s2, s3, {})
    assert diff(s1, s3) == _reference_diff(s1, s3, {})
