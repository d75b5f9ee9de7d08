import os
import socket
import threading
import time

import pytest
from sockhelp import Events, OfflineResolver, ss_rows, ss_states, wait_for
from sockmon.core.errors import BadInput
from sockmon.core.lab.events import EventKind
from sockmon.core.lab.options import Keepalive, Linger, SocketOptions
from sockmon.core.lab.server import ServerEngine
from sockmon.core.tcpinfo import TcpInfo

C = "client"


@pytest.fixture
def server():
    engines = []

    def make(mode="echo", **kw):
        eng = ServerEngine("127.0.0.1", 0, mode=mode, **kw).start()
        engines.append(eng)
        return eng

    yield make
    for eng in engines:
        eng.stop()


@pytest.fixture
def client():
    made = []

    def make(**kw):
        ev = Events()
        eng = ClientEngine(on_event=ev, **kw)
        made.append(eng)
        return eng, ev

    from sockmon.core.lab.client import ClientEngine

    yield make
    for eng in made:
        eng.stop()
        assert not eng.running


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connect_send_echo_timeline(server, client):
    srv = server()
    eng, ev = client()
    t0 = time.monotonic()
    assert eng.connect(*srv.address) is None
    assert time.monotonic() - t0 < 0.05  # returns at once
    assert eng.wait_connected(3)
    assert eng.connected and eng.peer == srv.address and eng.local[0] == "127.0.0.1"
    assert eng.state == "ESTABLISHED"
    eng.send(b"hello ")
    eng.send_framed(b"abc")
    assert wait_for(lambda: eng.received == b"hello \x00\x00\x00\x03abc", 3), eng.received
    assert sum(e.nbytes for e in ev.of(EventKind.BYTES_OUT)) == 13
    assert sum(e.nbytes for e in ev.of(EventKind.BYTES_IN)) == 13
    kinds = [e.kind for e in ev.snapshot()]
    assert kinds.index(EventKind.CALL) < kinds.index(EventKind.RETURNED) < kinds.index(EventKind.BYTES_OUT)
    ts = [e.ts for e in ev.snapshot()]
    assert ts == sorted(ts)  # monotonic timestamps, delivered in order
    assert all(e.conn == C for e in ev.snapshot())
    info = eng.tcp_info()
    assert isinstance(info, TcpInfo) and info.state == 1 and info.bytes_received == 13
    assert [f.name for f in eng.sockaddr()] == ["sin_family", "sin_port", "sin_addr", "sin_zero"]


def test_events_come_from_the_engine_thread(server, client):
    srv = server()
    threads = set()
    ev = Events()
    from sockmon.core.lab.client import ClientEngine

    eng = ClientEngine(on_event=lambda e: (threads.add(threading.current_thread().name), ev(e)))
    try:
        eng.connect(*srv.address)
        assert eng.wait_connected(3)
        eng.set_nodelay(True)  # called from this thread; its OPTION event still comes from the engine
        ev.wait(EventKind.OPTION)
    finally:
        eng.stop()
    assert threads == {"sockmon-client"}


def test_state_timeline_established_fin_wait2(server, client):
    srv = server("hold")  # never reads, so never closes: we stay in FIN_WAIT2
    eng, ev = client(sample_interval=0.05)
    eng.connect(*srv.address)
    assert eng.wait_connected(3)
    eng.shutdown("wr")
    ev.wait(EventKind.STATE, where=lambda e: e.state == "FIN_WAIT2")
    states = ev.states()
    assert states[-2:] == ["ESTABLISHED", "FIN_WAIT2"] or states[-3:] == ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"]
    eng.close()
    ev.wait(EventKind.CLOSED)
    # the fd is gone; the socket table now holds our side of the connection in FIN_WAIT2 (orphan)
    assert [r for r in ss_rows(eng.local[1]) if r["lport"] == eng.local[1] and r["state"] == "FIN-WAIT-2"]


