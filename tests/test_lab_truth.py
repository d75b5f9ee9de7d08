"""The lab engines tell the kernel's truth: a connect timeout is never reported for a handshake the kernel
completed, a full accept queue still times out, an ETIMEDOUT from keepalive says so (with the probe
count and the time it took from the last segment received), and the engines work inside a namespace."""

import os
import shutil
import socket
import subprocess
import time

import pytest
from sockhelp import Events, veth_netns_pair
from sockmon.core.errors import BadInput
from sockmon.core.lab.client import ClientEngine
from sockmon.core.lab.events import EventKind
from sockmon.core.lab.options import Keepalive, dead_peer
from sockmon.core.lab.server import ServerEngine

needs_netns = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                 reason="needs root and iproute2 to create network namespaces")


def test_tiny_connect_timeout_never_reports_a_completed_handshake():
    """timeout 0.001 s to a live loopback listener: whenever the kernel completed the handshake (the
    listener has the connection in its accept queue), the client must report success, not a timeout."""
    lst = socket.create_server(("127.0.0.1", 0), backlog=64)
    lst.setblocking(False)
    outcomes = []

    class SlowEvents(Events):  # an event consumer as slow as a UI's message queue under load
        def __call__(self, event) -> None:
            time.sleep(0.002)
            super().__call__(event)

    try:
        for _ in range(25):
            ev = SlowEvents()
            eng = ClientEngine(on_event=ev, sample_interval=0.05)
            try:
                eng.connect(*lst.getsockname(), timeout=0.001)
                eng.wait_connected(3)  # returns once the connect succeeded or failed
                timed_out = [e for e in ev.of(EventKind.FAILED) if e.errno_name == "ETIMEDOUT"]
                try:
                    accepted, _ = lst.accept()  # the kernel's own word: the handshake completed
                    accepted.close()
                    completed = True
                except BlockingIOError:
                    completed = False
                if timed_out:
                    assert not completed, "timed out reported for a handshake the kernel completed: " + \
                        "\n".join(e.line() for e in ev.snapshot())
                    assert "ESTABLISHED" not in ev.states(), [e.line() for e in ev.snapshot()]
                    outcomes.append("timeout")
                else:
                    assert eng.connected and completed, [e.line() for e in ev.snapshot()]
                    assert "ESTABLISHED" in ev.states()
                    outcomes.append("ok")
            finally:
                eng.stop()
    finally:
        lst.close()
    assert outcomes.count("ok") >= 20, outcomes  # loopback completes the handshake inside connect()


