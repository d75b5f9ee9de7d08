"""UDP and UNIX sockets: `sockmon ls --udp / --unix` against ss's view of the same sockets, the procfs
fallbacks, identity of a UDP and a TCP socket on the same 4-tuple, and the collector asking only when told."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys

import pytest
from sockmon.core.records import SOCKET_ROW_IDENTITY, Socket, UnixSocket
from sockmon.core.states import CLOSE, ESTABLISHED, LISTEN
from sockmon.core.table import netlink, unixdiag
from sockmon.core.table.collector import Collector
from sockmon.core.table.netlink import NetlinkFormatError
from sockmon.core.table.owners import OwnerCache
from sockmon.core.table.procnet import parse_line, read_procnet
from sockmon.core.table.snapshot import take_snapshot

SOCKMON = [sys.executable, "-m", "sockmon"]
pytestmark = pytest.mark.timeout(60)


def sockmon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SOCKMON, *args], capture_output=True, text=True, timeout=30)


def ss(*args: str) -> list[list[str]]:
    out = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def ss_endpoint(text: str) -> tuple[str, str]:
    host, _, port = text.rpartition(":")
    return host.strip("[]").split("%")[0], port


@pytest.fixture
def udp_socks():
    """A bound UDP socket (v4), a bound v6 one, and a connected v4 one talking to the first."""
    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind(("127.0.0.1", 0))
    bound6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    bound6.bind(("::1", 0))
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.connect(bound.getsockname())
    conn.send(b"x" * 100)  # 100 bytes wait in the bound socket's receive queue
    yield bound, bound6, conn
    for s in (bound, bound6, conn):
        s.close()


def inode_of(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


def test_ls_udp_lists_bound_and_connected_udp_sockets_like_ss(udp_socks):
    bound, bound6, conn = udp_socks
    ours = {inode_of(s): s for s in udp_socks}
    r = sockmon("ls", "--udp", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["inode"]: row for row in map(json.loads, r.stdout.splitlines()) if row["inode"] in ours}
    assert len(rows) == 3
    for row in rows.values():
        assert row["protocol"] == "udp" and row["pid"] == os.getpid() and row["process"]
        assert row["tcp_info"] is None and row["timer"] is None
    b, b6, c = (rows[inode_of(s)] for s in udp_socks)
    assert (b["state"], b["src"], b["sport"], b["dst"], b["dport"]) == ("UNCONN", "127.0.0.1",
                                                                         bound.getsockname()[1], "0.0.0.0", 0)
    assert (b6["family"], b6["state"], b6["src"]) == ("inet6", "UNCONN", "::1")
    assert (c["state"], c["dst"], c["dport"]) == ("ESTABLISHED", "127.0.0.1", bound.getsockname()[1])
    assert b["recv_q"] > 0  # the datagram waiting (ss counts the skb's memory, as the kernel does)

    # ss's view of the same sockets: state, queues, local and peer
    ss_rows = {}
    for f in ss("-uanH"):
        host, port = ss_endpoint(f[3])
        ss_rows[(host, int(port))] = f
    for row in (b, b6, c):
        f = ss_rows[(row["src"], row["sport"])]
        state = {"UNCONN": "UNCONN", "ESTABLISHED": "ESTAB"}[row["state"]]
        assert f[0] == state
        assert (int(f[1]), int(f[2])) == (row["recv_q"], row["send_q"])
        peer_host, peer_port = ss_endpoint(f[4])
        if row["dport"]:
            assert (peer_host, int(peer_port)) == (row["dst"], row["dport"])
        else:
            assert peer_port == "*"

    text = sockmon("ls", "--udp")
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if f"127.0.0.1:{bound.getsockname()[1]} " in x
                and "UNCONN" in x)
    assert f"pid={os.getpid()}" in line and "0.0.0.0:*" in line
    assert "Netid" not in text.stdout.splitlines()[0]  # one socket type: ss -uan's columns


def test_udp_and_tcp_on_the_same_port_are_two_rows():
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    tcp.listen(1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    try:
        snap = take_snapshot(port=port, protocols=["tcp", "udp"])
        t = next(s for s in snap.sockets if s.inode == inode_of(tcp))
        u = next(s for s in snap.udp if s.inode == inode_of(udp))
        assert (t.protocol, u.protocol) == (socket.IPPROTO_TCP, socket.IPPROTO_UDP)
        assert SOCKET_ROW_IDENTITY(t) != SOCKET_ROW_IDENTITY(u) and t.key != u.key
        assert all(s.protocol == socket.IPPROTO_TCP for s in snap.sockets)  # UDP never in the TCP table
        # without cookies (procfs): the keys still differ by protocol
        pt = Socket(2, LISTEN, "127.0.0.1", port, "0.0.0.0", 0, 0, 0, None, 0, 1, 0)
        pu = Socket(2, CLOSE, "127.0.0.1", port, "0.0.0.0", 0, 0, 0, None, 0, 2, 0, protocol=socket.IPPROTO_UDP)
        assert pt.key != pu.key and pu.state_name == "UNCONN" and pt.state_name == "LISTEN"
        r = sockmon("ls", "--tcp", "--udp", "--json", "--port", str(port))
        rows = [row for row in map(json.loads, r.stdout.splitlines()) if row["inode"]]
        assert sorted(row["protocol"] for row in rows) == ["tcp", "udp"]
        text = sockmon("ls", "--tcp", "--udp", "--port", str(port)).stdout.splitlines()
        assert text[0].split()[0] == "Netid"
        assert any(x.startswith("tcp ") and "LISTEN" in x for x in text)
        assert any(x.startswith("udp ") and "UNCONN" in x for x in text)
    finally:
        tcp.close()
        udp.close()


def test_udp_procfs_fallback_reads_the_same_sockets(udp_socks):
    by_inode = {s.inode: s for s in read_procnet(protocol="udp")}
    snap = take_snapshot(protocols=["udp"])
    assert snap.sockets == ()  # TCP was not asked for
    for s in udp_socks:
        p = by_inode[inode_of(s)]
        n = next(x for x in snap.udp if x.inode == inode_of(s))
        assert p.protocol == socket.IPPROTO_UDP
        assert (p.family, p.state, p.src, p.sport, p.dst, p.dport) == (n.family, n.state, n.src, n.sport, n.dst,
                                                                        n.dport)
    assert parse_line("  sl  local_address rem_address   st", socket.AF_INET, socket.IPPROTO_UDP) is None
    with pytest.raises(ValueError):
        read_procnet(protocol="sctp")


@pytest.fixture
def unix_socks(tmp_path):
    """A filesystem listener with one accepted connection, an abstract listener, a connected datagram pair."""
    path = str(tmp_path / "udp-names.sock")
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    lst.listen(9)
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli.connect(path)
    srv, _ = lst.accept()
    cli.send(b"hello")
    abstract = f"\0udp-names-test-{os.getpid()}"
    alst = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    alst.bind(abstract)
    alst.listen(3)
    d1, d2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield path, "@" + abstract[1:], lst, cli, srv, alst, d1, d2
    for s in (lst, cli, srv, alst, d1, d2):
        s.close()


def test_ls_unix_lists_path_and_abstract_listeners_with_owner_like_ss(unix_socks):
    path, abstract, lst, cli, srv, alst, d1, d2 = unix_socks
    ours = {inode_of(s) for s in (lst, cli, srv, alst, d1, d2)}
    r = sockmon("ls", "--unix", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["inode"]: row for row in map(json.loads, r.stdout.splitlines()) if row["inode"] in ours}
    assert set(rows) == ours
    for row in rows.values():
        assert row["protocol"] == row["family"] == "unix"
        assert row["pid"] == os.getpid() and row["process"] and row["user"]
    lrow, arow = rows[inode_of(lst)], rows[inode_of(alst)]
    assert (lrow["type"], lrow["state"], lrow["path"], lrow["send_q"]) == ("u_str", "LISTEN", path, 9)
    assert (arow["type"], arow["state"], arow["path"], arow["send_q"]) == ("u_seq", "LISTEN", abstract, 3)
    crow, srow = rows[inode_of(cli)], rows[inode_of(srv)]
    assert (crow["state"], crow["peer_inode"]) == ("ESTABLISHED", inode_of(srv))
    assert (srow["peer_inode"], srow["path"], srow["recv_q"]) == (inode_of(cli), path, 5)  # "hello" unread
    assert rows[inode_of(d1)]["type"] == "u_dgr" and rows[inode_of(d1)]["peer_inode"] == inode_of(d2)

    # ss -xanH: Netid State Recv-Q Send-Q Local(path or *) inode Peer(*) peer-inode
    ss_rows = {}
    for f in ss("-xanH"):
        if len(f) >= 8 and f[5].isdigit():
            ss_rows[int(f[5])] = f
    ss_state = {"ESTABLISHED": "ESTAB", "LISTEN": "LISTEN", "UNCONN": "UNCONN"}
    for ino, row in rows.items():
        f = ss_rows[ino]
        assert f[0] == row["type"] and f[1] == ss_state[row["state"]]
        assert (int(f[2]), int(f[3])) == (row["recv_q"], row["send_q"])
        assert f[4] == (row["path"] or "*") and int(f[7]) == row["peer_inode"]

    text = sockmon("ls", "--unix").stdout.splitlines()
    assert text[0].split()[:2] == ["Netid", "State"]
    line = next(x for x in text if f"{abstract} {inode_of(alst)}" in x)
    assert line.startswith("u_seq") and "LISTEN" in line and f"pid={os.getpid()}" in line


def test_unix_procfs_fallback_and_hostile_paths(tmp_path, unix_socks):
    path, abstract, lst, *_ = unix_socks
    rows = {u.inode: u for u in unixdiag.read_procnet_unix()}
    assert rows[inode_of(lst)].state == LISTEN and rows[inode_of(lst)].path == path
    alst = unix_socks[5]
    assert rows[inode_of(alst)].path == abstract and rows[inode_of(alst)].type == socket.SOCK_SEQPACKET
    # a path holding a terminal escape is shown inert in the text table, kept exact in JSON
    evil = os.path.join(str(tmp_path), "e\x1b[31mvil")
    s = socket.socket(socket.AF_UNIX)
    s.bind(evil)
    s.listen(1)
    try:
        text = sockmon("ls", "--unix").stdout
        assert "\x1b" not in text and "e\\x1b[31mvil" in text
        rows = [json.loads(x) for x in sockmon("ls", "--unix", "--json").stdout.splitlines()]
        assert any(r["path"] == evil for r in rows)
    finally:
        s.close()


def test_unix_diag_parser_is_strict_and_names_paths_like_ss():
    assert unixdiag.path_text(b"\0abc\0d") == "@abc@d"
    assert unixdiag.path_text(b"/run/x.sock\0") == "/run/x.sock"
    assert unixdiag.path_text(b"/tmp/\xff") == "/tmp/\udcff"
    hdr = struct.Struct("=IHHII")
    body = struct.pack("=BBBxIII", socket.AF_UNIX, 1, 10, 42, 7, 0)
    name = b"\0zz"
    attr = struct.pack("=HH", 4 + len(name), unixdiag.UNIX_DIAG_NAME) + name + b"\0"
    rq = struct.pack("=HHII", 12, unixdiag.UNIX_DIAG_RQLEN, 2, 16)
    msg = body + attr + rq
    data = hdr.pack(16 + len(msg), 20, 2, 5, 0) + msg
    out: list[UnixSocket] = []
    assert unixdiag.parse_datagram(data, 5, out) is False
    assert out == [UnixSocket(1, LISTEN, "@zz", 42, 0, 2, 16, 0, 7)]
    bad = hdr.pack(16 + len(body) + 4, 20, 2, 5, 0) + body + struct.pack("=HH", 40, 0)  # attribute too long
    with pytest.raises(NetlinkFormatError):
        unixdiag.parse_datagram(bad, 5, [])
    with pytest.raises(NetlinkFormatError):
        unixdiag.parse_datagram(hdr.pack(200, 20, 2, 5, 0) + body, 5, [])
    done = hdr.pack(20, netlink.NLMSG_DONE, 2, 5, 0) + b"\0" * 4
    assert unixdiag.parse_datagram(done, 5, []) is True


def test_collector_dumps_udp_and_unix_only_when_asked(udp_socks, unix_socks):
    got = []
    c = Collector(interval=60, on_update=got.append, use_tracepoint=False, start=False)
    try:
        first = c.collect_once().snapshot
        assert first.udp == () and first.unix == () and first.protocols == frozenset({"tcp"})
        c.set_protocols({"udp", "unix"})
        second = c.collect_once().snapshot
        assert second.protocols == frozenset({"tcp", "udp", "unix"})  # TCP always: diff, summary
        assert {inode_of(s) for s in udp_socks} <= {s.inode for s in second.udp}
        lst = unix_socks[2]
        assert any(u.inode == inode_of(lst) and u.state == LISTEN for u in second.unix)
        owners = second.owners
        if inode_of(lst) not in owners:  # an owner shows in the call that first sees it, or the next one
            owners = c.collect_once().snapshot.owners
        assert owners[inode_of(lst)].pid == os.getpid()  # owners for UNIX sockets too
        assert all(s.protocol == socket.IPPROTO_TCP for s in second.sockets)
        c.set_protocols(["tcp"])
        assert c.collect_once().snapshot.udp == ()
    finally:
        c.stop()


def test_states_apply_to_udp_like_ss_ul(udp_socks):
    bound, _bound6, conn = udp_socks
    snap = take_snapshot(states=[LISTEN], protocols=["udp"], owners=OwnerCache())
    inodes = {s.inode for s in snap.udp}
    assert inode_of(bound) in inodes and inode_of(conn) not in inodes
    assert all(s.state == CLOSE for s in snap.udp)
    est = take_snapshot(states=[ESTABLISHED], protocols=["udp"])
    assert inode_of(conn) in {s.inode for s in est.udp}


def test_snapshot_falls_back_to_procfs_when_udp_and_unix_diag_are_missing(monkeypatch, udp_socks, unix_socks):
    import errno

    from sockmon.core.table import diag
    from sockmon.core.table import snapshot as snapmod

    def unavailable(*_a, **_k):
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")

    monkeypatch.setattr(diag, "dump_udp", unavailable)
    monkeypatch.setattr(unixdiag, "dump_unix", unavailable)
    snap = snapmod.take_snapshot(protocols=["tcp", "udp", "unix"], owners=OwnerCache())
    assert snap.source == "netlink"  # TCP still from netlink
    assert "/proc/net/udp" in snap.note and "/proc/net/unix" in snap.note
    assert {inode_of(s) for s in udp_socks} <= {s.inode for s in snap.udp}
    lst = unix_socks[2]
    row = next(u for u in snap.unix if u.inode == inode_of(lst))
    assert row.state == LISTEN and row.cookie == 0 and snap.owners[row.inode].pid == os.getpid()
    lines = sockmon("ls", "--udp").stderr  # the real command is unaffected (netlink here)
    assert "/proc" not in lines
