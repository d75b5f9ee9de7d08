import errno
import hashlib
import os
import socket
import subprocess
import threading
import time

import pytest
from sockhelp import Events, ss_rows, ss_states, wait_for
from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab.events import EventKind
from sockmon.core.lab.options import Keepalive, Linger
from sockmon.core.lab.server import MODES, ServerEngine


@pytest.fixture
def make_server():
    engines = []

    def make(mode="echo", **kw):
        ev = Events()
        eng = ServerEngine("127.0.0.1", 0, mode=mode, on_event=ev, **kw).start()
        engines.append(eng)
        return eng, ev

    yield make
    for eng in engines:
        eng.stop()
        assert not eng.running


def connect(eng, timeout=3.0):
    return socket.create_connection(eng.address, timeout=timeout)


def cid_of(sock):
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def test_modes_exported():
    assert MODES == ("echo", "discard", "hold", "no-accept", "close", "reset")
    with pytest.raises(BadInput):
        ServerEngine("127.0.0.1", 0, mode="bogus")


def test_echo_and_client_snapshot(make_server):
    eng, ev = make_server()
    assert eng.address[0] == "127.0.0.1" and eng.address[1] > 0
    c = connect(eng)
    c.sendall(b"hello")
    assert c.recv(100) == b"hello"
    (cl,) = wait_for(lambda: [x for x in eng.clients() if x.bytes_out == 5], 2)
    assert cl.id == cid_of(c) and cl.peer == c.getsockname() and cl.local == eng.address
    assert cl.bytes_in == 5 and cl.state == "ESTABLISHED" and not cl.read_shut and not cl.write_shut
    assert ev.of(EventKind.ACCEPTED, cl.id) and ev.of(EventKind.BYTES_IN, cl.id)[0].data == b"hello"
    c.close()


def test_200_idle_clients_do_not_delay_a_new_one(make_server):
    eng, ev = make_server()
    idle = [connect(eng) for _ in range(200)]
    assert wait_for(lambda: len(eng.clients()) == 200, 5)
    idle[7].sendall(b"partial")  # one idle client even sent a fragment and stopped
    worst = 0.0
    for _ in range(20):
        c = connect(eng)
        t0 = time.monotonic()
        c.sendall(b"ping")
        assert c.recv(10) == b"ping"
        worst = max(worst, time.monotonic() - t0)
        c.close()
    print(f"echo round trip with 200 idle clients: worst of 20 = {worst * 1000:.2f} ms")
    assert worst < 0.25
    for s in idle:
        s.close()


def test_large_echo_with_slow_reader_is_buffered_in_order(make_server):
    eng, ev = make_server()
    slow = connect(eng, timeout=10)
    payload = os.urandom(16 * 1024 * 1024)
    got = hashlib.sha256()
    n = {"got": 0}
    reading = threading.Event()

    def read_slowly():
        reading.wait()
        while n["got"] < len(payload):
            slow.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = slow.recv(65536)
            if not chunk:
                break
            got.update(chunk)
            n["got"] += len(chunk)
            if n["got"] % 16 == 0:
                time.sleep(0.0005)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    writer = threading.Thread(target=slow.sendall, args=(payload,))
    writer.start()
    # the client does not read yet: the kernel buffers fill and the engine must queue partial writes
    pending = wait_for(lambda: [c.pending_out for c in eng.clients() if c.pending_out > 0], 5)
    assert pending, "the engine never had to buffer output"
    other = connect(eng)  # meanwhile another client is served promptly
    t0 = time.monotonic()
    other.sendall(b"quick")
    assert other.recv(10) == b"quick"
    assert time.monotonic() - t0 < 0.25
    reading.set()
    writer.join(20)
    reader.join(20)
    assert n["got"] == len(payload) and got.hexdigest() == hashlib.sha256(payload).hexdigest()
    slow.close()
    other.close()


def test_discard_reads_but_never_answers(make_server):
    eng, ev = make_server("discard")
    c = connect(eng)
    c.sendall(b"x" * 1000)
    assert wait_for(lambda: [x for x in eng.clients() if x.bytes_in == 1000], 2)
    c.settimeout(0.2)
    with pytest.raises(TimeoutError):
        c.recv(10)
    assert eng.clients()[0].bytes_out == 0
    c.close()


def test_hold_accepts_but_never_reads(make_server):
    eng, ev = make_server("hold")
    c = connect(eng)
    c.sendall(b"y" * 5000)
    cl = wait_for(lambda: eng.clients(), 2)[0]
    port = c.getsockname()[1]
    # the bytes wait in the server socket's receive queue: ss Recv-Q shows them, bytes_in stays 0
    row = wait_for(lambda: [r for r in ss_rows(port) if r["pport"] == port and r["state"] == "ESTAB"], 2)
    assert row and cl.bytes_in == 0
    out = subprocess.run(["ss", "-tanH", "state", "established", f"( dport = :{port} )"],
                                       capture_output=True, text=True).stdout
    assert out.split()[0] == "5000", out
    c.close()
    time.sleep(0.2)
    # it never reads, so it never notices the FIN: the server socket sits in CLOSE_WAIT
    assert eng.clients()[0].state == "CLOSE_WAIT"