def test_syn_sent_then_timeout_etimedout(server, client):
    srv = server("no-accept", backlog=0)
    fillers = [socket.socket() for _ in range(3)]
    for f in fillers:
        f.setblocking(False)
        f.connect_ex(srv.address)
    time.sleep(0.2)  # the accept queue is full: further SYNs are dropped
    eng, ev = client(sample_interval=0.05)
    t0 = time.monotonic()
    eng.connect(*srv.address, timeout=0.5)
    assert eng.wait_connected(5) is False
    assert 0.4 < time.monotonic() - t0 < 2
    assert "SYN_SENT" in ev.states()
    fail = ev.of(EventKind.FAILED)[-1]
    assert fail.errno_name == "ETIMEDOUT" and "timed out after 0.5 s" in fail.detail
    assert not eng.open and eng.wait_closed(0)
    for f in fillers:
        f.close()


def test_connection_refused(client):
    eng, ev = client()
    eng.connect("127.0.0.1", closed_port())
    assert eng.wait_connected(3) is False
    fail = ev.of(EventKind.FAILED)[-1]
    assert fail.errno_name == "ECONNREFUSED"
    assert fail.meaning and fail.action
    assert not eng.connected


def test_unresolvable_name_fails_cleanly(client, monkeypatch):
    from sockmon.core.lab import address

    offline = OfflineResolver()  # the engine's lookup fails here: no DNS query leaves the machine
    monkeypatch.setattr(address, "getaddrinfo", offline)
    eng, ev = client()
    eng.connect("no-such-host.invalid", 80)
    assert eng.wait_connected(10) is False
    fail = ev.of(EventKind.FAILED)[-1]
    assert fail.errno_name == "EAI_NONAME" and "cannot resolve" in fail.meaning
    assert offline.calls == ["no-such-host.invalid"]


def test_bad_port_and_host_raise_synchronously(client):
    eng, ev = client()
    for host, port in (("127.0.0.1", 70000), ("127.0.0.1", "x"), ("", 80)):
        with pytest.raises(BadInput):
            eng.connect(host, port)
    with pytest.raises(BadInput):
        eng.connect("127.0.0.1", 80, timeout=0)
    with pytest.raises(BadInput):
        eng.set_user_timeout(-5)
    with pytest.raises(BadInput):
        eng.shutdown("up")


def test_commands_while_not_connected_are_failed_events(client):
    eng, ev = client()
    assert eng.set_linger(Linger.ABORT).result(3) is None
    assert eng.set_keepalive(Keepalive(True, 10, 5, 3)).result(3) is None
    assert eng.set_nodelay(True).result(3) is None
    assert eng.options() is None and eng.tcp_info() is None
    eng.send(b"x")
    eng.shutdown("wr")
    eng.close()
    eng.abort()
    eng.graceful_close()
    assert wait_for(lambda: len(ev.of(EventKind.FAILED)) >= 8, 3), [e.line() for e in ev.snapshot()]
    assert {e.errno_name for e in ev.of(EventKind.FAILED)} == {"ENOTCONN"}
    assert eng.running


def test_options_read_back_and_reported(server, client):
    srv = server()
    eng, ev = client()
    eng.connect(*srv.address)
    assert eng.wait_connected(3)
    assert eng.set_keepalive(Keepalive.parse("60,10,3")).result(3) == Keepalive(True, 60, 10, 3)
    assert eng.set_linger(Linger.after(4)).result(3) == Linger(True, 4)
    assert eng.set_nodelay(True).result(3) is True
    assert eng.set_user_timeout(2500).result(3) == 2500
    assert eng.set_buffers(rcvbuf=50000).result(3) == (100000, eng.options().sndbuf)
    opts = eng.options()
    assert isinstance(opts, SocketOptions)
    assert (opts.keepalive.dead_peer_seconds, opts.linger, opts.nodelay, opts.user_timeout_ms) == \
        (90, Linger(True, 4), True, 2500)
    details = [e.detail for e in wait_for(lambda: ev.of(EventKind.OPTION) if len(ev.of(EventKind.OPTION)) == 5
                                          else None, 3)]
    assert "keepalive on idle=60s intvl=10s cnt=3 (dead peer after 90s)" in details
    assert "TCP_USER_TIMEOUT: 2500" in details
    port = eng.local[1]
    out = wait_for(lambda: [r for r in ss_rows(port, extra=("-o",)) if r["lport"] == port
                            and "keepalive" in r["rest"]], 2)
    assert out, ss_rows(port, extra=("-o",))


