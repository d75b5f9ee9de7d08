import socket
import threading
import time

import pytest
from sockhelp import ss_states, tcp_pair, wait_for
from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab.lifecycle import (
    abort,
    close_in_background,
    graceful_close,
    lingers,
    parse_how,
    plain_close,
    shutdown,
)
from sockmon.core.lab.options import Linger, set_linger


def ports(cli, srv):
    return cli.getsockname()[1], srv.getsockname()[1]


def test_abort_peer_sees_econnreset_and_no_time_wait():
    lst, cli, srv = tcp_pair()
    cport, sport = ports(cli, srv)
    abort(cli)
    srv.settimeout(2)
    with pytest.raises(ConnectionResetError):
        srv.recv(100)
    states = ss_states(cport, sport)
    assert "TIME-WAIT" not in states.values(), states
    assert cport not in states  # the aborting side left nothing behind
    srv.close()
    lst.close()
    time.sleep(0.05)
    assert "TIME-WAIT" not in ss_states(cport, sport).values()


def test_graceful_active_close_time_wait_passive_close_wait():
    lst, cli, srv = tcp_pair()
    cport, sport = ports(cli, srv)
    result = {}
    closer = threading.Thread(target=lambda: result.update(r=graceful_close(cli, timeout=5)))
    closer.start()
    # passive side got the FIN: CLOSE_WAIT until it closes; active side waits in FIN_WAIT2
    assert wait_for(lambda: ss_states(cport, sport) == {sport: "CLOSE-WAIT", cport: "FIN-WAIT-2"}, 3), \
        ss_states(cport, sport)
    time.sleep(0.2)
    assert ss_states(cport, sport)[sport] == "CLOSE-WAIT"  # still: it stays until the app closes
    assert srv.recv(10) == b""
    srv.sendall(b"last words")  # half-closed: the closer still reads
    srv.close()
    closer.join(5)
    assert result["r"].eof_seen and result["r"].drained == len(b"last words")
    states = wait_for(lambda: ss_states(cport, sport) if ss_states(cport, sport) == {cport: "TIME-WAIT"} else None, 3)
    assert states == {cport: "TIME-WAIT"}, ss_states(cport, sport)  # TIME_WAIT on the closer only
    lst.close()


def test_graceful_close_times_out_when_peer_never_closes():
    lst, cli, srv = tcp_pair()
    t0 = time.monotonic()
    r = graceful_close(cli, timeout=0.3)
    assert not r.eof_seen and 0.25 < time.monotonic() - t0 < 2
    assert cli.fileno() == -1
    srv.close()
    lst.close()


def test_shutdown_directions():
    lst, cli, srv = tcp_pair()
    shutdown(cli, "wr")
    assert srv.recv(10) == b""  # FIN seen
    srv.sendall(b"still flows")
    assert cli.recv(100) == b"still flows"  # half-close keeps reading
    shutdown(srv, "rdwr")
    with pytest.raises(BadInput):
        shutdown(cli, "sideways")
    assert parse_how("SHUT_RD") == socket.SHUT_RD
    cli.close()
    with pytest.raises(SockmonError):
        shutdown(cli, "rd")
    srv.close()
    lst.close()


def test_plain_close_sends_fin():
    lst, cli, srv = tcp_pair()
    plain_close(cli)
    assert srv.recv(10) == b""
    srv.close()
    lst.close()


def _stuffed_pair():
    """A connection whose sender has unsent data the peer will not read (zero window)."""
    lst, cli, srv = tcp_pair()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    cli.setblocking(False)
    try:
        while True:
            cli.send(b"x" * 65536)
    except BlockingIOError:
        pass
    return lst, cli, srv


def test_lingering_close_runs_in_background():
    lst, cli, srv = _stuffed_pair()
    set_linger(cli, Linger.after(1))
    assert lingers(cli)
    done = threading.Event()
    took = {}

    def on_done(seconds, err):
        took.update(seconds=seconds, err=err)
        done.set()

    t0 = time.monotonic()
    close_in_background(cli, on_done)
    assert time.monotonic() - t0 < 0.1  # the caller's thread did not wait
    assert done.wait(5)
    assert 0.8 < took["seconds"] < 3, took  # the kernel held close() for the linger time
    srv.close()
    lst.close()


def test_abort_does_not_linger_even_with_unsent_data():
    lst, cli, srv = _stuffed_pair()
    t0 = time.monotonic()
    abort(cli)
    assert time.monotonic() - t0 < 0.5
    srv.close()
    lst.close()
