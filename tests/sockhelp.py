"""Helpers for the lifecycle tests: loopback socket pairs, `ss` queries, event collection."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time


def tcp_pair(family: int = socket.AF_INET) -> tuple[socket.socket, socket.socket, socket.socket]:
    """(listener, client, server-side) connected over loopback on an ephemeral port."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(8)
    cli = socket.create_connection(lst.getsockname()[:2], timeout=5)
    srv, _ = lst.accept()
    return lst, cli, srv


def ss_rows(*ports: int, extra: tuple[str, ...] = ()) -> list[dict]:
    """`ss -tan` rows (all states) whose local or peer port is one of ``ports``."""
    out = subprocess.run(["ss", "-tanH", *extra], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        local, peer = parts[3], parts[4]
        lport = int(local.rsplit(":", 1)[1])
        pport = int(peer.rsplit(":", 1)[1]) if peer.rsplit(":", 1)[1] != "*" else 0
        if lport in ports or pport in ports:
            rows.append({"state": parts[0], "local": local, "peer": peer, "lport": lport, "pport": pport,
                         "rest": " ".join(parts[5:])})
    return rows


def ss_states(port_a: int, port_b: int) -> dict[int, str]:
    """local port → ss state name, for sockets of the connection port_a ↔ port_b."""
    return {r["lport"]: r["state"] for r in ss_rows(port_a, port_b)
            if {r["lport"], r["pport"]} == {port_a, port_b}}


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Events:
    """An on_event callback that records events thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items = []

    def __call__(self, event) -> None:
        with self._lock:
            self.items.append(event)

    def snapshot(self):
        with self._lock:
            return list(self.items)

    def of(self, kind, conn=None):
        return [e for e in self.snapshot() if e.kind == kind and (conn is None or e.conn == conn)]

    def wait(self, kind, timeout: float = 5.0, conn=None, where=lambda e: True):
        found = wait_for(lambda: [e for e in self.of(kind, conn) if where(e)], timeout)
        assert found, f"no {kind} event within {timeout}s; got: " + "\n".join(e.line() for e in self.snapshot())
        return found[0]

    def states(self, conn=None) -> list[str]:
        from sockmon.core.lab.events import EventKind

        return [e.state for e in self.of(EventKind.STATE, conn)]


# -- name resolution without the network ----------------------------------------------------------

class OfflineResolver:
    """A `socket.getaddrinfo` stand-in for `sockmon.core.lab.address.getaddrinfo`: numeric hosts and the
    names in ``names`` resolve (numerically, AI_NUMERICHOST: never a query), every other name fails
    with EAI_NONAME, as a resolver that knows no such host would. ``calls`` records the hosts asked."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = {"localhost": ["127.0.0.1", "::1"]} if names is None else names
        self.calls: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.calls.append(host)
        out = []
        for addr in self.names.get(host, [host]):
            try:
                out += socket.getaddrinfo(addr, port, family, type, proto, flags | socket.AI_NUMERICHOST)
            except socket.gaierror as exc:
                if exc.errno != socket.EAI_NONAME:
                    raise
        if not out:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return out


@contextlib.contextmanager
def offline_netns():
    """A fresh network namespace with only ``lo`` and a resolver that points at 127.0.0.1 inside it,
    where nothing listens: `ip netns exec NAME cmd` bind-mounts /etc/netns/NAME/{resolv.conf,nsswitch.conf,
    hosts} over /etc's, so a name lookup fails at once and no packet can leave. Removed afterwards."""
    name = f"smoffline{secrets.token_hex(3)}"
    etc = f"/etc/netns/{name}"
    made_parent = not os.path.isdir("/etc/netns")
    os.makedirs(etc)
    try:
        for fname, text in (("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"),
                            ("nsswitch.conf", "hosts: files dns\n"),
                            ("hosts", "127.0.0.1 localhost\n::1 localhost\n")):
            with open(os.path.join(etc, fname), "w") as fh:
                fh.write(text)
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            yield name
        finally:
            subprocess.run(["ip", "netns", "del", name], check=True)
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        if made_parent:
            with contextlib.suppress(OSError):  # only if empty: another user may have put a namespace there
                os.rmdir("/etc/netns")


@contextlib.contextmanager
def veth_netns_pair(prefix: str, subnet: str):
    """Two fresh network namespaces joined by a veth pair, ``SUBNET.1`` in the first and ``SUBNET.2`` in the
    second (a /30), loopback up in both; yields (ns_a, ns_b, the veth end in ns_b). Removed afterwards."""
    tag = f"{os.getpid() % 100000}"
    a, b = f"sm{prefix}a{tag}", f"sm{prefix}b{tag}"
    va, vb = f"s{prefix}a{tag}", f"s{prefix}b{tag}"

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
        ip("-n", a, "addr", "add", f"{subnet}.1/30", "dev", va)
        ip("-n", b, "addr", "add", f"{subnet}.2/30", "dev", vb)
        for ns, dev in ((a, va), (b, vb), (a, "lo"), (b, "lo")):
            ip("-n", ns, "link", "set", dev, "up")
        yield a, b, vb
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
