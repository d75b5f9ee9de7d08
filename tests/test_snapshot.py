"""take_snapshot: kernel-side filters, /proc fallback, errors with errno, bad input."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from sockmon.core.errors import BadInput
from sockmon.core.states import CLOSE_WAIT, ESTABLISHED, FIN_WAIT2, LISTEN, TIME_WAIT
from sockmon.core.table import diag, netlink, procnet, snapshot
from sockmon.core.table.snapshot import take_snapshot


@pytest.fixture
def trio():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    yield lst, cli, srv
    for s in (lst, cli, srv):
        s.close()


def test_port_filter_matches_either_side(trio):
    lst, cli, srv = trio
    port = lst.getsockname()[1]
    snap = take_snapshot(port=port)
    assert sorted((s.sport, s.dport, s.state) for s in snap.sockets if s.state != TIME_WAIT) == sorted([
        (port, 0, LISTEN), (cli.getsockname()[1], port, ESTABLISHED), (port, cli.getsockname()[1], ESTABLISHED)])
    cport = cli.getsockname()[1]
    # (another process may reuse the ephemeral port number towards elsewhere: look at ours only)
    got = {(s.sport, s.dport) for s in take_snapshot(port=cport).sockets if port in (s.sport, s.dport)}
    assert got == {(cport, port), (port, cport)}
    assert all(cport in (s.sport, s.dport) for s in take_snapshot(port=cport).sockets)
    assert snap.source == "netlink" and snap.note == "" and snap.netns is None
    assert snap.taken_at > 0 and snap.wall_time > 1e9


def test_state_filter_by_code_and_name(trio):
    lst, cli, srv = trio
    port = lst.getsockname()[1]
    assert [s.state for s in take_snapshot(port=port, states=[LISTEN]).sockets] == [LISTEN]
    assert {s.state for s in take_snapshot(port=port, states=["established"]).sockets} == {ESTABLISHED}
    cli.shutdown(socket.SHUT_WR)
    import time

    time.sleep(0.02)
    got = take_snapshot(port=port, states=["FIN-WAIT-2", "tcp_close_wait"])
    assert sorted(s.state for s in got.sockets) == sorted([FIN_WAIT2, CLOSE_WAIT])


def test_without_info_has_no_tcp_info(trio):
    port = trio[0].getsockname()[1]
    snap = take_snapshot(port=port, with_info=False)
    assert snap.sockets and all(s.tcp_info is None and s.cong is None for s in snap.sockets)
    full = take_snapshot(port=port)
    # only the trio's own sockets: the port filter matches either end, and an older TIME_WAIT socket of
    # another test can share this port number as its ephemeral port (timewait sockets carry no tcp_info)
    ours = {(s.getsockname(), s.getpeername() if s is not trio[0] else None) for s in trio}
    mine = [s for s in full.sockets
            if ((s.src, s.sport), None if s.state == 10 else (s.dst, s.dport)) in ours]
    assert len(mine) == 3
    assert all(s.tcp_info is not None and s.cong for s in mine)


def test_records_are_frozen_named_and_untracked_by_the_gc(trio):
    import gc

    import msgspec
    from sockmon.core.records import Timer
    from sockmon.core.tcpinfo import TCP_INFO_KEPT

    lst, cli, _srv = trio
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # a timer on the client's socket
    socks = take_snapshot(port=lst.getsockname()[1]).sockets
    timers = [s.timer for s in socks if s.timer is not None]
    assert len(socks) == 3 and timers
    # the cyclic GC never walks a snapshot: no record of it is tracked
    assert not [x for x in (*socks, *timers, *(s.tcp_info for s in socks)) if gc.is_tracked(x)]
    s = next(s for s in socks if s.state == LISTEN)
    with pytest.raises(AttributeError):
        s.state = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.tcp_info.rtt = 3  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        s[1]  # type: ignore[index]  # named access only: a record is no tuple
    # the kernel's tcp_info stays bytes; decoded on access, the listed fields without decoding the rest
    assert type(s.tcp_info_bytes) is bytes and len(s.tcp_info_bytes) == TCP_INFO_KEPT
    for sock in socks:
        info = sock.tcp_info
        assert (sock.rtt, sock.snd_cwnd, sock.retransmits, sock.total_retrans) == (
            info.rtt, info.snd_cwnd, info.retransmits, info.total_retrans)
    changed = msgspec.structs.replace(s, state=1)
    assert changed.state == 1 and s.state == LISTEN and changed.sport == s.sport
    assert msgspec.structs.asdict(s)["state"] == LISTEN and msgspec.structs.asdict(s.tcp_info)["state"] == LISTEN
    assert s == msgspec.structs.replace(s) and hash(s) == hash(msgspec.structs.replace(s))
    assert Timer(kind=2, expires_ms=10, retrans=0).name == "keepalive"


def test_procfs_fallback_says_why_and_agrees(monkeypatch, trio):
    lst, cli, srv = trio
    port = lst.getsockname()[1]
    real = {(s.sport, s.dport, s.state, s.inode) for s in take_snapshot(port=port).sockets if s.state != TIME_WAIT}

    def no_netlink(*a, **k):
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")

    monkeypatch.setattr(snapshot, "_netlink_dump", no_netlink)
    snap = take_snapshot(port=port)
    assert snap.source == "procfs"
    assert "EPROTONOSUPPORT" in snap.note and "/proc/net/tcp" in snap.note
    assert {(s.sport, s.dport, s.state, s.inode) for s in snap.sockets if s.state != TIME_WAIT} == real
    assert [s.state for s in take_snapshot(port=port, states=[LISTEN]).sockets] == [LISTEN]


def test_other_netlink_errors_are_raised_with_errno(monkeypatch):
    def denied(*a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(snapshot, "_netlink_dump", denied)
    with pytest.raises(OSError) as exc:
        take_snapshot()
    assert exc.value.errno == errno.EPERM


def test_kernel_error_reply_becomes_oserror():
    """A request the kernel rejects (bytecode jumping out of bounds) → NLMSG_ERROR → OSError(EINVAL)."""
    req = diag.build_request(socket.AF_INET)
    bad_bc = struct.pack("=BBH", diag.INET_DIAG_BC_JMP, 4, 200)
    req += struct.pack("=HH", 4 + len(bad_bc), diag.INET_DIAG_REQ_BYTECODE) + bad_bc
    sock = netlink.open_socket()
    try:
        with pytest.raises(OSError) as exc:
            netlink.dump(sock, diag.SOCK_DIAG_BY_FAMILY, req, lambda d, seq: diag.parse_datagram(d, seq, []))
        assert exc.value.errno == errno.EINVAL
    finally:
        sock.close()


@pytest.mark.parametrize("kwargs", [{"port": 70000}, {"states": ["BOGUS"]}, {"states": [99]}])
def test_bad_input(kwargs):
    with pytest.raises(BadInput):
        take_snapshot(**kwargs)


def test_procnet_line_parsing():
    v4 = ("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 "
          "12345 1 0000000000000000 100 0 0 10 0")
    s = procnet.parse_line(v4, socket.AF_INET)
    assert (s.src, s.sport, s.dst, s.dport, s.state, s.recv_q, s.uid, s.inode) == (
        "127.0.0.1", 8080, "0.0.0.0", 0, LISTEN, 2, 1000, 12345)
    v6 = ("   0: 00000000000000000000000001000000:0050 0000000000000000FFFF00000100007F:A000 01 "
          "00000000:00000000 02:00000BB8 00000000     0        0 777 1 0 20 4 30 10 -1")
    s = procnet.parse_line(v6, socket.AF_INET6)
    assert (s.src, s.sport, s.dst, s.dport, s.state) == ("::1", 80, "::ffff:127.0.0.1", 40960, ESTABLISHED)
    assert s.timer.name == "keepalive" and s.timer.expires_ms == 0xBB8 * 10
    assert procnet.parse_line("  sl  local_address rem_address   st", socket.AF_INET) is None


def test_snapshot_leaves_the_gc_alone():
    import gc

    assert gc.isenabled()
    thresholds = gc.get_threshold()
    snap = take_snapshot()
    assert gc.isenabled() and gc.get_freeze_count() == 0 and snap.source in ("netlink", "procfs")
    assert gc.get_threshold() == thresholds
    gc.disable()
    try:  # a caller running with the GC off keeps it off
        take_snapshot()
        assert not gc.isenabled()
    finally:
        gc.enable()
