"""diff(prev, cur) names exactly the transitions that happened between two snapshots."""

from __future__ import annotations

import dataclasses
import socket
import time

from sockmon.core.diff import SnapshotDiff, advance_since, diff
from sockmon.core.records import Snapshot, Socket, Timer
from sockmon.core.snapshot import take_snapshot
from sockmon.core.states import CLOSE, CLOSE_WAIT, ESTABLISHED, FIN_WAIT2, LISTEN, TIME_WAIT


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
    finally:
        for s in (lst, cli, srv):
            s.close()


def sock(sport, dport, state, cookie, **kw) -> Socket:
    return dataclasses.replace(Socket(2, state, "127.0.0.1", sport, "127.0.0.1", dport, 0, 0, None, 0, cookie, cookie),
                               **kw)


def snap(t, *socks) -> Snapshot:
    return Snapshot(tuple(socks), t, 1e9 + t, "netlink")


def test_synthetic_added_removed_changed_and_dwell():
    listen = sock(80, 0, LISTEN, 1)
    est = sock(80, 5000, ESTABLISHED, 2)
    gone = sock(80, 5001, ESTABLISHED, 3)
    a = snap(10.0, listen, est, gone)
    new_conn = sock(80, 5002, ESTABLISHED, 4)
    est_cw = dataclasses.replace(est, state=CLOSE_WAIT)
    listen_q = dataclasses.replace(listen, recv_q=1)
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
    b = dataclasses.replace(a, send_q=100, timer=Timer(1, 200, 1))
    d = diff(snap(1, a), snap(2, b))
    assert d.changed == ((a, b),) and d.transitions == ()
    c = dataclasses.replace(a, tcp_info=None, recv_q=0)
    assert diff(snap(1, a), snap(2, c)).empty
    assert CLOSE == 7
