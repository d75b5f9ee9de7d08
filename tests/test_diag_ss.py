"""The netlink snapshot agrees with `ss -tanoiep` for sockets in every state the test can create.

Default namespace (loopback): LISTEN with a backlog and a queued, unaccepted client; ESTABLISHED
with a keepalive timer; FIN_WAIT2 / CLOSE_WAIT (half-close); TIME_WAIT. Two namespaces joined by a
veth pair, with a blackhole route in the server's namespace towards the client: SYN_SENT (the
SYN-ACK/RST never gets back) and LAST_ACK (the FIN never gets out). IPv4 and IPv6.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time

import pytest
from sockmon.core.netns import run_in_netns
from sockmon.core.states import (
    CLOSE_WAIT,
    ESTABLISHED,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    SYN_SENT,
    TIME_WAIT,
    parse_state,
)
from sockmon.core.table.owners import OwnerCache
from sockmon.core.table.snapshot import take_snapshot

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2 `ss`")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces")

SS_STATE = {"ESTAB": "ESTABLISHED", "SYN-RECV": "SYN_RECV"}
LOOP = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


def ss_rows(netns: str | None = None) -> dict[int, dict]:
    """`ss -tanoiep` parsed, keyed by socket cookie (the `sk:` field)."""
    cmd = ["ss", "-tanoiep"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows: dict[int, dict] = {}
    cur = None
    for line in out.splitlines()[1:]:
        if not line.strip():
            continue
        if line[0] in " \t":
            if cur is not None:
                cur["info"] = line.strip()
            continue
        f = line.split()
        rest = " ".join(f[5:])
        m = re.search(r"\bsk:([0-9a-f]+)", rest)
        if not m:
            continue
        timer = re.search(r"timer:\((\w+),", rest)
        pid = re.search(r"pid=(\d+)", rest)
        ino = re.search(r"\bino:(\d+)", rest)
        state = SS_STATE.get(f[0], f[0])
        cur = rows[int(m.group(1), 16)] = {
            "state": parse_state(state), "recv_q": int(f[1]), "send_q": int(f[2]), "local": f[3],
            "peer": f[4], "timer": timer.group(1) if timer else None, "pid": int(pid.group(1)) if pid else None,
            "ino": int(ino.group(1)) if ino else 0, "info": "",
        }
    return rows


def assert_agrees(snap, rows, sock_filter, expected: dict[str, int]) -> None:
    """Every expected label (→ state) is found once in the snapshot and agrees with ss."""
    found = {}
    for s in snap.sockets:
        label = sock_filter(s)
        if label is None:
            continue
        assert label not in found, f"{label} matched twice"
        found[label] = s
        row = rows.get(s.cookie)
        assert row is not None, f"{label}: ss does not list cookie {s.cookie:x} ({s})"
        assert row["state"] == s.state, (label, row, s)
        assert (row["recv_q"], row["send_q"]) == (s.recv_q, s.send_q), (label, row, s)
        assert row["timer"] == (s.timer.name if s.timer else None), (label, row, s)
        assert row["ino"] == s.inode, (label, row, s)
        owner = snap.owner(s)
        assert row["pid"] == (owner.pid if owner else None), (label, row, owner)
    assert {k: v.state for k, v in found.items()} == expected


@pytest.fixture
def loopback_states(request):
    family = request.param
    host = LOOP[family]
    opened: list[socket.socket] = []

    def keep(*socks):
        opened.extend(socks)
        return socks[0] if len(socks) == 1 else socks

    lst = keep(socket.socket(family, socket.SOCK_STREAM))
    lst.bind((host, 0))
    lst.listen(7)
    port = lst.getsockname()[1]

    def pair():
        c = keep(socket.create_connection((host, port)))
        a, _ = lst.accept()
        keep(a)
        return c, a

    ce, ae = pair()
    ce.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    ce.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 600)
    cf, af = pair()
    cf.shutdown(socket.SHUT_WR)
    ct, at = pair()
    ct_port = ct.getsockname()[1]
    ct.close()
    time.sleep(0.02)
    at.close()
    queued = keep(socket.create_connection((host, port)))  # never accepted: accept queue = 1
    time.sleep(0.05)
    ports = {
        "listen": (port, 0),
        "est-client-keepalive": (ce.getsockname()[1], port), "est-server": (port, ce.getsockname()[1]),
        "finwait2": (cf.getsockname()[1], port), "closewait": (port, cf.getsockname()[1]),
        "queued-client": (queued.getsockname()[1], port), "queued-server": (port, queued.getsockname()[1]),
        "timewait": (ct_port, port),
    }
    yield family, port, ports, ce, cf, queued
    for s in opened:
        s.close()


@pytest.mark.parametrize("loopback_states", [socket.AF_INET, socket.AF_INET6], indirect=True, ids=["v4", "v6"])
def test_loopback_states_agree_with_ss(loopback_states):
    family, port, ports, ce, cf, queued = loopback_states
    by_ports = {v: k for k, v in ports.items() if v[0] is not None}
    snap = take_snapshot(port=port, owners=OwnerCache())
    rows = ss_rows()
    assert snap.source == "netlink"

    def label(s):
        # exact 4-tuples: an older TIME_WAIT may share the (reused) listening port number
        if s.family != family:
            return None
        return by_ports.get((s.sport, s.dport))

    assert_agrees(snap, rows, label, {
        "listen": LISTEN, "est-client-keepalive": ESTABLISHED, "est-server": ESTABLISHED,
        "finwait2": FIN_WAIT2, "closewait": CLOSE_WAIT, "timewait": TIME_WAIT,
        "queued-client": ESTABLISHED, "queued-server": ESTABLISHED,
    })
    socks = {label(s): s for s in snap.sockets if label(s)}
    assert socks["listen"].recv_q == 1 and socks["listen"].send_q == 7  # accept queue / backlog
    assert socks["est-client-keepalive"].timer.name == "keepalive"
    assert 590_000 < socks["est-client-keepalive"].timer.expires_ms <= 600_000
    assert socks["timewait"].timer.name == "timewait" and socks["timewait"].inode == 0
    assert socks["timewait"].tcp_info is None
    assert socks["queued-server"].inode == 0  # not accepted: no file, no owner
    me = os.getpid()
    for name in ("listen", "est-client-keepalive", "est-server", "finwait2", "closewait", "queued-client"):
        assert snap.owner(socks[name]).pid == me
    # tcp_info decoded from the dump agrees with getsockopt(TCP_INFO) on the same socket
    from sockmon.core.tcpinfo import read_tcp_info

    mine = read_tcp_info(ce)
    info = socks["est-client-keepalive"].tcp_info
    assert (info.state, info.snd_mss, info.rcv_wscale, info.snd_wscale) == (
        mine.state, mine.snd_mss, mine.rcv_wscale, mine.snd_wscale)


# ---------------------------------------------------------------- namespaces: SYN_SENT, LAST_ACK
def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def veth_pair():
    """smA (10.203.x.1, fd00:203::1) ⇄ smB (.2, ::2); smB blackholes traffic back to smA."""
    tag = secrets.token_hex(3)
    a, b = f"smtA{tag}", f"smtB{tag}"
    o = int(tag, 16) % 200 + 20
    v4a, v4b = f"10.{o}.7.1", f"10.{o}.7.2"
    v6a, v6b = f"fd00:{o:x}:7::1", f"fd00:{o:x}:7::2"
    _ip("netns", "add", a)
    try:
        _ip("netns", "add", b)
        _ip("link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", "name", f"vb{tag}", "netns", b)
        for ns, dev, a4, a6 in ((a, f"va{tag}", v4a, v6a), (b, f"vb{tag}", v4b, v6b)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{a4}/24", "dev", dev)
            _ip("-n", ns, "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad")
            _ip("-n", ns, "link", "set", dev, "up")
        yield {"a": a, "b": b, socket.AF_INET: (v4a, v4b), socket.AF_INET6: (v6a, v6b)}
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


@root_only
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def test_syn_sent_and_last_ack_in_namespaces_agree_with_ss(veth_pair, family):
    ns_a, ns_b = veth_pair["a"], veth_pair["b"]
    addr_a, addr_b = veth_pair[family]
    opened = []
    try:
        lst = run_in_netns(ns_b, lambda: socket.socket(family, socket.SOCK_STREAM))
        opened.append(lst)
        lst.bind((addr_b, 0))
        lst.listen(4)
        port = lst.getsockname()[1]
        cli = run_in_netns(ns_a, lambda: socket.socket(family, socket.SOCK_STREAM))
        opened.append(cli)
        cli.settimeout(5)
        cli.connect((addr_b, port))
        srv, _ = lst.accept()
        opened.append(srv)
        cli.shutdown(socket.SHUT_WR)  # cli FIN_WAIT2, srv CLOSE_WAIT
        time.sleep(0.05)
        plen = "32" if family == socket.AF_INET else "128"
        fam = "-4" if family == socket.AF_INET else "-6"
        _ip("-n", ns_b, fam, "route", "add", "blackhole", f"{addr_a}/{plen}")
        try:
            srv.close()  # FIN can no longer reach smA: LAST_ACK, retransmit timer
            opened.remove(srv)
            syn = run_in_netns(ns_a, lambda: socket.socket(family, socket.SOCK_STREAM))
            opened.append(syn)
            syn.setblocking(False)
            err = syn.connect_ex((addr_b, port + 1 if port < 65535 else port - 1))  # answer is blackholed
            assert err == 115  # EINPROGRESS
            time.sleep(0.05)
            owners = OwnerCache()
            snap_a = take_snapshot(netns=ns_a, owners=owners)
            snap_b = take_snapshot(netns=ns_b, owners=owners)
            rows_a, rows_b = ss_rows(ns_a), ss_rows(ns_b)
            syn_port = syn.getsockname()[1]

            def label_a(s):
                if s.family == family and s.sport == syn_port:
                    return "syn-sent"
                if s.family == family and s.dport == port:
                    return "finwait2"
                return None

            def label_b(s):
                if s.family == family and s.sport == port and s.dport:
                    return "last-ack"
                return None

            assert_agrees(snap_a, rows_a, label_a, {"syn-sent": SYN_SENT, "finwait2": FIN_WAIT2})
            assert_agrees(snap_b, rows_b, label_b, {"last-ack": LAST_ACK})
            la = next(s for s in snap_b.sockets if label_b(s))
            ss_ = next(s for s in snap_a.sockets if label_a(s) == "syn-sent")
            # the unsent FIN is retried by the retransmit or zero-window-probe timer (ss agrees above)
            assert la.timer is not None and la.timer.name in ("on", "persist")
            assert ss_.timer.name == "on"
            assert snap_a.netns == ns_a
            # neither socket exists in the default namespace
            default = take_snapshot(port=port)
            assert not [s for s in default.sockets if s.src in (addr_a, addr_b)]
        finally:
            subprocess.run(["ip", "-n", ns_b, fam, "route", "del", "blackhole", f"{addr_a}/{plen}"],
                           capture_output=True)
    finally:
        for s in opened:
            s.close()


# ---------------------------------------------------------------- window scales, pyroute2
def _wscale_pair(family):
    host = LOOP[family]
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(1)
    cli = socket.socket(family, socket.SOCK_STREAM)
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # small window: rcv_wscale 0
    cli.connect(lst.getsockname()[:2])
    srv, _ = lst.accept()
    return lst, cli, srv


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def test_window_scales_agree_with_ss_i(family):
    lst, cli, srv = _wscale_pair(family)
    try:
        port = cli.getsockname()[1]
        # only ESTABLISHED: an old TIME_WAIT socket may share the ephemeral port
        snap = take_snapshot(port=port, states=[ESTABLISHED])
        rows = ss_rows()
        checked = 0
        for s in snap.sockets:
            m = re.search(r"wscale:(\d+),(\d+)", rows[s.cookie]["info"])
            assert m, rows[s.cookie]
            assert (s.tcp_info.snd_wscale, s.tcp_info.rcv_wscale) == (int(m.group(1)), int(m.group(2)))
            assert s.tcp_info.snd_wscale != s.tcp_info.rcv_wscale
            for key, attr in (("cwnd", "snd_cwnd"), ("mss", "snd_mss"), ("rcvmss", "rcv_mss")):
                mm = re.search(rf"\b{key}:(\d+)", rows[s.cookie]["info"])
                assert mm and int(mm.group(1)) == getattr(s.tcp_info, attr), (key, rows[s.cookie]["info"])
            checked += 1
        assert checked == 2
        cs = next(s for s in snap.sockets if s.sport == port)
        assert cs.tcp_info.rcv_wscale == 0 and cs.tcp_info.snd_wscale > 0
    finally:
        for s in (lst, cli, srv):
            s.close()


def test_pyroute2_cross_check():
    """pyroute2's DiagSocket lists the same sockets (identity, state, queues); its wscale decode is
    not used (docs/kernel-facts.md §1: it gets snd/rcv wrong)."""
    diag = pytest.importorskip("pyroute2").DiagSocket
    lst, cli, srv = _wscale_pair(socket.AF_INET)
    try:
        port = lst.getsockname()[1]
        with diag() as ds:
            ds.bind()
            theirs = {}
            for msg in ds.get_sock_stats(family=socket.AF_INET, states=0xFFF):
                if port not in (msg["idiag_sport"], msg["idiag_dport"]):
                    continue
                theirs[msg["idiag_inode"] or (msg["idiag_sport"], msg["idiag_dport"])] = (
                    msg["idiag_sport"], msg["idiag_dport"], msg["idiag_state"], msg["idiag_rqueue"],
                    msg["idiag_wqueue"], msg["idiag_uid"])
        snap = take_snapshot(port=port)
        ours = {s.inode or (s.sport, s.dport): (s.sport, s.dport, s.state, s.recv_q, s.send_q, s.uid)
                for s in snap.sockets if s.family == socket.AF_INET}
        assert ours == theirs
        assert len(ours) == 3
    finally:
        for s in (lst, cli, srv):
            s.close()
