"""Snapshots of a named namespace or a pid's namespace see that namespace's sockets only."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time

import pytest
from sockmon.core.errors import BadInput
from sockmon.core.netns import netns_path, run_in_netns
from sockmon.core.table.snapshot import take_snapshot

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creating network namespaces")


@pytest.fixture
def netns():
    name = f"smtest{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


@root_only
def test_named_namespace_sees_only_its_socket(netns):
    lst = run_in_netns(netns, lambda: socket.socket())
    try:
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        port = lst.getsockname()[1]
        inside = take_snapshot(netns=netns)
        assert [(s.sport, s.state) for s in inside.sockets] == [(port, 10)]  # nothing else lives there
        assert inside.netns == netns
        assert not [s for s in take_snapshot(port=port).sockets if s.inode == inside.sockets[0].inode]
    finally:
        lst.close()


@root_only
def test_pid_namespace_form(netns):
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "python3", "-c",
                             "import socket,time\ns=socket.socket();s.bind(('127.0.0.1',4711));s.listen()\n"
                             "print('ok',flush=True);time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ok"
        for form in (proc.pid, f"pid:{proc.pid}"):
            snap = take_snapshot(netns=form)
            assert [(s.sport, s.state) for s in snap.sockets] == [(4711, 10)]
    finally:
        proc.kill()
        proc.wait()


@root_only
def test_thread_namespace_is_restored(netns):
    before = os.readlink("/proc/thread-self/ns/net")
    run_in_netns(netns, lambda: take_snapshot())
    with pytest.raises(ZeroDivisionError):
        run_in_netns(netns, lambda: 1 / 0)
    assert os.readlink("/proc/thread-self/ns/net") == before


def test_missing_namespace_is_bad_input():
    with pytest.raises(BadInput) as exc:
        take_snapshot(netns=f"nope{time.time_ns()}")
    assert "does not exist" in str(exc.value)
    with pytest.raises(BadInput):
        netns_path("../etc")
    with pytest.raises(BadInput):
        netns_path("pid:abc")
    assert netns_path(42) == "/proc/42/ns/net" and netns_path("x") == "/run/netns/x"
