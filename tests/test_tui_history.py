"""core/history.py: per-socket transition history keyed by 4-tuple."""

import socket

from sockmon.core.records import Transition
from sockmon.core.states import CLOSE_WAIT, ESTABLISHED, LAST_ACK, SYN_SENT
from sockmon.core.table.history import TransitionHistory


def tr(ts, sport, old, new, src="127.0.0.1"):
    return Transition(ts, socket.AF_INET, src, sport, "127.0.0.1", 80, old, new, "inferred")


def test_history_keyed_by_four_tuple_and_ordered():
    h = TransitionHistory()
    h.add([tr(2.0, 1000, ESTABLISHED, CLOSE_WAIT), tr(1.0, 1000, SYN_SENT, ESTABLISHED), tr(1.5, 1001, SYN_SENT, ESTABLISHED)])
    got = h.get("127.0.0.1", 1000, "127.0.0.1", 80)
    assert [(t.old, t.new) for t in got] == [(SYN_SENT, ESTABLISHED), (ESTABLISHED, CLOSE_WAIT)]
    assert len(h.get("127.0.0.1", 1001, "127.0.0.1", 80)) == 1
    assert h.get("127.0.0.1", 9, "127.0.0.1", 80) == []
    # v4-mapped v6 spelling finds the same socket
    assert len(h.get("::ffff:127.0.0.1", 1000, "::ffff:127.0.0.1", 80)) == 2


def test_history_is_bounded():
    h = TransitionHistory(max_sockets=3, per_socket=2)
    for port in range(10):
        h.add([tr(port, port, SYN_SENT, ESTABLISHED)])
    assert len(h) == 3
    h.add([tr(20 + i, 9, ESTABLISHED, LAST_ACK) for i in range(5)])
    assert len(h.get("127.0.0.1", 9, "127.0.0.1", 80)) == 2


def test_a_reused_4_tuple_keeps_only_its_newest_socket_and_idle_ones_are_forgotten():
    from sockmon.core.states import CLOSE, TIME_WAIT

    h = TransitionHistory(max_age=60.0)
    for life in range(50):  # churn: the same ephemeral port again and again
        t = life * 1.0
        h.add([tr(t, 5000, CLOSE, SYN_SENT), tr(t + 0.1, 5000, SYN_SENT, ESTABLISHED),
               tr(t + 0.2, 5000, ESTABLISHED, CLOSE)])
    got = h.get("127.0.0.1", 5000, "127.0.0.1", 80)
    assert [t.ts for t in got] == [49.0, 49.1, 49.2], "the newest socket's life, not 50 lives"
    h.add([tr(120.0, 5001, ESTABLISHED, TIME_WAIT)])
    assert h.get("127.0.0.1", 5000, "127.0.0.1", 80) == [], "idle for more than max_age: forgotten"
    assert len(h) == 1
