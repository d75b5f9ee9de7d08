"""`ConnectionTimeline` (core/lab/timeline.py) fed by hand: events, transitions and snapshots, no sockets."""

from __future__ import annotations

import socket

from sockmon.core import states as S
from sockmon.core.lab.events import Event, EventKind
from sockmon.core.lab.timeline import MAX_EVENTS, MAX_LINES, MAX_TRANSITIONS, ConnectionTimeline
from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.core.series import SAMPLES
from sockmon.core.tcpinfo import encode_tcp_info
from test_tui_fixtures import info

V4 = socket.AF_INET
LOCAL, PEER = ("127.0.0.1", 40000), ("127.0.0.1", 8080)


def ev(ts, kind, detail="", **kw) -> Event:
    return Event(kind, detail, ts, conn=kw.pop("conn", "client"), **kw)


def tr(ts, old, new, local=LOCAL, peer=PEER, source="tracepoint") -> Transition:
    return Transition(ts, V4, *local, *peer, old, new, source, None)


def sock(state, local=LOCAL, peer=PEER, *, inode=1, cookie=7, tcp_info=None) -> Socket:
    return Socket(V4, state, *local, *peer, 0, 0, None, 0, inode, cookie, 0,
                  None if tcp_info is None else encode_tcp_info(tcp_info))


def snap(ts, *socks) -> Snapshot:
    return Snapshot(tuple(socks), ts, 0.0, "netlink")


def connected() -> ConnectionTimeline:
    m = ConnectionTimeline()
    m.follow_client_connecting()
    m.add_event(ev(1.0, EventKind.CALL, "connect(127.0.0.1:8080)"))
    m.add_event(ev(1.1, EventKind.STATE, state="ESTABLISHED"))
    m.client_endpoints(LOCAL, PEER)
    return m


def test_client_counts_are_the_engines_and_never_double():
    m = connected()
    m.add_event(ev(2.0, EventKind.BYTES_OUT, nbytes=6))
    m.add_event(ev(2.1, EventKind.BYTES_IN, nbytes=7, data=b"+PONG\r\n"))
    assert (m.bytes_in, m.bytes_out) == (7, 6)
    other = sock(S.ESTABLISHED, ("127.0.0.1", 6379), ("127.0.0.1", 51820), tcp_info=info(bytes_received=3,
                                                                                         bytes_acked=5))
    for _ in range(3):  # re-selecting, back to the client, again: replays never add to the counts
        m.follow_socket(sock(S.ESTABLISHED))
        m.follow_client()
    assert (m.bytes_in, m.bytes_out) == (7, 6)
    m.follow_socket(other)
    assert (m.bytes_in, m.bytes_out) == (3, 5), "another socket: its own tcp_info counters, not the client's"
    m.follow_socket(sock(S.ESTABLISHED, ("127.0.0.1", 6379), ("127.0.0.1", 51820),
                         tcp_info=info(bytes_received=3, bytes_acked=5)))  # the same socket, a fresher record
    assert (m.bytes_in, m.bytes_out) == (3, 5)
    m.follow_socket(sock(S.TIME_WAIT, inode=0, cookie=9))  # no tcp_info: no counts at all
    assert m.bytes_in is None and m.bytes_out is None


def test_reselecting_the_same_socket_keeps_its_lines():
    m = connected()
    m.add_transitions([tr(1.05, S.SYN_SENT, S.ESTABLISHED)])
    m.follow_socket(sock(S.ESTABLISHED))
    lines = len(m.lines)
    m.follow_socket(sock(S.ESTABLISHED))
    assert len(m.lines) == lines
    kinds = [line.kind for line in m.lines]
    assert kinds.count("transition") == 1


def test_client_followed_into_time_wait_by_4_tuple_after_its_fd_closed():
    m = connected()
    m.add_transitions([tr(3.0, S.ESTABLISHED, S.FIN_WAIT1), tr(3.001, S.FIN_WAIT1, S.FIN_WAIT2),
                       tr(3.002, S.FIN_WAIT2, S.CLOSE)])
    m.add_event(ev(3.003, EventKind.CLOSED, "fd closed"))
    assert m.kernel_state == "CLOSE" and m.client_closed
    # the timewait socket: same 4-tuple, no inode, another cookie
    m.observe(snap(3.5, sock(S.TIME_WAIT, inode=0, cookie=99)))
    assert m.kernel_state == "TIME_WAIT" and m.client_state == "TIME_WAIT"
    assert m.lines[-1].kind == "row" and m.lines[-1].state == "TIME_WAIT"
    m.observe(snap(4.0, sock(S.TIME_WAIT, inode=0, cookie=99)))
    assert [line.state for line in m.lines].count("TIME_WAIT") == 1, "a state already shown is not repeated"
    m.observe(snap(64.0))  # the timewait socket expired
    assert m.kernel_state is None and m.gone and m.client_gone