def test_options_from_another_thread_while_sending(server, client):
    srv = server()
    eng, ev = client()
    eng.connect(*srv.address)
    assert eng.wait_connected(3)
    errors = []

    def toggler():
        try:
            for i in range(200):
                assert eng.set_nodelay(bool(i % 2)).result(3) is bool(i % 2)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=toggler)
    t.start()
    blob = os.urandom(200_000)
    eng.send(blob)
    t.join(5)
    assert not errors
    assert wait_for(lambda: sum(e.nbytes for e in ev.of(EventKind.BYTES_IN)) == len(blob), 5)
    assert len(eng.received) == 65536
    assert eng.received == blob[-65536:]  # bounded: the last 64 KiB


def test_graceful_close_ends_in_time_wait(server, client):
    srv = server()  # echo closes after our FIN: we end in TIME_WAIT
    eng, ev = client()
    eng.connect(*srv.address)
    assert eng.wait_connected(3)
    port = eng.local[1]
    eng.graceful_close()
    assert eng.wait_closed(3)
    assert ev.of(EventKind.PEER_CLOSED)
    calls = [e.detail for e in ev.of(EventKind.CALL)]
    assert calls[-2:] == ["shutdown(SHUT_WR)", "close() after the peer's FIN"]
    assert wait_for(lambda: ss_states(port, srv.address[1]) == {port: "TIME-WAIT"}, 2), ss_states(port, srv.address[1])


def test_abort_resets_the_peer_and_leaves_no_time_wait(client):
    lst = socket.create_server(("127.0.0.1", 0))
    eng, ev = client()
    eng.connect(*lst.getsockname())
    assert eng.wait_connected(3)
    peer, _ = lst.accept()
    port = eng.local[1]
    eng.abort()
    assert eng.wait_closed(3)
    peer.settimeout(2)
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    assert "RST" in ev.of(EventKind.CLOSED)[-1].detail
    time.sleep(0.05)
    assert "TIME-WAIT" not in ss_states(port, lst.getsockname()[1]).values()
    peer.close()
    lst.close()


def test_reset_by_peer_is_a_reset_event(server, client):
    srv = server("reset")
    eng, ev = client()
    eng.connect(*srv.address)
    eng.wait_connected(3)  # may be True or False: the RST can beat our look at SO_ERROR
    rst = ev.wait(EventKind.RESET)
    assert rst.errno_name == "ECONNRESET"
    assert eng.wait_closed(3) and not eng.connected


def test_peer_close_is_reported(server, client):
    srv = server("close")
    eng, ev = client()
    eng.connect(*srv.address)
    assert eng.wait_connected(3)
    ev.wait(EventKind.PEER_CLOSED)
    assert eng.connected  # half-open: we may still send until we close
    ev.wait(EventKind.STATE, where=lambda e: e.state == "CLOSE_WAIT")
    eng.close()
    assert eng.wait_closed(3)


def test_send_after_peer_reset_never_kills(client):
    lst = socket.create_server(("127.0.0.1", 0))
    eng, ev = client()
    eng.connect(*lst.getsockname())
    assert eng.wait_connected(3)
    peer, _ = lst.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()
    time.sleep(0.05)
    for _ in range(5):
        eng.send(b"x" * 1000)
    bad = wait_for(lambda: ev.of(EventKind.RESET) + [e for e in ev.of(EventKind.FAILED)
                                                      if e.errno_name in ("EPIPE", "ECONNRESET")], 3)
    assert bad
    assert eng.running
    lst.close()


