import socket
import subprocess

import pytest
from sockhelp import tcp_pair, wait_for
from sockmon.core.errors import BadInput
from sockmon.core.lab.options import (
    Keepalive,
    Linger,
    SocketOptions,
    read_options,
    set_buffers,
    set_keepalive,
    set_linger,
    set_nodelay,
    set_reuseaddr,
    set_user_timeout,
    system_keepalive,
)


@pytest.fixture
def pair():
    lst, cli, srv = tcp_pair()
    yield cli, srv
    for s in (cli, srv, lst):
        s.close()


def test_linger_constructors_and_parse():
    assert Linger.off() == Linger.OFF == Linger(False, 0)
    assert Linger.abort() == Linger.ABORT == Linger(True, 0) and Linger.ABORT.is_abort
    assert Linger.after(5) == Linger(True, 5) and not Linger.after(5).is_abort
    assert Linger.parse("off") == Linger.OFF
    assert Linger.parse("0") == Linger.ABORT
    assert Linger.parse(" 7 ") == Linger(True, 7)
    for bad in ("-1", "x", "", "1.5", "99999999"):
        with pytest.raises(BadInput):
            Linger.parse(bad)


def test_keepalive_parse_and_dead_peer_time():
    ka = Keepalive.parse("60,10,3")
    assert ka == Keepalive(True, 60, 10, 3)
    assert ka.dead_peer_seconds == 90  # idle + intvl * cnt, docs/kernel-facts.md §6
    assert Keepalive(True, 7200, 75, 9).dead_peer_seconds == 7875
    assert Keepalive.parse("off").enabled is False
    for bad in ("60,10", "60,10,3,4", "0,10,3", "60,0,3", "60,10,0", "60,10,128", "a,b,c", "40000,1,1"):
        with pytest.raises(BadInput):
            Keepalive.parse(bad)


def test_defaults_read_from_kernel(pair):
    cli, _ = pair
    opts = read_options(cli)
    assert isinstance(opts, SocketOptions)
    assert opts.linger == Linger.OFF
    assert opts.keepalive.enabled is False
    assert opts.keepalive == system_keepalive()  # a new socket carries the sysctl defaults
    assert opts.user_timeout_ms == 0 and opts.nodelay is False


def test_linger_set_reads_back(pair):
    cli, _ = pair
    assert set_linger(cli, Linger.after(3)) == Linger(True, 3)
    assert read_options(cli).linger == Linger(True, 3)
    assert set_linger(cli, Linger.ABORT) == Linger.ABORT
    assert set_linger(cli, Linger.OFF) == Linger.OFF


def test_keepalive_set_reads_back_from_kernel(pair):
    cli, _ = pair
    got = set_keepalive(cli, Keepalive(True, 61, 11, 4))
    assert got == Keepalive(True, 61, 11, 4)
    # independent check straight from getsockopt
    assert cli.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 61
    assert cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 11
    assert cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    off = set_keepalive(cli, Keepalive(False, 61, 11, 4))
    assert off.enabled is False and cli.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_ss_shows_keepalive_timer(pair):
    cli, _ = pair
    port = cli.getsockname()[1]
    set_keepalive(cli, Keepalive(True, 600, 10, 3))

    def timer():
        out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
        return out if "timer:(keepalive," in out else ""

    out = wait_for(timer, 3)
    assert "timer:(keepalive," in out, out
    # the timer counts down from the idle time we set (ss prints e.g. 9min59sec)
    assert "min" in out.split("timer:(keepalive,")[1].split(")")[0]


def test_ss_shows_no_keepalive_timer_when_off(pair):
    cli, _ = pair
    port = cli.getsockname()[1]
    out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() and "keepalive" not in out


def test_read_back_is_not_our_memory(pair):
    cli, _ = pair
    rcv, snd = set_buffers(cli, rcvbuf=10000, sndbuf=10000)
    assert (rcv, snd) == (20000, 20000)  # Linux doubles the value for bookkeeping overhead
    assert read_options(cli).rcvbuf == 20000


def test_nodelay_user_timeout_reuseaddr(pair):
    cli, _ = pair
    assert set_nodelay(cli, True) is True and read_options(cli).nodelay is True
    assert set_nodelay(cli, False) is False
    assert set_user_timeout(cli, 1500) == 1500 and read_options(cli).user_timeout_ms == 1500
    assert set_reuseaddr(cli, True) is True and read_options(cli).reuseaddr is True


def test_bad_values_raise_bad_input(pair):
    cli, _ = pair
    for bad in (-1, 2**31, 1.5, True):
        with pytest.raises(BadInput):
            set_user_timeout(cli, bad)
    with pytest.raises(BadInput):
        set_buffers(cli, rcvbuf=0)
    with pytest.raises(BadInput):
        Linger(True, -1)
    with pytest.raises(BadInput):
        Keepalive(True, 0, 1, 1)


def test_setter_on_closed_socket_is_sockmon_error():
    from sockmon.core.errors import SockmonError

    s = socket.socket()
    s.close()
    with pytest.raises(SockmonError):
        set_linger(s, Linger.ABORT)


def test_system_keepalive_reads_sysctls(tmp_path):
    for name, value in (("tcp_keepalive_time", "100\n"), ("tcp_keepalive_intvl", "20\n"),
                        ("tcp_keepalive_probes", "4\n")):
        (tmp_path / name).write_text(value)
    ka = system_keepalive(tmp_path)
    assert (ka.idle, ka.intvl, ka.cnt, ka.dead_peer_seconds) == (100, 20, 4, 180)
    real = system_keepalive()
    with open("/proc/sys/net/ipv4/tcp_keepalive_time") as f:
        assert real.idle == int(f.read())