def test_no_accept_fills_the_accept_queue(make_server):
    eng, ev = make_server("no-accept", backlog=1)
    socks = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(eng.address)
        socks.append(s)
    time.sleep(0.3)
    assert eng.clients() == []
    listen = [r for r in ss_rows(eng.address[1]) if r["state"] == "LISTEN"]
    out = subprocess.run(["ss", "-tlnH", f"( sport = :{eng.address[1]} )"],
                                       capture_output=True, text=True).stdout.split()
    assert listen and int(out[1]) == 2 and int(out[2]) == 1  # Recv-Q = queued (backlog+1), Send-Q = backlog
    syn_sent = [r for r in ss_rows(eng.address[1]) if r["state"] == "SYN-SENT"]
    assert syn_sent  # the rest wait in SYN_SENT: the kernel drops their SYNs
    eng.set_mode("echo")  # accepting again drains the queue
    assert wait_for(lambda: len(eng.clients()) >= 2, 3)
    for s in socks:
        s.close()


def test_close_mode_sends_fin(make_server):
    eng, ev = make_server("close")
    c = connect(eng)
    assert c.recv(10) == b""
    ev.wait(EventKind.CLOSED)
    c.close()


def test_reset_mode_sends_rst(make_server):
    eng, ev = make_server("reset")
    # The RST follows the accept at once: it reaches us either while create_connection still reads the
    # connect result (SO_ERROR) or at the first recv. Either way the peer must see ECONNRESET.
    with pytest.raises(ConnectionResetError):
        c = connect(eng)
        try:
            c.recv(10)
        finally:
            c.close()


def test_per_client_actions(make_server):
    eng, ev = make_server("hold")
    c = connect(eng)
    cid = cid_of(c)
    wait_for(lambda: eng.clients(), 2)
    eng.send(cid, b"from server")
    assert c.recv(100) == b"from server"
    assert eng.set_keepalive(cid, Keepalive(True, 30, 5, 2)).result(3) == Keepalive(True, 30, 5, 2)
    assert eng.set_linger(cid, Linger.after(1)).result(3) == Linger(True, 1)
    opts = eng.options(cid)
    assert opts.keepalive.idle == 30 and opts.linger == Linger(True, 1)
    ev.wait(EventKind.OPTION, conn=cid)
    eng.shutdown(cid, "wr")
    assert c.recv(10) == b""
    assert wait_for(lambda: eng.clients()[0].write_shut, 2)
    eng.close(cid)
    assert wait_for(lambda: eng.clients() == [], 2)
    ev.wait(EventKind.CLOSED, conn=cid)
    with pytest.raises(SockmonError) as info:
        eng.send(cid, b"gone")
    assert info.value.errno == errno.ENOTCONN
    with pytest.raises(BadInput):
        eng.set_mode("nope")
    c.close()


def test_abort_client_gives_reset(make_server):
    eng, ev = make_server("hold")
    c = connect(eng)
    cid = cid_of(c)
    wait_for(lambda: eng.clients(), 2)
    cport = c.getsockname()[1]
    eng.abort(cid)
    with pytest.raises(ConnectionResetError):
        c.recv(10)
    assert "TIME-WAIT" not in ss_states(cport, eng.address[1]).values()
    c.close()


def test_lingering_client_close_does_not_block(make_server):
    eng, ev = make_server("hold")
    c = connect(eng)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    cid = cid_of(c)
    wait_for(lambda: eng.clients(), 2)
    eng.send(cid, os.urandom(4 * 1024 * 1024))  # far more than fits: unsent data at close
    eng.set_linger(cid, Linger.after(1))
    time.sleep(0.1)
    t0 = time.monotonic()
    eng.close(cid)
    assert time.monotonic() - t0 < 0.05
    other = connect(eng)  # the engine keeps serving while the close lingers
    assert wait_for(lambda: cid_of(other) in [x.id for x in eng.clients()], 1)
    closed = ev.wait(EventKind.CLOSED, conn=cid, timeout=4)
    assert "lingering close() returned after" in closed.detail
    c.close()
    other.close()


def test_peer_close_echo_closes_unless_told_to_stay(make_server):
    eng, ev = make_server("echo", close_on_eof=False)
    c = connect(eng)
    cid = cid_of(c)
    wait_for(lambda: eng.clients(), 2)
    c.shutdown(socket.SHUT_WR)
    ev.wait(EventKind.PEER_CLOSED, conn=cid)
    assert wait_for(lambda: eng.clients() and eng.clients()[0].state == "CLOSE_WAIT", 2)
    eng.close(cid)
    assert c.recv(10) == b""
    c.close()


def test_eaddrinuse_names_the_errno():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    eng = ServerEngine("127.0.0.1", busy.getsockname()[1])
    with pytest.raises(SockmonError) as info:
        eng.start()
    assert info.value.errno_name == "EADDRINUSE" and "address already in use" in str(info.value)
    busy.close()


def test_stop_closes_clients_and_listener():
    ev = Events()
    eng = ServerEngine("127.0.0.1", 0, on_event=ev).start()
    c = connect(eng)
    wait_for(lambda: eng.clients(), 2)
    eng.stop()
    assert not eng.running
    assert c.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(eng.address, timeout=1)
    assert ev.snapshot()[-1].detail == "server stopped"
    c.close()


def test_ipv6_server():
    eng = ServerEngine("::1", 0).start()
    try:
        c = socket.create_connection(eng.address, timeout=3)
        c.sendall(b"v6")
        assert c.recv(10) == b"v6"
        assert wait_for(lambda: eng.clients(), 2)[0].id.startswith("[::1]:")
        c.close()
    finally:
        eng.stop()