def test_lingering_close_does_not_block_the_caller(client):
    lst = socket.create_server(("127.0.0.1", 0))
    eng, ev = client()
    eng.connect(*lst.getsockname())
    assert eng.wait_connected(3)
    peer, _ = lst.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    eng.set_linger(Linger.after(1))
    eng.send(os.urandom(8 * 1024 * 1024))  # the peer never reads: data stays unsent
    time.sleep(0.2)
    t0 = time.monotonic()
    eng.close()
    assert time.monotonic() - t0 < 0.05
    ev.wait(EventKind.INFO, where=lambda e: "SO_LINGER on" in e.detail)
    assert eng.set_nodelay(True).result(3) is None  # the fd is handed off; the engine still answers at once
    ev.wait(EventKind.FAILED, where=lambda e: e.errno_name == "ENOTCONN")
    assert not ev.of(EventKind.CLOSED)  # ...while the close is still lingering
    closed = ev.wait(EventKind.CLOSED, timeout=4)
    assert "lingering close() returned after 1." in closed.detail or "after 0.9" in closed.detail, closed.detail
    peer.close()
    lst.close()


def test_reconnect_after_close(server, client):
    srv = server()
    eng, ev = client()
    for _ in range(2):
        eng.connect(*srv.address)
        assert eng.wait_connected(3)
        eng.close()
        assert eng.wait_closed(3)
    assert len(ev.of(EventKind.CLOSED)) == 2


def test_connect_while_connected_is_eisconn(server, client):
    srv = server()
    eng, ev = client()
    eng.connect(*srv.address)
    assert eng.wait_connected(3)
    eng.connect(*srv.address)
    fail = ev.wait(EventKind.FAILED)
    assert fail.errno_name == "EISCONN" and eng.connected


def test_ipv6_and_name(server, client):
    srv6 = ServerEngine("::1", 0).start()
    try:
        eng, ev = client()
        eng.connect("::1", srv6.address[1])
        assert eng.wait_connected(3)
        assert eng.peer[0] == "::1" and len(b"".join(f.raw for f in eng.sockaddr(peer=True))) == 28
        eng.close()
    finally:
        srv6.stop()
    srv = server()
    eng2, _ = client()
    eng2.connect("localhost", srv.address[1])
    assert eng2.wait_connected(3)  # tries each getaddrinfo address until one answers


def test_reset_races_never_crash_the_engine(server):
    """Against a reset-on-accept server the RST may land before, between or after our connect checks."""
    from sockmon.core.lab.client import ClientEngine

    srv = server("reset")
    for _ in range(40):
        ev = Events()
        eng = ClientEngine(on_event=ev)
        try:
            eng.connect(*srv.address)
            eng.wait_connected(3)
            rst = ev.wait(EventKind.RESET, timeout=3)
            assert rst.errno_name == "ECONNRESET"
            assert eng.wait_closed(3)
            assert not [e for e in ev.of(EventKind.ERROR) if "internal error" in e.detail]
        finally:
            eng.stop()


def test_a_failing_callback_does_not_stop_the_engine(server):
    from sockmon.core.lab.client import ClientEngine

    srv = server()
    seen = []

    def bad_callback(event):
        seen.append(event)
        raise RuntimeError("UI bug")

    eng = ClientEngine(on_event=bad_callback)
    try:
        eng.connect(*srv.address)
        assert eng.wait_connected(3)
        eng.send(b"still works")
        assert wait_for(lambda: eng.received == b"still works", 3)
        assert eng.running and len(seen) > 3
    finally:
        eng.stop()


def test_connect_on_a_stopped_engine_says_so():
    from sockmon.core.errors import SockmonError
    from sockmon.core.lab.client import ClientEngine

    eng = ClientEngine()
    eng.stop()
    assert not eng.running
    with pytest.raises(SockmonError, match="stopped"):
        eng.connect("127.0.0.1", 80)
    eng.send(b"dropped")  # other commands are dropped quietly