def test_graceful_close_that_times_out_shows_the_kernels_fin_wait2():
    m = connected()
    m.add_transitions([tr(3.0, S.ESTABLISHED, S.FIN_WAIT1), tr(3.001, S.FIN_WAIT1, S.FIN_WAIT2)])
    m.observe(snap(4.0, sock(S.FIN_WAIT2)))  # fd still open: nothing new
    # close(): the full socket goes to CLOSE, a timewait socket in FIN_WAIT2 takes the 4-tuple
    m.add_transitions([tr(8.0, S.FIN_WAIT2, S.CLOSE)])
    m.add_event(ev(8.0001, EventKind.CLOSED, "close() (graceful close timed out)"))
    m.observe(snap(8.2, sock(S.FIN_WAIT2, inode=0, cookie=98)))
    assert m.kernel_state == "FIN_WAIT2" and m.client_state == "FIN_WAIT2"


def test_client_state_is_tracked_while_the_view_follows_another_socket():
    m = connected()
    m.follow_socket(sock(S.ESTABLISHED, ("127.0.0.1", 6379), ("127.0.0.1", 51820)))
    m.add_transitions([tr(3.0, S.ESTABLISHED, S.FIN_WAIT1), tr(3.002, S.FIN_WAIT2, S.CLOSE)])
    m.add_event(ev(3.003, EventKind.CLOSED, "fd closed"))
    m.observe(snap(3.5, sock(S.TIME_WAIT, inode=0, cookie=99),
                   sock(S.ESTABLISHED, ("127.0.0.1", 6379), ("127.0.0.1", 51820), cookie=5)))
    assert m.client_state == "TIME_WAIT"
    assert m.kernel_state == "ESTABLISHED"  # the followed socket's own
    assert all(line.state != "TIME_WAIT" for line in m.lines)


def test_selected_socket_followed_into_time_wait():
    m = ConnectionTimeline()
    m.follow_socket(sock(S.ESTABLISHED, cookie=7))
    m.add_transitions([tr(3.0, S.ESTABLISHED, S.FIN_WAIT1), tr(3.002, S.FIN_WAIT2, S.CLOSE)])
    m.observe(snap(3.5, sock(S.TIME_WAIT, inode=0, cookie=99)))
    assert m.kernel_state == "TIME_WAIT" and m.socket.cookie == 99


def test_connect_failure_ends_syn_sent():
    m = ConnectionTimeline()
    m.follow_client_connecting()
    m.add_event(ev(1.0, EventKind.CALL, "connect(10.1.2.3:80)"))
    m.add_event(ev(1.01, EventKind.STATE, state="SYN_SENT"))
    assert m.client_state == "SYN_SENT" and m.kernel_state == "SYN_SENT"
    m.add_event(ev(4.0, EventKind.FAILED, "connect(10.1.2.3:80) timed out after 3 s", errno_name="ETIMEDOUT"))
    assert m.client_failed and m.client_closed
    assert m.client_state is None and m.kernel_state is None


def test_everything_fed_by_events_is_bounded():
    m = connected()
    for i in range(3 * MAX_EVENTS):
        m.add_event(ev(10.0 + i, EventKind.BYTES_IN, nbytes=1))
    for i in range(3 * MAX_TRANSITIONS):  # every other socket's transitions, host-wide
        m.add_transitions([tr(10.0 + i, S.SYN_SENT, S.ESTABLISHED, ("127.0.0.1", 1024 + i % 60000))])
    for i in range(3 * SAMPLES):  # a refresh of the followed connection: one sample each
        m.observe(snap(20_000.0 + i, sock(S.ESTABLISHED)))
    sizes = m.sizes()
    assert sizes == {"lines": MAX_LINES, "events": MAX_EVENTS, "transitions": MAX_TRANSITIONS,
                     "samples": SAMPLES}
    assert [s.ts for s in m.samples][0] == 20_000.0 + 2 * SAMPLES  # the newest kept, oldest dropped
    assert m.client_bytes_in == 3 * MAX_EVENTS  # counts are not derived from what is kept
    assert not [name for name, value in vars(m).items() if isinstance(value, (set, dict))]


def test_a_snapshot_begun_before_the_close_adds_no_kernel_line():
    """A collection that began before our close() but arrived after it (its rows were read during the
    close) must not put a TIME_WAIT line before the close's own transitions; the next snapshot does."""
    m = connected()
    m.add_event(ev(5.0, EventKind.CLOSED, "close()"))
    m.client_fd_closed()
    before = len(m.lines)
    m.observe(snap(4.9, sock(S.TIME_WAIT, inode=0, cookie=99)))
    assert len(m.lines) == before and m.client_state == "ESTABLISHED"
    m.observe(snap(5.2, sock(S.TIME_WAIT, inode=0, cookie=99)))
    assert m.client_state == "TIME_WAIT" and len(m.lines) == before + 1