def test_full_accept_queue_still_times_out():
    """backlog 0 holds one connection; the next SYN is dropped: a real timeout, stated as SYN_SENT."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    first = socket.create_connection(lst.getsockname())  # fills the accept queue (never accepted)
    ev = Events()
    eng = ClientEngine(on_event=ev, sample_interval=0.05)
    try:
        t0 = time.monotonic()
        eng.connect(*lst.getsockname(), timeout=0.3)
        assert not eng.wait_connected(5)
        took = time.monotonic() - t0
        failed = ev.wait(EventKind.FAILED, where=lambda e: e.errno_name == "ETIMEDOUT")
        assert "timed out after 0.3 s" in failed.detail and "SYN_SENT" in failed.detail, failed.detail
        assert "SYN_SENT" in ev.states()
        assert 0.3 <= took < 1.5, took
    finally:
        eng.stop()
        first.close()
        lst.close()


def test_dead_peer_prediction_is_the_kernels_rule():
    ka = Keepalive(True, 60, 10, 3)
    dp = dead_peer(ka, since_recv_ms=20_000)
    assert (dp.at_s, dp.remaining_s) == (90, 70)
    assert "idle 60 + intvl 10 × cnt 3" in dp.formula
    # probing has started: next firing sends probe 2, then one more, then ETIMEDOUT
    dp = dead_peer(ka, since_recv_ms=65_000, probes_out=1, timer_remaining_ms=5_000)
    assert dp.remaining_s == 5 + 10 * 2
    # keepalive turned on late: the timer fires a full idle after that, not idle after the last data
    dp = dead_peer(ka, since_recv_ms=100_000, timer_remaining_ms=40_000)
    assert dp.remaining_s == 40 + 30 and dp.at_s == 170 and "late" in dp.note
    # turned on by sockmon after a long idle time: the first probe goes at once (TCP_KEEPIDLE set last)
    assert dead_peer(ka, since_recv_ms=100_000).remaining_s == 30
    assert dead_peer(Keepalive(False), since_recv_ms=0).at_s is None
    assert "unacknowledged" in dead_peer(ka, since_recv_ms=0, unacked=2).note


@pytest.fixture
def two_netns():
    with veth_netns_pair("o", "10.214.0") as (a, b, vb):
        yield a, b, lambda: subprocess.run(["ip", "-n", b, "link", "set", vb, "down"], check=True,
                                           capture_output=True, timeout=10)


@needs_netns
@pytest.mark.slow
def test_keepalive_etimedout_is_explained_and_timed_from_the_last_segment(two_netns):
    """Client in namespace A, echo server in B (both engines entered their namespace); keepalive 2/1/2;
    the peer goes silent (link down) right after the last data: recv fails with ETIMEDOUT explained as
    keepalive giving up after 2 probes, idle + intvl × cnt = 4 s after the last segment received."""
    a, b, silence = two_netns
    sev = Events()
    srv = ServerEngine("10.214.0.2", 7001, mode="echo", on_event=sev, netns=b).start()
    ev = Events()
    eng = ClientEngine(on_event=ev, sample_interval=0.05, netns=a)
    try:
        eng.connect("10.214.0.2", 7001, timeout=3)
        assert eng.wait_connected(5), [e.line() for e in ev.snapshot()]
        assert eng.set_keepalive(Keepalive(True, 2, 1, 2)).result(3) == Keepalive(True, 2, 1, 2)
        opt = ev.wait(EventKind.OPTION)
        assert opt.options is not None and opt.options.keepalive == Keepalive(True, 2, 1, 2)
        eng.send(b"ping")
        last = ev.wait(EventKind.BYTES_IN)
        silence()
        failed = ev.wait(EventKind.ERROR, timeout=10, where=lambda e: e.errno_name == "ETIMEDOUT")
        took = failed.ts - last.ts
        print(failed.line(), f"{took:.2f} s after the last data")
        assert "keepalive gave up after 2 unanswered probes" in failed.meaning, failed.line()
        assert "check the address" not in failed.action
        assert 3.5 <= took <= 5.0, took  # idle 2 + intvl 1 × cnt 2 = 4 s after the last segment
    finally:
        eng.stop()
        srv.stop()


@needs_netns
def test_engines_refuse_a_missing_namespace():
    with pytest.raises(BadInput):
        ClientEngine(netns="sockmon-no-such-ns")
    with pytest.raises(BadInput):
        ServerEngine("127.0.0.1", 0, netns="sockmon-no-such-ns").start()


def test_option_commands_run_in_the_engine_thread_and_carry_options():
    lst = socket.create_server(("127.0.0.1", 0))
    ev = Events()
    threads = []
    eng = ClientEngine(on_event=lambda e: (threads.append(__import__("threading").current_thread().name), ev(e)),
                       sample_interval=0.05)
    try:
        eng.connect(*lst.getsockname())
        assert eng.wait_connected(3)
        ret = ev.wait(EventKind.RETURNED, where=lambda e: e.detail.startswith("connect("))
        assert ret.options is not None and ret.local == eng.local and ret.peer == eng.peer
        fut = eng.set_nodelay(True)
        assert fut.result(3) is True
        opt = ev.wait(EventKind.OPTION)
        assert opt.options.nodelay is True
        # someone else changes the socket (as another process would through pidfd_getfd): an OPTION event
        peer, _ = lst.accept()
        from sockmon.core.lab.foreign import borrowed_socket
        from sockmon.core.table.snapshot import take_snapshot

        inode = next(s.inode for s in take_snapshot(port=eng.local[1]).sockets
                     if tuple(s.four_tuple) == (*eng.local, *eng.peer))  # exact 4-tuple: ports get reused
        with borrowed_socket(os.getpid(), inode) as dup:
            dup.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        outside = ev.wait(EventKind.OPTION, where=lambda e: "not by this engine" in e.detail)
        assert outside.options.nodelay is False and eng.options().nodelay is False
        peer.close()
    finally:
        eng.stop()
        lst.close()
    assert set(threads) == {"sockmon-client"}


@needs_netns
@pytest.mark.slow
def test_keepalive_turned_on_for_an_idle_connection_probes_at_once(two_netns):
    """Idle for longer than the idle time, peer already silent, then keepalive 2/1/2: the kernel probes at
    once and gives up intvl × cnt = 2 s later — what dead_peer() predicts at that moment."""
    a, b, silence = two_netns
    srv = ServerEngine("10.214.0.2", 7002, mode="echo", netns=b).start()
    ev = Events()
    eng = ClientEngine(on_event=ev, sample_interval=0.05, netns=a)
    try:
        eng.connect("10.214.0.2", 7002, timeout=3)
        assert eng.wait_connected(5), [e.line() for e in ev.snapshot()]
        eng.send(b"ping")
        last = ev.wait(EventKind.BYTES_IN)
        silence()
        time.sleep(2.5)  # longer than the idle time below
        assert eng.set_keepalive(Keepalive(True, 2, 1, 2)).result(3) == Keepalive(True, 2, 1, 2)
        enabled = time.monotonic()
        predicted = dead_peer(Keepalive(True, 2, 1, 2), since_recv_ms=(enabled - last.ts) * 1000)
        failed = ev.wait(EventKind.ERROR, timeout=10, where=lambda e: e.errno_name == "ETIMEDOUT")
        took = failed.ts - enabled
        print(failed.line(), f"{took:.2f} s after keepalive was turned on; predicted {predicted}")
        assert predicted.remaining_s == 2
        assert abs(took - predicted.remaining_s) < 0.7, took
        assert "keepalive gave up after 2 unanswered probes" in failed.meaning
    finally:
        eng.stop()
        srv.stop()


@needs_netns
@pytest.mark.slow
def test_server_side_keepalive_etimedout_is_explained(two_netns):
    """The built-in server (namespace A) sets keepalive 1/1/2 on an accepted client (namespace B) through an
    engine command; the client's link goes down: the server's recv fails with ETIMEDOUT, explained."""
    a, b, silence = two_netns
    sev = Events()
    srv = ServerEngine("10.214.0.1", 7003, mode="echo", on_event=sev, netns=a).start()
    eng = ClientEngine(sample_interval=0.05, netns=b)
    try:
        eng.connect("10.214.0.1", 7003, timeout=3)
        assert eng.wait_connected(5)
        accepted = sev.wait(EventKind.ACCEPTED)
        assert accepted.options is not None and accepted.peer is not None
        assert srv.set_keepalive(accepted.conn, Keepalive(True, 1, 1, 2)).result(3) == Keepalive(True, 1, 1, 2)
        opt = sev.wait(EventKind.OPTION, conn=accepted.conn)
        assert opt.options.keepalive == Keepalive(True, 1, 1, 2) and srv.options(accepted.conn) == opt.options
        silence()
        failed = sev.wait(EventKind.ERROR, timeout=10, where=lambda e: e.errno_name == "ETIMEDOUT")
        assert "keepalive gave up after 2 unanswered probes" in failed.meaning, failed.line()
    finally:
        eng.stop()
        srv.stop()
