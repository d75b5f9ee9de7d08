"""Summary: per-state counts like `ss -s`, ListenOverflows/ListenDrops, keepalive sysctls."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time

import pytest
from sockmon.core.netns import run_in_netns
from sockmon.core.records import Snapshot, Socket
from sockmon.core.table.snapshot import take_snapshot
from sockmon.core.table.summary import read_keepalive_sysctls, read_listen_counters, summarize


def test_counts_per_state_without_system_reads():
    socks = tuple(Socket(2 if i % 2 else 10, st, "a", i, "b", 1, 0, 0, None, 0, i, i)
                  for i, st in enumerate([1, 1, 1, 10, 6, 6]))
    s = summarize(Snapshot(socks, 1.0, 1.0, "netlink"), read_system=False)
    assert s.total == 6 and dict(s.by_state) == {"ESTABLISHED": 3, "TIME_WAIT": 2, "LISTEN": 1}
    assert s.count("CLOSE_WAIT") == 0 and dict(s.families) == {"inet": 3, "inet6": 3}
    assert s.listen_overflows is None and s.keepalive_time is None


def test_keepalive_sysctls_match_proc():
    def rd(n):
        return int(open(f"/proc/sys/net/ipv4/tcp_keepalive_{n}").read())

    assert read_keepalive_sysctls() == (rd("time"), rd("intvl"), rd("probes"))
    s = summarize(take_snapshot())
    assert (s.keepalive_time, s.keepalive_intvl, s.keepalive_probes) == (rd("time"), rd("intvl"), rd("probes"))
    assert s.sockstat.get("TCP inuse", -1) >= 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a private namespace isolates the counters")
def test_listen_overflow_counted_in_a_private_namespace():
    name = f"smsum{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    socks = []
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        assert read_listen_counters(name) == (0, 0)
        lst = run_in_netns(name, socket.socket)
        socks.append(lst)
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)  # accept queue of 1
        for _ in range(4):
            c = run_in_netns(name, socket.socket)
            socks.append(c)
            c.setblocking(False)
            c.connect_ex(lst.getsockname())
        time.sleep(0.3)
        overflows, drops = read_listen_counters(name)
        assert overflows >= 1 and drops >= overflows
        summ = summarize(take_snapshot(netns=name))
        assert summ.listen_overflows == overflows and summ.count("LISTEN") == 1
        assert summ.total == len(take_snapshot(netns=name).sockets)
    finally:
        for s in socks:
            s.close()
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_read_tcp_counters_has_tcp_and_tcpext():
    from sockmon.core.table.summary import read_tcp_counters

    counters = read_tcp_counters()
    assert counters["Tcp.ActiveOpens"] >= 0 and "TcpExt.ListenDrops" in counters
    assert not [k for k in counters if not k.startswith(("Tcp.", "TcpExt."))]
